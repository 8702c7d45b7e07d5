//! Consumer-group checkpoints: translate the committed offsets of source groups through
//! the offset map, write them to the target in MirrorMaker 2's checkpoint format (so
//! tools built on `RemoteClusterUtils.translateOffsets` work unchanged), and commit them
//! into idle same-named groups on the target. Also emits MM2-format heartbeats.
//!
//! Each instance checkpoints only the partitions it mirrors, so instances sharing a
//! flow never write conflicting checkpoints.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::watch;

use crate::cluster::{Cluster, ClusterError};
use crate::config::{FlowConfig, GroupOffsetsSource};
use crate::group_offsets::GroupOffsets;
use crate::group_sync::TargetGroups;
use crate::kafka_ext::{self, GroupOffset};
use crate::lag::GroupPosition;
use crate::metrics;
use crate::mirror::FlowShared;
use crate::naming::TopicSelector;
use crate::offset_map::{FlowMap, MapReader, PartitionMap, Translation};
use crate::topic_sync::{checkpoints_topic, Routes, HEARTBEATS_TOPIC};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of consumer-group admin requests (ListConsumerGroupOffsets,
/// AlterConsumerGroupOffsets). librdkafka 2.12 can abort the process when such a
/// request times out while its group-coordinator lookup is still pending (an assertion
/// in rd_kafka_enq_once_del_source_return, seen here when a cluster went down). So these
/// requests get librdkafka's longest timeout (one hour): during an outage they wait and
/// complete when the cluster returns. Only this thread waits; shutdown does not wait for
/// it (see service.rs). An outage longer than an hour can still hit the librdkafka bug.
const GROUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long one round may take to read new commits from `__consumer_offsets`; the first
/// round reads the whole (compacted) topic.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Unchanged checkpoints are still re-emitted this often, so their age shows liveness.
const REEMIT_AFTER: Duration = Duration::from_secs(60);
/// The offset map is pruned every this many checkpoint rounds (60 s by default).
const PRUNE_EVERY_ROUNDS: u32 = 12;

/// One partition of a group, translated.
#[derive(Debug, Clone)]
pub struct TranslatedOffset {
    pub source_topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// The group's committed offset on the source (its next record).
    pub upstream: i64,
    /// Where it continues on the target, when known exactly.
    pub downstream: Option<i64>,
    pub note: &'static str,
}

/// Lookups one translation round shares across groups: source log starts, target
/// ends, and resolved partition maps, each read at most once per round.
pub struct Round<'a> {
    map: &'a FlowMap,
    source_meta: Option<&'a rdkafka::consumer::BaseConsumer>,
    target_meta: &'a rdkafka::consumer::BaseConsumer,
    source_starts: RefCell<HashMap<(String, i32), Option<i64>>>,
    target_ends: RefCell<HashMap<(String, i32), Option<i64>>>,
    resolved: RefCell<HashMap<(String, i32), std::rc::Rc<PartitionMap>>>,
    /// The flow's topic selection, compiled once per round rather than per group.
    selector: std::cell::OnceCell<TopicSelector>,
}

impl<'a> Round<'a> {
    /// `source_meta` is None when the source is unreachable (a source-less failover):
    /// positions are then translated without knowing the source's log start.
    pub fn new(
        map: &'a FlowMap,
        source_meta: Option<&'a rdkafka::consumer::BaseConsumer>,
        target_meta: &'a rdkafka::consumer::BaseConsumer,
    ) -> Round<'a> {
        Round {
            map,
            source_meta,
            target_meta,
            source_starts: RefCell::default(),
            target_ends: RefCell::default(),
            resolved: RefCell::default(),
            selector: std::cell::OnceCell::new(),
        }
    }

    /// Reads the source log starts and target ends of many partitions at once, with one
    /// ListOffsets request per broker each, instead of a request per partition later.
    /// Takes (source topic, target topic, partition) triples.
    pub fn prefetch(&self, partitions: &[(String, String, i32)]) {
        let sources: Vec<(String, i32)> = partitions.iter().map(|(s, _, p)| (s.clone(), *p)).collect();
        let targets: Vec<(String, i32)> = partitions.iter().map(|(_, t, p)| (t.clone(), *p)).collect();
        if let Some(meta) = self.source_meta {
            if let Some(starts) = crate::lag::list_offsets(meta, &sources, rdkafka::Offset::Beginning) {
                let mut cache = self.source_starts.borrow_mut();
                cache.extend(sources.into_iter().map(|k| (k.clone(), starts.get(&k).copied())));
            }
        }
        if let Some(ends) = crate::lag::list_offsets(self.target_meta, &targets, rdkafka::Offset::End) {
            let mut cache = self.target_ends.borrow_mut();
            cache.extend(targets.into_iter().map(|k| (k.clone(), ends.get(&k).copied())));
        }
    }

    fn source_start(&self, topic: &str, partition: i32) -> Option<i64> {
        let meta = self.source_meta?;
        *self
            .source_starts
            .borrow_mut()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| meta.fetch_watermarks(topic, partition, REQUEST_TIMEOUT).ok().map(|w| w.0))
    }

    fn target_end(&self, topic: &str, partition: i32) -> Option<i64> {
        *self
            .target_ends
            .borrow_mut()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| self.target_meta.fetch_watermarks(topic, partition, REQUEST_TIMEOUT).ok().map(|w| w.1))
    }

    fn resolved(&self, topic: &str, partition: i32) -> std::rc::Rc<PartitionMap> {
        self.resolved
            .borrow_mut()
            .entry((topic.to_string(), partition))
            .or_insert_with(|| std::rc::Rc::new(self.map.partition(topic, partition)))
            .clone()
    }

    /// Translates one committed position, or says why it cannot be.
    fn translate(
        &self,
        source_topic: &str,
        target_topic: &str,
        partition: i32,
        upstream: i64,
    ) -> (Option<i64>, &'static str) {
        // A target partition that ends below what strait wrote there lost records (it
        // was deleted and recreated): no position in it can be trusted.
        if let Some(latest) = self.map.latest_frontier(source_topic, partition) {
            if self.target_end(target_topic, partition).is_some_and(|end| end < latest.frontier.next_downstream) {
                return (None, "target lost records (see strait recopy)");
            }
        }
        // Without the source, assume records below the map are gone there too: the
        // group continues with the first record that was mirrored.
        let log_start = self.source_start(source_topic, partition).unwrap_or(i64::MAX);
        match self.resolved(source_topic, partition).translate(upstream, log_start) {
            Translation::Exact(d) => (Some(d), "exact"),
            Translation::AtEnd(Some(d)) => (Some(d), "exact (at end)"),
            Translation::AtEnd(None) => (None, "not yet mirrored"),
            Translation::NotYetMirrored { .. } => (None, "not yet mirrored"),
            Translation::OlderThanMap { .. } => (None, "older than the offset map"),
        }
    }
}

/// Translates a group's committed source offsets for the topics this flow mirrors.
pub fn translate_group(flow: &FlowConfig, round: &Round<'_>, offsets: &[GroupOffset]) -> Vec<TranslatedOffset> {
    let selector = round.selector.get_or_init(|| TopicSelector::new(flow));
    let mut out: Vec<TranslatedOffset> = offsets
        .iter()
        .filter(|o| selector.select(&o.topic).is_ok())
        .map(|o| {
            let target_topic = selector.target_topic(&o.topic);
            let (downstream, note) = round.translate(&o.topic, &target_topic, o.partition, o.offset);
            TranslatedOffset {
                source_topic: o.topic.clone(),
                target_topic,
                partition: o.partition,
                upstream: o.offset,
                downstream,
                note,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.source_topic, a.partition).cmp(&(&b.source_topic, b.partition)));
    out
}

/// MirrorMaker 2's record encodings (Kafka protocol structs: big-endian integers,
/// STRING = INT16 length + UTF-8; values start with an INT16 version, 0).
pub mod mm2 {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// Key of `<source>.checkpoints.internal`: group, (target) topic, partition.
    pub fn checkpoint_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + group.len() + topic.len());
        string(&mut out, group);
        string(&mut out, topic);
        out.extend_from_slice(&partition.to_be_bytes());
        out
    }

    /// Value: version 0, upstream offset, downstream offset, metadata.
    pub fn checkpoint_value(upstream: i64, downstream: i64, metadata: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + metadata.len());
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&upstream.to_be_bytes());
        out.extend_from_slice(&downstream.to_be_bytes());
        string(&mut out, metadata);
        out
    }

    /// Key of `heartbeats`: source alias, target alias.
    pub fn heartbeat_key(source: &str, target: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, source);
        string(&mut out, target);
        out
    }

    /// Value: version 0, timestamp in milliseconds.
    pub fn heartbeat_value(timestamp_ms: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(10);
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&timestamp_ms.to_be_bytes());
        out
    }

    fn read_string(input: &mut &[u8]) -> Option<String> {
        let len = i16::from_be_bytes(input.get(..2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let text = std::str::from_utf8(input.get(2..2 + len)?).ok()?.to_string();
        *input = &input[2 + len..];
        Some(text)
    }

    /// Decodes a checkpoint key into (group, target topic, partition).
    pub fn decode_checkpoint_key(key: &[u8]) -> Option<(String, String, i32)> {
        let mut rest = key;
        let group = read_string(&mut rest)?;
        let topic = read_string(&mut rest)?;
        let partition = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        Some((group, topic, partition))
    }

    /// Decodes a checkpoint value into (upstream, downstream).
    pub fn decode_checkpoint_value(value: &[u8]) -> Option<(i64, i64)> {
        let upstream = i64::from_be_bytes(value.get(2..10)?.try_into().ok()?);
        let downstream = i64::from_be_bytes(value.get(10..18)?.try_into().ok()?);
        Some((upstream, downstream))
    }

    /// Decodes a heartbeat value into its timestamp.
    pub fn heartbeat_timestamp(value: &[u8]) -> Option<i64> {
        Some(i64::from_be_bytes(value.get(2..10)?.try_into().ok()?))
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs checkpoints and heartbeats for one flow until shutdown, on its own thread
/// (the Kafka calls involved are blocking).
pub fn start(
    flow: FlowConfig,
    source: Cluster,
    target: Cluster,
    shared: Arc<FlowShared>,
    routes: watch::Receiver<Routes>,
    shutdown: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("checkpoints {}", flow.name()))
        .spawn(move || {
            let mut worker = match Checkpointer::new(flow.clone(), source, target, shared, routes) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(flow = %flow.name(), "checkpoints disabled: {e}");
                    return;
                }
            };
            worker.run(shutdown)
        })
        .expect("spawn checkpoint thread")
}

struct Checkpointer {
    flow: FlowConfig,
    name: String,
    source: Cluster,
    target: Cluster,
    shared: Arc<FlowShared>,
    routes: watch::Receiver<Routes>,
    source_admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    source_meta: rdkafka::consumer::BaseConsumer,
    target_meta: rdkafka::consumer::BaseConsumer,
    /// Polled by this thread's own loop ([`Checkpointer::serve_producers`]), not by a
    /// thread of their own: rdkafka's `ThreadedProducer` spins for the sub-millisecond
    /// rest of each 100 ms poll, about 1 % of a core per producer when idle.
    source_producer: BaseProducer<DefaultProducerContext>,
    target_producer: BaseProducer<DefaultProducerContext>,
    reader: Option<MapReader>,
    /// Follows the source's `__consumer_offsets` (created on the first round).
    group_offsets: Option<GroupOffsets>,
    emitted: HashMap<(String, String, i32), (i64, i64, Instant)>,
    /// Follows the flow's mirrored heartbeats on the target.
    heartbeats: Option<rdkafka::consumer::BaseConsumer>,
    /// Syncs translated offsets into the target's groups (created on first use).
    target_groups: Option<TargetGroups>,
    last_prune: Instant,
}

impl Checkpointer {
    fn new(
        flow: FlowConfig,
        source: Cluster,
        target: Cluster,
        shared: Arc<FlowShared>,
        routes: watch::Receiver<Routes>,
    ) -> Result<Checkpointer, ClusterError> {
        let producer = |c: &Cluster| -> Result<BaseProducer<DefaultProducerContext>, ClusterError> {
            c.small_producer_config("checkpoints", Duration::from_secs(30))
                .create()
                .map_err(|e| ClusterError::Client { alias: c.alias.clone(), reason: e.to_string() })
        };
        Ok(Checkpointer {
            name: flow.name(),
            source_admin: source.admin()?,
            source_meta: source.metadata_client()?,
            target_meta: target.metadata_client()?,
            source_producer: producer(&source)?,
            target_producer: producer(&target)?,
            reader: None,
            group_offsets: None,
            emitted: HashMap::new(),
            heartbeats: None,
            target_groups: None,
            last_prune: Instant::now(),
            flow,
            source,
            target,
            shared,
            routes,
        })
    }

    fn run(&mut self, mut shutdown: watch::Receiver<bool>) {
        let heartbeat_every = Duration::from_millis(self.flow.heartbeat_interval_ms);
        let mut last_heartbeat = Instant::now() - heartbeat_every;
        let mut last_checkpoint = Instant::now();
        while !*shutdown.borrow_and_update() {
            if self.flow.heartbeat_interval_ms > 0 && last_heartbeat.elapsed() >= heartbeat_every {
                last_heartbeat = Instant::now();
                self.heartbeat();
            }
            self.read_heartbeats();
            if last_checkpoint.elapsed() >= self.flow.checkpoint_interval() {
                last_checkpoint = Instant::now();
                if let Err(e) = self.checkpoint() {
                    metrics::error(&self.name, "checkpoint");
                    tracing::warn!(flow = %self.name, "checkpoints: {e}");
                }
            }
            self.serve_producers();
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.target_producer.flush(Duration::from_secs(10));
        let _ = self.source_producer.flush(Duration::from_secs(10));
    }

    /// Serves the producers' delivery reports (each event carries a batch of them).
    fn serve_producers(&self) {
        for _ in 0..16 {
            self.source_producer.poll(Duration::ZERO);
            self.target_producer.poll(Duration::ZERO);
        }
    }

    fn heartbeat(&self) {
        let key = mm2::heartbeat_key(&self.flow.source, &self.flow.target);
        let value = mm2::heartbeat_value(now_ms());
        let record = BaseRecord::to(HEARTBEATS_TOPIC).key(&key).payload(&value);
        if let Err((e, _)) = self.source_producer.send(record) {
            tracing::debug!(flow = %self.name, "heartbeat not sent: {e}");
        }
    }

    /// Deletes (tombstones) offset-map segments of owned partitions that a newer copy
    /// replaced or that lie wholly below the source's log start, so the compacted map
    /// topic stays as small as the data the source still holds.
    fn prune_offset_map(&mut self) {
        let Some(reader) = self.reader.as_ref() else { return };
        let topic = crate::offset_map::map_topic(&self.flow.source);
        let mut tombstones = Vec::new();
        for (source_topic, partition) in reader.map.partitions() {
            if !self.shared.owns(&source_topic, partition) {
                continue;
            }
            let Ok((log_start, _)) = self.source_meta.fetch_watermarks(&source_topic, partition, REQUEST_TIMEOUT)
            else {
                continue;
            };
            tombstones.extend(reader.map.prunable(&source_topic, partition, log_start));
        }
        for key in &tombstones {
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).partition(0).key(key.as_slice());
            if let Err((e, _)) = self.target_producer.send(record) {
                tracing::warn!(flow = %self.name, "pruning the offset map: {e}");
                return;
            }
        }
        if !tombstones.is_empty() {
            tracing::debug!(flow = %self.name, segments = tombstones.len(), "pruned offset map");
        }
        metrics::offset_map_segments(&self.name, reader.map.stored_segments().saturating_sub(tombstones.len()));
    }

    /// Notes the newest heartbeat of this flow that reached the target: its age tells
    /// whether records get through end to end, even when no user topic has traffic.
    fn read_heartbeats(&mut self) {
        if self.heartbeats.is_none() {
            let topic = TopicSelector::new(&self.flow).target_topic(HEARTBEATS_TOPIC);
            let Ok(consumer) = self.target.metadata_client() else { return };
            let mut tpl = rdkafka::TopicPartitionList::new();
            if tpl.add_partition_offset(&topic, 0, rdkafka::Offset::OffsetTail(100)).is_err()
                || consumer.assign(&tpl).is_err()
            {
                return;
            }
            self.heartbeats = Some(consumer);
        }
        let key = mm2::heartbeat_key(&self.flow.source, &self.flow.target);
        let consumer = self.heartbeats.as_ref().expect("just set");
        while let Some(result) = consumer.poll(Duration::ZERO) {
            let Ok(message) = result else { break };
            use rdkafka::message::Message;
            if message.key() == Some(key.as_slice()) {
                if let Some(ts) = message.payload().and_then(mm2::heartbeat_timestamp) {
                    self.shared.last_heartbeat_ms.fetch_max(ts, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    }

    fn checkpoint(&mut self) -> Result<(), ClusterError> {
        let started = Instant::now();
        if self.reader.is_none() {
            self.reader = Some(MapReader::new(&self.target, &self.flow)?);
        }
        let reader = self.reader.as_mut().expect("just set");
        reader.catch_up(&self.target, REQUEST_TIMEOUT)?;
        if self.last_prune.elapsed() >= self.flow.checkpoint_interval() * PRUNE_EVERY_ROUNDS {
            self.last_prune = Instant::now();
            self.prune_offset_map();
        }
        let routes = self.routes.borrow().clone();
        let mut per_group = Vec::new();
        let groups = self.source_group_offsets()?;
        let reader = self.reader.as_ref().expect("just set");
        let round = Round::new(&reader.map, Some(&self.source_meta), &self.target_meta);
        let owned: Vec<(String, Vec<GroupOffset>)> = groups
            .into_iter()
            .map(|(group, offsets)| {
                let owned = offsets
                    .into_iter()
                    .filter(|o| routes.contains_key(&o.topic) && self.shared.owns(&o.topic, o.partition))
                    .collect();
                (group, owned)
            })
            .collect();
        let partitions: std::collections::BTreeSet<(String, i32)> =
            owned.iter().flat_map(|(_, o)| o.iter().map(|o| (o.topic.clone(), o.partition))).collect();
        let selector = TopicSelector::new(&self.flow);
        let partitions: Vec<(String, String, i32)> = partitions
            .into_iter()
            .map(|(t, p)| (selector.target_topic(&t), t, p))
            .map(|(tt, t, p)| (t, tt, p))
            .collect();
        round.prefetch(&partitions);
        for (group, owned) in owned {
            if owned.is_empty() {
                continue;
            }
            let translated = translate_group(&self.flow, &round, &owned);
            per_group.push((group, translated));
        }
        drop(round);
        // Do not start group requests to the target when it just failed to answer a
        // metadata request: they would only wait out the outage.
        let map_topic = crate::offset_map::map_topic(&self.flow.source);
        let target_up = self
            .target_meta
            .fetch_metadata(Some(&map_topic), Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty());
        for (group, translated) in &per_group {
            self.emit(group, translated);
        }
        let synced = target_up
            && self
                .sync_target_groups(&per_group)
                .inspect_err(|e| {
                    metrics::error(&self.name, "checkpoint");
                    tracing::warn!(flow = %self.name, "checkpoints: syncing target groups: {e}");
                })
                .is_ok();
        let mut positions = Vec::new();
        for (group, translated) in &per_group {
            let on_target = self.target_groups.as_ref().filter(|_| synced).map(|t| t.committed_of(group, translated));
            positions.extend(group_positions(group, translated, on_target.as_ref()));
        }
        *self.shared.groups.lock().unwrap() = positions;
        self.shared.last_checkpoint_ms.store(now_ms(), std::sync::atomic::Ordering::SeqCst);
        metrics::checkpoint_round(&self.name, started.elapsed().as_secs_f64(), per_group.len());
        Ok(())
    }

    /// The committed offsets of every selected source group, from `__consumer_offsets`
    /// (one consumer for all groups, see [`GroupOffsets`]) or, with
    /// `group_offsets_source = "admin"`, with one OffsetFetch admin request per group.
    fn source_group_offsets(&mut self) -> Result<Vec<(String, Vec<GroupOffset>)>, ClusterError> {
        if self.flow.group_offsets_source == GroupOffsetsSource::Admin {
            return self.source_group_offsets_by_admin();
        }
        if self.group_offsets.is_none() {
            self.group_offsets = GroupOffsets::of_source(&self.source, &self.flow, REQUEST_TIMEOUT)?;
        }
        // No `__consumer_offsets` yet: no group has ever committed on the source.
        let Some(offsets) = self.group_offsets.as_mut() else { return Ok(Vec::new()) };
        // The first round reads the whole compacted topic; later ones only what is new.
        offsets.catch_up(&self.source, CATCH_UP_TIMEOUT)?;
        Ok(offsets.groups().map(|(g, o)| (g.to_string(), o)).collect())
    }

    fn source_group_offsets_by_admin(&self) -> Result<Vec<(String, Vec<GroupOffset>)>, ClusterError> {
        let groups = self
            .source_meta
            .fetch_group_list(None, REQUEST_TIMEOUT)
            .map_err(|e| self.source.request_error("listing consumer groups", e))?;
        let mut out = Vec::new();
        let selector = crate::naming::GroupSelector::new(&self.flow);
        for group in groups.groups().iter().map(|g| g.name()).filter(|g| selector.selects(g)) {
            // One group strait cannot read (say, not authorized) must not stop the others.
            match kafka_ext::list_group_offsets(self.source_admin.inner(), group, GROUP_REQUEST_TIMEOUT) {
                Ok(offsets) => out.push((group.to_string(), offsets)),
                Err(e) => {
                    metrics::error(&self.name, "checkpoint");
                    tracing::warn!(flow = %self.name, "checkpoints: reading offsets of group `{group}`: {e}");
                }
            }
        }
        Ok(out)
    }

    fn emit(&mut self, group: &str, translated: &[TranslatedOffset]) {
        let topic = checkpoints_topic(&self.flow.source);
        for t in translated {
            let Some(downstream) = t.downstream else { continue };
            let id = (group.to_string(), t.target_topic.clone(), t.partition);
            let fresh = match self.emitted.get(&id) {
                Some((u, d, at)) => (*u, *d) != (t.upstream, downstream) || at.elapsed() >= REEMIT_AFTER,
                None => true,
            };
            if !fresh {
                continue;
            }
            let key = mm2::checkpoint_key(group, &t.target_topic, t.partition);
            let value = mm2::checkpoint_value(t.upstream, downstream, "");
            // MirrorMaker 2 writes every checkpoint to partition 0.
            let record = BaseRecord::to(&topic).partition(0).key(&key).payload(&value);
            match self.target_producer.send(record) {
                Ok(()) => {
                    self.emitted.insert(id, (t.upstream, downstream, Instant::now()));
                }
                Err((e, _)) => tracing::warn!(flow = %self.name, "checkpoint for `{group}` not written: {e}"),
            }
        }
    }

    fn sync_target_groups(&mut self, per_group: &[(String, Vec<TranslatedOffset>)]) -> Result<(), ClusterError> {
        if self.target_groups.is_none() {
            self.target_groups = Some(TargetGroups::new(&self.flow, &self.target)?);
        }
        self.target_groups.as_mut().expect("just set").sync(per_group)
    }
}

/// What `/status` shows of a group's translated partitions. `on_target` is the group's
/// committed offsets on the target, None when they could not be read; a partition
/// without one there counts from 0, as `strait_group_offset_lag_records` does.
pub fn group_positions(
    group: &str,
    translated: &[TranslatedOffset],
    on_target: Option<&HashMap<(String, i32), i64>>,
) -> Vec<GroupPosition> {
    translated
        .iter()
        .map(|t| {
            let committed = on_target.and_then(|c| c.get(&(t.target_topic.clone(), t.partition)).copied());
            GroupPosition {
                group: group.to_string(),
                source_topic: t.source_topic.clone(),
                target_topic: t.target_topic.clone(),
                partition: t.partition,
                source_committed: t.upstream,
                translated: t.downstream,
                note: t.note.to_string(),
                target_committed: committed,
                would_reread: t.downstream.zip(on_target).map(|(d, _)| (d - committed.unwrap_or(0)).max(0)),
            }
        })
        .collect()
}

/// Whether `group` has members on the cluster `client` talks to.
pub fn has_active_members<C: rdkafka::consumer::ConsumerContext>(
    client: &rdkafka::consumer::BaseConsumer<C>,
    group: &str,
) -> Result<bool, rdkafka::error::KafkaError> {
    let list = client.fetch_group_list(Some(group), REQUEST_TIMEOUT)?;
    Ok(list.groups().iter().any(|g| g.name() == group && !g.members().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_positions_say_what_a_switch_without_failover_rereads() {
        let t = |partition, downstream| TranslatedOffset {
            source_topic: "t".into(),
            target_topic: "us-east.t".into(),
            partition,
            upstream: 100,
            downstream,
            note: if downstream.is_some() { "exact" } else { "not yet mirrored" },
        };
        let translated = [t(0, Some(90)), t(1, Some(40)), t(2, None)];
        let on_target = HashMap::from([(("us-east.t".to_string(), 0), 85), (("us-east.t".to_string(), 2), 7)]);
        let positions = group_positions("g", &translated, Some(&on_target));
        let rereads: Vec<_> = positions.iter().map(|p| (p.target_committed, p.would_reread)).collect();
        assert_eq!(rereads, [(Some(85), Some(5)), (None, Some(40)), (Some(7), None)]);
        assert_eq!(positions[2].note, "not yet mirrored");
        // The target did not answer: nothing known there.
        let unknown = group_positions("g", &translated, None);
        assert!(unknown.iter().all(|p| p.target_committed.is_none() && p.would_reread.is_none()));
        assert_eq!(unknown[0].translated, Some(90));
    }

    #[test]
    fn checkpoint_encoding_matches_mirrormaker2() {
        assert_eq!(
            mm2::checkpoint_key("g", "us-east.t", 3),
            [&[0, 1][..], b"g", &[0, 9], b"us-east.t", &[0, 0, 0, 3]].concat()
        );
        let v = mm2::checkpoint_value(10, 7, "");
        assert_eq!(v, [&[0, 0][..], &10i64.to_be_bytes(), &7i64.to_be_bytes(), &[0, 0]].concat());
        assert_eq!(mm2::heartbeat_timestamp(&mm2::heartbeat_value(1234)), Some(1234));
        assert_eq!(
            mm2::decode_checkpoint_key(&mm2::checkpoint_key("g", "us-east.t", 3)),
            Some(("g".into(), "us-east.t".into(), 3))
        );
        assert_eq!(mm2::decode_checkpoint_value(&v), Some((10, 7)));
    }
}
