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

const INTERVAL: Duration = Duration::from_secs(2);
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

/// What `/status` shows of one flow.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct FlowStatus {
    pub flow: String,
    /// `starting`, `running`, `paused` (target slow or unreachable), or `stopped`.
    pub state: String,
    pub source_reachable: bool,
    pub target_reachable: bool,
    pub records_per_second: f64,
    pub checkpoint_age_seconds: Option<f64>,
    pub heartbeat_age_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub partitions: Vec<PartitionLag>,
}

impl FlowStatus {
    pub fn worst_lag_seconds(&self) -> f64 {
        self.partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max)
    }

    pub fn lag_records(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag_records).sum()
    }
}

/// Computes lag for one flow until shutdown, publishing metrics and `status`.
pub fn start(
    shared: Arc<FlowShared>,
    source: Cluster,
    target: Cluster,
    map_topic: String,
    status: Arc<Mutex<FlowStatus>>,
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
            let mut ends: HashMap<(String, i32), (i64, i64)> = HashMap::new();
            let mut caught_up_at: HashMap<(String, i32), i64> = HashMap::new();
            let mut last_acked = shared.acked_records.load(Ordering::Relaxed);
            let mut last_tick = Instant::now();
            while !*shutdown.borrow_and_update() {
                let mut source_ok = true;
                let mut partitions = Vec::new();
                let now = now_ms();
                for (topic, partition, slot) in shared.owned_partitions() {
                    let key = (topic.clone(), partition);
                    match source_meta.fetch_watermarks(&topic, partition, REQUEST_TIMEOUT) {
                        Ok(watermarks) => {
                            ends.insert(key.clone(), watermarks);
                        }
                        Err(_) => source_ok = false,
                    }
                    let Some(&(low, end)) = ends.get(&key) else { continue };
                    // Unknown only for a partition this flow never mirrored: all of it is lag.
                    let mirrored = slot.mirrored_position().unwrap_or(low).max(low);
                    let lag_records = (end - mirrored).max(0);
                    let lag_seconds = if lag_records == 0 {
                        caught_up_at.insert(key.clone(), now);
                        0.0
                    } else {
                        let since = caught_up_at
                            .get(&key)
                            .copied()
                            .unwrap_or(now)
                            .max(slot.last_acked_timestamp().unwrap_or(0));
                        ((now - since).max(0) as f64) / 1000.0
                    };
                    metrics::partition_lag(&shared.name, &topic, partition, end, lag_records, lag_seconds);
                    partitions.push(PartitionLag {
                        topic,
                        partition,
                        source_end_offset: end,
                        mirrored_position: mirrored,
                        lag_records,
                        lag_seconds,
                    });
                }
                let target_ok = target_meta
                    .fetch_metadata(Some(&map_topic), REQUEST_TIMEOUT)
                    .is_ok_and(|m| !m.brokers().is_empty());
                metrics::cluster_up(&shared.name, "source", &source.alias, source_ok);
                metrics::cluster_up(&shared.name, "target", &target.alias, target_ok);

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
                let acked = shared.acked_records.load(Ordering::Relaxed);
                let rate = (acked - last_acked) as f64 / last_tick.elapsed().as_secs_f64().max(0.001);
                last_acked = acked;
                last_tick = Instant::now();

                let running = up.load(Ordering::SeqCst);
                let paused = shared.paused.load(Ordering::SeqCst);
                metrics::flow_up(&shared.name, running);
                metrics::flow_paused(&shared.name, paused);
                *status.lock().unwrap() = FlowStatus {
                    flow: shared.name.clone(),
                    state: match (running, paused) {
                        (false, _) => "stopped",
                        (true, true) => "paused",
                        (true, false) => "running",
                    }
                    .to_string(),
                    source_reachable: source_ok,
                    target_reachable: target_ok,
                    records_per_second: rate,
                    checkpoint_age_seconds: checkpoint_age,
                    heartbeat_age_seconds: heartbeat_age,
                    last_error: shared.last_error.lock().unwrap().clone(),
                    partitions,
                };
                let next = Instant::now() + INTERVAL;
                while Instant::now() < next && !*shutdown.borrow() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .expect("spawn lag thread")
}
