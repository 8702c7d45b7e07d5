//! Taking partitions over and giving them up: the consumer group's rebalance callbacks.
//!
//! Taking over (assignment) decides where mirroring resumes and claims the partition in
//! the offset map under a new, larger generation:
//! - it resumes at the later of the group's committed offset and the frontier stored
//!   in the map (both only ever cover records on the target), so a crash re-sends at
//!   most what was acknowledged after the last map write;
//! - if that position is below the source's log start, retention removed records
//!   before they were mirrored: they are counted and named, never passed over silently;
//! - if the target partition no longer holds what the map says strait wrote (the topic
//!   was deleted and recreated: its id changed, or its end fell below the map), the
//!   flow stops: see [`crate::recopy`].
//!
//! A partition that cannot be checked yet (the target does not answer) is left
//! unassigned and retried by the data path; nothing of it is fetched meanwhile.
//!
//! Giving up (revocation) waits only for the records of the partitions that leave,
//! stores their map, commits their progress, and only then lets them go, so the next
//! owner starts exactly where this one stopped. A *lost* assignment (the group evicted
//! this member: a pause or partition longer than the session timeout) is different:
//! another member may already own the partitions, so everything not yet sent is purged
//! at once and nothing is committed or mapped for them any more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{transaction, FlowShared, MirrorError};
use crate::cluster::Cluster;
use crate::kafka_ext;
use crate::metrics::{self, FlowMetrics};
use crate::naming::TopicSelector;
use crate::offset_map::writer::Ownership;
use crate::offset_map::MapReader;

/// How long a revocation waits for the target to acknowledge the records of the
/// partitions that leave.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer's context: rebalances, errors, statistics.
pub struct RebalanceHandler {
    pub(crate) shared: Arc<FlowShared>,
    /// The source cluster's alias, for logs.
    source_alias: String,
    takeover: std::sync::Mutex<Takeover>,
}

/// What taking a partition over needs besides the consumer.
pub(crate) struct Takeover {
    flow: crate::config::FlowConfig,
    target: Cluster,
    target_meta: BaseConsumer,
    map: Option<MapReader>,
    selector: TopicSelector,
    /// Partitions the group gave this member that could not be started yet.
    deferred: BTreeMap<(String, i32), ()>,
}

impl RebalanceHandler {
    pub(crate) fn new(
        shared: Arc<FlowShared>,
        flow: &crate::config::FlowConfig,
        source_alias: String,
        target: Cluster,
    ) -> Result<Self, crate::cluster::ClusterError> {
        let target_meta = target.metadata_client()?;
        let selector = TopicSelector::new(flow);
        let takeover =
            Takeover { flow: flow.clone(), target, target_meta, map: None, selector, deferred: BTreeMap::new() };
        Ok(RebalanceHandler { shared, source_alias, takeover: std::sync::Mutex::new(takeover) })
    }

    /// Starts partitions whose takeover was deferred (called by the data path).
    pub(crate) fn retry_deferred(&self, consumer: &BaseConsumer<RebalanceHandler>) {
        let mut takeover = self.takeover.lock().unwrap();
        if takeover.deferred.is_empty() {
            return;
        }
        let partitions: Vec<(String, i32)> = takeover.deferred.keys().cloned().collect();
        takeover.start(&self.shared, consumer, partitions);
    }

    fn assign(&self, consumer: &BaseConsumer<RebalanceHandler>, tpl: &TopicPartitionList) {
        let partitions: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        self.takeover.lock().unwrap().start(&self.shared, consumer, partitions);
    }

    fn revoke(&self, consumer: &BaseConsumer<RebalanceHandler>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let mut takeover = self.takeover.lock().unwrap();
        let mut leaving = Vec::new();
        for e in tpl.elements() {
            if takeover.deferred.remove(&(e.topic().to_string(), e.partition())).is_none() {
                if let Some(slot) = shared.slots.registry.lock().unwrap().get(e.topic(), e.partition()) {
                    if shared.slots.get(slot).assigned.load(Ordering::SeqCst) {
                        leaving.push((e.topic().to_string(), e.partition(), slot));
                    }
                }
            }
        }
        drop(takeover);
        if leaving.is_empty() {
            // librdkafka waits for the call even when nothing of ours leaves.
            unassign(consumer, &leaving);
            return;
        }
        if kafka_ext::assignment_lost(consumer.client()) {
            self.lose(consumer, &leaving);
        } else {
            self.hand_over(consumer, &leaving);
        }
    }

    /// Another member may own these partitions already: send nothing more, store and
    /// commit nothing for them.
    fn lose(&self, consumer: &BaseConsumer<RebalanceHandler>, leaving: &[(String, i32, usize)]) {
        let shared = &self.shared;
        // Nothing queued may reach the target now: another member owns these partitions.
        if let Err(e) = shared.restart_producer("partitions lost") {
            shared.refuse(e);
        }
        let mut writer = shared.writer.lock().unwrap();
        writer.purge();
        for (_, _, slot) in leaving {
            shared.slots.get(*slot).retire();
            writer.end(*slot);
        }
        drop(writer);
        unassign(consumer, leaving);
        metrics::partitions_lost(&shared.name, leaving.len());
        tracing::warn!(
            flow = %shared.name,
            partitions = leaving.len(),
            "this instance lost its partitions (no contact with the source group for longer than the session \
             timeout); records not yet sent were discarded, the new owner mirrors them"
        );
    }

    /// Exactly-once: commits the open transaction with the leaving partitions marked as
    /// given up, commits their progress to the source, then lets them go.
    fn hand_over_transaction(&self, consumer: &BaseConsumer<RebalanceHandler>, leaving: &[(String, i32, usize)]) {
        let shared = &self.shared;
        let slots: Vec<usize> = leaving.iter().map(|l| l.2).collect();
        if let Err(e) = shared.commit_transaction(consumer, &slots) {
            // The flow stops; the next owner fences this instance's producer.
            shared.refuse(e);
        }
        self.let_go(consumer, leaving);
        tracing::info!(flow = %shared.name, partitions = leaving.len(), "partitions revoked after committing");
    }

    /// Commits to the source what the target holds and the map stores of the leaving
    /// partitions, forgets them, and unassigns them.
    fn let_go(&self, consumer: &BaseConsumer<RebalanceHandler>, leaving: &[(String, i32, usize)]) {
        let shared = &self.shared;
        let mut positions = TopicPartitionList::new();
        let mut writer = shared.writer.lock().unwrap();
        for (topic, partition, slot) in leaving {
            let safe = shared.slots.get(*slot).safe_position();
            if let (Some(safe), Some(stored)) = (safe, writer.stored_frontier(*slot)) {
                let _ = positions.add_partition_offset(topic, *partition, Offset::Offset(safe.min(stored)));
            }
            shared.slots.get(*slot).retire();
            writer.end(*slot);
        }
        drop(writer);
        if positions.count() > 0 {
            if let Err(e) = consumer.commit(&positions, CommitMode::Sync) {
                metrics::error(&shared.name, "commit");
                tracing::warn!(flow = %shared.name, "revoke: committing progress failed: {e}");
            }
        }
        unassign(consumer, leaving);
    }

    /// Drains, maps and commits the leaving partitions, then lets them go.
    fn hand_over(&self, consumer: &BaseConsumer<RebalanceHandler>, leaving: &[(String, i32, usize)]) {
        let shared = &self.shared;
        if shared.exactly_once.is_some() {
            return self.hand_over_transaction(consumer, leaving);
        }
        let slots: Vec<usize> = leaving.iter().map(|l| l.2).collect();
        if !shared.wait_until_acknowledged(&slots, Instant::now() + DRAIN_TIMEOUT) {
            // The target does not answer: stop every record still queued so that none of
            // the leaving partitions lands after the next owner's copies. The partitions
            // that stay are re-sent from what the target acknowledged.
            if let Err(e) = shared.restart_producer("the target did not answer while partitions moved") {
                shared.refuse(e);
            }
            tracing::warn!(
                flow = %shared.name,
                "the target did not acknowledge within {DRAIN_TIMEOUT:?} while partitions moved to another \
                 instance; unsent records were discarded and will be mirrored by the new owner (a request the \
                 target still completes later may leave duplicates)"
            );
        }
        let updates = shared.map_updates(consumer, &slots);
        let mut writer = shared.writer.lock().unwrap();
        let stored = writer.write(updates).and_then(|_| writer.flush(Instant::now() + REQUEST_TIMEOUT));
        match stored {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(flow = %shared.name, "revoke: the offset map was not stored in time; the next owner re-sends from the last stored position")
            }
            Err(e) => tracing::warn!(flow = %shared.name, "revoke: {e}"),
        }
        drop(writer);
        self.let_go(consumer, leaving);
        tracing::info!(flow = %shared.name, partitions = leaving.len(), "partitions revoked after draining");
    }
}

fn unassign(consumer: &BaseConsumer<RebalanceHandler>, leaving: &[(String, i32, usize)]) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, _) in leaving {
        tpl.add_partition(topic, *partition);
    }
    if let Err(e) = consumer.incremental_unassign(&tpl) {
        tracing::debug!("incremental unassign: {e}");
    }
}

/// What a partition's takeover found out.
struct Start {
    topic: String,
    partition: i32,
    position: i64,
    ownership: Ownership,
    target_end: i64,
    source_end: i64,
}

impl Takeover {
    /// Starts `partitions` (assigns them with their resume position) or defers those
    /// that cannot be checked yet. Inside a rebalance librdkafka waits for the
    /// `incremental_assign` call, so it is made even when nothing can start now.
    fn start(
        &mut self,
        shared: &Arc<FlowShared>,
        consumer: &BaseConsumer<RebalanceHandler>,
        partitions: Vec<(String, i32)>,
    ) {
        let starts = if partitions.is_empty() {
            Vec::new()
        } else {
            match self.plan(shared, consumer, &partitions) {
                Ok(starts) => starts,
                Err(e) => {
                    tracing::warn!(flow = %shared.name, "taking over {} partition(s) deferred: {e}", partitions.len());
                    for p in partitions {
                        self.deferred.insert(p, ());
                    }
                    Vec::new()
                }
            }
        };
        let mut tpl = TopicPartitionList::new();
        let mut writer = shared.writer.lock().unwrap();
        for start in starts {
            self.deferred.remove(&(start.topic.clone(), start.partition));
            let Some(slot_index) = shared.slots.slot_for(&start.topic, start.partition) else {
                shared.refuse(MirrorError::TooManyPartitions { flow: shared.name.clone() });
                continue;
            };
            let slot = shared.slots.get(slot_index);
            let _ = slot.metrics.set(FlowMetrics::new(&shared.name, &start.topic));
            let epoch = slot.epoch.load(Ordering::SeqCst).wrapping_add(1);
            slot.begin_run(epoch, start.position, start.target_end - 1);
            slot.assigned.store(true, Ordering::SeqCst);
            writer.begin(slot_index, epoch, start.ownership, start.target_end, start.source_end);
            let _ = tpl.add_partition_offset(&start.topic, start.partition, Offset::Offset(start.position));
        }
        drop(writer);
        if tpl.count() > 0 {
            // Exactly-once: the claims commit before any record of these partitions is
            // sent, so the next owner knows whom to fence (see `transaction`).
            if let Err(e) = shared.commit_transaction(consumer, &[]) {
                shared.refuse(e);
                // The flow stops; librdkafka still waits for an assign call inside the
                // rebalance, and a consumer left waiting cannot close.
                let _ = consumer.incremental_assign(&TopicPartitionList::new());
                return;
            }
        }
        if let Err(e) = consumer.incremental_assign(&tpl) {
            shared.refuse(MirrorError::Other {
                flow: shared.name.clone(),
                message: format!("assigning partitions: {e}"),
            });
        }
        if tpl.count() > 0 {
            shared.rebalanced.store(true, Ordering::SeqCst);
            tracing::info!(flow = %shared.name, partitions = tpl.count(), "partitions assigned");
        }
    }

    fn plan(
        &mut self,
        shared: &FlowShared,
        consumer: &BaseConsumer<RebalanceHandler>,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Start>, String> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed: HashMap<(String, i32), i64> = consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| format!("reading the flow's committed offsets on the source: {e}"))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect();
        if self.map.is_none() {
            self.map = Some(MapReader::new(&self.target, &self.flow).map_err(|e| e.to_string())?);
        }
        let map = self.map.as_mut().expect("just set");
        map.catch_up(&self.target, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
        if shared.exactly_once.is_some() {
            // A frontier released by a live owner may sit behind another instance's open
            // transaction; those commit every commit interval, so wait a little for them.
            // A dead owner's transaction would hold the map until the transaction
            // timeout: not waited for here, the fencing below aborts it and reads on.
            let wait = (self.flow.commit_interval() * 3).clamp(Duration::from_secs(2), REQUEST_TIMEOUT);
            if let Err(e) = map.catch_up_through_transactions(&self.target, wait) {
                tracing::debug!(flow = %shared.name, "offset map behind an open transaction: {e}");
            }
        }
        transaction::fence_previous_owners(shared, &self.target, &self.flow, map, partitions, REQUEST_TIMEOUT)?;
        let target_topics: Vec<String> = {
            let set: HashSet<String> = partitions.iter().map(|(t, _)| self.selector.target_topic(t)).collect();
            set.into_iter().collect()
        };
        let ids = kafka_ext::topic_ids(self.target_meta.client(), &target_topics, REQUEST_TIMEOUT)
            .map_err(|e| format!("describing target topics on `{}`: {e}", self.target.alias))?;
        let mut starts = Vec::new();
        for (topic, partition) in partitions {
            let target_topic = self.selector.target_topic(topic);
            let (_, target_end) =
                self.target_meta.fetch_watermarks(&target_topic, *partition, REQUEST_TIMEOUT).map_err(|e| {
                    format!("reading the end of {target_topic}[{partition}] on `{}`: {e}", self.target.alias)
                })?;
            let (source_start, source_end) = consumer
                .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)
                .map_err(|e| format!("reading the offsets of {topic}[{partition}] on the source: {e}"))?;
            let stored = map.map.stored(topic, *partition);
            let latest = stored.as_ref().and_then(|s| s.latest()).copied();
            let target_id = ids.get(&target_topic).copied().unwrap_or([0; 16]);
            if let Some(latest) = &latest {
                let id_changed =
                    latest.target_topic_id != [0; 16] && target_id != [0; 16] && latest.target_topic_id != target_id;
                if id_changed || latest.frontier.next_downstream > target_end {
                    let detail = if id_changed {
                        "it was deleted and created again (its topic id changed)".to_string()
                    } else {
                        format!(
                            "it ends at offset {target_end}, below offset {} strait had written",
                            latest.frontier.next_downstream
                        )
                    };
                    shared.refuse(MirrorError::TargetTopicLost {
                        flow: shared.name.clone(),
                        topic: target_topic,
                        partition: *partition,
                        detail,
                    });
                    continue;
                }
            }
            let committed = committed.get(&(topic.clone(), *partition)).copied();
            let mirrored = latest.map(|l| l.frontier.upstream);
            let resume = committed.max(mirrored);
            let position = match resume {
                None => source_start,
                Some(p) if p < source_start => {
                    shared.records_lost(topic, *partition, p, source_start);
                    source_start
                }
                Some(p) if p > source_end => {
                    shared.refuse(MirrorError::SourceReset {
                        flow: shared.name.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        position: p,
                        end: source_end,
                    });
                    continue;
                }
                Some(p) => p,
            };
            let generation =
                stored.as_ref().map_or(0, |s| s.max_generation()).saturating_add(1).max(metrics::now_ms() as u64);
            starts.push(Start {
                topic: topic.clone(),
                partition: *partition,
                position,
                ownership: Ownership {
                    topic: Arc::from(topic.as_str()),
                    partition: *partition,
                    target_topic: Arc::from(target_topic.as_str()),
                    generation,
                    owned_from: position,
                    target_topic_id: target_id,
                },
                target_end,
                source_end,
            });
        }
        Ok(starts)
    }
}

impl ClientContext for RebalanceHandler {
    fn stats(&self, statistics: rdkafka::Statistics) {
        metrics::librdkafka_statistics(&self.shared.name, "consumer", &statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::logging::librdkafka(&self.source_alias, "consumer", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::source_error(&self.shared.name);
        self.shared.set_error(format!("source: {reason}"));
        crate::logging::librdkafka_error(&self.source_alias, "consumer", &error, reason);
    }
}

impl ConsumerContext for RebalanceHandler {
    /// Replaces rdkafka's default handling: partitions are assigned with the positions
    /// strait decides (never librdkafka's `auto.offset.reset`), and revoked only after
    /// they were drained.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(flow = %self.shared.name, "rebalance error: {:?}", other);
                let owned: Vec<(String, i32, usize)> =
                    self.shared.slots.owned().into_iter().map(|(t, p, s)| (t.to_string(), p, s)).collect();
                self.lose(consumer, &owned);
            }
        }
        self.shared.rebalanced.store(true, Ordering::SeqCst);
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.shared.commit_failed.store(true, Ordering::SeqCst);
            metrics::error(&self.shared.name, "commit");
            tracing::debug!(flow = %self.shared.name, "committing progress failed (retried at the next interval): {e}");
        }
    }
}
