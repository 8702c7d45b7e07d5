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

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::{LagGranularity, MetricsConfig};
use crate::metrics::{self, now_ms};
use crate::mirror::FlowShared;

/// How often lag is computed (below 4,000 partitions), and the spacing of the
/// history's samples.
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

/// What the lag monitor of one flow watches.
pub struct Watched {
    pub shared: Arc<FlowShared>,
    pub source: Cluster,
    pub target: Cluster,
    /// The flow's offset-map topic on the target: a metadata request for it tells
    /// whether the target answers.
    pub map_topic: String,
    /// Whether the flow runs.
    pub up: Arc<std::sync::atomic::AtomicBool>,
}

/// Computes lag for one flow until shutdown, publishing metrics and `status`.
pub fn start(
    watched: Watched,
    published: Published,
    export: MetricsConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    let Watched { shared, source, target, map_topic, up } = watched;
    std::thread::Builder::new()
        .name(format!("lag {}", shared.name))
        .spawn(move || {
            let (Ok(source_meta), Ok(target_meta)) = (source.metadata_client(), target.metadata_client()) else {
                tracing::error!(flow = %shared.name, "lag monitor could not create Kafka clients");
                return;
            };
            let mut monitor = LagMonitor {
                last_acked: (shared.acked_records.load(Ordering::Relaxed), shared.acked_bytes.load(Ordering::Relaxed)),
                shared,
                source,
                target,
                source_meta,
                target_meta,
                map_topic,
                export,
                offsets: HashMap::new(),
                caught_up_at: HashMap::new(),
                last_tick: Instant::now(),
            };
            while !*shutdown.borrow_and_update() {
                let status = monitor.round(up.load(Ordering::SeqCst));
                let next = Instant::now() + interval(status.partitions.len());
                published.history.lock().unwrap().push(Sample {
                    at_ms: now_ms(),
                    records_per_second: status.records_per_second,
                    bytes_per_second: status.bytes_per_second,
                    lag_seconds: status.worst_lag_seconds(),
                    lag_records: status.lag_records(),
                });
                *published.status.lock().unwrap() = status;
                while Instant::now() < next && !*shutdown.borrow() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .expect("spawn lag thread")
}

/// Time between rounds: 2 s up to 4,000 partitions, then 0.5 ms per partition (5 s at
/// 10,000), so that the monitor's cost stays small however many partitions a flow has.
fn interval(partitions: usize) -> Duration {
    INTERVAL.max(Duration::from_micros(500 * partitions as u64))
}

/// One flow's lag monitor: what it remembers between rounds.
struct LagMonitor {
    shared: Arc<FlowShared>,
    source: Cluster,
    target: Cluster,
    source_meta: BaseConsumer,
    target_meta: BaseConsumer,
    map_topic: String,
    export: MetricsConfig,
    /// Last known (log start, end) per partition; kept when a round could not read them.
    offsets: HashMap<(String, i32), (i64, i64)>,
    /// When each partition was last seen caught up (ms since the epoch).
    caught_up_at: HashMap<(String, i32), i64>,
    /// Records and bytes acknowledged at `last_tick`.
    last_acked: (u64, u64),
    last_tick: Instant,
}

impl LagMonitor {
    /// Reads end offsets, computes every owned partition's lag, publishes metrics, and
    /// returns the flow's status.
    fn round(&mut self, running: bool) -> FlowStatus {
        let now = now_ms();
        let shared = self.shared.clone();
        let owned = shared.owned_partitions();
        let keys: Vec<(String, i32)> = owned.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let source_ok = self.read_offsets(&keys);
        let mut partitions = Vec::with_capacity(owned.len());
        for (topic, partition, slot) in owned {
            let key = (topic, partition);
            let Some(&(low, end)) = self.offsets.get(&key) else { continue };
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
            let (topic, partition) = key;
            partitions.push(PartitionLag {
                topic,
                partition,
                source_end_offset: end,
                mirrored_position: mirrored,
                lag_records,
                lag_seconds,
            });
        }
        self.caught_up_at.retain(|k, _| self.offsets.contains_key(k));
        export_lag(&self.shared.name, &self.export, &partitions);
        self.status(running, source_ok, now, partitions)
    }

    /// Reads the log start and end of `keys` with one ListOffsets request per leader
    /// broker and kind (earliest, latest), instead of one request per partition: the
    /// cost of a round no longer grows with the number of partitions. Returns whether
    /// the source answered.
    fn read_offsets(&mut self, keys: &[(String, i32)]) -> bool {
        let wanted: std::collections::HashSet<&(String, i32)> = keys.iter().collect();
        self.offsets.retain(|k, _| wanted.contains(k));
        if keys.is_empty() {
            return true;
        }
        let (Some(starts), Some(ends)) = (
            list_offsets(&self.source_meta, keys, rdkafka::Offset::Beginning),
            list_offsets(&self.source_meta, keys, rdkafka::Offset::End),
        ) else {
            return false;
        };
        let mut complete = true;
        for key in keys {
            match (starts.get(key), ends.get(key)) {
                (Some(&low), Some(&end)) => {
                    self.offsets.insert(key.clone(), (low, end));
                }
                _ => complete = false,
            }
        }
        complete
    }

    fn status(&mut self, running: bool, source_ok: bool, now: i64, partitions: Vec<PartitionLag>) -> FlowStatus {
        let shared = &self.shared;
        let target_ok = self
            .target_meta
            .fetch_metadata(Some(&self.map_topic), REQUEST_TIMEOUT)
            .is_ok_and(|m| !m.brokers().is_empty());
        metrics::cluster_up(&shared.name, "source", &self.source.alias, source_ok);
        metrics::cluster_up(&shared.name, "target", &self.target.alias, target_ok);

        let checkpoint_ms = shared.last_checkpoint_ms.load(Ordering::SeqCst);
        let checkpoint_age = (checkpoint_ms > 0).then(|| ((now - checkpoint_ms).max(0) as f64) / 1000.0);
        if let Some(age) = checkpoint_age {
            metrics::checkpoint_age(&shared.name, age);
        }
        let heartbeat_ms = shared.last_heartbeat_ms.load(Ordering::SeqCst);
        let heartbeat_age = (heartbeat_ms > 0).then(|| ((now - heartbeat_ms).max(0) as f64) / 1000.0);
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
            source_reachable: source_ok,
            target_reachable: target_ok,
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

/// The earliest or latest offset of each of `keys`, read with ListOffsets: librdkafka
/// groups the partitions by leader and sends one request per broker. librdkafka fails
/// the whole call when one partition fails (no leader, a leader moving): then each
/// partition is asked on its own, for at most [`REQUEST_TIMEOUT`] in all, so one bad
/// partition costs its own value, not everyone's. Partitions without an answer are left
/// out; None when none answered.
pub(crate) fn list_offsets(
    meta: &BaseConsumer,
    keys: &[(String, i32)],
    which: rdkafka::Offset,
) -> Option<HashMap<(String, i32), i64>> {
    let mut request = TopicPartitionList::with_capacity(keys.len());
    for (topic, partition) in keys {
        request.add_partition_offset(topic, *partition, which).ok()?;
    }
    // Kafka's ListOffsets takes a timestamp per partition; -1 means the latest offset
    // (the last stable one under read_committed) and -2 the log start. Offset::End and
    // Offset::Beginning are those two values.
    let found: HashMap<(String, i32), i64> = match meta.offsets_for_times(request, REQUEST_TIMEOUT) {
        Ok(answer) => answer
            .elements()
            .iter()
            .filter(|e| e.error().is_ok())
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect(),
        Err(_) => {
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            keys.iter()
                .take_while(|_| Instant::now() < deadline)
                .filter_map(|(topic, partition)| {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let (low, high) = meta.fetch_watermarks(topic, *partition, left).ok()?;
                    let offset = if which == rdkafka::Offset::Beginning { low } else { high };
                    Some(((topic.clone(), *partition), offset))
                })
                .collect()
        }
    };
    (!found.is_empty()).then_some(found)
}

/// Publishes lag series at the granularity `[metrics]` asks for.
fn export_lag(flow: &str, export: &MetricsConfig, partitions: &[PartitionLag]) {
    match export.lag_granularity {
        LagGranularity::Partition => {
            for p in partitions.iter().filter(|p| p.lag_records >= export.partition_lag_min_records) {
                metrics::partition_lag(flow, &p.topic, p.partition, p.source_end_offset, p.lag_records, p.lag_seconds);
            }
        }
        LagGranularity::Topic => {
            let mut topics: HashMap<&str, (i64, i64, f64)> = HashMap::new();
            for p in partitions {
                let t = topics.entry(&p.topic).or_default();
                t.0 += p.source_end_offset;
                t.1 += p.lag_records;
                t.2 = t.2.max(p.lag_seconds);
            }
            for (topic, (end, records, seconds)) in topics {
                metrics::topic_lag(flow, topic, end, records, seconds);
            }
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
