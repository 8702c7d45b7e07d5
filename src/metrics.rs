//! Every metric strait exports, defined in this one module with its help text.
//!
//! Names follow Prometheus conventions: `strait_` prefix, base units (seconds, bytes),
//! `_total` for counters. Hot-path metrics are handles resolved once per topic
//! ([`FlowMetrics`]), so recording one costs an atomic add, not a registry lookup.

use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rdkafka::Timestamp;

pub const RECORDS_TOTAL: &str = "strait_records_total";
pub const BYTES_TOTAL: &str = "strait_bytes_total";
pub const REPLICATION_LATENCY_SECONDS: &str = "strait_replication_latency_seconds";
pub const ERRORS_TOTAL: &str = "strait_errors_total";
pub const FLOW_UP: &str = "strait_flow_up";
pub const FLOW_PAUSED: &str = "strait_flow_paused";
pub const TOPIC_SYNC_CHANGES_TOTAL: &str = "strait_topic_sync_changes_total";
pub const CHECKPOINT_TIMESTAMP_SECONDS: &str = "strait_checkpoint_timestamp_seconds";

/// Installs the Prometheus recorder and registers help texts. Returns the handle the
/// admin endpoint renders `/metrics` from.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REPLICATION_LATENCY_SECONDS.to_string()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(RECORDS_TOTAL, "Records mirrored and acknowledged by the target cluster.");
    describe_counter!(BYTES_TOTAL, Unit::Bytes, "Key and value bytes mirrored and acknowledged by the target cluster.");
    describe_histogram!(
        REPLICATION_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from a source record's timestamp to the target's acknowledgement."
    );
    describe_counter!(ERRORS_TOTAL, "Errors by flow and kind (source, target, topic_sync, commit).");
    describe_gauge!(FLOW_UP, "1 while the flow's data path runs, 0 after it stopped.");
    describe_gauge!(FLOW_PAUSED, "1 while fetching is paused because the target is slow or not ready.");
    describe_counter!(TOPIC_SYNC_CHANGES_TOTAL, "Changes topic sync made on the target (create, partitions, config).");
    describe_gauge!(
        CHECKPOINT_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the flow's last completed checkpoint round (time() minus this is the checkpoint age)."
    );
}

/// Per-topic handles for the data path.
pub struct FlowMetrics {
    records: Counter,
    bytes: Counter,
    latency: Histogram,
}

impl FlowMetrics {
    pub fn new(flow: &str, topic: &str) -> FlowMetrics {
        let labels = [("flow", flow.to_string()), ("topic", topic.to_string())];
        FlowMetrics {
            records: counter!(RECORDS_TOTAL, &labels),
            bytes: counter!(BYTES_TOTAL, &labels),
            latency: histogram!(REPLICATION_LATENCY_SECONDS, "flow" => flow.to_string()),
        }
    }

    /// One record is on the target.
    pub fn record_acknowledged(&self, bytes: usize, timestamp: Timestamp) {
        self.records.increment(1);
        self.bytes.increment(bytes as u64);
        if let Some(ms) = timestamp.to_millis() {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            self.latency.record(((now - ms).max(0) as f64) / 1000.0);
        }
    }
}

pub fn source_error(flow: &str) {
    error(flow, "source");
}

pub fn error(flow: &str, kind: &'static str) {
    counter!(ERRORS_TOTAL, "flow" => flow.to_string(), "kind" => kind).increment(1);
}

pub fn flow_up(flow: &str, up: bool) {
    gauge!(FLOW_UP, "flow" => flow.to_string()).set(if up { 1.0 } else { 0.0 });
}

pub fn flow_paused(flow: &str, paused: bool) {
    gauge!(FLOW_PAUSED, "flow" => flow.to_string()).set(if paused { 1.0 } else { 0.0 });
}

pub fn topic_sync_change(flow: &str, kind: &'static str, count: usize) {
    counter!(TOPIC_SYNC_CHANGES_TOTAL, "flow" => flow.to_string(), "kind" => kind).increment(count as u64);
}

pub fn checkpoint_emitted(flow: &str) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    gauge!(CHECKPOINT_TIMESTAMP_SECONDS, "flow" => flow.to_string()).set(now);
}
