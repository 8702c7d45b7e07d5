//! How far behind each mirrored partition is, in records and in seconds.
//!
//! Lag is computed on an interval from the source's end offsets, not from records as
//! they flow, so it is right when nothing flows and keeps growing while replication is
//! stalled (MirrorMaker 2's record age freezes then, and a stalled flow looks healthy).
//!
//! Time lag is the age of the oldest source record the target has not acknowledged. The
//! records after the last acknowledged one are newer than it and newer than the last
//! moment the partition was caught up, so the age is measured from the later of the two.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::metrics::{self, now_ms};
use crate::mirror::FlowShared;

/// How often lag is computed, and the spacing of the history's samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/status` shows of one partition.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub source_end_offset: i64,
    pub mirrored_position: i64,
    pub lag_records: i64,
    pub lag_seconds: f64,
}

/// What `/status` shows of one partition of a source consumer group: where it would
/// continue on the target, and what it would re-read there without `strait failover`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct GroupPosition {
    pub group: String,
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// The group's committed offset on the source.
    pub source_committed: i64,
    /// Its translated position on the target, when known exactly.
    pub translated: Option<i64>,
    /// How the translation went (`exact`, `not yet mirrored`, ...).
    pub note: String,
    /// The same group's committed offset on the target; None when the target did not
    /// answer or the group has none there.
    pub target_committed: Option<i64>,
    /// `translated` minus the target's committed offset (0 when none): records the group
    /// would read again if it switched without `strait failover` (as
    /// `strait_group_offset_lag_records`); None when either side is unknown.
    pub would_reread: Option<i64>,
}

/// What `/status` shows of one flow.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct FlowStatus {
    pub flow: String,
    /// `starting`, `running`, `paused` (target slow or unreachable), or `stopped`.
    pub state: String,
    pub source_reachable: bool,
    pub target_reachable: bool,
    pub records_per_second: f64,
    /// Key and value bytes per second acknowledged by the target.
    #[serde(default)]
    pub bytes_per_second: f64,
    pub checkpoint_age_seconds: Option<f64>,
    pub heartbeat_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub partitions: Vec<PartitionLag>,
    /// Source groups this instance checkpoints, per partition (see [`GroupPosition`]).
    #[serde(default)]
    pub groups: Vec<GroupPosition>,
}

impl FlowStatus {
    pub fn worst_lag_seconds(&self) -> f64 {
        self.partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max)
    }

    pub fn lag_records(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag_records).sum()
    }
}

/// Samples kept per flow: 15 minutes at one per lag round.
pub const HISTORY_SAMPLES: usize = 450;

/// One lag round's numbers, for the status page's charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub records_per_second: f64,
    pub bytes_per_second: f64,
    /// The flow's worst partition time lag.
    pub lag_seconds: f64,
    /// The flow's lag in records, summed over partitions.
    pub lag_records: i64,
}

/// The last [`HISTORY_SAMPLES`] samples of a flow, oldest first (a ring buffer: it
/// never grows beyond that).
#[derive(Debug, Default)]
pub struct History {
    samples: std::collections::VecDeque<Sample>,
}

impl History {
    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == HISTORY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// Where a flow's monitor publishes: the current status and its history.
#[derive(Clone, Default)]
pub struct Published {
    pub status: Arc<Mutex<FlowStatus>>,
    pub history: Arc<Mutex<History>>,
}

/// Computes lag for one flow until shutdown, publishing metrics, status and history.
pub fn start(
    shared: Arc<FlowShared>,
    source: Cluster,
    target: Cluster,
    map_topic: String,
    published: Published,
    up: Arc<std::sync::atomic::AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("lag {}", shared.name))
        .spawn(move || {
            let (Ok(source_meta), Ok(target_meta)) = (source.metadata_client(), target.metadata_client()) else {
                tracing::error!(flow = %shared.name, "lag monitor could not create Kafka clients");
                return;
            };
            let mut monitor = Monitor {
                ends: HashMap::new(),
                caught_up_at: HashMap::new(),
                last_acked: (shared.acked_records.load(Ordering::Relaxed), shared.acked_bytes.load(Ordering::Relaxed)),
                last_tick: Instant::now(),
                shared,
                source_meta,
                target_meta,
            };
            while !*shutdown.borrow_and_update() {
                let (partitions, source_ok) = monitor.partitions();
                let target_ok = monitor
                    .target_meta
                    .fetch_metadata(Some(&map_topic), REQUEST_TIMEOUT)
                    .is_ok_and(|m| !m.brokers().is_empty());
                metrics::cluster_up(&monitor.shared.name, "source", &source.alias, source_ok);
                metrics::cluster_up(&monitor.shared.name, "target", &target.alias, target_ok);
                let status = monitor.status(partitions, up.load(Ordering::SeqCst), (source_ok, target_ok));
                published.history.lock().unwrap().push(Sample {
                    at_ms: now_ms(),
                    records_per_second: status.records_per_second,
                    bytes_per_second: status.bytes_per_second,
                    lag_seconds: status.worst_lag_seconds(),
                    lag_records: status.lag_records(),
                });
                *published.status.lock().unwrap() = status;
                let next = Instant::now() + INTERVAL;
                while Instant::now() < next && !*shutdown.borrow() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .expect("spawn lag thread")
}

/// What one flow's lag monitor remembers between rounds.
struct Monitor {
    shared: Arc<FlowShared>,
    source_meta: rdkafka::consumer::BaseConsumer,
    target_meta: rdkafka::consumer::BaseConsumer,
    /// The last known (low, end) watermarks per partition.
    ends: HashMap<(String, i32), (i64, i64)>,
    caught_up_at: HashMap<(String, i32), i64>,
    /// Records and bytes acknowledged at `last_tick`.
    last_acked: (u64, u64),
    last_tick: Instant,
}

impl Monitor {
    /// Lag of every owned partition (publishing its metrics), and whether the source
    /// answered every watermark request.
    fn partitions(&mut self) -> (Vec<PartitionLag>, bool) {
        let mut source_ok = true;
        let mut partitions = Vec::new();
        let now = now_ms();
        for (topic, partition, slot) in self.shared.owned_partitions() {
            let key = (topic.clone(), partition);
            match self.source_meta.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT) {
                Ok(watermarks) => {
                    self.ends.insert(key.clone(), watermarks);
                }
                Err(_) => source_ok = false,
            }
            let Some(&(low, end)) = self.ends.get(&key) else { continue };
            // Unknown only for a partition this flow never mirrored: all of it is lag.
            let mirrored = slot.mirrored_position().unwrap_or(low).max(low);
            let lag_records = (end - mirrored).max(0);
            let lag_seconds = if lag_records == 0 {
                self.caught_up_at.insert(key.clone(), now);
                0.0
            } else {
                let since =
                    self.caught_up_at.get(&key).copied().unwrap_or(now).max(slot.last_acked_timestamp().unwrap_or(0));
                ((now - since).max(0) as f64) / 1000.0
            };
            metrics::partition_lag(&self.shared.name, &topic, partition, end, lag_records, lag_seconds);
            partitions.push(PartitionLag {
                topic,
                partition,
                source_end_offset: end,
                mirrored_position: mirrored,
                lag_records,
                lag_seconds,
            });
        }
        (partitions, source_ok)
    }

    /// The flow's status from `partitions`, whether the clusters answered (source,
    /// target), and the shared counters; publishes the flow's metrics.
    fn status(&mut self, partitions: Vec<PartitionLag>, running: bool, reachable: (bool, bool)) -> FlowStatus {
        let shared = &self.shared;
        let now = now_ms();
        let age = |ms: i64| (ms > 0).then(|| ((now - ms).max(0) as f64) / 1000.0);
        let checkpoint_age = age(shared.last_checkpoint_ms.load(Ordering::SeqCst));
        if let Some(age) = checkpoint_age {
            metrics::checkpoint_age(&shared.name, age);
        }
        let heartbeat_age = age(shared.last_heartbeat_ms.load(Ordering::SeqCst));
        if let Some(age) = heartbeat_age {
            metrics::heartbeat_age(&shared.name, age);
        }
        metrics::in_flight(&shared.name, shared.budget.in_flight(), shared.budget.limit());
        let acked = (shared.acked_records.load(Ordering::Relaxed), shared.acked_bytes.load(Ordering::Relaxed));
        let elapsed = self.last_tick.elapsed().as_secs_f64().max(0.001);
        let records_per_second = acked.0.saturating_sub(self.last_acked.0) as f64 / elapsed;
        let bytes_per_second = acked.1.saturating_sub(self.last_acked.1) as f64 / elapsed;
        self.last_acked = acked;
        self.last_tick = Instant::now();

        let paused = shared.paused.load(Ordering::SeqCst);
        metrics::flow_up(&shared.name, running);
        metrics::flow_paused(&shared.name, paused);
        FlowStatus {
            flow: shared.name.clone(),
            state: match (running, paused) {
                (false, _) => "stopped",
                (true, true) => "paused",
                (true, false) => "running",
            }
            .to_string(),
            source_reachable: reachable.0,
            target_reachable: reachable.1,
            records_per_second,
            bytes_per_second,
            checkpoint_age_seconds: checkpoint_age,
            heartbeat_age_seconds: heartbeat_age,
            last_error: shared.last_error.lock().unwrap().clone(),
            partitions,
            groups: shared.groups.lock().unwrap().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64) -> Sample {
        Sample { at_ms, records_per_second: 1.0, bytes_per_second: 2.0, lag_seconds: 0.5, lag_records: 3 }
    }

    #[test]
    fn history_keeps_the_newest_samples_oldest_first() {
        let mut history = History::default();
        for at in 0..HISTORY_SAMPLES as i64 + 10 {
            history.push(sample(at));
        }
        let samples = history.samples();
        assert_eq!(samples.len(), HISTORY_SAMPLES);
        assert_eq!(samples.first().unwrap().at_ms, 10);
        assert_eq!(samples.last().unwrap().at_ms, HISTORY_SAMPLES as i64 + 9);
    }
}
