//! Every metric strait exports, defined in this one module with its help text.
//!
//! Names follow Prometheus conventions: `strait_` prefix, base units (seconds, bytes),
//! `_total` for counters. Hot-path metrics are handles resolved once per topic
//! ([`FlowMetrics`]), so recording one costs an atomic add, not a registry lookup.
//! Gauges of partitions and groups that go away stop being exported after a while
//! (the exporter's idle timeout), so dashboards never show stale series.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use rdkafka::Timestamp;

pub const RECORDS_TOTAL: &str = "strait_records_total";
pub const BYTES_TOTAL: &str = "strait_bytes_total";
pub const REPLICATION_LATENCY_SECONDS: &str = "strait_replication_latency_seconds";
pub const REPLICATION_LAG_RECORDS: &str = "strait_replication_lag_records";
pub const REPLICATION_LAG_SECONDS: &str = "strait_replication_lag_seconds";
pub const SOURCE_END_OFFSET: &str = "strait_source_end_offset";
pub const CHECKPOINT_AGE_SECONDS: &str = "strait_checkpoint_age_seconds";
pub const CHECKPOINT_ROUND_SECONDS: &str = "strait_checkpoint_round_seconds";
pub const CHECKPOINT_GROUPS: &str = "strait_checkpoint_groups";
pub const GROUP_OFFSET_LAG_RECORDS: &str = "strait_group_offset_lag_records";
pub const HEARTBEAT_AGE_SECONDS: &str = "strait_heartbeat_age_seconds";
pub const ERRORS_TOTAL: &str = "strait_errors_total";
pub const FLOW_UP: &str = "strait_flow_up";
pub const FLOW_PAUSED: &str = "strait_flow_paused";
pub const CLUSTER_UP: &str = "strait_cluster_up";
pub const TOPIC_SYNC_CHANGES_TOTAL: &str = "strait_topic_sync_changes_total";
pub const ACL_SYNC_CHANGES_TOTAL: &str = "strait_acl_sync_changes_total";
pub const KAFKA_BROKER_RTT_SECONDS: &str = "strait_kafka_broker_rtt_seconds";
pub const KAFKA_QUEUE_MESSAGES: &str = "strait_kafka_queue_messages";
pub const KAFKA_QUEUE_BYTES: &str = "strait_kafka_queue_bytes";
pub const OFFSET_MAP_RECORDS_TOTAL: &str = "strait_offset_map_records_total";
pub const OFFSET_MAP_WRITE_SECONDS: &str = "strait_offset_map_write_seconds";
pub const OFFSET_MAP_SEGMENTS: &str = "strait_offset_map_segments";
pub const SOURCE_RECORDS_LOST_TOTAL: &str = "strait_source_records_lost_total";
pub const FETCH_PAUSES_TOTAL: &str = "strait_fetch_pauses_total";
pub const RESENDS_TOTAL: &str = "strait_resends_total";
pub const PARTITIONS_LOST_TOTAL: &str = "strait_partitions_lost_total";
pub const TRANSACTIONS_TOTAL: &str = "strait_transactions_total";
pub const PRODUCERS_FENCED_TOTAL: &str = "strait_producers_fenced_total";
pub const IN_FLIGHT_BYTES: &str = "strait_in_flight_bytes";
pub const IN_FLIGHT_LIMIT_BYTES: &str = "strait_in_flight_limit_bytes";
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";

/// The kinds of `strait_errors_total`; all start at 0 so that rates exist before the
/// first error.
pub const ERROR_KINDS: &[&str] = &["source", "target", "topic_sync", "acl_sync", "checkpoint", "commit"];

/// Installs the Prometheus recorder and registers help texts. Returns the handle the
/// admin endpoint renders `/metrics` from.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REPLICATION_LATENCY_SECONDS.to_string()),
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
        )
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            Matcher::Full(OFFSET_MAP_WRITE_SECONDS.to_string()),
            &[0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05],
        )
        .map_err(|e| e.to_string())?
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
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
    describe_gauge!(REPLICATION_LAG_RECORDS, "Source end offset minus the mirrored position, per partition.");
    describe_gauge!(
        REPLICATION_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest source record not yet acknowledged by the target; 0 when caught up, \
         and it keeps growing while replication is stalled."
    );
    describe_gauge!(SOURCE_END_OFFSET, "End (high watermark) offset of each mirrored source partition.");
    describe_gauge!(CHECKPOINT_AGE_SECONDS, Unit::Seconds, "Time since the flow's last completed checkpoint round.");
    describe_gauge!(
        CHECKPOINT_ROUND_SECONDS,
        Unit::Seconds,
        "How long the flow's last completed checkpoint round took (reading group offsets, translating, writing)."
    );
    describe_gauge!(CHECKPOINT_GROUPS, "Consumer groups whose offsets the flow's last checkpoint round translated.");
    describe_gauge!(
        GROUP_OFFSET_LAG_RECORDS,
        "Records a group would re-read on the target if it switched now without `strait failover`: \
         its translated position minus its committed offset on the target."
    );
    describe_gauge!(
        HEARTBEAT_AGE_SECONDS,
        Unit::Seconds,
        "Age of the newest heartbeat of the flow that reached the target."
    );
    describe_counter!(ERRORS_TOTAL, "Errors by flow and kind (source, target, topic_sync, checkpoint, commit).");
    describe_gauge!(FLOW_UP, "1 while the flow's data path runs, 0 after it stopped.");
    describe_gauge!(FLOW_PAUSED, "1 while fetching is paused because the target is slow or not ready.");
    describe_gauge!(
        CLUSTER_UP,
        "1 when the cluster answered strait's last request, per flow and side (source, target)."
    );
    describe_counter!(TOPIC_SYNC_CHANGES_TOTAL, "Changes topic sync made on the target (create, partitions, config).");
    describe_counter!(
        ACL_SYNC_CHANGES_TOTAL,
        "ACLs ACL sync created on or deleted from the target (create, delete); failures count as errors_total{kind=acl_sync}."
    );
    describe_gauge!(KAFKA_BROKER_RTT_SECONDS, Unit::Seconds, "librdkafka: average request round-trip time per broker.");
    describe_gauge!(
        KAFKA_QUEUE_MESSAGES,
        "librdkafka: messages in the client's queues (producer: waiting for the target)."
    );
    describe_gauge!(KAFKA_QUEUE_BYTES, Unit::Bytes, "librdkafka: bytes in the client's queues.");
    describe_counter!(OFFSET_MAP_RECORDS_TOTAL, "Records written to the offset-map topic (chunks and frontiers).");
    describe_histogram!(
        OFFSET_MAP_WRITE_SECONDS,
        Unit::Seconds,
        "Time the data-path thread spent per commit round preparing and handing offset-map records to the producer."
    );
    describe_gauge!(OFFSET_MAP_SEGMENTS, "Runs stored in the flow's offset map after pruning.");
    describe_counter!(
        SOURCE_RECORDS_LOST_TOTAL,
        "Source records removed by retention before strait mirrored them (they cannot reach the target; \
         an error log names the range)."
    );
    describe_counter!(
        FETCH_PAUSES_TOTAL,
        "Times fetching was paused because the target acknowledged nothing for a while (each pause drops \
         prefetched data)."
    );
    describe_counter!(
        RESENDS_TOTAL,
        "Times the flow re-sent its partitions from the last acknowledged positions because a record timed \
         out or was purged on its way to the target."
    );
    describe_counter!(
        TRANSACTIONS_TOTAL,
        "Target transactions of exactly-once flows, by outcome (committed, aborted)."
    );
    describe_counter!(
        PRODUCERS_FENCED_TOTAL,
        "Transactional producers of other instances this one fenced when it took over partitions they had \
         not handed over (exactly-once flows)."
    );
    describe_counter!(
        PARTITIONS_LOST_TOTAL,
        "Partitions this instance lost without handing them over (the source group evicted it: a pause or \
         network partition longer than the session timeout)."
    );
    describe_gauge!(
        IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Record bytes handed to the target producer and not yet acknowledged."
    );
    describe_gauge!(
        IN_FLIGHT_LIMIT_BYTES,
        Unit::Bytes,
        "The current in-flight bound: about two seconds of the target's recent throughput, at most max_in_flight_bytes."
    );
    describe_counter!(PROCESS_CPU_SECONDS_TOTAL, Unit::Seconds, "CPU time used by the strait process.");
    describe_gauge!(PROCESS_RESIDENT_MEMORY_BYTES, Unit::Bytes, "Resident memory of the strait process.");
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
            self.latency.record(((now_ms() - ms).max(0) as f64) / 1000.0);
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Registers a flow's series that must exist before anything happens.
pub fn flow_started(flow: &str) {
    for kind in ERROR_KINDS {
        counter!(ERRORS_TOTAL, "flow" => flow.to_string(), "kind" => *kind).increment(0);
    }
    counter!(FETCH_PAUSES_TOTAL, "flow" => flow.to_string()).increment(0);
    counter!(RESENDS_TOTAL, "flow" => flow.to_string()).increment(0);
    counter!(PARTITIONS_LOST_TOTAL, "flow" => flow.to_string()).increment(0);
    flow_up(flow, true);
    flow_paused(flow, false);
}

pub fn source_error(flow: &str) {
    error(flow, "source");
}

pub fn error(flow: &str, kind: &'static str) {
    counter!(ERRORS_TOTAL, "flow" => flow.to_string(), "kind" => kind).increment(1);
}

pub fn source_records_lost(flow: &str, topic: &str, records: u64) {
    counter!(SOURCE_RECORDS_LOST_TOTAL, "flow" => flow.to_string(), "topic" => topic.to_string()).increment(records);
}

pub fn fetch_paused(flow: &str) {
    counter!(FETCH_PAUSES_TOTAL, "flow" => flow.to_string()).increment(1);
}

pub fn resend(flow: &str) {
    counter!(RESENDS_TOTAL, "flow" => flow.to_string()).increment(1);
}

pub fn transaction(flow: &str, outcome: &'static str) {
    counter!(TRANSACTIONS_TOTAL, "flow" => flow.to_string(), "outcome" => outcome).increment(1);
}

pub fn producer_fenced(flow: &str) {
    counter!(PRODUCERS_FENCED_TOTAL, "flow" => flow.to_string()).increment(1);
}

pub fn partitions_lost(flow: &str, partitions: usize) {
    counter!(PARTITIONS_LOST_TOTAL, "flow" => flow.to_string()).increment(partitions as u64);
}

pub fn in_flight(flow: &str, bytes: u64, limit: u64) {
    gauge!(IN_FLIGHT_BYTES, "flow" => flow.to_string()).set(bytes as f64);
    gauge!(IN_FLIGHT_LIMIT_BYTES, "flow" => flow.to_string()).set(limit as f64);
}

pub fn flow_up(flow: &str, up: bool) {
    gauge!(FLOW_UP, "flow" => flow.to_string()).set(if up { 1.0 } else { 0.0 });
}

pub fn flow_paused(flow: &str, paused: bool) {
    gauge!(FLOW_PAUSED, "flow" => flow.to_string()).set(if paused { 1.0 } else { 0.0 });
}

pub fn cluster_up(flow: &str, side: &'static str, cluster: &str, up: bool) {
    gauge!(CLUSTER_UP, "flow" => flow.to_string(), "side" => side, "cluster" => cluster.to_string()).set(if up {
        1.0
    } else {
        0.0
    });
}

pub fn topic_sync_change(flow: &str, kind: &'static str, count: usize) {
    counter!(TOPIC_SYNC_CHANGES_TOTAL, "flow" => flow.to_string(), "kind" => kind).increment(count as u64);
}

/// ACLs created on (`create`) or deleted from (`delete`) the target by ACL sync.
pub fn acl_sync_change(flow: &str, kind: &'static str, count: usize) {
    counter!(ACL_SYNC_CHANGES_TOTAL, "flow" => flow.to_string(), "kind" => kind).increment(count as u64);
}

pub fn partition_lag(flow: &str, topic: &str, partition: i32, end: i64, records: i64, seconds: f64) {
    let labels = [("flow", flow.to_string()), ("topic", topic.to_string()), ("partition", partition.to_string())];
    gauge!(SOURCE_END_OFFSET, &labels).set(end as f64);
    gauge!(REPLICATION_LAG_RECORDS, &labels).set(records as f64);
    gauge!(REPLICATION_LAG_SECONDS, &labels).set(seconds);
}

/// The topic-level form of [`partition_lag`] (`[metrics] lag_granularity = "topic"`).
pub fn topic_lag(flow: &str, topic: &str, end: i64, records: i64, seconds: f64) {
    let labels = [("flow", flow.to_string()), ("topic", topic.to_string())];
    gauge!(SOURCE_END_OFFSET, &labels).set(end as f64);
    gauge!(REPLICATION_LAG_RECORDS, &labels).set(records as f64);
    gauge!(REPLICATION_LAG_SECONDS, &labels).set(seconds);
}

pub fn checkpoint_age(flow: &str, seconds: f64) {
    gauge!(CHECKPOINT_AGE_SECONDS, "flow" => flow.to_string()).set(seconds);
}

pub fn checkpoint_round(flow: &str, seconds: f64, groups: usize) {
    gauge!(CHECKPOINT_ROUND_SECONDS, "flow" => flow.to_string()).set(seconds);
    gauge!(CHECKPOINT_GROUPS, "flow" => flow.to_string()).set(groups as f64);
}

pub fn heartbeat_age(flow: &str, seconds: f64) {
    gauge!(HEARTBEAT_AGE_SECONDS, "flow" => flow.to_string()).set(seconds);
}

pub fn group_offset_lag(flow: &str, group: &str, topic: &str, partition: i32, records: i64) {
    let labels = [
        ("flow", flow.to_string()),
        ("group", group.to_string()),
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ];
    gauge!(GROUP_OFFSET_LAG_RECORDS, &labels).set(records as f64);
}

/// The librdkafka statistics that explain slowness: broker round trips and queue depth.
pub fn librdkafka_statistics(flow: &str, client: &'static str, stats: &rdkafka::Statistics) {
    gauge!(KAFKA_QUEUE_MESSAGES, "flow" => flow.to_string(), "client" => client).set(stats.msg_cnt as f64);
    gauge!(KAFKA_QUEUE_BYTES, "flow" => flow.to_string(), "client" => client).set(stats.msg_size as f64);
    for broker in stats.brokers.values() {
        if let Some(rtt) = &broker.rtt {
            if broker.nodeid >= 0 {
                gauge!(KAFKA_BROKER_RTT_SECONDS, "flow" => flow.to_string(), "client" => client, "broker" => broker.name.clone())
                    .set(rtt.avg as f64 / 1_000_000.0);
            }
        }
    }
}

/// CPU and memory of this process, read from /proc (Linux).
pub fn process() {
    let ticks_per_second = 100.0; // USER_HZ, fixed at 100 on Linux
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) {
                let ticks = u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0);
                counter!(PROCESS_CPU_SECONDS_TOTAL).absolute((ticks / ticks_per_second) as u64);
            }
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(pages) = statm.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()) {
            gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(pages * 4096.0);
        }
    }
}

/// One offset-map write round on the data path: records written, time it took.
pub fn offset_map_written(flow: &str, records: usize, took: Duration) {
    counter!(OFFSET_MAP_RECORDS_TOTAL, "flow" => flow.to_string()).increment(records as u64);
    histogram!(OFFSET_MAP_WRITE_SECONDS, "flow" => flow.to_string()).record(took.as_secs_f64());
}

pub fn offset_map_segments(flow: &str, segments: usize) {
    gauge!(OFFSET_MAP_SEGMENTS, "flow" => flow.to_string()).set(segments as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
    }

    /// The exporter keeps every histogram sample until something drains it; without a
    /// scrape, only the service's periodic upkeep does. Millions of records with
    /// upkeep between rounds must not grow memory (without it: ~8 bytes per sample).
    #[test]
    fn latency_samples_are_drained_without_a_scrape() {
        let handle = install().expect("the only recorder installed by unit tests");
        let m = FlowMetrics::new("a->b", "t");
        let now = Timestamp::CreateTime(now_ms());
        let round = || {
            for _ in 0..2_000_000 {
                m.record_acknowledged(10, now);
            }
            handle.run_upkeep();
        };
        round();
        let before = resident_bytes();
        for _ in 0..3 {
            round();
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(grown < 8 << 20, "6M samples with upkeep grew memory by {} MiB", grown >> 20);
    }
}
