//! The data path: where a record goes from the source cluster to the target cluster.
//!
//! One flow runs on one dedicated thread (librdkafka's poll loop is blocking, and a
//! thread of its own keeps it off the async runtime):
//!
//! 1. `BaseConsumer::poll` hands over the next source record (read_committed, so records
//!    of aborted transactions never appear).
//! 2. [`FlowLoop::forward`] produces it to the same partition number of the target topic,
//!    with its key, value, headers and timestamp, through the idempotent producer.
//!    Nothing is copied by strait itself: librdkafka copies the bytes into its queue.
//! 3. The producer's delivery report ([`DeliveryTracker::delivery`], on librdkafka's
//!    producer thread) moves the partition's acknowledged position forward.
//!    The same report feeds the partition's offset map ([`crate::offset_map`]): the
//!    target offset of every copy is known here.
//! 4. Every `commit_interval_ms` the loop writes the changed offset-map segments and
//!    frontiers to the target, then commits, per partition, the position up to which
//!    every record has been acknowledged by the target *and* mapped in a stored map
//!    record ([`PartitionSlot::safe_position`], [`FlowLoop::persist_offset_map`]).
//!    A restarted or rebalanced consumer resumes there, so a crash re-sends at most what
//!    was in flight, and a clean shutdown (flush, then commit) re-sends nothing.
//!
//! Backpressure: the producer's queue is bounded (`max_in_flight_bytes`). When it is
//! full, the record waits as `pending`, every assigned partition is paused, and the loop
//! keeps polling (so the group membership stays alive) until the target drains.
//!
//! Rebalances (cooperative-sticky): before partitions are given up, in-flight records
//! are flushed and the acknowledged positions of the revoked partitions are committed,
//! so the next owner starts exactly where this one stopped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::{FlowConfig, RenamePolicy};
use crate::metrics::{self, FlowMetrics};
use crate::offset_map::{self, Frontier, Segment, SegmentRecorder};
use crate::topic_sync::Routes;

/// Partitions one flow can track at once. Delivery reports identify the partition by its
/// slot number, packed with the ownership epoch and the source offset into the report's
/// opaque word: slot (16 bits) | epoch (8) | offset (40). The epoch changes each time the
/// partition is assigned, so a late report from an earlier ownership is recognised and
/// ignored. The last slot number marks offset-map records (their "offset" is the map
/// batch number shifted left by one, with the low bit set on a batch's last record).
const MAX_SLOTS: usize = 1 << SLOT_BITS;
const MAP_SLOT: usize = MAX_SLOTS - 1;
const SLOT_BITS: u32 = 16;
const EPOCH_BITS: u32 = 8;
const OFFSET_BITS: u32 = 64 - SLOT_BITS - EPOCH_BITS;
const MAX_PACKED_OFFSET: i64 = (1i64 << OFFSET_BITS) - 1;

/// How long a revoke or shutdown waits for the target to acknowledge in-flight records.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why a flow stopped. Each names the flow, and where relevant the record.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("flow {flow}: cannot create {what}: {reason}")]
    Client { flow: String, what: &'static str, reason: String },
    #[error(
        "flow {flow}: the target refused record {topic}[{partition}]@{offset}: {reason}. \
         The record was not skipped; strait stops so that nothing is lost. {hint}"
    )]
    Refused { flow: String, topic: String, partition: i32, offset: i64, reason: String, hint: String },
    #[error("flow {flow}: {message}")]
    Other { flow: String, message: String },
}

/// Progress of one source partition, shared by the loop and the delivery-report thread.
/// All fields are atomics: the hot path takes no lock.
#[derive(Default)]
pub struct PartitionSlot {
    /// One past the last source offset the target acknowledged; -1 = none yet.
    acked_next: AtomicI64,
    /// One past the last source offset handed to the producer or skipped; -1 = none.
    fetched_next: AtomicI64,
    /// Records handed to the producer and not yet acknowledged.
    in_flight: AtomicU32,
    /// A record of this partition was refused; progress must never pass it.
    failed: AtomicBool,
    /// Target offset of the last acknowledged record (for lag and the offset map).
    last_target_offset: AtomicI64,
    /// The open offset-map segment, fed by delivery reports.
    recorder: SegmentRecorder,
    /// Upstream frontier stored in the map topic: progress never passes it.
    map_stored_frontier: AtomicI64,
    /// This instance currently owns the partition.
    assigned: AtomicBool,
    /// Source timestamp (ms) of the last acknowledged record, for the time lag.
    last_acked_timestamp: AtomicI64,
    /// The frontier the loop last computed (steps over transaction markers).
    frontier_seen: AtomicI64,
    /// Incremented at each assignment; reports carrying an older epoch are stale.
    epoch: AtomicU32,
    metrics: std::sync::OnceLock<FlowMetrics>,
}

impl PartitionSlot {
    /// A new ownership begins. `in_flight` is kept: reports of an earlier ownership
    /// still decrement it when they arrive (and are otherwise ignored).
    fn reset(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.recorder.clear();
        self.acked_next.store(-1, Ordering::SeqCst);
        self.fetched_next.store(-1, Ordering::SeqCst);
        self.failed.store(false, Ordering::SeqCst);
        self.last_target_offset.store(-1, Ordering::SeqCst);
        self.map_stored_frontier.store(-1, Ordering::SeqCst);
        self.frontier_seen.store(-1, Ordering::SeqCst);
    }

    /// In flight is read before failed: a refusal is recorded before its report
    /// decrements the in-flight count, so a zero count already shows the refusal.
    fn waiting_or_failed(&self) -> bool {
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        in_flight > 0 || self.failed.load(Ordering::SeqCst)
    }

    /// Source offset up to which the partition is mirrored, if known.
    pub fn mirrored_position(&self) -> Option<i64> {
        let p = self.safe_position().unwrap_or(-1).max(self.frontier_seen.load(Ordering::SeqCst));
        (p >= 0).then_some(p)
    }

    pub fn last_acked_timestamp(&self) -> Option<i64> {
        let ts = self.last_acked_timestamp.load(Ordering::SeqCst);
        (ts > 0).then_some(ts)
    }

    /// Everything below this upstream offset is on the target, given the consumer's
    /// position (which also steps over transaction markers) when nothing is waiting.
    fn frontier(&self, consumer_position: Option<i64>) -> i64 {
        let acked = self.acked_next.load(Ordering::SeqCst);
        if self.waiting_or_failed() {
            return acked;
        }
        acked.max(self.fetched_next.load(Ordering::SeqCst)).max(consumer_position.unwrap_or(-1))
    }

    /// The position that may be committed to the source: safe, and covered by the
    /// stored offset map.
    fn committable_position(&self) -> Option<i64> {
        let safe = self.safe_position()?;
        let stored = self.map_stored_frontier.load(Ordering::SeqCst);
        (stored >= 0).then_some(safe.min(stored))
    }

    /// The source offset up to which every record is safely on the target: everything
    /// acknowledged, or, when nothing is in flight, everything fetched (records that were
    /// skipped as loops, and transaction markers, have no acknowledgement of their own).
    /// `None` when nothing is known yet.
    pub fn safe_position(&self) -> Option<i64> {
        let acked = self.acked_next.load(Ordering::SeqCst);
        let position =
            if self.waiting_or_failed() { acked } else { acked.max(self.fetched_next.load(Ordering::SeqCst)) };
        (position >= 0).then_some(position)
    }
}

/// State shared between the flow loop, the rebalance callbacks, and delivery reports.
pub struct FlowShared {
    pub name: String,
    slots: Box<[PartitionSlot]>,
    /// `(source topic, partition)` → slot. Changed only on the loop thread (rebalance
    /// callbacks run inside `poll`), read by the loop through its own copy.
    registry: Mutex<HashMap<(String, i32), usize>>,
    /// Set by rebalance callbacks; the loop then refreshes its routing table.
    rebalanced: AtomicBool,
    /// The first refused record, which stops the flow.
    refused: Mutex<Option<MirrorError>>,
    has_refusal: AtomicBool,
    producer: std::sync::OnceLock<Arc<ThreadedProducer<DeliveryTracker>>>,
    commit_errors: AtomicU32,
    /// The newest offset-map batch the target acknowledged completely.
    map_acked_batch: AtomicI64,
    /// An offset-map record was refused: stored frontiers stop advancing.
    map_failed: AtomicBool,
    /// An asynchronous commit failed: the loop commits everything again.
    commit_failed: AtomicBool,
    /// Records the target acknowledged, for throughput.
    pub acked_records: std::sync::atomic::AtomicU64,
    /// Fetching is paused because the target is slow or not ready.
    pub paused: AtomicBool,
    /// Unix ms of the last completed checkpoint round; 0 = none yet.
    pub last_checkpoint_ms: AtomicI64,
    /// Unix ms timestamp of the newest heartbeat of this flow seen on the target.
    pub last_heartbeat_ms: AtomicI64,
    /// The last error worth showing in `/status` (no secrets: Kafka error texts only).
    pub last_error: Mutex<Option<String>>,
}

impl FlowShared {
    fn new(name: String) -> Arc<FlowShared> {
        let slots = (0..MAX_SLOTS).map(|_| PartitionSlot::default()).collect::<Vec<_>>().into_boxed_slice();
        Arc::new(FlowShared {
            name,
            slots,
            registry: Mutex::new(HashMap::new()),
            rebalanced: AtomicBool::new(false),
            refused: Mutex::new(None),
            has_refusal: AtomicBool::new(false),
            producer: std::sync::OnceLock::new(),
            commit_errors: AtomicU32::new(0),
            map_acked_batch: AtomicI64::new(-1),
            map_failed: AtomicBool::new(false),
            commit_failed: AtomicBool::new(false),
            acked_records: std::sync::atomic::AtomicU64::new(0),
            paused: AtomicBool::new(false),
            last_checkpoint_ms: AtomicI64::new(0),
            last_heartbeat_ms: AtomicI64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The slot of a partition, allocating one the first time it is seen. Slots are kept
    /// for the life of the process, so a partition that comes back reuses its slot.
    fn slot_for(&self, topic: &str, partition: i32) -> Result<usize, MirrorError> {
        let mut registry = self.registry.lock().unwrap();
        if let Some(&slot) = registry.get(&(topic.to_string(), partition)) {
            return Ok(slot);
        }
        let slot = registry.len();
        if slot >= MAP_SLOT {
            return Err(MirrorError::Other {
                flow: self.name.clone(),
                message: format!(
                    "more than {MAX_SLOTS} source partitions assigned to one flow; split the flow's topics into several flows"
                ),
            });
        }
        registry.insert((topic.to_string(), partition), slot);
        Ok(slot)
    }

    fn positions(&self, partitions: &TopicPartitionList) -> TopicPartitionList {
        let registry = self.registry.lock().unwrap();
        let mut tpl = TopicPartitionList::new();
        for elem in partitions.elements() {
            if let Some(&slot) = registry.get(&(elem.topic().to_string(), elem.partition())) {
                if let Some(pos) = self.slots[slot].committable_position() {
                    let _ = tpl.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(pos));
                }
            }
        }
        tpl
    }

    fn set_assigned(&self, partitions: &TopicPartitionList, assigned: bool) {
        let registry = self.registry.lock().unwrap();
        for elem in partitions.elements() {
            if let Some(&slot) = registry.get(&(elem.topic().to_string(), elem.partition())) {
                self.slots[slot].assigned.store(assigned, Ordering::SeqCst);
            }
        }
    }

    /// Whether this instance mirrors the partition now.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        let registry = self.registry.lock().unwrap();
        registry
            .get(&(topic.to_string(), partition))
            .is_some_and(|&slot| self.slots[slot].assigned.load(Ordering::SeqCst))
    }

    /// Owned partitions with their slots, for the lag monitor.
    pub fn owned_partitions(&self) -> Vec<(String, i32, &PartitionSlot)> {
        let registry = self.registry.lock().unwrap();
        let mut out: Vec<_> = registry
            .iter()
            .filter(|(_, &slot)| self.slots[slot].assigned.load(Ordering::SeqCst))
            .map(|((t, p), &slot)| (t.clone(), *p, &self.slots[slot]))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    pub fn set_error(&self, error: impl std::fmt::Display) {
        *self.last_error.lock().unwrap() = Some(error.to_string());
    }

    fn refuse(&self, error: MirrorError) {
        self.set_error(&error);
        let mut refused = self.refused.lock().unwrap();
        if refused.is_none() {
            tracing::error!(flow = %self.name, "{error}");
            *refused = Some(error);
        }
        self.has_refusal.store(true, Ordering::SeqCst);
    }

    /// Source offsets acknowledged per partition, for status and tests.
    pub fn acknowledged(&self) -> Vec<(String, i32, i64)> {
        let registry = self.registry.lock().unwrap();
        let mut out: Vec<_> = registry
            .iter()
            .filter_map(|((t, p), &slot)| self.slots[slot].safe_position().map(|o| (t.clone(), *p, o)))
            .collect();
        out.sort();
        out
    }
}

fn pack(slot: usize, epoch: u32, offset: i64) -> usize {
    let epoch = (epoch as u64) & ((1 << EPOCH_BITS) - 1);
    ((slot as u64) << (OFFSET_BITS + EPOCH_BITS) | epoch << OFFSET_BITS | offset as u64) as usize
}

fn unpack(opaque: usize) -> (usize, u32, i64) {
    let word = opaque as u64;
    let slot = (word >> (OFFSET_BITS + EPOCH_BITS)) as usize;
    let epoch = ((word >> OFFSET_BITS) & ((1 << EPOCH_BITS) - 1)) as u32;
    (slot, epoch, (word & ((1u64 << OFFSET_BITS) - 1)) as i64)
}

/// Waits until the producer has no record in flight, without polling it from this
/// thread (only the producer's own thread may run delivery reports: the partition
/// bookkeeping has one writer). False when the target did not answer in time.
fn drain(producer: &ThreadedProducer<DeliveryTracker>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Receives the target's acknowledgements (librdkafka's delivery reports).
pub struct DeliveryTracker {
    shared: Arc<FlowShared>,
    /// Offset-map segments closed by a gap, for the loop to store.
    closed_segments: std::sync::mpsc::Sender<(usize, Segment)>,
}

impl ClientContext for DeliveryTracker {
    fn stats(&self, statistics: rdkafka::Statistics) {
        metrics::librdkafka_statistics(&self.shared.name, "producer", &statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::error(&self.shared.name, "target");
        self.shared.set_error(format!("target: {reason}"));
        tracing::warn!(flow = %self.shared.name, "target producer: {error}: {reason}");
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (slot_index, epoch, source_offset) = unpack(opaque);
        if slot_index == MAP_SLOT {
            match result {
                // All map records go to one partition, so reports arrive in order and
                // the report of a batch's last record covers the whole batch.
                Ok(_) if source_offset & 1 == 1 && !self.shared.map_failed.load(Ordering::SeqCst) => {
                    self.shared.map_acked_batch.store(source_offset >> 1, Ordering::SeqCst)
                }
                Ok(_) => {}
                Err((error, _)) => {
                    self.shared.map_failed.store(true, Ordering::SeqCst);
                    self.shared.refuse(MirrorError::Other {
                        flow: self.shared.name.clone(),
                        message: format!("storing the offset map failed: {error}"),
                    })
                }
            }
            return;
        }
        let slot = &self.shared.slots[slot_index];
        if epoch != slot.epoch.load(Ordering::SeqCst) & ((1 << EPOCH_BITS) - 1) {
            // A report from before the partition was last (re)assigned: its copy exists
            // on the target, but progress and the map belong to the current ownership.
            slot.in_flight.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        match result {
            Ok(message) => {
                // The idempotent producer reports each partition's records in the order
                // they were sent, so the newest acknowledgement covers all before it,
                // unless an earlier record was refused.
                if !slot.failed.load(Ordering::SeqCst) {
                    if let Some(closed) = slot.recorder.record(source_offset, message.offset()) {
                        let _ = self.closed_segments.send((slot_index, closed));
                    }
                    slot.last_target_offset.store(message.offset(), Ordering::SeqCst);
                    if let Some(ts) = message.timestamp().to_millis() {
                        slot.last_acked_timestamp.store(ts, Ordering::SeqCst);
                    }
                    slot.acked_next.store(source_offset + 1, Ordering::SeqCst);
                    self.shared.acked_records.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(m) = slot.metrics.get() {
                    m.record_acknowledged(
                        message.payload_len() + message.key().map_or(0, <[u8]>::len),
                        message.timestamp(),
                    );
                }
            }
            Err((error, message)) => {
                slot.failed.store(true, Ordering::SeqCst);
                let hint = match error.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => format!(
                        "Raise `max.message.bytes` of topic `{}` on the target (and the broker's \
                         `message.max.bytes` if needed).",
                        message.topic()
                    ),
                    Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                        "Grant strait WRITE on the target topic.".to_string()
                    }
                    _ => String::new(),
                };
                let source_topic =
                    self.shared.source_topic_of(slot_index).unwrap_or_else(|| message.topic().to_string());
                self.shared.refuse(MirrorError::Refused {
                    flow: self.shared.name.clone(),
                    topic: source_topic,
                    partition: message.partition(),
                    offset: source_offset,
                    reason: error.to_string(),
                    hint,
                });
            }
        }
        slot.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FlowShared {
    fn source_topic_of(&self, slot: usize) -> Option<String> {
        let registry = self.registry.lock().unwrap();
        registry.iter().find(|(_, &s)| s == slot).map(|((t, _), _)| t.clone())
    }
}

/// Drains and commits before partitions move to another instance.
pub struct RebalanceHandler {
    shared: Arc<FlowShared>,
}

impl ClientContext for RebalanceHandler {
    fn stats(&self, statistics: rdkafka::Statistics) {
        metrics::librdkafka_statistics(&self.shared.name, "consumer", &statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::source_error(&self.shared.name);
        self.shared.set_error(format!("source: {reason}"));
        tracing::warn!(flow = %self.shared.name, "source consumer: {error}: {reason}");
    }
}

impl ConsumerContext for RebalanceHandler {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) if partitions.count() > 0 => {
                if let Some(producer) = self.shared.producer.get() {
                    if !drain(producer, DRAIN_TIMEOUT) {
                        // Copies still in flight would land after the next owner's and
                        // break the partition's order: stop them, and stop the flow (a
                        // restart resumes from the committed progress).
                        self.shared.refuse(MirrorError::Other {
                            flow: self.shared.name.clone(),
                            message: format!(
                                "the target did not acknowledge in-flight records within {DRAIN_TIMEOUT:?} while \
                                 partitions moved to another instance; stopping so that no late copy lands \
                                 out of order (restarting resumes from committed progress)"
                            ),
                        });
                        producer.purge(PurgeConfig::default().queue().inflight());
                    }
                }
                let positions = self.shared.positions(partitions);
                self.shared.set_assigned(partitions, false);
                if positions.count() > 0 {
                    if let Err(e) = consumer.commit(&positions, CommitMode::Sync) {
                        tracing::warn!(flow = %self.shared.name, "revoke: committing progress failed: {e}");
                    }
                }
                tracing::info!(flow = %self.shared.name, partitions = partitions.count(), "partitions revoked after draining");
            }
            _ => {}
        }
        self.shared.rebalanced.store(true, Ordering::SeqCst);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            for elem in partitions.elements() {
                match self.shared.slot_for(elem.topic(), elem.partition()) {
                    Ok(slot) => {
                        self.shared.slots[slot].reset();
                        self.shared.slots[slot].assigned.store(true, Ordering::SeqCst);
                    }
                    Err(e) => self.shared.refuse(e),
                }
            }
            if partitions.count() > 0 {
                tracing::info!(flow = %self.shared.name, partitions = partitions.count(), "partitions assigned");
            }
        }
        self.shared.rebalanced.store(true, Ordering::SeqCst);
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.shared.commit_failed.store(true, Ordering::SeqCst);
            self.shared.commit_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(flow = %self.shared.name, "committing progress failed (retried at the next interval): {e}");
        }
    }
}

/// Where records of one source topic go, as the loop sees it.
struct TopicRoute {
    target_topic: String,
    target_partitions: i32,
    /// Slot per source partition, filled as partitions are assigned.
    slots: Vec<Option<usize>>,
}

/// A running flow: its thread and the handle to stop it.
pub struct FlowHandle {
    pub shared: Arc<FlowShared>,
    thread: std::thread::JoinHandle<Result<(), MirrorError>>,
}

impl FlowHandle {
    /// Waits for the flow's thread (after shutdown was signalled) and returns its result.
    pub fn join(self) -> Result<(), MirrorError> {
        self.thread.join().unwrap_or_else(|_| {
            Err(MirrorError::Other { flow: self.shared.name.clone(), message: "flow thread panicked".into() })
        })
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// Starts a flow's data path on its own thread. It follows `routes` (published by topic
/// sync) and stops, after draining, when `shutdown` becomes true.
pub fn start(
    flow: &FlowConfig,
    source: &Cluster,
    target: &Cluster,
    routes: watch::Receiver<Routes>,
    shutdown: watch::Receiver<bool>,
) -> Result<FlowHandle, MirrorError> {
    let name = flow.name();
    let shared = FlowShared::new(name.clone());
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let client_err = |what, e: KafkaError| MirrorError::Client { flow: name.clone(), what, reason: e.to_string() };
    let producer: ThreadedProducer<DeliveryTracker> = target
        .producer_config(flow.max_in_flight_bytes)
        .create_with_context(DeliveryTracker { shared: shared.clone(), closed_segments: closed_tx })
        .map_err(|e| client_err("the target producer", e))?;
    let producer = Arc::new(producer);
    let _ = shared.producer.set(producer.clone());
    let consumer: BaseConsumer<RebalanceHandler> = source
        .consumer_config(&flow.consumer_group())
        .create_with_context(RebalanceHandler { shared: shared.clone() })
        .map_err(|e| client_err("the source consumer", e))?;

    let mut flow_loop = FlowLoop {
        shared: shared.clone(),
        consumer,
        producer: producer.clone(),
        forwarder: Forwarder {
            shared: shared.clone(),
            producer,
            table: HashMap::new(),
            identity: (flow.rename == RenamePolicy::Identity)
                .then(|| (flow.provenance_header.clone(), flow.source.clone(), flow.target.clone())),
            flow_name: name.clone(),
        },
        routes,
        shutdown,
        subscribed: Vec::new(),
        pending: None,
        backlog: VecDeque::new(),
        paused: false,
        commit_interval: flow.commit_interval(),
        last_commit: Instant::now(),
        last_committed: HashMap::new(),
        map_topic: offset_map::map_topic(&flow.source),
        closed_segments: closed_rx,
        map_written: HashMap::new(),
        map_pending: HashMap::new(),
        map_batch: 0,
        map_unsent: Vec::new(),
        seeded: std::collections::HashSet::new(),
        flow_name: name.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("flow {name}"))
        .spawn(move || flow_loop.run())
        .map_err(|e| MirrorError::Other { flow: name.clone(), message: format!("cannot start thread: {e}") })?;
    Ok(FlowHandle { shared, thread })
}

/// What became of a record handed to [`FlowLoop::forward`].
enum Forwarded {
    Sent,
    /// A loop in active/active `identity` mode: the record came from the target.
    SkippedLoop,
    /// The producer queue is full, or the target partition does not exist yet.
    MustWait,
}

/// Turns source records into target records. Kept apart from the consumer so that a
/// record borrowed from the consumer can be forwarded without copying it.
struct Forwarder {
    shared: Arc<FlowShared>,
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    table: HashMap<String, TopicRoute>,
    /// With `rename = "identity"`: (header name, source alias, target alias).
    identity: Option<(String, String, String)>,
    flow_name: String,
}

impl Forwarder {
    /// Hands one record to the producer.
    fn forward<M: Message>(&mut self, message: &M) -> Result<Forwarded, MirrorError> {
        let topic = message.topic();
        let partition = message.partition();
        let offset = message.offset();
        // A topic no longer routed (excluded meanwhile): the subscription change
        // revokes it; never store progress past it.
        let Some(route) = self.table.get(topic) else { return Ok(Forwarded::MustWait) };
        if partition >= route.target_partitions {
            // The target has not got this partition yet; topic sync adds it shortly.
            return Ok(Forwarded::MustWait);
        }
        let Some(slot_index) = route.slots.get(partition as usize).copied().flatten() else {
            // First record of a partition this loop has not seen: register, then retry.
            let slot = self.shared.slot_for(topic, partition)?;
            self.register_slot(topic, partition, slot);
            return self.forward(message);
        };
        let slot = &self.shared.slots[slot_index];
        if offset > MAX_PACKED_OFFSET {
            return Err(MirrorError::Other {
                flow: self.flow_name.clone(),
                message: format!("offset {offset} of {topic}[{partition}] exceeds the supported 2^{OFFSET_BITS}"),
            });
        }

        let mut headers = None;
        if let Some(source_headers) = message.headers() {
            let mut owned = OwnedHeaders::new_with_capacity(source_headers.count() + 1);
            for header in source_headers.iter() {
                owned = owned.insert(header);
            }
            headers = Some(owned);
        }
        if let Some((header_name, source_alias, target_alias)) = &self.identity {
            let origin =
                message.headers().and_then(|h| h.iter().find(|h| h.key == header_name.as_str()).and_then(|h| h.value));
            match origin {
                Some(origin) if origin == target_alias.as_bytes() => {
                    slot.fetched_next.store(offset + 1, Ordering::SeqCst);
                    return Ok(Forwarded::SkippedLoop);
                }
                Some(_) => {}
                None => {
                    let owned = headers.take().unwrap_or_else(|| OwnedHeaders::new_with_capacity(1));
                    headers = Some(owned.insert(Header { key: header_name, value: Some(source_alias.as_bytes()) }));
                }
            }
        }

        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(
            &route.target_topic,
            pack(slot_index, slot.epoch.load(Ordering::SeqCst), offset),
        )
        .partition(partition);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(ms) = message.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        match self.producer.send(record) {
            Ok(()) => {
                slot.fetched_next.store(offset + 1, Ordering::SeqCst);
                Ok(Forwarded::Sent)
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                slot.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(Forwarded::MustWait)
            }
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownPartition
                    | RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic,
                ),
                _,
            )) => {
                // Topic sync has just created the topic or partition, and the producer's
                // metadata has not caught up yet: refresh it and try again shortly.
                slot.in_flight.fetch_sub(1, Ordering::SeqCst);
                let target_topic = route.target_topic.clone();
                let _ = self.producer.client().fetch_metadata(Some(&target_topic), Duration::from_secs(5));
                Ok(Forwarded::MustWait)
            }
            Err((e, _)) => {
                slot.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(MirrorError::Refused {
                    flow: self.flow_name.clone(),
                    topic: topic.to_string(),
                    partition,
                    offset,
                    reason: e.to_string(),
                    hint: String::new(),
                })
            }
        }
    }

    fn register_slot(&mut self, topic: &str, partition: i32, slot: usize) {
        if let Some(route) = self.table.get_mut(topic) {
            let p = partition as usize;
            if route.slots.len() <= p {
                route.slots.resize(p + 1, None);
            }
            route.slots[p] = Some(slot);
            let _ = self.shared.slots[slot].metrics.set(FlowMetrics::new(&self.flow_name, topic));
        }
    }
}

struct FlowLoop {
    shared: Arc<FlowShared>,
    consumer: BaseConsumer<RebalanceHandler>,
    producer: Arc<ThreadedProducer<DeliveryTracker>>,
    forwarder: Forwarder,
    routes: watch::Receiver<Routes>,
    shutdown: watch::Receiver<bool>,
    subscribed: Vec<String>,
    /// The record that could not be sent yet; sent before anything else.
    pending: Option<OwnedMessage>,
    /// Records fetched while paused, in fetch order; sent after `pending`.
    backlog: VecDeque<OwnedMessage>,
    paused: bool,
    commit_interval: Duration,
    last_commit: Instant,
    last_committed: HashMap<usize, i64>,
    map_topic: String,
    closed_segments: std::sync::mpsc::Receiver<(usize, Segment)>,
    /// Per slot, what the map topic already holds: (open segment, frontier).
    map_written: HashMap<usize, (Option<Segment>, i64)>,
    /// Per slot, frontiers written but not yet acknowledged: (batch, frontier).
    map_pending: HashMap<usize, Vec<(i64, i64)>>,
    map_batch: i64,
    /// Offset-map records the producer could not take yet (queue full), sent first.
    map_unsent: Vec<(String, Vec<u8>)>,
    /// Slots whose mirrored position was seeded from the committed offset.
    seeded: std::collections::HashSet<usize>,
    flow_name: String,
}

impl FlowLoop {
    fn run(&mut self) -> Result<(), MirrorError> {
        tracing::info!(flow = %self.flow_name, "data path started");
        let result = self.run_until_shutdown();
        // Whatever ended the loop, leave only acknowledged progress behind.
        self.drain_and_commit();
        self.consumer.unsubscribe();
        tracing::info!(flow = %self.flow_name, "data path stopped");
        result
    }

    fn run_until_shutdown(&mut self) -> Result<(), MirrorError> {
        self.apply_routes()?;
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            if self.shared.has_refusal.load(Ordering::SeqCst) {
                let error = self.shared.refused.lock().unwrap().take();
                return Err(error.unwrap_or_else(|| MirrorError::Other {
                    flow: self.flow_name.clone(),
                    message: "stopped after a refused record".into(),
                }));
            }
            if self.routes.has_changed().unwrap_or(false) {
                self.apply_routes()?;
            }
            self.send_waiting()?;

            match self.consumer.poll(POLL_INTERVAL) {
                None => {}
                Some(Ok(message)) => {
                    if self.pending.is_some() || !self.backlog.is_empty() {
                        self.backlog.push_back(message.detach());
                    } else {
                        match self.forwarder.forward(&message)? {
                            Forwarded::Sent | Forwarded::SkippedLoop => {}
                            Forwarded::MustWait => {
                                self.pending = Some(message.detach());
                                self.pause_all();
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    metrics::source_error(&self.flow_name);
                    self.shared.set_error(format!("source consumer: {e}"));
                    tracing::warn!(flow = %self.flow_name, "source consumer: {e}");
                }
            }
            if self.shared.rebalanced.swap(false, Ordering::SeqCst) {
                self.after_rebalance();
            }
            if self.last_commit.elapsed() >= self.commit_interval {
                self.commit(CommitMode::Async);
            }
        }
    }

    /// Sends the pending record and the backlog, in order, as far as the target takes them.
    fn send_waiting(&mut self) -> Result<(), MirrorError> {
        while let Some(message) = self.pending.take().or_else(|| self.backlog.pop_front()) {
            match self.forwarder.forward(&message)? {
                Forwarded::Sent | Forwarded::SkippedLoop => {}
                Forwarded::MustWait => {
                    self.pending = Some(message);
                    return Ok(());
                }
            }
        }
        if self.paused {
            self.resume_all();
        }
        Ok(())
    }

    fn pause_all(&mut self) {
        self.set_paused(true);
    }

    fn resume_all(&mut self) {
        self.set_paused(false);
    }

    /// Pauses or resumes fetching of every assigned partition.
    fn set_paused(&mut self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else { return };
        let done = if paused { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if done.is_ok() {
            self.paused = paused;
            self.shared.paused.store(paused, Ordering::SeqCst);
            metrics::flow_paused(&self.flow_name, paused);
            tracing::debug!(flow = %self.flow_name, paused, "target busy or not ready: fetching paused (or resumed)");
        }
    }

    /// Partitions moved: forget records of partitions this instance no longer owns (the
    /// new owner reads them from the committed position), and refresh slot lookups.
    fn after_rebalance(&mut self) {
        // Reassigned partitions are seeded again from their committed offsets.
        self.seeded.clear();
        let assignment = self.consumer.assignment().unwrap_or_default();
        let owned: std::collections::HashSet<(String, i32)> =
            assignment.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        let keep = |m: &OwnedMessage| owned.contains(&(m.topic().to_string(), m.partition()));
        if self.pending.as_ref().is_some_and(|m| !keep(m)) {
            self.pending = None;
        }
        self.backlog.retain(keep);
        let registry = self.shared.registry.lock().unwrap().clone();
        for ((topic, partition), slot) in registry {
            self.forwarder.register_slot(&topic, partition, slot);
        }
        if self.paused && self.pending.is_none() && self.backlog.is_empty() {
            self.resume_all();
        } else if self.paused {
            // Newly assigned partitions start unpaused; keep order by pausing them too.
            self.pause_all();
        }
    }

    /// Follows topic sync: new routes, more partitions, and the subscription.
    fn apply_routes(&mut self) -> Result<(), MirrorError> {
        let routes = self.routes.borrow_and_update().clone();
        for route in routes.values() {
            let entry = self.forwarder.table.entry(route.source_topic.clone()).or_insert_with(|| TopicRoute {
                target_topic: route.target_topic.clone(),
                target_partitions: 0,
                slots: Vec::new(),
            });
            entry.target_partitions = route.target_partitions as i32;
        }
        self.forwarder.table.retain(|topic, _| routes.contains_key(topic));
        let registry = self.shared.registry.lock().unwrap().clone();
        for ((topic, partition), slot) in registry {
            self.forwarder.register_slot(&topic, partition, slot);
        }
        let mut topics: Vec<String> = routes.keys().cloned().collect();
        topics.sort();
        if topics != self.subscribed {
            if topics.is_empty() {
                self.consumer.unsubscribe();
            } else {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                self.consumer.subscribe(&names).map_err(|e| MirrorError::Other {
                    flow: self.flow_name.clone(),
                    message: format!("subscribing to {names:?}: {e}"),
                })?;
            }
            tracing::info!(flow = %self.flow_name, topics = ?topics, "mirroring topics");
            self.subscribed = topics;
        }
        Ok(())
    }

    /// Writes what changed in the offset map since the last tick: segments closed by
    /// gaps, the open segment and the frontier of each owned partition. Frontiers
    /// become committable once their batch is acknowledged.
    ///
    /// Order matters: the frontier is read first (and the last target offset before it),
    /// then the closed segments, then the open one. A delivery report closes a segment
    /// before it moves the acknowledged position, so the segments written always cover
    /// the frontier written with them.
    fn persist_offset_map(&mut self) -> Result<(), MirrorError> {
        let started = Instant::now();
        let registry = self.shared.registry.lock().unwrap().clone();
        let topic_of: HashMap<usize, (String, i32)> = registry.iter().map(|(k, v)| (*v, k.clone())).collect();
        let waiting_records = self.pending.is_some() || !self.backlog.is_empty();
        let positions = if waiting_records { None } else { self.consumer.position().ok() };
        let assignment = self.consumer.assignment().unwrap_or_default();
        self.seed_mirrored_positions(&assignment, &registry);

        let mut owned = Vec::new();
        for elem in assignment.elements() {
            let Some(&slot_index) = registry.get(&(elem.topic().to_string(), elem.partition())) else { continue };
            let slot = &self.shared.slots[slot_index];
            let last_target = slot.last_target_offset.load(Ordering::SeqCst);
            let position =
                positions.as_ref().and_then(|p| match p.find_partition(elem.topic(), elem.partition())?.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let frontier = slot.frontier(position);
            if frontier < 0 {
                continue;
            }
            slot.frontier_seen.fetch_max(frontier, Ordering::SeqCst);
            owned.push((slot_index, elem.topic().to_string(), elem.partition(), frontier, last_target));
        }

        let mut records = std::mem::take(&mut self.map_unsent);
        while let Ok((slot, seg)) = self.closed_segments.try_recv() {
            // Segments of partitions this instance gave up belong to the next owner.
            if !self.shared.slots[slot].assigned.load(Ordering::SeqCst) {
                continue;
            }
            if let Some((topic, partition)) = topic_of.get(&slot) {
                records.push((
                    offset_map::segment_key(topic, *partition, seg.upstream),
                    offset_map::encode_segment(&seg).to_vec(),
                ));
            }
        }
        let mut written = Vec::new();
        for (slot_index, topic, partition, frontier, last_target) in owned {
            let open = self.shared.slots[slot_index].recorder.snapshot();
            let before = self.map_written.get(&slot_index).copied();
            if before == Some((open, frontier)) {
                continue;
            }
            if let Some(seg) = open {
                if before.map(|w| w.0) != Some(Some(seg)) {
                    records.push((
                        offset_map::segment_key(&topic, partition, seg.upstream),
                        offset_map::encode_segment(&seg).to_vec(),
                    ));
                }
            }
            let next_downstream = if last_target >= 0 { last_target + 1 } else { -1 };
            let f = Frontier { upstream: frontier, next_downstream };
            records.push((offset_map::frontier_key(&topic, partition), offset_map::encode_frontier(&f).to_vec()));
            written.push((slot_index, open, frontier));
        }

        if !records.is_empty() {
            let batch = self.map_batch + 1;
            let last = records.len() - 1;
            for (i, (key, value)) in records.iter().enumerate() {
                let marker = (batch << 1) | i64::from(i == last);
                let record: BaseRecord<'_, [u8], [u8], usize> =
                    BaseRecord::with_opaque_to(&self.map_topic, pack(MAP_SLOT, 0, marker))
                        .partition(0)
                        .key(key.as_bytes())
                        .payload(value);
                match self.producer.send(record) {
                    Ok(()) => {}
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // The target is slow: keep the rest for the next tick. Nothing of
                        // this round counts as stored, so progress waits too.
                        self.map_unsent = records[i..].to_vec();
                        return Ok(());
                    }
                    Err((e, _)) => {
                        return Err(MirrorError::Other {
                            flow: self.flow_name.clone(),
                            message: format!("writing the offset map to `{}`: {e}", self.map_topic),
                        })
                    }
                }
            }
            self.map_batch = batch;
            for (slot_index, open, frontier) in written {
                self.map_written.insert(slot_index, (open, frontier));
                self.map_pending.entry(slot_index).or_default().push((batch, frontier));
            }
            metrics::offset_map_written(&self.flow_name, records.len(), started.elapsed());
        }
        // Frontiers of acknowledged batches are stored.
        let acked = self.shared.map_acked_batch.load(Ordering::SeqCst);
        for (slot_index, pending) in self.map_pending.iter_mut() {
            if let Some(stored) = pending.iter().filter(|(b, _)| *b <= acked).map(|(_, f)| *f).max() {
                self.shared.slots[*slot_index].map_stored_frontier.fetch_max(stored, Ordering::SeqCst);
            }
            pending.retain(|(b, _)| *b > acked);
        }
        Ok(())
    }

    /// A partition taken over (after a restart or rebalance) is mirrored at least up
    /// to its committed offset: progress is committed only once mirrored and mapped.
    /// Knowing this lets lag be computed before any new record arrives.
    fn seed_mirrored_positions(&mut self, assignment: &TopicPartitionList, registry: &HashMap<(String, i32), usize>) {
        let mut unknown = TopicPartitionList::new();
        for elem in assignment.elements() {
            if let Some(&slot) = registry.get(&(elem.topic().to_string(), elem.partition())) {
                if self.shared.slots[slot].frontier_seen.load(Ordering::SeqCst) < 0 && self.seeded.insert(slot) {
                    let _ = unknown.add_partition(elem.topic(), elem.partition());
                }
            }
        }
        if unknown.count() == 0 {
            return;
        }
        match self.consumer.committed_offsets(unknown, Duration::from_secs(5)) {
            Ok(committed) => {
                for elem in committed.elements() {
                    if let (Offset::Offset(o), Some(&slot)) =
                        (elem.offset(), registry.get(&(elem.topic().to_string(), elem.partition())))
                    {
                        self.shared.slots[slot].frontier_seen.fetch_max(o, Ordering::SeqCst);
                    }
                }
            }
            Err(e) => tracing::debug!(flow = %self.flow_name, "reading committed offsets: {e}"),
        }
    }

    /// Commits, per owned partition, the position up to which the target has everything.
    fn commit(&mut self, mode: CommitMode) {
        self.last_commit = Instant::now();
        if self.shared.commit_failed.swap(false, Ordering::SeqCst) {
            self.last_committed.clear();
        }
        if let Err(e) = self.persist_offset_map() {
            self.shared.refuse(e);
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else { return };
        let registry = self.shared.registry.lock().unwrap();
        let mut tpl = TopicPartitionList::new();
        for elem in assignment.elements() {
            let Some(&slot) = registry.get(&(elem.topic().to_string(), elem.partition())) else { continue };
            let Some(position) = self.shared.slots[slot].committable_position() else { continue };
            if self.last_committed.get(&slot) != Some(&position) {
                let _ = tpl.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(position));
                self.last_committed.insert(slot, position);
            }
        }
        drop(registry);
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                // Forget what we thought was committed so the next interval retries.
                self.last_committed.clear();
                tracing::warn!(flow = %self.flow_name, "committing progress: {e}");
            }
        }
    }

    fn drain_and_commit(&mut self) {
        // The first round stores the map of everything that was in flight, the second
        // waits until the map itself is acknowledged; then the covered progress commits.
        for _ in 0..2 {
            if !drain(&self.producer, DRAIN_TIMEOUT) {
                tracing::warn!(flow = %self.flow_name, "shutdown: target did not acknowledge all in-flight records within {DRAIN_TIMEOUT:?}; they are re-sent at the next start");
                break;
            }
            if let Err(e) = self.persist_offset_map() {
                tracing::warn!(flow = %self.flow_name, "shutdown: {e}");
            }
        }
        if drain(&self.producer, DRAIN_TIMEOUT) {
            if let Err(e) = self.persist_offset_map() {
                tracing::warn!(flow = %self.flow_name, "shutdown: {e}");
            }
        }
        self.last_committed.clear();
        self.commit(CommitMode::Sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_packs_slot_and_offset() {
        for (slot, epoch, offset) in
            [(0, 0, 0), (1, 3, 42), (MAX_SLOTS - 1, 255, MAX_PACKED_OFFSET), (7, 256 + 9, 1 << 39)]
        {
            assert_eq!(unpack(pack(slot, epoch, offset)), (slot, epoch % 256, offset));
        }
    }

    #[test]
    fn safe_position_waits_for_in_flight_records() {
        let slot = PartitionSlot::default();
        slot.reset();
        assert_eq!(slot.safe_position(), None);
        slot.in_flight.store(2, Ordering::SeqCst);
        slot.fetched_next.store(10, Ordering::SeqCst);
        slot.acked_next.store(8, Ordering::SeqCst);
        assert_eq!(slot.safe_position(), Some(8));
        slot.in_flight.store(0, Ordering::SeqCst);
        assert_eq!(slot.safe_position(), Some(10));
        slot.failed.store(true, Ordering::SeqCst);
        assert_eq!(slot.safe_position(), Some(8), "never pass a refused record");
    }
}
