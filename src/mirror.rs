//! The data path: where a record goes from the source cluster to the target cluster.
//!
//! One flow runs on one dedicated thread (librdkafka's poll loop is blocking, and a
//! thread of its own keeps it off the async runtime):
//!
//! 1. `BaseConsumer::poll` hands over the next source record (read_committed, so records
//!    of aborted transactions never appear).
//! 2. [`Forwarder::forward`] produces it to the same partition number of the target
//!    topic, with its key, value, headers and timestamp, through the idempotent producer,
//!    if the in-flight [`budget`] has room. Nothing is copied by strait itself:
//!    librdkafka copies the bytes into its queue.
//! 3. The producer's delivery report ([`delivery::DeliveryTracker`], on librdkafka's
//!    producer thread) moves the partition's acknowledged position forward and extends
//!    its offset-map run: the target offset of every copy is known there.
//! 4. Every `commit_interval_ms` the offset map's writer stores the new runs and
//!    frontiers on the target ([`crate::offset_map::writer`]); once stored, the loop
//!    commits, per partition, the position up to which every record is acknowledged
//!    *and* mapped ([`slots::PartitionSlot::safe_position`]). A restarted or rebalanced
//!    consumer resumes there (see [`ownership`]), so a crash re-sends at most what was
//!    acknowledged after the last map write, and a clean shutdown re-sends nothing.
//!
//! Backpressure ([`Fetching`]): when the budget is full the record waits, and the loop
//! waits for the target instead of polling, so librdkafka keeps its prefetched data;
//! it polls only now and then to keep its group membership. Only when the target stays
//! stuck does it pause fetching, and it resumes once half the budget is free again.
//!
//! Failures: a record the target refuses stops the flow (nothing after it lands: the
//! producer keeps the gapless guarantee). A record that times out or is purged makes
//! the flow re-send every partition from what the target acknowledged ([`FlowLoop::resend`]);
//! the message timeout stays below the source group's session timeout, so an instance
//! frozen long enough to lose its partitions finds its unsent records expired when it
//! wakes and writes none of them.

pub(crate) mod budget;
pub(crate) mod delivery;
pub(crate) mod ownership;
pub(crate) mod slots;
pub(crate) mod target;
pub(crate) mod transaction;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::{FlowConfig, RenamePolicy};
use crate::kafka_ext;
use crate::metrics;
use crate::offset_map::writer::{MapAcks, MapWriter, PartitionUpdate};
use crate::topic_sync::Routes;
use budget::Budget;
use ownership::{RebalanceHandler, DRAIN_TIMEOUT};
pub use slots::PartitionSlot;
use slots::{pack, Slots, MAX_PACKED_OFFSET, MAX_SLOTS};
use target::{DataProducer, TargetProducer};

const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// While records wait for the target, the loop still polls this often, so that the
/// group sees it alive and rebalances proceed.
const KEEPALIVE_POLL: Duration = Duration::from_millis(500);
/// Waiting this long (the target acknowledges nothing), or this much, pauses fetching.
const PAUSE_AFTER: Duration = Duration::from_secs(5);
const PAUSE_ABOVE_WAITING_BYTES: usize = 16 << 20;
/// How often the map writer is asked to settle and send leftovers between ticks.
const MAP_SETTLE_EVERY: Duration = Duration::from_millis(20);
/// How often partitions whose takeover was deferred are retried.
const RETRY_DEFERRED_EVERY: Duration = Duration::from_secs(1);
/// How often the loop looks for records that waited too long for the target.
const STALL_CHECK_EVERY: Duration = Duration::from_millis(200);

/// Why a flow stopped. Each names the flow, and where relevant the record or topic.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("flow {flow}: cannot create {what}: {reason}")]
    Client { flow: String, what: &'static str, reason: String },
    #[error(
        "flow {flow}: the target refused record {topic}[{partition}]@{offset}: {reason}. \
         The record was not skipped; strait stops so that nothing is lost and nothing after it \
         reaches the target. {hint}"
    )]
    Refused { flow: String, topic: String, partition: i32, offset: i64, reason: String, hint: String },
    #[error(
        "flow {flow}: target topic `{topic}` (partition {partition}) lost records strait had mirrored: {detail}. \
         strait stops rather than continue as if they were there. To copy the topic again from the source's \
         log start, stop strait and run `strait recopy --config <file> --flow {flow} --topic <source topic>`"
    )]
    TargetTopicLost { flow: String, topic: String, partition: i32, detail: String },
    #[error(
        "flow {flow}: source partition {topic}[{partition}] ends at offset {end}, below the position {position} \
         strait had mirrored: the source topic was deleted and created again. To copy it again from its log \
         start, stop strait and run `strait recopy --config <file> --flow {flow} --topic {topic}`"
    )]
    SourceReset { flow: String, topic: String, partition: i32, position: i64, end: i64 },
    #[error("flow {flow}: more than {MAX_SLOTS} source partitions assigned to one flow; split its topics into several flows")]
    TooManyPartitions { flow: String },
    #[error("flow {flow}: {message}")]
    Other { flow: String, message: String },
}

/// State shared between the flow loop, the rebalance callbacks, delivery reports, and
/// the flow's lag monitor and checkpointer.
pub struct FlowShared {
    pub name: String,
    pub(crate) slots: Slots,
    pub(crate) budget: Budget,
    pub(crate) writer: Mutex<MapWriter>,
    /// The target producer; replaced as a whole when records must be sent again (see
    /// [`FlowShared::restart_producer`]).
    pub(crate) target: TargetProducer,
    /// Set by rebalance callbacks; the loop then refreshes what it holds.
    pub(crate) rebalanced: AtomicBool,
    /// The loop holds fetched records it has not sent: the consumer's position is ahead
    /// of what was handed to the producer.
    holds_records: AtomicBool,
    /// An asynchronous commit failed: the loop commits everything again.
    pub(crate) commit_failed: AtomicBool,
    /// The first error that stops the flow.
    refusal: Mutex<Option<MirrorError>>,
    pub(crate) has_refusal: AtomicBool,
    /// How long a record may wait for the target before its partition is re-sent: half
    /// librdkafka's message timeout (see [`FlowShared::resend_stalled`]).
    resend_after: Duration,
    /// Exactly-once flows: this instance's transactional identity (see
    /// [`transaction`]).
    pub(crate) exactly_once: Option<transaction::Transactions>,
    pub status: FlowStatusCounters,
}

/// What the lag monitor and `/status` read about a flow.
#[derive(Default)]
pub struct FlowStatusCounters {
    /// Records the target acknowledged, for throughput.
    pub acked_records: AtomicU64,
    /// Key and value bytes of those records, for throughput in bytes.
    pub acked_bytes: AtomicU64,
    /// Fetching is paused because the target is slow or not ready.
    pub paused: AtomicBool,
    /// Unix ms of the last completed checkpoint round; 0 = none yet.
    pub last_checkpoint_ms: AtomicI64,
    /// Unix ms timestamp of the newest heartbeat of this flow seen on the target.
    pub last_heartbeat_ms: AtomicI64,
    /// The last error worth showing in `/status` (no secrets: Kafka error texts only).
    pub last_error: Mutex<Option<String>>,
    /// The source groups of the last checkpoint round with their translated positions.
    pub groups: Mutex<Vec<crate::lag::GroupPosition>>,
}

impl std::ops::Deref for FlowShared {
    type Target = FlowStatusCounters;
    fn deref(&self) -> &FlowStatusCounters {
        &self.status
    }
}

impl FlowShared {
    /// Whether this instance mirrors the partition now.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        let slot = self.slots.registry.lock().unwrap().get(topic, partition);
        slot.is_some_and(|s| self.slots.get(s).assigned.load(Ordering::SeqCst))
    }

    /// Owned partitions with their slots, for the lag monitor.
    pub fn owned_partitions(&self) -> Vec<(String, i32, &PartitionSlot)> {
        self.slots.owned().into_iter().map(|(t, p, s)| (t.to_string(), p, self.slots.get(s))).collect()
    }

    /// Source offsets safely on the target per owned partition, for status and tests.
    pub fn acknowledged(&self) -> Vec<(String, i32, i64)> {
        self.owned_partitions().into_iter().filter_map(|(t, p, s)| s.safe_position().map(|o| (t, p, o))).collect()
    }

    pub fn set_error(&self, error: impl std::fmt::Display) {
        *self.status.last_error.lock().unwrap() = Some(error.to_string());
    }

    /// Stops the flow with `error` (the first one counts).
    pub(crate) fn refuse(&self, error: MirrorError) {
        self.set_error(&error);
        let mut refusal = self.refusal.lock().unwrap();
        if refusal.is_none() {
            tracing::error!(flow = %self.name, "{error}");
            *refusal = Some(error);
        }
        self.has_refusal.store(true, Ordering::SeqCst);
    }

    pub(crate) fn check_refusal(&self) -> Result<(), MirrorError> {
        if !self.has_refusal.load(Ordering::SeqCst) {
            return Ok(());
        }
        Err(self.refusal.lock().unwrap().take().unwrap_or_else(|| MirrorError::Other {
            flow: self.name.clone(),
            message: "stopped after an error reported above".into(),
        }))
    }

    /// Replaces the target producer and makes every owned partition start a new run
    /// from what the target acknowledged.
    ///
    /// Why a new producer: the old one may still hold records queued behind one that
    /// timed out, and would send them after the gap; and with the idempotent producer's
    /// gapless guarantee, purging records a producer already numbered leaves it unable to
    /// continue. A new producer starts a fresh sequence, and its first record of each
    /// partition goes alone (see `Forwarder::forward`). The old one is purged at once, so
    /// it sends nothing more; reports it still gives belong to ended runs and are ignored.
    pub(crate) fn restart_producer(self: &Arc<Self>, why: &str) -> Result<(), MirrorError> {
        if self.exactly_once.is_some() {
            // Re-sending would mix runs inside the open transaction: abort it instead.
            return Err(MirrorError::Other {
                flow: self.name.clone(),
                message: format!(
                    "exactly-once: {why}; the open transaction is aborted and the next start resumes from the \
                     last committed one"
                ),
            });
        }
        let new = self.target.create(self).map_err(|e| MirrorError::Client {
            flow: self.name.clone(),
            what: "the target producer",
            reason: e.to_string(),
        })?;
        let mut restarted = 0;
        for (_, _, slot_index) in self.slots.owned() {
            let slot = self.slots.get(slot_index);
            let (resume, last_target) = slot.unacknowledged_from();
            if resume < 0 {
                continue;
            }
            slot.begin_run(slot.epoch.load(Ordering::SeqCst).wrapping_add(1), resume, last_target);
            slot.position_trusted.store(false, Ordering::SeqCst);
            slot.pending_seek.store(resume, Ordering::SeqCst);
            restarted += 1;
        }
        if let Some(old) = self.target.install(new) {
            old.purge(PurgeConfig::default().queue().inflight());
        }
        self.target.resend_requested.store(true, Ordering::SeqCst);
        metrics::resend(&self.name);
        tracing::warn!(flow = %self.name, partitions = restarted, "{why}; re-sending from the last acknowledged positions");
        Ok(())
    }

    /// Records source retention removed before they were mirrored: counted and named.
    pub(crate) fn records_lost(&self, topic: &str, partition: i32, from: i64, to: i64) {
        metrics::source_records_lost(&self.name, topic, (to - from).max(0) as u64);
        let message = format!(
            "source retention removed {topic}[{partition}] offsets {from}..{to} ({} records) before they were \
             mirrored; they are lost to the target. Give the source topic more retention, or strait more \
             throughput, if this repeats",
            to - from
        );
        self.set_error(&message);
        tracing::error!(flow = %self.name, "{message}");
    }

    /// Re-sends every partition when one has a record that waited `resend_after` for the
    /// target. librdkafka expires records after its message timeout on its own, and
    /// expiry is not covered by the gapless guarantee: with part of a partition's queue
    /// expired, later records of it can still land, ahead of the re-sent ones. Replacing
    /// the producer first (at half the timeout) stops the later records from being sent.
    pub(crate) fn resend_stalled(self: &Arc<Self>) -> Result<(), MirrorError> {
        if self.exactly_once.is_some() {
            // Expired records make the transaction abort: nothing after them is visible.
            return Ok(());
        }
        let now = Instant::now();
        let stalled = self
            .slots
            .owned()
            .iter()
            .filter(|(_, _, slot)| self.slots.get(*slot).oldest_wait(now).is_some_and(|w| w >= self.resend_after))
            .count();
        if stalled == 0 {
            return Ok(());
        }
        self.restart_producer(&format!(
            "the target did not acknowledge records of {stalled} partition(s) within {:?}",
            self.resend_after
        ))
    }

    /// Waits until the target answered for every record of `slots` sent so far.
    /// Stalled partitions are re-sent meanwhile (see [`FlowShared::resend_stalled`]): this
    /// wait blocks the loop, which otherwise does that.
    pub(crate) fn wait_until_acknowledged(self: &Arc<Self>, slots: &[usize], deadline: Instant) -> bool {
        let mut last_check = Instant::now();
        loop {
            if slots.iter().all(|s| self.slots.get(*s).in_flight.load(Ordering::SeqCst) == 0) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if last_check.elapsed() >= STALL_CHECK_EVERY {
                last_check = Instant::now();
                if let Err(e) = self.resend_stalled() {
                    self.refuse(e);
                    return false;
                }
            }
            self.budget.wait(Duration::from_millis(5));
        }
    }

    /// What the offset map needs to know about `slots` now.
    pub(crate) fn map_updates(
        &self,
        consumer: &BaseConsumer<RebalanceHandler>,
        slots: &[usize],
    ) -> Vec<PartitionUpdate> {
        slots
            .iter()
            .filter_map(|&slot_index| {
                let (topic, partition) = self.slots.name(slot_index)?;
                let slot = self.slots.get(slot_index);
                let frontier = slot.frontier();
                slot.frontier_seen.fetch_max(frontier, Ordering::SeqCst);
                let (epoch, closed, open, next_downstream) = slot.take_runs();
                let source_end = kafka_ext::cached_watermarks(consumer.client(), &topic, partition).map_or(-1, |w| w.1);
                Some(PartitionUpdate { slot: slot_index, epoch, closed, open, frontier, next_downstream, source_end })
            })
            .collect()
    }

    /// Notes the consumer's position of every owned partition (loop thread only, between
    /// polls): with nothing held back, every record below it was handed over or was a
    /// transaction marker.
    fn note_positions(&self, consumer: &BaseConsumer<RebalanceHandler>) {
        if self.holds_records.load(Ordering::SeqCst) {
            return;
        }
        let Ok(positions) = consumer.position() else { return };
        let registry = self.slots.registry.lock().unwrap();
        for e in positions.elements() {
            if let (Offset::Offset(o), Some(slot)) = (e.offset(), registry.get(e.topic(), e.partition())) {
                let slot = self.slots.get(slot);
                if slot.assigned.load(Ordering::SeqCst) {
                    slot.position_seen.store(o, Ordering::SeqCst);
                }
            }
        }
    }
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
    let client_err = |what, e: KafkaError| MirrorError::Client { flow: name.clone(), what, reason: e.to_string() };
    let message_timeout = source.message_timeout();
    let map_producer: ThreadedProducer<MapAcks> = target
        .small_producer_config("offset-map", message_timeout)
        .create_with_context(MapAcks::new(&target.alias))
        .map_err(|e| client_err("the offset-map producer", e))?;
    let exactly_once = flow.exactly_once.then(|| transaction::Transactions::new(flow));
    let producer_config = match &exactly_once {
        Some(tx) => target.transactional_producer_config(flow.max_in_flight_bytes, &tx.id),
        None => target.producer_config(flow.max_in_flight_bytes, message_timeout),
    };
    let mut writer = MapWriter::new(crate::offset_map::map_topic(&flow.source), map_producer);
    if let Some(tx) = &exactly_once {
        writer.set_transactional(tx.instance);
    }
    let shared = Arc::new(FlowShared {
        name: name.clone(),
        slots: Slots::new(),
        budget: Budget::new(flow.max_in_flight_bytes),
        writer: Mutex::new(writer),
        target: TargetProducer::new(&target.alias, producer_config),
        rebalanced: AtomicBool::new(false),
        holds_records: AtomicBool::new(false),
        commit_failed: AtomicBool::new(false),
        refusal: Mutex::new(None),
        has_refusal: AtomicBool::new(false),
        resend_after: message_timeout / 2,
        exactly_once,
        status: FlowStatusCounters::default(),
    });
    let producer = shared.target.create(&shared).map_err(|e| client_err("the target producer", e))?;
    shared.target.install(producer.clone());
    if shared.exactly_once.is_some() {
        shared.begin_transactions()?;
    }
    let handler = RebalanceHandler::new(shared.clone(), flow, source.alias.clone(), target.clone()).map_err(|e| {
        MirrorError::Client { flow: name.clone(), what: "the target metadata client", reason: e.to_string() }
    })?;
    let consumer: BaseConsumer<RebalanceHandler> = source
        .consumer_config(&flow.consumer_group())
        .create_with_context(handler)
        .map_err(|e| client_err("the source consumer", e))?;

    let identity = (flow.rename == RenamePolicy::Identity)
        .then(|| (flow.provenance_header.clone(), flow.source.clone(), flow.target.clone()));
    let mut flow_loop = FlowLoop {
        shared: shared.clone(),
        consumer,
        forwarder: Forwarder {
            shared: shared.clone(),
            producer,
            producer_generation: shared.target.generation(),
            table: HashMap::new(),
            identity,
            flow_name: name.clone(),
        },
        routes,
        shutdown,
        subscribed: Vec::new(),
        waiting: VecDeque::new(),
        waiting_bytes: 0,
        fetching: Fetching::Running,
        last_wait: Wait::Budget,
        last_poll: Instant::now(),
        ticks: Ticks::new(flow.commit_interval()),
        flow_name: name.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("flow {name}"))
        .spawn(move || flow_loop.run())
        .map_err(|e| MirrorError::Other { flow: name.clone(), message: format!("cannot start thread: {e}") })?;
    Ok(FlowHandle { shared, thread })
}

/// What became of a record handed to [`Forwarder::forward`].
enum Forwarded {
    Sent,
    /// A loop in active/active `identity` mode: the record came from the target.
    SkippedLoop,
    /// Not sent; try again shortly.
    MustWait(Wait),
}

/// Key and value bytes of a record: what the in-flight budget counts.
fn record_size<M: Message>(message: &M) -> usize {
    message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len)
}

/// Why a record waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The in-flight budget is full: room comes back with the target's acknowledgements.
    Budget,
    /// The target topic or partition is not there yet (topic sync adds it), or the
    /// partition is not started yet.
    Target,
}

/// Where records of one source topic go, as the loop sees it.
struct TopicRoute {
    target_topic: String,
    target_partitions: i32,
    /// Slot per source partition, filled as partitions are started.
    slots: Vec<Option<usize>>,
}

/// Turns source records into target records. Kept apart from the consumer so that a
/// record borrowed from the consumer can be forwarded without copying it.
struct Forwarder {
    shared: Arc<FlowShared>,
    producer: Arc<DataProducer>,
    /// The generation of `producer`; a newer one in `shared` replaces it.
    producer_generation: u64,
    table: HashMap<String, TopicRoute>,
    /// With `rename = "identity"`: (header name, source alias, target alias).
    identity: Option<(String, String, String)>,
    flow_name: String,
}

impl Forwarder {
    /// Hands one record to the producer.
    fn forward<M: Message>(&mut self, message: &M) -> Result<Forwarded, MirrorError> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        // A topic no longer routed (excluded meanwhile): the subscription change revokes
        // it; never store progress past it.
        let Some(route) = self.table.get(topic) else { return Ok(Forwarded::MustWait(Wait::Target)) };
        if partition >= route.target_partitions {
            // The target has not got this partition yet; topic sync adds it shortly.
            return Ok(Forwarded::MustWait(Wait::Target));
        }
        let Some(slot_index) = route.slots.get(partition as usize).copied().flatten() else {
            let slot = self.shared.slots.registry.lock().unwrap().get(topic, partition);
            return match slot {
                Some(slot) => {
                    self.register_slot(topic, partition, slot);
                    self.forward(message)
                }
                None => Ok(Forwarded::MustWait(Wait::Target)),
            };
        };
        let slot = self.shared.slots.get(slot_index);
        if offset > MAX_PACKED_OFFSET {
            return Err(MirrorError::Other {
                flow: self.flow_name.clone(),
                message: format!("offset {offset} of {topic}[{partition}] exceeds the supported 2^40"),
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
                    slot.position_trusted.store(true, Ordering::SeqCst);
                    return Ok(Forwarded::SkippedLoop);
                }
                Some(_) => {}
                None => {
                    let owned = headers.take().unwrap_or_else(|| OwnedHeaders::new_with_capacity(1));
                    headers = Some(owned.insert(Header { key: header_name, value: Some(source_alias.as_bytes()) }));
                }
            }
        }
        if !slot.confirmed.load(Ordering::Acquire) && slot.in_flight.load(Ordering::SeqCst) > 0 {
            return Ok(Forwarded::MustWait(Wait::Budget));
        }
        if self.shared.target.generation() != self.producer_generation {
            (self.producer_generation, self.producer) = self.shared.target.current();
        }
        let size = record_size(message) as u64;
        if !self.shared.budget.try_admit(size) {
            return Ok(Forwarded::MustWait(Wait::Budget));
        }
        let epoch = slot.epoch.load(Ordering::SeqCst);
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&route.target_topic, pack(slot_index, epoch, offset)).partition(partition);
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
                // Send marks time re-sends, which exactly-once mode never does (an
                // expired record aborts the transaction); marking there only grew memory.
                if self.shared.exactly_once.is_none() {
                    slot.sent.lock().unwrap().sent(offset, Instant::now());
                }
                slot.fetched_next.store(offset + 1, Ordering::SeqCst);
                slot.position_trusted.store(true, Ordering::SeqCst);
                Ok(Forwarded::Sent)
            }
            Err((e, _)) => {
                slot.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.shared.budget.cancel(size);
                match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Ok(Forwarded::MustWait(Wait::Budget)),
                    KafkaError::MessageProduction(
                        RDKafkaErrorCode::UnknownPartition
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic,
                    ) => {
                        // Topic sync has just created the topic or partition, and the
                        // producer's metadata has not caught up yet: refresh it, retry.
                        let target_topic = route.target_topic.clone();
                        let _ = self.producer.client().fetch_metadata(Some(&target_topic), Duration::from_secs(5));
                        Ok(Forwarded::MustWait(Wait::Target))
                    }
                    e => Err(MirrorError::Refused {
                        flow: self.flow_name.clone(),
                        topic: topic.to_string(),
                        partition,
                        offset,
                        hint: delivery::refusal_hint(&e, &route.target_topic),
                        reason: e.to_string(),
                    }),
                }
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
        }
    }
}

/// Whether the source consumer fetches: the data path's backpressure states.
#[derive(Debug, Clone, Copy)]
enum Fetching {
    /// Records flow: poll, forward, repeat.
    Running,
    /// The target is behind: fetched records wait in order, the loop waits for room and
    /// polls only to keep its group membership.
    Waiting { since: Instant },
    /// The target stayed stuck: every partition is paused until in-flight bytes fall to
    /// the low-water mark (half the budget).
    Paused,
}

/// When the offset map is written and progress committed.
struct Ticks {
    commit_interval: Duration,
    last_map_write: Instant,
    last_settle: Instant,
    last_retry: Instant,
    last_stall_check: Instant,
    /// What was last committed per slot; cleared when a commit failed.
    last_committed: HashMap<usize, i64>,
}

impl Ticks {
    fn new(commit_interval: Duration) -> Ticks {
        let now = Instant::now();
        Ticks {
            commit_interval,
            last_map_write: now,
            last_settle: now,
            last_retry: now,
            last_stall_check: now,
            last_committed: HashMap::new(),
        }
    }
}

struct FlowLoop {
    shared: Arc<FlowShared>,
    consumer: BaseConsumer<RebalanceHandler>,
    forwarder: Forwarder,
    routes: watch::Receiver<Routes>,
    shutdown: watch::Receiver<bool>,
    subscribed: Vec<String>,
    /// Records fetched but not sent yet, in fetch order.
    waiting: VecDeque<OwnedMessage>,
    waiting_bytes: usize,
    fetching: Fetching,
    last_wait: Wait,
    last_poll: Instant,
    ticks: Ticks,
    flow_name: String,
}

impl FlowLoop {
    fn run(&mut self) -> Result<(), MirrorError> {
        tracing::info!(flow = %self.flow_name, "data path started");
        let result = self.run_until_shutdown();
        // Whatever ended the loop, leave only acknowledged and mapped progress behind.
        self.finish(result.is_ok());
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
            self.shared.check_refusal()?;
            if self.routes.has_changed().unwrap_or(false) {
                self.apply_routes()?;
            }
            if self.shared.rebalanced.swap(false, Ordering::SeqCst) {
                self.after_rebalance();
            }
            if self.shared.target.restart_requested.swap(false, Ordering::SeqCst) {
                self.shared.restart_producer("the target did not acknowledge records in time")?;
            }
            if self.ticks.last_stall_check.elapsed() >= STALL_CHECK_EVERY {
                self.ticks.last_stall_check = Instant::now();
                self.shared.resend_stalled()?;
            }
            if self.shared.target.resend_requested.swap(false, Ordering::SeqCst) {
                self.resend();
            }
            if self.ticks.last_retry.elapsed() >= RETRY_DEFERRED_EVERY {
                self.ticks.last_retry = Instant::now();
                self.consumer.context().retry_deferred(&self.consumer);
            }
            self.send_waiting()?;
            self.step()?;
            self.shared.budget.adapt();
            self.tick()?;
        }
    }

    /// One step of the backpressure state machine.
    fn step(&mut self) -> Result<(), MirrorError> {
        match self.fetching {
            Fetching::Running => {
                let polled = self.consumer.poll(POLL_INTERVAL);
                self.last_poll = Instant::now();
                match polled {
                    None => {}
                    Some(Ok(message)) => match self.forwarder.forward(&message)? {
                        Forwarded::Sent | Forwarded::SkippedLoop => {}
                        Forwarded::MustWait(wait) => {
                            self.hold(message.detach());
                            self.last_wait = wait;
                            self.fetching = Fetching::Waiting { since: Instant::now() };
                        }
                    },
                    Some(Err(e)) => self.source_error(e)?,
                }
            }
            Fetching::Waiting { since } => {
                match self.last_wait {
                    Wait::Budget => self.shared.budget.wait(Duration::from_millis(20)),
                    Wait::Target => std::thread::sleep(Duration::from_millis(20)),
                }
                if self.last_poll.elapsed() >= KEEPALIVE_POLL {
                    self.keepalive_poll()?;
                }
                if since.elapsed() >= PAUSE_AFTER || self.waiting_bytes > PAUSE_ABOVE_WAITING_BYTES {
                    self.set_paused(true);
                }
            }
            Fetching::Paused => {
                if self.waiting.is_empty() && self.shared.budget.below_low_water() {
                    self.set_paused(false);
                } else {
                    self.shared.budget.wait(Duration::from_millis(20));
                    if self.last_poll.elapsed() >= KEEPALIVE_POLL {
                        self.keepalive_poll()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A poll while records wait: serves rebalances and keeps the membership alive. A
    /// record it returns joins the waiting ones (at most one per poll).
    fn keepalive_poll(&mut self) -> Result<(), MirrorError> {
        let polled = self.consumer.poll(Duration::ZERO);
        self.last_poll = Instant::now();
        match polled {
            Some(Ok(message)) => self.hold(message.detach()),
            Some(Err(e)) => self.source_error(e)?,
            None => {}
        }
        Ok(())
    }

    fn hold(&mut self, message: OwnedMessage) {
        self.waiting_bytes += record_size(&message);
        self.waiting.push_back(message);
        self.shared.holds_records.store(true, Ordering::SeqCst);
    }

    /// Sends the waiting records, in order, as far as the target takes them.
    fn send_waiting(&mut self) -> Result<(), MirrorError> {
        while let Some(message) = self.waiting.front() {
            match self.forwarder.forward(message)? {
                Forwarded::Sent | Forwarded::SkippedLoop => {
                    let message = self.waiting.pop_front().expect("front exists");
                    self.waiting_bytes -= record_size(&message);
                }
                Forwarded::MustWait(wait) => {
                    self.last_wait = wait;
                    return Ok(());
                }
            }
        }
        self.shared.holds_records.store(false, Ordering::SeqCst);
        if let Fetching::Waiting { .. } = self.fetching {
            self.fetching = Fetching::Running;
        }
        Ok(())
    }

    fn source_error(&mut self, e: KafkaError) -> Result<(), MirrorError> {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            return self.skip_lost_records();
        }
        metrics::source_error(&self.flow_name);
        self.shared.set_error(format!("source consumer: {e}"));
        tracing::warn!(flow = %self.flow_name, "source consumer: {e}");
        Ok(())
    }

    /// A fetch position fell out of the source partition's range (strait sets
    /// `auto.offset.reset=error`, so librdkafka stops there instead of jumping): below the
    /// log start, retention removed records before they were mirrored; they are counted
    /// and named, and mirroring continues at the log start.
    fn skip_lost_records(&mut self) -> Result<(), MirrorError> {
        for (topic, partition, slot) in self.shared.owned_partitions() {
            let next = slot.fetched_next.load(Ordering::SeqCst).max(slot.started_at.load(Ordering::SeqCst));
            let Ok((low, high)) = self.consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)) else {
                continue;
            };
            if next >= 0 && next < low {
                self.shared.records_lost(&topic, partition, next, low);
                slot.fetched_next.store(low, Ordering::SeqCst);
                slot.position_trusted.store(false, Ordering::SeqCst);
                let _ = self.consumer.seek(&topic, partition, Offset::Offset(low), Duration::from_secs(10));
            } else if next > high {
                return Err(MirrorError::SourceReset {
                    flow: self.flow_name.clone(),
                    topic,
                    partition,
                    position: next,
                    end: high,
                });
            }
        }
        Ok(())
    }

    /// Pauses or resumes fetching of every assigned partition.
    fn set_paused(&mut self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else { return };
        let done = if paused { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if done.is_ok() {
            self.fetching = if paused {
                Fetching::Paused
            } else if self.waiting.is_empty() {
                Fetching::Running
            } else {
                Fetching::Waiting { since: Instant::now() }
            };
            self.shared.paused.store(paused, Ordering::SeqCst);
            metrics::flow_paused(&self.flow_name, paused);
            if paused {
                metrics::fetch_paused(&self.flow_name);
            }
            tracing::debug!(flow = %self.flow_name, paused, "target stuck: fetching paused (or resumed)");
        }
    }

    /// Partitions moved: forget records of partitions this instance no longer owns (the
    /// new owner reads them from the committed position), and refresh slot lookups.
    fn after_rebalance(&mut self) {
        let owned: std::collections::HashSet<(String, i32)> =
            self.shared.owned_partitions().into_iter().map(|(t, p, _)| (t, p)).collect();
        let before = self.waiting.len();
        self.waiting.retain(|m| owned.contains(&(m.topic().to_string(), m.partition())));
        if self.waiting.len() != before {
            self.waiting_bytes = self.waiting.iter().map(record_size).sum();
        }
        self.refresh_slots();
        if matches!(self.fetching, Fetching::Paused) {
            // Newly assigned partitions start unpaused; keep them in step.
            self.set_paused(true);
        }
    }

    fn refresh_slots(&mut self) {
        for route in self.forwarder.table.values_mut() {
            route.slots.clear();
        }
        for (topic, partition, slot) in self.shared.slots.owned() {
            self.forwarder.register_slot(&topic, partition, slot);
        }
    }

    /// The producer was replaced ([`FlowShared::restart_producer`]): moves each owned
    /// partition back to where its new run begins and drops the records that waited
    /// (they are fetched again).
    fn resend(&mut self) {
        for (topic, partition, slot_index) in self.shared.slots.owned() {
            let slot = self.shared.slots.get(slot_index);
            let resume_at = slot.pending_seek.swap(-1, Ordering::SeqCst);
            if resume_at < 0 {
                continue;
            }
            if let Err(e) = self.consumer.seek(&topic, partition, Offset::Offset(resume_at), Duration::from_secs(10)) {
                self.shared.refuse(MirrorError::Other {
                    flow: self.flow_name.clone(),
                    message: format!("re-sending {topic}[{partition}] from offset {resume_at}: {e}"),
                });
            }
        }
        self.waiting.clear();
        self.waiting_bytes = 0;
        self.shared.holds_records.store(false, Ordering::SeqCst);
        if let Fetching::Waiting { .. } = self.fetching {
            self.fetching = Fetching::Running;
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
        self.refresh_slots();
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

    /// Writes the offset map each commit interval, and commits progress as soon as the
    /// map covering it is stored.
    fn tick(&mut self) -> Result<(), MirrorError> {
        let due = self.ticks.last_map_write.elapsed() >= self.ticks.commit_interval;
        if self.shared.exactly_once.is_some() {
            if due {
                self.ticks.last_map_write = Instant::now();
                self.shared.note_positions(&self.consumer);
                self.shared.commit_transaction(&self.consumer, &[])?;
                self.commit(CommitMode::Async);
            }
            return Ok(());
        }
        if !due && self.ticks.last_settle.elapsed() < MAP_SETTLE_EVERY {
            return Ok(());
        }
        self.ticks.last_settle = Instant::now();
        let updates = if due {
            self.ticks.last_map_write = Instant::now();
            self.shared.note_positions(&self.consumer);
            let slots: Vec<usize> = self.shared.slots.owned().into_iter().map(|o| o.2).collect();
            self.shared.map_updates(&self.consumer, &slots)
        } else {
            Vec::new()
        };
        let started = Instant::now();
        let mut writer = self.shared.writer.lock().unwrap();
        let sent = writer
            .write(updates)
            .map_err(|e| MirrorError::Other { flow: self.flow_name.clone(), message: e.to_string() })?;
        drop(writer);
        if sent > 0 {
            metrics::offset_map_written(&self.flow_name, sent, started.elapsed());
        }
        self.commit(CommitMode::Async);
        Ok(())
    }

    /// Commits, per owned partition, the position up to which the target has everything
    /// and the map is stored.
    fn commit(&mut self, mode: CommitMode) {
        if self.shared.commit_failed.swap(false, Ordering::SeqCst) {
            self.ticks.last_committed.clear();
        }
        let writer = self.shared.writer.lock().unwrap();
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, slot_index) in self.shared.slots.owned() {
            let Some(safe) = self.shared.slots.get(slot_index).safe_position() else { continue };
            let Some(stored) = writer.stored_frontier(slot_index) else { continue };
            let position = safe.min(stored);
            if self.ticks.last_committed.get(&slot_index) != Some(&position) {
                let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(position));
                self.ticks.last_committed.insert(slot_index, position);
            }
        }
        drop(writer);
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                // Forget what we thought was committed so the next round retries.
                self.ticks.last_committed.clear();
                metrics::error(&self.flow_name, "commit");
                tracing::warn!(flow = %self.flow_name, "committing progress: {e}");
            }
        }
    }

    /// On the way out: wait for the target, store the map, commit. Exactly-once: commit
    /// the open transaction, or abort it when the flow stops on an error.
    fn finish(&mut self, clean: bool) {
        if self.shared.exactly_once.is_some() {
            let committed = clean && !self.shared.has_refusal.load(Ordering::SeqCst);
            let committed = committed
                && self
                    .shared
                    .commit_transaction(&self.consumer, &[])
                    .map_err(|e| {
                        tracing::warn!(flow = %self.flow_name, "shutdown: {e}");
                    })
                    .is_ok();
            if committed {
                self.ticks.last_committed.clear();
                self.commit(CommitMode::Sync);
            } else {
                self.shared.abort_transaction();
            }
            return;
        }
        let slots: Vec<usize> = self.shared.slots.owned().into_iter().map(|o| o.2).collect();
        if !self.shared.wait_until_acknowledged(&slots, Instant::now() + DRAIN_TIMEOUT) {
            tracing::warn!(flow = %self.flow_name, "shutdown: the target did not acknowledge all in-flight records within {DRAIN_TIMEOUT:?}; they are re-sent at the next start");
        }
        let updates = self.shared.map_updates(&self.consumer, &slots);
        let mut writer = self.shared.writer.lock().unwrap();
        match writer.write(updates).and_then(|_| writer.flush(Instant::now() + Duration::from_secs(10))) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(flow = %self.flow_name, "shutdown: the offset map was not stored in time"),
            Err(e) => tracing::warn!(flow = %self.flow_name, "shutdown: {e}"),
        }
        drop(writer);
        self.ticks.last_committed.clear();
        self.commit(CommitMode::Sync);
    }
}
