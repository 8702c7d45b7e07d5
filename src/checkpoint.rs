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
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio::sync::watch;

use crate::cluster::{Cluster, ClusterError};
use crate::config::FlowConfig;
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
    let selector = TopicSelector::new(flow);
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
    source_producer: ThreadedProducer<DefaultProducerContext>,
    target_producer: ThreadedProducer<DefaultProducerContext>,
    reader: Option<MapReader>,
    emitted: HashMap<(String, String, i32), (i64, i64, Instant)>,
    /// Follows the flow's mirrored heartbeats on the target.
    heartbeats: Option<rdkafka::consumer::BaseConsumer>,
    /// Per synced group, a non-joining consumer on the target (see `sync_group`).
    target_groups: HashMap<String, rdkafka::consumer::BaseConsumer>,
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
        let producer = |c: &Cluster| -> Result<ThreadedProducer<DefaultProducerContext>, ClusterError> {
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
            emitted: HashMap::new(),
            heartbeats: None,
            target_groups: HashMap::new(),
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
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.target_producer.flush(Duration::from_secs(10));
        let _ = self.source_producer.flush(Duration::from_secs(10));
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
        if self.reader.is_none() {
            self.reader = Some(MapReader::new(&self.target, &self.flow)?);
        }
        let reader = self.reader.as_mut().expect("just set");
        reader.catch_up(&self.target, REQUEST_TIMEOUT)?;
        if self.last_prune.elapsed() >= self.flow.checkpoint_interval() * PRUNE_EVERY_ROUNDS {
            self.last_prune = Instant::now();
            self.prune_offset_map();
        }
        let reader = self.reader.as_ref().expect("just set");
        let routes = self.routes.borrow().clone();
        let groups = self
            .source_meta
            .fetch_group_list(None, REQUEST_TIMEOUT)
            .map_err(|e| self.source.request_error("listing consumer groups", e))?;
        let names: Vec<String> =
            groups.groups().iter().map(|g| g.name().to_string()).filter(|g| self.flow.selects_group(g)).collect();
        let mut per_group = Vec::new();
        let round = Round::new(&reader.map, Some(&self.source_meta), &self.target_meta);
        for group in names {
            // One group strait cannot read (say, not authorized) must not stop the others.
            let offsets = match kafka_ext::list_group_offsets(self.source_admin.inner(), &group, GROUP_REQUEST_TIMEOUT)
            {
                Ok(o) => o,
                Err(e) => {
                    metrics::error(&self.name, "checkpoint");
                    tracing::warn!(flow = %self.name, "checkpoints: reading offsets of group `{group}`: {e}");
                    continue;
                }
            };
            let owned: Vec<GroupOffset> = offsets
                .into_iter()
                .filter(|o| routes.contains_key(&o.topic) && self.shared.owns(&o.topic, o.partition))
                .collect();
            if owned.is_empty() {
                continue;
            }
            let translated = translate_group(&self.flow, &round, &owned);
            per_group.push((group, translated));
        }
        drop(round);
        // Group requests to the target wait out outages (GROUP_REQUEST_TIMEOUT); do not
        // start them when the target just failed to answer a metadata request.
        let map_topic = crate::offset_map::map_topic(&self.flow.source);
        let target_up = self
            .target_meta
            .fetch_metadata(Some(&map_topic), Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty());
        self.target_groups.retain(|g, _| per_group.iter().any(|(name, _)| name == g));
        let mut positions = Vec::new();
        for (group, translated) in per_group {
            self.emit(&group, &translated);
            let on_target = if target_up {
                let synced = self
                    .target_committed(&group, &translated)
                    .and_then(|current| self.sync_group(&group, &translated, &current).map(|()| current));
                synced
                    .inspect_err(|e| {
                        metrics::error(&self.name, "checkpoint");
                        tracing::warn!(flow = %self.name, "checkpoints: {e}");
                    })
                    .ok()
            } else {
                None
            };
            positions.extend(group_positions(&group, &translated, on_target.as_ref()));
        }
        *self.shared.groups.lock().unwrap() = positions;
        self.shared.last_checkpoint_ms.store(now_ms(), std::sync::atomic::Ordering::SeqCst);
        Ok(())
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

    /// The group's committed offsets on the target for the partitions it has a
    /// translated position in, and how far they trail it (a metric).
    ///
    /// This goes through the consumer-group protocol (a non-joining consumer with the
    /// group's id), not the admin API: librdkafka 2.12 can abort the process when a
    /// group admin request meets a coordinator that goes away, as a target outage does.
    fn target_committed(
        &mut self,
        group: &str,
        translated: &[TranslatedOffset],
    ) -> Result<HashMap<(String, i32), i64>, ClusterError> {
        if !self.target_groups.contains_key(group) {
            let client = self.target.group_client(group)?;
            self.target_groups.insert(group.to_string(), client);
        }
        let client = &self.target_groups[group];
        let mut partitions = rdkafka::TopicPartitionList::new();
        for t in translated.iter().filter(|t| t.downstream.is_some()) {
            let _ = partitions.add_partition(&t.target_topic, t.partition);
        }
        if partitions.count() == 0 {
            return Ok(HashMap::new());
        }
        let committed = client
            .committed_offsets(partitions, REQUEST_TIMEOUT)
            .map_err(|e| self.target.request_error(format!("reading offsets of group `{group}`"), e))?;
        let current: HashMap<(String, i32), i64> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect();
        for t in translated {
            if let Some(d) = t.downstream {
                let on_target = current.get(&(t.target_topic.clone(), t.partition)).copied().unwrap_or(0);
                metrics::group_offset_lag(&self.name, group, &t.target_topic, t.partition, (d - on_target).max(0));
            }
        }
        Ok(current)
    }

    /// With `sync_group_offsets`, commits the translated offsets into the same group on
    /// the target while it is idle there; never backwards. `current` is what
    /// [`Checkpointer::target_committed`] read.
    fn sync_group(
        &self,
        group: &str,
        translated: &[TranslatedOffset],
        current: &HashMap<(String, i32), i64>,
    ) -> Result<(), ClusterError> {
        let Some(client) = self.target_groups.get(group) else { return Ok(()) };
        if translated.iter().all(|t| t.downstream.is_none()) {
            return Ok(());
        }
        if !self.flow.sync_group_offsets
            || has_active_members(&self.target_meta, group)
                .map_err(|e| self.target.request_error(format!("describing group `{group}`"), e))?
        {
            return Ok(());
        }
        let mut forward = rdkafka::TopicPartitionList::new();
        for t in translated {
            let Some(d) = t.downstream else { continue };
            let now = current.get(&(t.target_topic.clone(), t.partition)).copied().unwrap_or(-1);
            if d > now {
                let _ = forward.add_partition_offset(&t.target_topic, t.partition, rdkafka::Offset::Offset(d));
            }
        }
        if forward.count() == 0 {
            return Ok(());
        }
        // Committed from outside the group: the broker refuses it if a member joined
        // since the check above, which is what we want.
        match client.commit(&forward, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => {
                tracing::debug!(flow = %self.name, group, partitions = forward.count(), "group offsets synced to target")
            }
            Err(e) => tracing::debug!(flow = %self.name, group, "group offset sync skipped: {e}"),
        }
        Ok(())
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
