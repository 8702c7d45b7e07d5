//! Which source topics a flow mirrors, and what they are called on the target.
//!
//! Two rules keep active/active deployments (A→B and B→A side by side) from looping:
//! with `prefix`, a topic whose prefix chain already contains the target's alias came
//! from the target and is skipped (MirrorMaker 2's DefaultReplicationPolicy does the same);
//! with `identity`, names cannot tell, so the data path checks a provenance header instead.

use regex::Regex;

use crate::config::{anchored, FlowConfig, RenamePolicy};

/// Separator between the source alias and the topic, as in MirrorMaker 2.
pub const SEPARATOR: char = '.';

/// Topics strait itself writes; never mirrored, whatever the patterns say.
pub const STRAIT_INTERNAL_SUFFIX: &str = ".strait.internal";

/// A flow's compiled topic selection and naming.
#[derive(Debug, Clone)]
pub struct TopicSelector {
    source: String,
    target: String,
    rename: RenamePolicy,
    include: Vec<(String, Regex)>,
    exclude: Vec<Regex>,
}

/// A flow's compiled consumer-group selection (`groups`, `groups_exclude`), for paths
/// that test many groups: compiling the patterns costs far more than matching them.
#[derive(Debug, Clone)]
pub struct GroupSelector {
    own_group: String,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl GroupSelector {
    /// Patterns were validated by config loading, so compiling cannot fail here.
    pub fn new(flow: &FlowConfig) -> GroupSelector {
        let compile = |p: &String| anchored(p).expect("validated in config");
        GroupSelector {
            own_group: flow.consumer_group(),
            include: flow.groups.iter().map(compile).collect(),
            exclude: flow.groups_exclude.iter().map(compile).collect(),
        }
    }

    /// Whether the flow translates `group`'s offsets: selected, not excluded, and not
    /// strait's own (`strait.` groups and the flow's consumer group).
    pub fn selects(&self, group: &str) -> bool {
        group != self.own_group
            && !group.starts_with("strait.")
            && self.include.iter().any(|re| re.is_match(group))
            && !self.exclude.iter().any(|re| re.is_match(group))
    }
}

/// Why a topic is not mirrored; shown by `check` and `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    NotSelected,
    Excluded,
    Internal,
    /// The topic came from the target cluster (its prefix chain names it).
    Cycle,
}

impl TopicSelector {
    /// Patterns were validated by config loading, so compiling cannot fail here.
    pub fn new(flow: &FlowConfig) -> TopicSelector {
        let compile = |p: &String| anchored(p).expect("validated in config");
        TopicSelector {
            source: flow.source.clone(),
            target: flow.target.clone(),
            rename: flow.rename,
            include: flow.topics.iter().map(|p| (p.clone(), compile(p))).collect(),
            exclude: flow.topics_exclude.iter().map(compile).collect(),
        }
    }

    /// Decides whether `topic` on the source is mirrored by this flow.
    pub fn select(&self, topic: &str) -> Result<(), Skip> {
        let included: Vec<&str> =
            self.include.iter().filter(|(_, re)| re.is_match(topic)).map(|(p, _)| p.as_str()).collect();
        // Heartbeats travel with every flow, as in MirrorMaker 2, so that liveness and
        // latency can be measured end to end. With identity names a copy such as
        // `us-east.heartbeats` would keep its name and wander on, so only the original.
        let implicit = match self.rename {
            RenamePolicy::Prefix => is_heartbeats(topic),
            RenamePolicy::Identity => topic == "heartbeats",
        };
        if included.is_empty() && !implicit {
            return Err(Skip::NotSelected);
        }
        if self.exclude.iter().any(|re| re.is_match(topic)) {
            return Err(Skip::Excluded);
        }
        if topic.ends_with(STRAIT_INTERNAL_SUFFIX) {
            return Err(Skip::Internal);
        }
        // Internal topics are mirrored only when a pattern names them literally, so that
        // `.*` never drags `__consumer_offsets` or MirrorMaker 2's topics along.
        if is_internal(topic) && !included.iter().any(|p| *p == regex::escape(topic) || *p == topic) {
            return Err(Skip::Internal);
        }
        // A chain naming the source itself means the topic already looped once.
        if self.rename == RenamePolicy::Prefix && (came_from(topic, &self.target) || came_from(topic, &self.source)) {
            return Err(Skip::Cycle);
        }
        Ok(())
    }

    /// The name of `topic` on the target.
    pub fn target_topic(&self, topic: &str) -> String {
        match self.rename {
            RenamePolicy::Prefix => format!("{}{SEPARATOR}{topic}", self.source),
            RenamePolicy::Identity => topic.to_string(),
        }
    }

    pub fn rename(&self) -> RenamePolicy {
        self.rename
    }
}

/// `heartbeats`, or a mirrored copy of it (`us-east.heartbeats`).
pub fn is_heartbeats(topic: &str) -> bool {
    topic == "heartbeats" || topic.ends_with(".heartbeats")
}

/// Kafka's and MirrorMaker 2's conventions for topics that are not user data.
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
        || topic.starts_with('.')
        || topic.ends_with(".internal")
        || topic.ends_with("-internal")
        || topic.ends_with(".replica")
}

/// True when the chain of `<alias>.` prefixes on `topic` contains `alias`: the topic is
/// (a copy of) a copy that originated on, or already passed through, that cluster.
fn came_from(topic: &str, alias: &str) -> bool {
    let mut rest = topic;
    while let Some((prefix, upstream)) = rest.split_once(SEPARATOR) {
        if prefix == alias {
            return true;
        }
        rest = upstream;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(rename: RenamePolicy, topics: &[&str], exclude: &[&str]) -> FlowConfig {
        let toml = format!(
            "[clusters.a]\nbootstrap='h:1'\n[clusters.b]\nbootstrap='h:2'\n[[flows]]\nsource='a'\ntarget='b'\n\
             rename='{}'\ntopics={:?}\ntopics_exclude={:?}\n",
            if rename == RenamePolicy::Prefix { "prefix" } else { "identity" },
            topics,
            exclude
        );
        crate::config::Config::parse(&toml, std::iter::empty()).unwrap().flows.remove(0)
    }

    #[test]
    fn patterns_are_anchored() {
        let s = TopicSelector::new(&flow(RenamePolicy::Prefix, &["orders"], &[]));
        assert_eq!(s.select("orders"), Ok(()));
        assert_eq!(s.select("orders2"), Err(Skip::NotSelected));
        assert_eq!(s.select("my-orders"), Err(Skip::NotSelected));
        assert_eq!(s.select("heartbeats"), Ok(()), "heartbeats always travel");
        assert_eq!(s.select("c.heartbeats"), Ok(()));
    }

    #[test]
    fn exclude_wins_over_include() {
        let s = TopicSelector::new(&flow(RenamePolicy::Prefix, &["video\\..*"], &["video\\.tmp.*"]));
        assert_eq!(s.select("video.chunks"), Ok(()));
        assert_eq!(s.select("video.tmp1"), Err(Skip::Excluded));
    }

    #[test]
    fn internal_topics_need_a_literal_rule() {
        let s = TopicSelector::new(&flow(RenamePolicy::Prefix, &[".*"], &[]));
        for t in ["__consumer_offsets", "mm2-offset-syncs.b.internal", "x-internal", ".hidden", "a.strait.internal"] {
            assert_eq!(s.select(t), Err(Skip::Internal), "{t}");
        }
        let s = TopicSelector::new(&flow(RenamePolicy::Prefix, &["__audit"], &[]));
        assert_eq!(s.select("__audit"), Ok(()));
    }

    #[test]
    fn prefix_chain_stops_cycles() {
        let s = TopicSelector::new(&flow(RenamePolicy::Prefix, &[".*"], &[]));
        assert_eq!(s.select("b.orders"), Err(Skip::Cycle));
        assert_eq!(s.select("c.b.orders"), Err(Skip::Cycle));
        assert_eq!(s.select("c.orders"), Ok(()));
        assert_eq!(s.select("video.chunks"), Ok(()));
        assert_eq!(s.target_topic("orders"), "a.orders");
        assert_eq!(s.select("b.heartbeats"), Err(Skip::Cycle));
        assert_eq!(s.select("a.heartbeats"), Err(Skip::Cycle), "came back to its own source");
    }

    #[test]
    fn identity_keeps_names() {
        let s = TopicSelector::new(&flow(RenamePolicy::Identity, &[".*"], &[]));
        assert_eq!(s.target_topic("orders"), "orders");
        // Names carry no provenance with identity; the header check handles loops.
        assert_eq!(s.select("b.orders"), Ok(()));
        let narrow = TopicSelector::new(&flow(RenamePolicy::Identity, &["orders"], &[]));
        assert_eq!(narrow.select("heartbeats"), Ok(()));
        assert_eq!(narrow.select("b.heartbeats"), Err(Skip::NotSelected), "copies would wander on");
    }
}
