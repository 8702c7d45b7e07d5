//! Target-side group offset sync: commits each group's translated offsets into the
//! same-named group on the target while it is idle there, never backwards, and
//! reports how far the target group trails its translation.
//!
//! Built for a thousand groups: what the target groups have committed is read in bulk
//! from the target's `__consumer_offsets` ([`GroupOffsets`]), which groups have members
//! with one group listing, and only groups whose translation moved past their target
//! commit get a request at all. An idle round sends no group request.
//!
//! Commits go through the consumer-group protocol (a non-joining consumer carrying the
//! group's id, OffsetCommit), not the admin API: librdkafka 2.12 can abort the process
//! when a group admin request meets a coordinator that goes away, as a target outage
//! does. Such a client is created per commit (its first request looks up the
//! coordinator, ~40 ms here, and closing it takes ~100 ms), so commits run on
//! [`COMMIT_THREADS`] threads at once.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::checkpoint::TranslatedOffset;
use crate::cluster::{Cluster, ClusterError};
use crate::config::FlowConfig;
use crate::group_offsets::GroupOffsets;
use crate::metrics;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many groups are committed to at once.
const COMMIT_THREADS: usize = 8;

/// The target side of one flow's group sync.
pub(crate) struct TargetGroups {
    flow: FlowConfig,
    name: String,
    target: Cluster,
    meta: BaseConsumer,
    /// Follows the target's `__consumer_offsets` (created on first use).
    committed: Option<GroupOffsets>,
}

/// One group's commit: the group and the offsets that move it forward.
struct Commit {
    group: String,
    offsets: TopicPartitionList,
}

impl TargetGroups {
    pub(crate) fn new(flow: &FlowConfig, target: &Cluster) -> Result<TargetGroups, ClusterError> {
        Ok(TargetGroups {
            flow: flow.clone(),
            name: flow.name(),
            target: target.clone(),
            meta: target.metadata_client()?,
            committed: None,
        })
    }

    /// Reports every group's lag on the target and (with `sync_group_offsets`) moves
    /// idle groups forward to their translation.
    pub(crate) fn sync(&mut self, groups: &[(String, Vec<TranslatedOffset>)]) -> Result<(), ClusterError> {
        if self.committed.is_none() {
            self.committed = GroupOffsets::of_target(&self.target, &self.flow, REQUEST_TIMEOUT)?;
        }
        // Still None: the target has no `__consumer_offsets`, so no group ever committed
        // there and every translation moves its group forward.
        if let Some(committed) = self.committed.as_mut() {
            committed.catch_up(&self.target, Duration::from_secs(60))?;
        }
        let committed = self.committed.as_ref();
        let mut commits = Vec::new();
        for (group, translated) in groups {
            let mut offsets = TopicPartitionList::new();
            for t in translated {
                let Some(d) = t.downstream else { continue };
                let now = committed.and_then(|c| c.committed(group, &t.target_topic, t.partition));
                metrics::group_offset_lag(
                    &self.name,
                    group,
                    &t.target_topic,
                    t.partition,
                    (d - now.unwrap_or(0)).max(0),
                );
                if now.is_none_or(|now| d > now) {
                    let _ = offsets.add_partition_offset(&t.target_topic, t.partition, Offset::Offset(d));
                }
            }
            if offsets.count() > 0 {
                commits.push(Commit { group: group.clone(), offsets });
            }
        }
        if !self.flow.sync_group_offsets || commits.is_empty() {
            return Ok(());
        }
        let active = self.groups_with_members()?;
        commits.retain(|c| !active.contains(&c.group));
        self.commit_all(commits);
        Ok(())
    }

    /// `group`'s committed offsets on the target in the partitions of `translated`, as
    /// the last [`TargetGroups::sync`] read them.
    pub(crate) fn committed_of(
        &self,
        group: &str,
        translated: &[TranslatedOffset],
    ) -> std::collections::HashMap<(String, i32), i64> {
        let Some(committed) = &self.committed else { return Default::default() };
        translated
            .iter()
            .filter_map(|t| {
                let offset = committed.committed(group, &t.target_topic, t.partition)?;
                Some(((t.target_topic.clone(), t.partition), offset))
            })
            .collect()
    }

    /// The target's groups that have members (one listing for all groups).
    fn groups_with_members(&self) -> Result<HashSet<String>, ClusterError> {
        let list = self
            .meta
            .fetch_group_list(None, REQUEST_TIMEOUT)
            .map_err(|e| self.target.request_error("listing consumer groups", e))?;
        Ok(list.groups().iter().filter(|g| !g.members().is_empty()).map(|g| g.name().to_string()).collect())
    }

    /// Commits from outside each group: the broker refuses a commit if a member joined
    /// since the listing above, which is what we want.
    fn commit_all(&self, commits: Vec<Commit>) {
        let per_thread = commits.len().div_ceil(COMMIT_THREADS).max(1);
        std::thread::scope(|scope| {
            for chunk in commits.chunks(per_thread) {
                scope.spawn(move || {
                    for commit in chunk {
                        self.commit(commit);
                    }
                });
            }
        });
    }

    fn commit(&self, commit: &Commit) {
        let group = &commit.group;
        match self.commit_forward(commit) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(flow = %self.name, group, partitions = n, "group offsets synced to target"),
            Err(e) => tracing::debug!(flow = %self.name, group, "group offset sync skipped: {e}"),
        }
    }

    /// Commits the partitions of `commit` whose translation is still ahead of what the
    /// group has committed: re-read right before committing, because a client that
    /// commits without joining (an `assign()` consumer, `--reset-offsets`) may have
    /// moved it since the bulk read, and that must never be moved backwards.
    fn commit_forward(&self, commit: &Commit) -> Result<usize, String> {
        let client = self.target.group_client(&commit.group).map_err(|e| e.to_string())?;
        let mut wanted = TopicPartitionList::new();
        for e in commit.offsets.elements() {
            wanted.add_partition(e.topic(), e.partition());
        }
        let current = client.committed_offsets(wanted, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
        let mut forward = TopicPartitionList::new();
        for e in commit.offsets.elements() {
            let Offset::Offset(d) = e.offset() else { continue };
            let now = current.find_partition(e.topic(), e.partition()).and_then(|c| c.offset().to_raw()).unwrap_or(-1);
            if d > now {
                let _ = forward.add_partition_offset(e.topic(), e.partition(), Offset::Offset(d));
            }
        }
        if forward.count() > 0 {
            client.commit(&forward, CommitMode::Sync).map_err(|e| e.to_string())?;
        }
        Ok(forward.count())
    }
}
