//! `strait recopy`: copy one topic again from the source's log start.
//!
//! The remedy when a target topic lost records strait had mirrored (deleted and created
//! again under a running flow; see `mirror::MirrorError::TargetTopicLost`) or when the
//! source topic was recreated. strait refuses to carry on in those cases, because its
//! progress and offset map would claim records that are no longer there. Recopying:
//!
//! 1. checks that no strait instance of the flow is running (the flow's group has no
//!    members on the source), since a running instance would race with the reset;
//! 2. deletes the target topic (topic sync creates it again, empty, at the next start);
//! 3. deletes the topic's offset map (translations into the old copy are meaningless);
//! 4. sets the flow's committed offsets for the topic to the source's log start.
//!
//! The next `strait run` then mirrors the topic from the beginning, exactly once.

use std::io::Write;
use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::checkpoint::has_active_members;
use crate::failover::{FailoverError, FlowContext};
use crate::kafka_ext::{self, GroupOffset};
use crate::naming::TopicSelector;
use crate::offset_map::MapReader;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RecopyError {
    #[error(transparent)]
    Flow(#[from] FailoverError),
    #[error("topic `{topic}` is not mirrored by flow {flow} (check the flow's `topics` patterns)")]
    NotMirrored { topic: String, flow: String },
    #[error("topic `{topic}` does not exist on `{cluster}`")]
    NoSuchTopic { topic: String, cluster: String },
    #[error(
        "strait is still running flow {flow} (group `{group}` has members on `{cluster}`); stop every instance first"
    )]
    Running { flow: String, group: String, cluster: String },
    #[error("{0}")]
    Request(String),
}

impl From<crate::cluster::ClusterError> for RecopyError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        RecopyError::Request(e.to_string())
    }
}

/// Prepares `topic` (a source topic of the flow) to be mirrored again from its start.
pub fn recopy(ctx: &FlowContext, topic: &str, out: &mut dyn Write) -> Result<(), RecopyError> {
    let flow = &ctx.flow;
    let selector = TopicSelector::new(flow);
    if selector.select(topic).is_err() {
        return Err(RecopyError::NotMirrored { topic: topic.to_string(), flow: flow.name() });
    }
    let group = flow.consumer_group();
    let source_meta = ctx.source.metadata_client()?;
    let running = has_active_members(&source_meta, &group)
        .map_err(|e| ctx.source.request_error(format!("describing group `{group}`"), e))?;
    if running {
        return Err(RecopyError::Running { flow: flow.name(), group, cluster: ctx.source.alias.clone() });
    }
    let partitions = ctx
        .source
        .topics(&source_meta, TIMEOUT)?
        .into_iter()
        .find(|(t, _)| t == topic)
        .map(|(_, n)| n)
        .ok_or_else(|| RecopyError::NoSuchTopic { topic: topic.to_string(), cluster: ctx.source.alias.clone() })?;

    let target_topic = selector.target_topic(topic);
    delete_target_topic(ctx, &target_topic, out)?;

    let mut reader = MapReader::new(&ctx.target, flow)?;
    reader.catch_up(&ctx.target, TIMEOUT)?;
    let keys = reader.map.keys_of_topic(topic);
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
        ctx.target.small_producer_config("recopy", TIMEOUT).create().map_err(|e| {
            RecopyError::Request(format!("cluster `{}`: cannot create a producer: {e}", ctx.target.alias))
        })?;
    let map_topic = crate::offset_map::map_topic(&flow.source);
    for key in &keys {
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&map_topic).partition(0).key(key.as_slice());
        producer
            .send(record)
            .map_err(|(e, _)| RecopyError::Request(format!("deleting the offset map of `{topic}`: {e}")))?;
    }
    producer.flush(TIMEOUT).map_err(|e| RecopyError::Request(format!("deleting the offset map of `{topic}`: {e}")))?;
    let _ = writeln!(
        out,
        "deleted {} offset-map record(s) of `{topic}` from `{map_topic}` on {}",
        keys.len(),
        ctx.target.alias
    );

    let mut starts = Vec::new();
    for p in 0..partitions as i32 {
        let (low, _) = source_meta
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| ctx.source.request_error(format!("reading the log start of {topic}[{p}]"), e))?;
        starts.push(GroupOffset { topic: topic.to_string(), partition: p, offset: low });
    }
    let admin = ctx.source.admin()?;
    kafka_ext::alter_group_offsets(admin.inner(), &group, &starts, TIMEOUT)
        .map_err(|e| RecopyError::Request(format!("resetting group `{group}` on `{}`: {e}", ctx.source.alias)))?;
    let positions: Vec<String> = starts.iter().map(|s| format!("[{}]@{}", s.partition, s.offset)).collect();
    let _ = writeln!(
        out,
        "group `{group}` on {} now starts `{topic}` at its log start ({}); the next `strait run` copies it again into \
         `{target_topic}` on {}",
        ctx.source.alias,
        positions.join(" "),
        ctx.target.alias
    );
    Ok(())
}

/// Deletes the target topic (if it exists) and waits until it is gone.
fn delete_target_topic(ctx: &FlowContext, target_topic: &str, out: &mut dyn Write) -> Result<(), RecopyError> {
    let meta = ctx.target.metadata_client()?;
    let exists = |meta: &rdkafka::consumer::BaseConsumer| {
        ctx.target.topics(meta, TIMEOUT).map(|all| all.iter().any(|(t, _)| t == target_topic))
    };
    if !exists(&meta)? {
        return Ok(());
    }
    let admin = ctx.target.admin()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let results = runtime
        .block_on(admin.delete_topics(&[target_topic], &AdminOptions::new().operation_timeout(Some(TIMEOUT))))
        .map_err(|e| RecopyError::Request(format!("deleting `{target_topic}` on `{}`: {e}", ctx.target.alias)))?;
    for result in results {
        if let Err((name, code)) = result {
            return Err(RecopyError::Request(format!("deleting `{name}` on `{}`: {code}", ctx.target.alias)));
        }
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    while exists(&meta)? {
        if std::time::Instant::now() > deadline {
            return Err(RecopyError::Request(format!(
                "`{target_topic}` on `{}` was not deleted within {TIMEOUT:?}",
                ctx.target.alias
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = writeln!(
        out,
        "deleted `{target_topic}` on {} (topic sync creates it again at the next start)",
        ctx.target.alias
    );
    Ok(())
}
