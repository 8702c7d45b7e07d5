//! The chunk topic: created with the limits large records need, and its configs read
//! back to show that strait copied them to the target.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// The configs compared between source and target in the report.
pub const SYNCED_CONFIGS: &[&str] = &["max.message.bytes", "retention.ms", "compression.type"];

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating an admin client")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// Creates `topic` with `partitions` and `configs` unless it exists. Returns whether it
/// was created (an existing topic keeps its own settings).
pub fn ensure(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, String)]) -> Result<bool> {
    let admin = admin(bootstrap)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new], &options)).with_context(|| format!("creating {topic}"))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, e))) => Err(anyhow!("creating topic {topic} on {bootstrap}: {e}")),
        None => Err(anyhow!("creating topic {topic} on {bootstrap}: no result")),
    }
}

/// The value of each of `keys` on `topic` (None: the topic or the key does not exist).
pub fn configs(bootstrap: &str, topic: &str, keys: &[&str]) -> Result<Vec<Option<String>>> {
    let admin = admin(bootstrap)?;
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
        .with_context(|| format!("describing {topic}"))?;
    let resource = match results.into_iter().next() {
        Some(Ok(resource)) => resource,
        _ => return Ok(vec![None; keys.len()]),
    };
    Ok(keys.iter().map(|k| resource.get(k).and_then(|e| e.value.clone())).collect())
}

/// How many partitions `topic` has (0: it does not exist, or has no leader yet).
pub fn partitions(bootstrap: &str, topic: &str) -> Result<usize> {
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating a metadata client")?;
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of {topic} on {bootstrap}"))?;
    Ok(metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().iter().filter(|p| p.leader() >= 0).count()))
}

/// The high watermark of partitions `0..partitions` of `topic`.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating a metadata client")?;
    (0..partitions)
        .map(|p| {
            let (_, high) = client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("reading the end offset of {topic}[{p}] on {bootstrap}"))?;
            Ok(high)
        })
        .collect()
}
