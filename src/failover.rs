//! Moving a consumer group to the other region and back, exactly.
//!
//! `failover` commits into the group on the target the downstream position of the first
//! record the group had not consumed on the source; `failback` does the reverse with the
//! same flow's map, so the old primary needs no re-copy. Both refuse while the group has
//! active members on the side being written, because the broker would otherwise let
//! running consumers overwrite (or be overwritten by) the translated position.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use crate::checkpoint::{has_active_members, translate_group, TranslatedOffset};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{Config, FlowConfig};
use crate::kafka_ext::{self, GroupOffset};
use crate::naming::TopicSelector;
use crate::offset_map::MapReader;

const TIMEOUT: Duration = Duration::from_secs(30);

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
        let mut reader = MapReader::new(&self.target, &self.flow.source)?;
        reader.catch_up(&self.target, TIMEOUT)?;
        Ok(reader)
    }

    /// The group's committed source offsets, translated.
    pub fn translate(&self, group: &str) -> Result<Vec<TranslatedOffset>, FailoverError> {
        let admin = self.source.admin()?;
        let offsets = kafka_ext::list_group_offsets(admin.inner(), group, TIMEOUT)
            .map_err(|e| self.source.request_error(format!("reading offsets of group `{group}`"), e))?;
        let reader = self.read_map()?;
        let target_meta = self.target.metadata_client()?;
        let source_meta = self.source.metadata_client()?;
        let translated = translate_group(&self.flow, &reader.map, &offsets, &source_meta, &target_meta);
        if translated.is_empty() {
            return Err(FailoverError::NoOffsets {
                group: group.to_string(),
                cluster: self.source.alias.clone(),
                flow: self.flow.name(),
            });
        }
        Ok(translated)
    }

    /// Records of the group's topics not yet mirrored, per partition.
    fn lag(&self, topics: &[String]) -> Result<Vec<(String, i32, i64)>, FailoverError> {
        let reader = self.read_map()?;
        let meta = self.source.metadata_client()?;
        let all = self.source.topics(&meta, TIMEOUT)?;
        let mut lag = Vec::new();
        for (topic, partitions) in all.into_iter().filter(|(t, _)| topics.contains(t)) {
            for p in 0..partitions as i32 {
                let (low, high) = meta
                    .fetch_watermarks(&topic, p, TIMEOUT)
                    .map_err(|e| self.source.request_error(format!("reading end offset of {topic}[{p}]"), e))?;
                let frontier = reader.map.partition(&topic, p).frontier.map_or(low, |f| f.upstream.max(low));
                lag.push((topic.clone(), p, (high - frontier).max(0)));
            }
        }
        Ok(lag)
    }

    /// Moves `group` from the source to the target.
    pub fn failover(
        &self,
        group: &str,
        wait: Option<Duration>,
        out: &mut dyn Write,
    ) -> Result<Vec<TranslatedOffset>, FailoverError> {
        self.refuse_if_active(&self.target, group)?;
        if let Some(timeout) = wait {
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
                let lag = self.lag(&topics)?;
                let total: i64 = lag.iter().map(|(_, _, n)| n).sum();
                if total == 0 {
                    let _ = writeln!(
                        out,
                        "replication caught up: every record of {} is on {}",
                        topics.join(", "),
                        self.target.alias
                    );
                    break;
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
        let translated = self.translate(group)?;
        let missing: Vec<String> = translated
            .iter()
            .filter(|t| t.downstream.is_none())
            .map(|t| format!("{}[{}]@{} ({})", t.source_topic, t.partition, t.upstream, t.note))
            .collect();
        if !missing.is_empty() {
            return Err(FailoverError::NotYetMirrored { group: group.to_string(), partitions: missing.join(", ") });
        }
        let commits: Vec<GroupOffset> = translated
            .iter()
            .map(|t| GroupOffset {
                topic: t.target_topic.clone(),
                partition: t.partition,
                offset: t.downstream.expect("checked"),
            })
            .collect();
        self.commit(&self.target, group, &commits)?;
        let _ = writeln!(out, "group `{group}` failed over from {} to {}:", self.source.alias, self.target.alias);
        print_table(out, &translated);
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

/// The per-partition table of `offsets translate` and `failover`.
pub fn print_table(out: &mut dyn Write, rows: &[TranslatedOffset]) {
    let _ = writeln!(
        out,
        "{:<40} {:>5} {:>14}   {:<40} {:>14}  {}",
        "source topic", "part", "source offset", "target topic", "target offset", ""
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
