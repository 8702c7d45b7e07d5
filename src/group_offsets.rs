//! Committed offsets of every consumer group of interest at once, read from the source
//! cluster's `__consumer_offsets` topic instead of with one OffsetFetch per group.
//!
//! Why: the checkpointer needs the committed offsets of every selected group on every
//! round. One admin request per group costs a round trip each (minutes per round at
//! thousands of groups), and group admin requests are the ones librdkafka 2.12 can abort
//! on when the coordinator vanishes (docs/architecture.md). The group coordinator keeps
//! each commit as a record in `__consumer_offsets`; a plain consumer (no group, no
//! admin API) that tails the topic sees every commit of every group as it happens,
//! with one fetch per broker. It keeps only what the flow selects (its groups and its
//! topics), so memory is proportional to the offsets strait translates.
//!
//! The record format is Kafka's (group coordinator `OffsetCommitKey` /
//! `OffsetCommitValue`): the key starts with an INT16 record type, 0 or 1 for an
//! offset commit, followed by group (STRING), topic (STRING) and partition (INT32);
//! other types (group metadata, the new consumer protocol's records) are skipped. The
//! value starts with an INT16 version and then, in every version, the INT64 offset. A
//! null value (tombstone) deletes the commit: the offset expired or the group was
//! deleted. Transactional commits (a transactional producer's `sendOffsetsToTransaction`)
//! count only once their transaction commits: this consumer reads `read_committed`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::cluster::{Cluster, ClusterError};
use crate::config::FlowConfig;
use crate::kafka_ext::GroupOffset;
use crate::naming::{GroupSelector, TopicSelector};

/// Kafka's internal topic holding every group's committed offsets.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// Follows `__consumer_offsets` on one cluster and keeps the committed offsets of the
/// groups and topics a flow selects.
pub(crate) struct GroupOffsets {
    consumer: BaseConsumer,
    partitions: Vec<i32>,
    /// Per partition, the offset after the last record read.
    read: HashMap<i32, i64>,
    commits: Commits,
}

/// Which commits to keep: `(group, topic) -> bool`.
pub(crate) type Keep = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The commits read so far that [`Keep`] accepts.
struct Commits {
    keep: Keep,
    /// group → (topic, partition) → committed offset (the group's next record).
    offsets: BTreeMap<String, BTreeMap<(String, i32), i64>>,
}

impl GroupOffsets {
    /// Follows the commits of the groups `flow` selects in the topics it mirrors (on
    /// its source cluster).
    pub(crate) fn of_source(
        cluster: &Cluster,
        flow: &FlowConfig,
        timeout: Duration,
    ) -> Result<Option<GroupOffsets>, ClusterError> {
        let (groups, topics) = (GroupSelector::new(flow), TopicSelector::new(flow));
        let keep = move |group: &str, topic: &str| groups.selects(group) && topics.select(topic).is_ok();
        GroupOffsets::new(cluster, Box::new(keep), timeout)
    }

    /// Follows the commits of the groups `flow` selects, in any topic (on its target
    /// cluster, where they commit to the mirrored topics after a failover).
    pub(crate) fn of_target(
        cluster: &Cluster,
        flow: &FlowConfig,
        timeout: Duration,
    ) -> Result<Option<GroupOffsets>, ClusterError> {
        let groups = GroupSelector::new(flow);
        GroupOffsets::new(cluster, Box::new(move |group: &str, _: &str| groups.selects(group)), timeout)
    }

    /// Assigns every partition of `__consumer_offsets` from its start (the topic is
    /// compacted: what is left is every live commit and recent tombstones). None while
    /// the topic does not exist: no group has ever committed on this cluster (the
    /// broker creates it with the first commit), so callers ask again next round.
    fn new(cluster: &Cluster, keep: Keep, timeout: Duration) -> Result<Option<GroupOffsets>, ClusterError> {
        let consumer = cluster.metadata_client()?;
        let what = format!("reading `{CONSUMER_OFFSETS}`");
        let metadata =
            consumer.fetch_metadata(Some(CONSUMER_OFFSETS), timeout).map_err(|e| cluster.request_error(&what, e))?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == CONSUMER_OFFSETS) else {
            return Ok(None);
        };
        match topic.error() {
            None => {}
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => return Ok(None),
            // Say, not authorized: strait's principal needs DESCRIBE and READ on it, or
            // the flow `group_offsets_source = "admin"`.
            Some(e) => {
                return Err(cluster.request_error(
                    &what,
                    format!(
                        "{} (strait needs DESCRIBE and READ on `{CONSUMER_OFFSETS}`, or set the flow's \
                         group_offsets_source = \"admin\")",
                        RDKafkaErrorCode::from(e)
                    ),
                ))
            }
        }
        let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if partitions.is_empty() {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition_offset(CONSUMER_OFFSETS, p, Offset::Beginning)
                .map_err(|e| cluster.request_error(&what, e))?;
        }
        consumer.assign(&tpl).map_err(|e| cluster.request_error(&what, e))?;
        Ok(Some(GroupOffsets {
            consumer,
            partitions,
            read: HashMap::new(),
            commits: Commits { keep, offsets: BTreeMap::new() },
        }))
    }

    /// Applies every commit made before this call (up to each partition's end, or its
    /// last stable offset while a transaction is open), reading with one fetch per
    /// broker.
    pub(crate) fn catch_up(&mut self, cluster: &Cluster, timeout: Duration) -> Result<(), ClusterError> {
        let what = || format!("reading `{CONSUMER_OFFSETS}`");
        let keys: Vec<(String, i32)> = self.partitions.iter().map(|&p| (CONSUMER_OFFSETS.to_string(), p)).collect();
        let listed = |which| {
            crate::lag::list_offsets(&self.consumer, &keys, which)
                .ok_or_else(|| cluster.request_error(what(), "listing its offsets failed"))
        };
        let (starts, ends) = (listed(Offset::Beginning)?, listed(Offset::End)?);
        if starts.len() < keys.len() || ends.len() < keys.len() {
            // A partition not read would look caught up.
            return Err(cluster.request_error(what(), "some partitions did not answer ListOffsets"));
        }
        // A partition with nothing left to read (empty, or compacted away) has no
        // position to wait for.
        let mut behind: HashMap<i32, i64> = ends
            .into_iter()
            .filter(|(key, end)| starts.get(key).is_some_and(|start| start < end))
            .map(|((_, p), end)| (p, end))
            .collect();
        let deadline = Instant::now() + timeout;
        loop {
            let read = &self.read;
            let positions = self.positions();
            behind.retain(|p, end| {
                let at = read.get(p).copied().max(positions.get(p).copied());
                at.is_none_or(|at| at < *end)
            });
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(cluster.request_error(what(), format!("timed out, {} partitions behind", behind.len())));
            }
            // Drain what is buffered for a moment, then look at the positions again: on
            // a busy cluster commits never stop arriving, so "until nothing is left"
            // would never end.
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                match self.consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        self.read.insert(m.partition(), m.offset() + 1);
                        self.commits.apply(m.key(), m.payload());
                    }
                    Some(Err(e)) => return Err(cluster.request_error(what(), e)),
                    None => break,
                }
            }
        }
    }

    /// The consumer's positions: the next offset it will return per partition. They
    /// step over transaction markers and aborted records, which are never returned.
    fn positions(&self) -> HashMap<i32, i64> {
        let Ok(tpl) = self.consumer.position() else { return HashMap::new() };
        tpl.elements().iter().filter_map(|e| Some((e.partition(), e.offset().to_raw().filter(|&o| o >= 0)?))).collect()
    }

    /// The committed offset of `group` in one partition, if it has one.
    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.commits.offsets.get(group)?.get(&(topic.to_string(), partition)).copied()
    }

    /// Every kept group with its committed offsets.
    pub(crate) fn groups(&self) -> impl Iterator<Item = (&str, Vec<GroupOffset>)> {
        self.commits.offsets.iter().map(|(group, commits)| {
            let offsets = commits
                .iter()
                .filter(|(_, &offset)| offset >= 0)
                .map(|((topic, partition), &offset)| GroupOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                })
                .collect();
            (group.as_str(), offsets)
        })
    }
}

impl Commits {
    /// Applies one `__consumer_offsets` record.
    fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some((group, topic, partition)) = key.and_then(decode_commit_key) else { return };
        if !(self.keep)(&group, &topic) {
            return;
        }
        match value.map(decode_commit_value) {
            Some(Some(offset)) => {
                self.offsets.entry(group).or_default().insert((topic, partition), offset);
            }
            Some(None) => tracing::debug!(group, topic, partition, "unreadable commit in {CONSUMER_OFFSETS}"),
            None => {
                if let Some(commits) = self.offsets.get_mut(&group) {
                    commits.remove(&(topic, partition));
                    if commits.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
        }
    }
}

fn read_string(input: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(i16::from_be_bytes(input.get(..2)?.try_into().ok()?)).ok()?;
    let text = std::str::from_utf8(input.get(2..2 + len)?).ok()?.to_string();
    *input = &input[2 + len..];
    Some(text)
}

/// (group, topic, partition) of an offset-commit key; None for other record types.
pub(crate) fn decode_commit_key(key: &[u8]) -> Option<(String, String, i32)> {
    let record_type = i16::from_be_bytes(key.get(..2)?.try_into().ok()?);
    if record_type != 0 && record_type != 1 {
        return None;
    }
    let mut rest = &key[2..];
    let group = read_string(&mut rest)?;
    let topic = read_string(&mut rest)?;
    let partition = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    Some((group, topic, partition))
}

/// The committed offset of an offset-commit value (every version, 0 to 4, starts
/// with it right after the INT16 version).
pub(crate) fn decode_commit_value(value: &[u8]) -> Option<i64> {
    let version = i16::from_be_bytes(value.get(..2)?.try_into().ok()?);
    if !(0..=4).contains(&version) {
        return None;
    }
    Some(i64::from_be_bytes(value.get(2..10)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn decodes_offset_commit_records_and_skips_others() {
        let mut key = 1i16.to_be_bytes().to_vec();
        string(&mut key, "orders-app");
        string(&mut key, "orders");
        key.extend_from_slice(&7i32.to_be_bytes());
        assert_eq!(decode_commit_key(&key), Some(("orders-app".into(), "orders".into(), 7)));
        // Group metadata (type 2) and the consumer protocol's records are not commits.
        let mut metadata = 2i16.to_be_bytes().to_vec();
        string(&mut metadata, "orders-app");
        assert_eq!(decode_commit_key(&metadata), None);
        assert_eq!(decode_commit_key(&key[..5]), None);

        // Version 3: offset, leader epoch, metadata, commit timestamp.
        let mut value = 3i16.to_be_bytes().to_vec();
        value.extend_from_slice(&1234i64.to_be_bytes());
        value.extend_from_slice(&5i32.to_be_bytes());
        string(&mut value, "");
        value.extend_from_slice(&99i64.to_be_bytes());
        assert_eq!(decode_commit_value(&value), Some(1234));
        let mut unknown = 9i16.to_be_bytes().to_vec();
        unknown.extend_from_slice(&1i64.to_be_bytes());
        assert_eq!(decode_commit_value(&unknown), None);
    }
}
