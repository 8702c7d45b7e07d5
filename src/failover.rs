//! Moving a consumer group to the other region and back, exactly.
//!
//! `failover` commits into the group on the target the downstream position of the first
//! record the group had not consumed on the source; `failback` does the reverse with the
//! same flow's map, so the old primary needs no re-copy. Both refuse while the group has
//! active members on the side being written, because the broker would otherwise let
//! running consumers overwrite (or be overwritten by) the translated position.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use crate::checkpoint::{has_active_members, translate_group, Round, TranslatedOffset};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{Config, FlowConfig};
use crate::kafka_ext::{self, GroupOffset};
use crate::naming::TopicSelector;
use crate::offset_map::MapReader;

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long `failover` waits for the source to answer before treating it as gone.
const SOURCE_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("no flow `{wanted}` in the config (flows: {known})")]
    UnknownFlow { wanted: String, known: String },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("group `{group}` has no committed offsets on `{cluster}` for the topics of flow {flow}")]
    NoOffsets { group: String, cluster: String, flow: String },
    #[error(
        "group `{group}` has {members} active member(s) on `{cluster}`; stop its consumers there first \
         (committing now would race with them)"
    )]
    ActiveMembers { group: String, cluster: String, members: usize },
    #[error(
        "group `{group}` cannot be translated exactly on {partitions}. 'not yet mirrored': wait for \
         replication (--wait-for-zero-lag) and try again; 'older than the offset map': those records \
         were mirrored before strait kept a map for them"
    )]
    NotYetMirrored { group: String, partitions: String },
    #[error(
        "replication did not catch up within {timeout:?}: {records} record(s) not yet on `{target}` \
         (the RPO if you fail over now): {detail}"
    )]
    LagRemains { timeout: Duration, records: i64, target: String, detail: String },
    #[error(
        "the source region is unreachable and group `{group}` has no checkpoints on `{cluster}`: strait never \
         saw it commit offsets for this flow's topics, so there is no position to move it to"
    )]
    NoCheckpoints { group: String, cluster: String },
    #[error("committing offsets of group `{group}` on `{cluster}` failed: {reason}")]
    Commit { group: String, cluster: String, reason: String },
}

/// A flow and its two clusters, as named on the command line (`us-east->eu-west`).
pub struct FlowContext {
    pub flow: FlowConfig,
    pub source: Cluster,
    pub target: Cluster,
}

impl FlowContext {
    pub fn find(config: &Config, name: &str) -> Result<FlowContext, FailoverError> {
        let flow = config.flows.iter().find(|f| f.name() == name).ok_or_else(|| FailoverError::UnknownFlow {
            wanted: name.to_string(),
            known: config.flows.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
        })?;
        Ok(FlowContext {
            flow: flow.clone(),
            source: Cluster::new(&flow.source, config.cluster(&flow.source)),
            target: Cluster::new(&flow.target, config.cluster(&flow.target)),
        })
    }

    fn read_map(&self) -> Result<MapReader, FailoverError> {
        let mut reader = MapReader::new(&self.target, &self.flow)?;
        reader.catch_up(&self.target, TIMEOUT)?;
        Ok(reader)
    }

    /// Whether the source cluster answers a metadata request now.
    fn source_reachable(&self) -> bool {
        let Ok(meta) = self.source.metadata_client() else { return false };
        meta.fetch_metadata(None, SOURCE_PROBE_TIMEOUT).is_ok_and(|m| !m.brokers().is_empty())
    }

    /// The group's committed source offsets, translated.
    pub fn translate(&self, group: &str) -> Result<Vec<TranslatedOffset>, FailoverError> {
        let reader = self.read_map()?;
        self.translate_with(group, &reader)
    }

    fn translate_with(&self, group: &str, reader: &MapReader) -> Result<Vec<TranslatedOffset>, FailoverError> {
        let admin = self.source.admin()?;
        let offsets = kafka_ext::list_group_offsets(admin.inner(), group, TIMEOUT)
            .map_err(|e| self.source.request_error(format!("reading offsets of group `{group}`"), e))?;
        let target_meta = self.target.metadata_client()?;
        let source_meta = self.source.metadata_client()?;
        let round = Round::new(&reader.map, Some(&source_meta), &target_meta);
        let translated = translate_group(&self.flow, &round, &offsets);
        if translated.is_empty() {
            return Err(FailoverError::NoOffsets {
                group: group.to_string(),
                cluster: self.source.alias.clone(),
                flow: self.flow.name(),
            });
        }
        Ok(translated)
    }

    /// Records of the group's topics not yet mirrored, per partition. The map reader
    /// follows the map topic, so each call reads only what was written since the last.
    fn lag(&self, topics: &[String], reader: &mut MapReader) -> Result<Vec<(String, i32, i64)>, FailoverError> {
        reader.catch_up(&self.target, TIMEOUT)?;
        let meta = self.source.metadata_client()?;
        let all = self.source.topics(&meta, TIMEOUT)?;
        let mut lag = Vec::new();
        for (topic, partitions) in all.into_iter().filter(|(t, _)| topics.contains(t)) {
            for p in 0..partitions as i32 {
                let (low, high) = meta
                    .fetch_watermarks(&topic, p, TIMEOUT)
                    .map_err(|e| self.source.request_error(format!("reading end offset of {topic}[{p}]"), e))?;
                let frontier = reader.map.latest_frontier(&topic, p).map_or(low, |f| f.frontier.upstream.max(low));
                lag.push((topic.clone(), p, (high - frontier).max(0)));
            }
        }
        Ok(lag)
    }

    /// Moves `group` from the source to the target. When the source region does not
    /// answer, the group moves to the position of its last checkpoint on the target, and
    /// the output says what may be missing there (the RPO).
    pub fn failover(
        &self,
        group: &str,
        wait: Option<Duration>,
        out: &mut dyn Write,
    ) -> Result<Vec<TranslatedOffset>, FailoverError> {
        self.refuse_if_active(&self.target, group)?;
        if !self.source_reachable() {
            return self.failover_without_source(group, out);
        }
        let mut reader = self.read_map()?;
        if let Some(timeout) = wait {
            self.wait_for_zero_lag(group, timeout, &mut reader, out)?;
        }
        let translated = self.translate_with(group, &reader)?;
        let missing: Vec<String> = translated
            .iter()
            .filter(|t| t.downstream.is_none())
            .map(|t| format!("{}[{}]@{} ({})", t.source_topic, t.partition, t.upstream, t.note))
            .collect();
        if !missing.is_empty() {
            return Err(FailoverError::NotYetMirrored { group: group.to_string(), partitions: missing.join(", ") });
        }
        self.commit_translated(group, &translated)?;
        let _ = writeln!(out, "group `{group}` failed over from {} to {}:", self.source.alias, self.target.alias);
        print_table(out, &translated);
        Ok(translated)
    }

    fn wait_for_zero_lag(
        &self,
        group: &str,
        timeout: Duration,
        reader: &mut MapReader,
        out: &mut dyn Write,
    ) -> Result<(), FailoverError> {
        let admin = self.source.admin()?;
        let offsets = kafka_ext::list_group_offsets(admin.inner(), group, TIMEOUT)
            .map_err(|e| self.source.request_error(format!("reading offsets of group `{group}`"), e))?;
        let selector = TopicSelector::new(&self.flow);
        let mut topics: Vec<String> =
            offsets.into_iter().map(|o| o.topic).filter(|t| selector.select(t).is_ok()).collect();
        topics.sort();
        topics.dedup();
        let started = Instant::now();
        loop {
            let lag = self.lag(&topics, reader)?;
            let total: i64 = lag.iter().map(|(_, _, n)| n).sum();
            if total == 0 {
                let _ = writeln!(
                    out,
                    "replication caught up: every record of {} is on {}",
                    topics.join(", "),
                    self.target.alias
                );
                return Ok(());
            }
            let _ = writeln!(out, "waiting for replication: {total} record(s) not yet on {}", self.target.alias);
            if started.elapsed() >= timeout {
                let detail = lag
                    .iter()
                    .filter(|(_, _, n)| *n > 0)
                    .map(|(t, p, n)| format!("{t}[{p}]: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(FailoverError::LagRemains {
                    timeout,
                    records: total,
                    target: self.target.alias.clone(),
                    detail,
                });
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn commit_translated(&self, group: &str, translated: &[TranslatedOffset]) -> Result<(), FailoverError> {
        let commits: Vec<GroupOffset> = translated
            .iter()
            .filter_map(|t| {
                Some(GroupOffset { topic: t.target_topic.clone(), partition: t.partition, offset: t.downstream? })
            })
            .collect();
        self.commit(&self.target, group, &commits)
    }

    /// Failover with the source region gone: the group's position comes from its last
    /// checkpoint on the target (re-translated through the current map when possible).
    /// Records the group consumed on the source after that checkpoint are read again;
    /// records produced on the source but not mirrored are missing: the RPO table says
    /// how many were known, and since when nothing is known.
    fn failover_without_source(
        &self,
        group: &str,
        out: &mut dyn Write,
    ) -> Result<Vec<TranslatedOffset>, FailoverError> {
        let _ = writeln!(
            out,
            "{} is unreachable: failing group `{group}` over from its last checkpoints on {}",
            self.source.alias, self.target.alias
        );
        let reader = self.read_map()?;
        let checkpoints = read_checkpoints(&self.target, &self.flow.source, group)?;
        if checkpoints.is_empty() {
            return Err(FailoverError::NoCheckpoints { group: group.to_string(), cluster: self.target.alias.clone() });
        }
        let selector = TopicSelector::new(&self.flow);
        let source_of: HashMap<String, String> =
            reader.map.partitions().into_iter().map(|(t, _)| (selector.target_topic(&t), t)).collect();
        let target_meta = self.target.metadata_client()?;
        let round = Round::new(&reader.map, None, &target_meta);
        let mut translated = Vec::new();
        for ((target_topic, partition), (upstream, checkpointed)) in checkpoints {
            let Some(source_topic) = source_of.get(&target_topic) else { continue };
            let offset = GroupOffset { topic: source_topic.clone(), partition, offset: upstream };
            let mut row = translate_group(&self.flow, &round, &[offset]).pop().expect("one offset in, one out");
            if row.downstream.is_none() && row.note == "not yet mirrored" {
                // The map has not caught up with the checkpoint's view: it was exact then.
                row.downstream = Some(checkpointed);
                row.note = "checkpoint";
            }
            if row.downstream.is_none() {
                return Err(FailoverError::NotYetMirrored {
                    group: group.to_string(),
                    partitions: format!("{}[{}]@{} ({})", row.source_topic, row.partition, row.upstream, row.note),
                });
            }
            translated.push(row);
        }
        translated.sort_by(|a, b| (&a.source_topic, a.partition).cmp(&(&b.source_topic, b.partition)));
        self.commit_translated(group, &translated)?;
        let _ = writeln!(out, "group `{group}` failed over from {} to {}:", self.source.alias, self.target.alias);
        print_table(out, &translated);
        print_rpo(out, &reader.map, &translated);
        Ok(translated)
    }

    /// Moves `group` back from the target to the source, by inverting this flow's map.
    pub fn failback(&self, group: &str, out: &mut dyn Write) -> Result<Vec<GroupOffset>, FailoverError> {
        self.refuse_if_active(&self.source, group)?;
        let admin = self.target.admin()?;
        let on_target = kafka_ext::list_group_offsets(admin.inner(), group, TIMEOUT)
            .map_err(|e| self.target.request_error(format!("reading offsets of group `{group}`"), e))?;
        let selector = TopicSelector::new(&self.flow);
        let meta = self.source.metadata_client()?;
        let source_of: HashMap<String, String> = self
            .source
            .topics(&meta, TIMEOUT)?
            .into_iter()
            .filter(|(t, _)| selector.select(t).is_ok())
            .map(|(t, _)| (selector.target_topic(&t), t))
            .collect();
        let reader = self.read_map()?;
        let mut commits = Vec::new();
        let mut rows = Vec::new();
        for o in on_target {
            let Some(source_topic) = source_of.get(&o.topic) else { continue };
            let Some(upstream) = reader.map.partition(source_topic, o.partition).translate_back(o.offset) else {
                return Err(FailoverError::NotYetMirrored {
                    group: group.to_string(),
                    partitions: format!("{}[{}] (no offset map)", o.topic, o.partition),
                });
            };
            rows.push((o.topic.clone(), o.partition, o.offset, source_topic.clone(), upstream));
            commits.push(GroupOffset { topic: source_topic.clone(), partition: o.partition, offset: upstream });
        }
        if commits.is_empty() {
            return Err(FailoverError::NoOffsets {
                group: group.to_string(),
                cluster: self.target.alias.clone(),
                flow: self.flow.name(),
            });
        }
        self.commit(&self.source, group, &commits)?;
        rows.sort();
        let _ = writeln!(out, "group `{group}` failed back from {} to {}:", self.target.alias, self.source.alias);
        let _ = writeln!(
            out,
            "{:<40} {:>5} {:>14}   {:<40} {:>14}",
            "target topic", "part", "target offset", "source topic", "source offset"
        );
        for (tt, p, d, st, u) in rows {
            let _ = writeln!(out, "{tt:<40} {p:>5} {d:>14}   {st:<40} {u:>14}");
        }
        Ok(commits)
    }

    fn refuse_if_active(&self, cluster: &Cluster, group: &str) -> Result<(), FailoverError> {
        let meta = cluster.metadata_client()?;
        let list = meta
            .fetch_group_list(Some(group), TIMEOUT)
            .map_err(|e| cluster.request_error(format!("describing group `{group}`"), e))?;
        let members = list.groups().iter().filter(|g| g.name() == group).map(|g| g.members().len()).sum();
        if members > 0 || has_active_members(&meta, group).unwrap_or(false) {
            return Err(FailoverError::ActiveMembers {
                group: group.to_string(),
                cluster: cluster.alias.clone(),
                members,
            });
        }
        Ok(())
    }

    fn commit(&self, cluster: &Cluster, group: &str, offsets: &[GroupOffset]) -> Result<(), FailoverError> {
        let admin = cluster.admin()?;
        kafka_ext::alter_group_offsets(admin.inner(), group, offsets, TIMEOUT).map_err(|e| FailoverError::Commit {
            group: group.to_string(),
            cluster: cluster.alias.clone(),
            reason: e.to_string(),
        })
    }
}

/// Latest checkpoint per (target topic, partition): (upstream, downstream).
type Checkpoints = BTreeMap<(String, i32), (i64, i64)>;

/// The group's latest checkpoint per target partition: (upstream, downstream), read from
/// MirrorMaker 2's checkpoint topic on the target.
fn read_checkpoints(target: &Cluster, source_alias: &str, group: &str) -> Result<Checkpoints, FailoverError> {
    use rdkafka::message::Message;
    let topic = crate::topic_sync::checkpoints_topic(source_alias);
    let consumer = target.metadata_client()?;
    let (_, end) = consumer
        .fetch_watermarks(&topic, 0, TIMEOUT)
        .map_err(|e| target.request_error(format!("reading `{topic}`"), e))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let _ = tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning);
    consumer.assign(&tpl).map_err(|e| target.request_error(format!("reading `{topic}`"), e))?;
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut next = 0;
    while next < end {
        if Instant::now() > deadline {
            return Err(FailoverError::Cluster(target.request_error(format!("reading `{topic}`"), "timed out")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let decoded = m.key().and_then(crate::checkpoint::mm2::decode_checkpoint_key);
                if let (Some((g, t, p)), Some(value)) = (decoded, m.payload()) {
                    if g == group {
                        if let Some(offsets) = crate::checkpoint::mm2::decode_checkpoint_value(value) {
                            out.insert((t, p), offsets);
                        }
                    }
                }
            }
            Some(Err(e)) => return Err(FailoverError::Cluster(target.request_error(format!("reading `{topic}`"), e))),
            None => {}
        }
    }
    Ok(out)
}

/// What a source-less failover may have missed, per partition: the records the map knew
/// to be on the source but not yet mirrored, and since when nothing is known.
fn print_rpo(out: &mut dyn Write, map: &crate::offset_map::FlowMap, rows: &[TranslatedOffset]) {
    let _ = writeln!(out, "RPO (records on the source that may not be on the target):");
    let _ = writeln!(
        out,
        "{:<40} {:>5} {:>14} {:>14} {:>12}  as of",
        "source topic", "part", "mirrored up to", "source end", "missing"
    );
    for r in rows {
        let Some(f) = map.latest_frontier(&r.source_topic, r.partition) else { continue };
        let (end, missing) = if f.source_end >= 0 {
            (f.source_end.to_string(), (f.source_end - f.frontier.upstream).max(0).to_string())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        let age = (crate::metrics::now_ms() - f.written_ms).max(0) / 1000;
        let _ = writeln!(
            out,
            "{:<40} {:>5} {:>14} {:>14} {:>12}  {age} s ago, plus anything produced since",
            r.source_topic, r.partition, f.frontier.upstream, end, missing
        );
    }
}

/// The per-partition table of `offsets translate` and `failover`.
pub fn print_table(out: &mut dyn Write, rows: &[TranslatedOffset]) {
    let _ = writeln!(
        out,
        "{:<40} {:>5} {:>14}   {:<40} {:>14}  ",
        "source topic", "part", "source offset", "target topic", "target offset"
    );
    for r in rows {
        let target = r.downstream.map_or_else(|| "-".to_string(), |d| d.to_string());
        let _ = writeln!(
            out,
            "{:<40} {:>5} {:>14}   {:<40} {:>14}  {}",
            r.source_topic, r.partition, r.upstream, r.target_topic, target, r.note
        );
    }
}

/// Parses `90`, `90s`, `5m`, `1h` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s, 5m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
