//! Keeps target topics in step with their source topics: creation, partition count, and
//! topic configs. `strait plan` prints the same [`TopicPlan`] that `strait run` applies.
//!
//! Each refresh compares the clusters afresh instead of remembering what was done, so a
//! restarted or second instance converges on the same state, and a change made by hand
//! on the target (say, a config) is corrected at the next refresh.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use crate::cluster::{Cluster, ClusterError};
use crate::config::FlowConfig;
use crate::kafka_ext;
use crate::naming::{Skip, TopicSelector};

/// Topic configs never copied: they describe the source cluster's operation, not the
/// data (MirrorMaker 2 excludes the same), or copying them would change what the target
/// stores (`message.timestamp.type=LogAppendTime` would overwrite mirrored timestamps).
const CONFIGS_NOT_SYNCED: &[&str] = &[
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];
const CONFIG_PREFIXES_NOT_SYNCED: &[&str] = &["message.timestamp."];

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A source topic the flow mirrors, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub source_topic: String,
    pub target_topic: String,
    pub source_partitions: usize,
    /// Partitions that exist on the target now (after this refresh's changes, if applied).
    pub target_partitions: usize,
}

/// The routes of a flow, published by topic sync to the data path after each refresh.
pub type Routes = Arc<BTreeMap<String, Route>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: usize,
    pub replication_factor: Option<i32>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitions {
    pub topic: String,
    pub from: usize,
    pub to: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub topic: String,
    pub key: String,
    pub from: Option<String>,
    pub to: String,
}

/// What a flow needs changed on its target; empty when in sync.
#[derive(Debug, Clone, Default)]
pub struct TopicPlan {
    pub flow: String,
    pub target: String,
    pub routes: BTreeMap<String, Route>,
    pub skipped: Vec<(String, Skip)>,
    pub create: Vec<CreateTopic>,
    pub add_partitions: Vec<AddPartitions>,
    pub config_changes: Vec<ConfigChange>,
}

impl TopicPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.add_partitions.is_empty() && self.config_changes.is_empty()
    }
}

/// Compares a flow's source and target and returns what must change. Reads only.
pub async fn plan(flow: &FlowConfig, source: &Cluster, target: &Cluster) -> Result<TopicPlan, ClusterError> {
    let selector = TopicSelector::new(flow);
    let source_topics = list_topics(source).await?;
    let target_topics: HashMap<String, usize> = list_topics(target).await?.into_iter().collect();

    let mut plan = TopicPlan { flow: flow.name(), target: flow.target.clone(), ..Default::default() };
    let mut selected = Vec::new();
    for (topic, partitions) in source_topics {
        match selector.select(&topic) {
            Ok(()) => selected.push((topic, partitions)),
            Err(Skip::NotSelected) => {}
            Err(why) => plan.skipped.push((topic, why)),
        }
    }

    let source_configs = if flow.sync_topic_configs {
        describe_synced_configs(source, selected.iter().map(|(t, _)| t.clone()).collect()).await?
    } else {
        HashMap::new()
    };
    let existing: Vec<String> =
        selected.iter().map(|(t, _)| selector.target_topic(t)).filter(|t| target_topics.contains_key(t)).collect();
    let target_configs =
        if flow.sync_topic_configs { describe_synced_configs(target, existing).await? } else { HashMap::new() };

    for (topic, partitions) in selected {
        let target_topic = selector.target_topic(&topic);
        let mut wanted = source_configs.get(&topic).cloned().unwrap_or_default();
        fit_batches(&mut wanted, target.producer_batch_bytes());
        match target_topics.get(&target_topic) {
            None => plan.create.push(CreateTopic {
                name: target_topic.clone(),
                partitions,
                replication_factor: flow.replication_factor,
                configs: wanted,
            }),
            Some(&have) => {
                if have < partitions {
                    plan.add_partitions.push(AddPartitions { topic: target_topic.clone(), from: have, to: partitions });
                }
                let current = target_configs.get(&target_topic);
                for (key, value) in wanted {
                    let now = current.and_then(|c| c.get(&key)).cloned();
                    if now.as_deref() != Some(value.as_str()) {
                        plan.config_changes.push(ConfigChange {
                            topic: target_topic.clone(),
                            key,
                            from: now,
                            to: value,
                        });
                    }
                }
            }
        }
        let target_partitions = target_topics.get(&target_topic).copied().unwrap_or(0);
        plan.routes.insert(
            topic.clone(),
            Route { source_topic: topic, target_topic, source_partitions: partitions, target_partitions },
        );
    }
    Ok(plan)
}

/// Carries out a plan on the target. Returns the routes whose target topics are ready;
/// a topic whose change failed keeps its old partition count (or is left out if it could
/// not be created), and the error is returned for the caller to report and retry.
pub async fn apply(plan: &TopicPlan, target: &Cluster) -> (BTreeMap<String, Route>, Vec<ClusterError>) {
    let mut routes = plan.routes.clone();
    let mut errors = Vec::new();
    let admin = match target.admin_logged() {
        Ok(a) => a,
        Err(e) => return (BTreeMap::new(), vec![e]),
    };
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));

    // Kafka's controller refuses one request that creates more than 10,000 partitions
    // (PolicyViolation, "excessively large batch"): a first sync of thousands of topics
    // is sent in slices.
    for slice in slices(&plan.create, |c| c.partitions + 1 + c.configs.len()) {
        let new_topics: Vec<NewTopic> = slice
            .iter()
            .map(|c| {
                let rf = TopicReplication::Fixed(c.replication_factor.unwrap_or(-1));
                let mut t = NewTopic::new(&c.name, c.partitions as i32, rf);
                for (k, v) in &c.configs {
                    t = t.set(k, v);
                }
                t
            })
            .collect();
        match admin.create_topics(new_topics.iter(), &opts).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(name) => set_ready(&mut routes, &name, plan),
                        // Another instance of the same flow created it first.
                        Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => set_ready(&mut routes, &name, plan),
                        Err((name, code)) => {
                            errors.push(target.request_error(format!("creating topic `{name}`"), code));
                        }
                    }
                }
            }
            Err(e) => errors.push(target.request_error("creating topics", e)),
        }
    }

    for slice in slices(&plan.add_partitions, |a| a.to) {
        let parts: Vec<NewPartitions> = slice.iter().map(|a| NewPartitions::new(&a.topic, a.to)).collect();
        match admin.create_partitions(parts.iter(), &opts).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(name) => set_ready(&mut routes, &name, plan),
                        Err((name, code)) => {
                            errors.push(target.request_error(format!("adding partitions to `{name}`"), code))
                        }
                    }
                }
            }
            Err(e) => errors.push(target.request_error("adding partitions", e)),
        }
    }

    let mut by_topic: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for change in &plan.config_changes {
        by_topic.entry(&change.topic).or_default().push((change.key.clone(), change.to.clone()));
    }
    for (topic, set) in by_topic {
        let admin_client = admin.inner();
        let result = tokio::task::block_in_place(|| {
            kafka_ext::incremental_set_topic_configs(admin_client, topic, &set, ADMIN_TIMEOUT)
        });
        if let Err(e) = result {
            errors.push(target.request_error(format!("updating configs of `{topic}`"), e));
        }
    }

    // Routes whose target topic still does not exist cannot carry records yet.
    routes.retain(|_, r| r.target_partitions > 0);
    (routes, errors)
}

fn set_ready(routes: &mut BTreeMap<String, Route>, target_topic: &str, plan: &TopicPlan) {
    let wanted = plan
        .create
        .iter()
        .map(|c| (c.name.as_str(), c.partitions))
        .chain(plan.add_partitions.iter().map(|a| (a.topic.as_str(), a.to)));
    let partitions = wanted.filter(|(n, _)| *n == target_topic).map(|(_, p)| p).max();
    if let Some(partitions) = partitions {
        for route in routes.values_mut().filter(|r| r.target_topic == target_topic) {
            route.target_partitions = route.target_partitions.max(partitions);
        }
    }
}

async fn list_topics(cluster: &Cluster) -> Result<Vec<(String, usize)>, ClusterError> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let client = cluster.metadata_client_logged()?;
        cluster.topics(&client, ADMIN_TIMEOUT)
    })
    .await
    .expect("metadata task panicked")
}

/// The configs of each topic that are set on the topic itself and are worth copying.
async fn describe_synced_configs(
    cluster: &Cluster,
    topics: Vec<String>,
) -> Result<HashMap<String, BTreeMap<String, String>>, ClusterError> {
    let mut out = HashMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let admin = cluster.admin_logged()?;
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let specs: Vec<ResourceSpecifier> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin
        .describe_configs(specs.iter(), &opts)
        .await
        .map_err(|e| cluster.request_error("describing topic configs", e))?;
    for (topic, result) in topics.iter().zip(results) {
        let resource = result.map_err(|e| cluster.request_error(format!("describing configs of `{topic}`"), e))?;
        let configs = resource
            .entries
            .into_iter()
            .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_read_only && !e.is_sensitive)
            .filter(|e| is_synced_config(&e.name))
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        out.insert(topic.clone(), configs);
    }
    Ok(out)
}

/// The broker checks each record *batch* against the topic's `max.message.bytes`, and
/// strait's producer batches up to `batch.size` bytes of records: a target topic with a
/// smaller limit (copied from a source whose producers batch less) would refuse batches
/// of records that each fit. So a copied limit below the batch size is raised to it;
/// no single record above the source's limit can exist on the source anyway.
fn fit_batches(configs: &mut BTreeMap<String, String>, batch_bytes: u64) {
    if let Some(limit) = configs.get_mut("max.message.bytes") {
        if limit.parse::<u64>().is_ok_and(|l| l < batch_bytes) {
            *limit = batch_bytes.to_string();
        }
    }
}

pub fn is_synced_config(name: &str) -> bool {
    !CONFIGS_NOT_SYNCED.contains(&name) && !CONFIG_PREFIXES_NOT_SYNCED.iter().any(|p| name.starts_with(p))
}

impl std::fmt::Display for TopicPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "flow {} ({} topic(s) selected)", self.flow, self.routes.len())?;
        if self.is_empty() {
            writeln!(f, "  target `{}` is in sync; nothing to change", self.target)?;
        }
        for c in &self.create {
            let rf = c.replication_factor.map(|r| r.to_string()).unwrap_or_else(|| "target default".into());
            writeln!(
                f,
                "  + create topic {} on {} (partitions {}, replication factor {rf})",
                c.name, self.target, c.partitions
            )?;
            for (k, v) in &c.configs {
                writeln!(f, "      {k} = {v}")?;
            }
        }
        for a in &self.add_partitions {
            writeln!(f, "  ~ add partitions to {} on {}: {} -> {}", a.topic, self.target, a.from, a.to)?;
        }
        for c in &self.config_changes {
            let from = c.from.as_deref().unwrap_or("(default)");
            writeln!(f, "  ~ set config of {} on {}: {} = {} (was {from})", c.topic, self.target, c.key, c.to)?;
        }
        for (topic, why) in &self.skipped {
            let why = match why {
                Skip::Excluded => "excluded by topics_exclude",
                Skip::Internal => "internal topic",
                Skip::Cycle => "came from the target cluster (would loop)",
                Skip::NotSelected => "not selected",
            };
            writeln!(f, "  - skip {topic}: {why}")?;
        }
        Ok(())
    }
}

/// MirrorMaker 2's checkpoint topic on the target, for flows from `source`.
pub fn checkpoints_topic(source: &str) -> String {
    format!("{source}.checkpoints.internal")
}

/// MirrorMaker 2's heartbeat topic, written on each source cluster.
pub const HEARTBEATS_TOPIC: &str = "heartbeats";

/// Creates the topics strait itself writes, if missing: the offset map and the
/// checkpoints on the target, heartbeats on the source. All compacted, one partition
/// (their records are few and are read whole).
pub async fn ensure_internal_topics(flow: &FlowConfig, source: &Cluster, target: &Cluster) -> Result<(), ClusterError> {
    let on_target = [crate::offset_map::map_topic(&flow.source), checkpoints_topic(&flow.source)];
    create_compacted(target, &on_target, flow.replication_factor).await?;
    create_compacted(source, &[HEARTBEATS_TOPIC.to_string()], None).await
}

/// Records one CreateTopics or CreatePartitions request may make the controller write:
/// half its limit of 10,000 per request (a topic is one record, each partition and
/// each config one more).
const PARTITIONS_PER_REQUEST: usize = 5_000;

/// Splits `items` into consecutive slices of at most [`PARTITIONS_PER_REQUEST`]
/// records each (`partitions` weighs an item); an item larger than that gets a slice of
/// its own.
fn slices<T>(items: &[T], partitions: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut weight) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let w = partitions(item);
        if i > start && weight + w > PARTITIONS_PER_REQUEST {
            out.push(&items[start..i]);
            (start, weight) = (i, 0);
        }
        weight += w;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Creates compacted one-partition topics if missing (strait's internal topics).
pub(crate) async fn create_compacted(cluster: &Cluster, names: &[String], rf: Option<i32>) -> Result<(), ClusterError> {
    let admin = cluster.admin_logged()?;
    let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(rf.unwrap_or(-1))).set("cleanup.policy", "compact"))
        .collect();
    let results = admin
        .create_topics(topics.iter(), &opts)
        .await
        .map_err(|e| cluster.request_error("creating internal topics", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(cluster.request_error(format!("creating internal topic `{name}`"), code)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_syncs_are_sliced_below_the_controllers_batch_limit() {
        let topics = vec![4usize; 2_500];
        let sliced = slices(&topics, |&p| p);
        assert_eq!(sliced.len(), 2);
        assert!(sliced.iter().all(|s| s.iter().sum::<usize>() <= PARTITIONS_PER_REQUEST));
        assert_eq!(sliced.iter().map(|s| s.len()).sum::<usize>(), 2_500);
        assert_eq!(slices(&[9_000usize, 1], |&p| p).len(), 2, "an oversized topic goes alone");
        assert!(slices(&Vec::<usize>::new(), |&p| p).is_empty());
    }

    #[test]
    fn a_copied_message_size_limit_never_drops_below_the_batch_size() {
        let mut c: BTreeMap<String, String> = [("max.message.bytes".to_string(), "100000".to_string())].into();
        fit_batches(&mut c, 1_000_000);
        assert_eq!(c["max.message.bytes"], "1000000");
        let mut c: BTreeMap<String, String> = [("max.message.bytes".to_string(), "8388608".to_string())].into();
        fit_batches(&mut c, 1_000_000);
        assert_eq!(c["max.message.bytes"], "8388608");
    }

    #[test]
    fn operational_configs_are_not_synced() {
        assert!(is_synced_config("retention.ms"));
        assert!(is_synced_config("cleanup.policy"));
        assert!(is_synced_config("max.message.bytes"));
        assert!(!is_synced_config("min.insync.replicas"));
        assert!(!is_synced_config("message.timestamp.type"));
        assert!(!is_synced_config("message.timestamp.after.max.ms"));
        assert!(!is_synced_config("leader.replication.throttled.replicas"));
    }
}
