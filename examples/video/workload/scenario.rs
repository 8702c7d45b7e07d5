//! The whole workload across two regions, with strait mirroring in between (started by
//! the caller): create the chunk topic on the source, wait for strait to create its copy
//! on the target, send one small warm-up record per partition through the mirror, start a
//! live reassembler there, produce every video at once, then replay the copy from the
//! start with a new consumer group.
//!
//! The warm-up makes the figures those of a running mirror: without it, the first chunks
//! would also wait for strait's consumer group to take up a topic it just discovered.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::encode::Manifest;
use super::produce::{produce, Pace, Produced, Upload};
use super::reassemble::{consume, ConsumeOptions};
use super::report::Report;
use super::topic;

/// Header (and key) of the warm-up records; the reassembler skips them.
pub const WARM_UP: &str = "video.warm-up";

#[derive(Debug, Clone)]
pub struct Scenario {
    pub source: String,
    pub target: String,
    pub topic: String,
    pub target_topic: String,
    pub partitions: i32,
    pub chunk_bytes: usize,
    /// Where the manifest and the source files are.
    pub video_dir: PathBuf,
    /// Where reassembled files go (`live/` and `replay/` below it).
    pub out_dir: PathBuf,
    pub run: String,
    /// Consumer groups on the target are `<prefix>.live` and `<prefix>.replay`.
    pub group_prefix: String,
    pub idle_timeout: Duration,
    pub pace: Pace,
}

/// A topic config on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPair {
    pub key: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

#[derive(Debug)]
pub struct Outcome {
    pub produced: Produced,
    pub live: Report,
    pub replay: Report,
    pub configs: Vec<ConfigPair>,
}

impl Outcome {
    pub fn all_complete(&self) -> bool {
        self.live.all_complete() && self.replay.all_complete()
    }
}

impl Scenario {
    pub fn run(&self, manifest: &Manifest) -> Result<Outcome> {
        if topic::ensure(&self.source, &self.topic, self.partitions, &super::topic_configs())? {
            eprintln!("created {} on {} ({} partitions)", self.topic, self.source, self.partitions);
        }
        self.wait_for_target_topic(Duration::from_secs(60))?;
        let warm_up = Instant::now();
        let start_offsets = self.warm_up(Duration::from_secs(120))?;
        eprintln!("the mirror carries every partition of {} (warm-up took {:?})", self.topic, warm_up.elapsed());
        let uploads: Vec<Upload> = manifest
            .videos
            .iter()
            .map(|v| Upload::load(&self.video_dir, v, self.chunk_bytes))
            .collect::<Result<_>>()?;

        // The live reassembler starts where this run starts; the topic may hold earlier
        // runs, which only the replay reads.
        let live_options = ConsumeOptions { start_offsets: Some(start_offsets), ..self.consume_options("live") };
        let (ready_tx, ready_rx) = mpsc::channel();
        let live = std::thread::scope(|scope| -> Result<(Produced, Report)> {
            let consumer = scope.spawn(|| consume(&live_options, manifest, Some(ready_tx)));
            // Produce only once the live consumer owns its partitions, so the latency
            // measured is the data's, not the consumer group's join.
            if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                bail!("the live consumer on {} got no partitions of {}", self.target, self.target_topic);
            }
            eprintln!("producing {} videos to {} on {} (run {}) ...", uploads.len(), self.topic, self.source, self.run);
            let produced = produce(&self.source, &self.topic, &self.run, &uploads, self.pace);
            let report = consumer.join().expect("consumer thread panicked");
            Ok((produced?, report?))
        })?;
        let (produced, live) = live;
        let configs = self.configs()?;
        eprintln!("replaying {} on {} with a new consumer group ...", self.target_topic, self.target);
        let replay = consume(&self.consume_options("replay"), manifest, None)?;
        Ok(Outcome { produced, live, replay, configs })
    }

    fn consume_options(&self, name: &str) -> ConsumeOptions {
        ConsumeOptions {
            bootstrap: self.target.clone(),
            topic: self.target_topic.clone(),
            group: format!("{}.{name}", self.group_prefix),
            run: Some(self.run.clone()),
            out_dir: self.out_dir.join(name),
            idle_timeout: self.idle_timeout,
            timeout: Duration::from_secs(1800),
            start_offsets: None,
        }
    }

    fn wait_for_target_topic(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let partitions = topic::partitions(&self.target, &self.target_topic)?;
            if partitions >= self.partitions as usize {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not appear on {} with {} partitions within {timeout:?}: is strait running with a flow \
                     for {}?",
                    self.target_topic,
                    self.target,
                    self.partitions,
                    self.topic
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends a small record (key [`WARM_UP`]) to every partition of the source topic and
    /// waits until each partition of the target topic grew. Returns the target's end
    /// offsets then: where this run's chunks will start.
    fn warm_up(&self, timeout: Duration) -> Result<Vec<i64>> {
        let started = Instant::now();
        // A topic strait has just created may not have its leaders everywhere yet.
        let end_offsets = || loop {
            match topic::end_offsets(&self.target, &self.target_topic, self.partitions) {
                Ok(offsets) => return Ok(offsets),
                Err(e) if started.elapsed() > timeout => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        };
        let before = end_offsets()?;
        let producer: BaseProducer = super::producer_config(&self.source, 1_000_000).create()?;
        for partition in 0..self.partitions {
            let headers = OwnedHeaders::new().insert(Header { key: WARM_UP, value: Some(self.run.as_str()) });
            let record = BaseRecord::to(&self.topic).partition(partition).key(WARM_UP).payload("").headers(headers);
            producer.send(record).map_err(|(e, _)| anyhow::anyhow!("warm-up record to {}: {e}", self.topic))?;
        }
        producer.flush(Duration::from_secs(30)).context("sending the warm-up records")?;
        loop {
            let now = end_offsets()?;
            if now.iter().zip(&before).all(|(now, before)| now > before) {
                return Ok(now);
            }
            if started.elapsed() > timeout {
                bail!("the warm-up records did not reach {} within {timeout:?}: is strait running?", self.target_topic);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The chunk topic's large-record configs on both sides, as strait synced them.
    pub fn configs(&self) -> Result<Vec<ConfigPair>> {
        let keys = topic::SYNCED_CONFIGS;
        let source = topic::configs(&self.source, &self.topic, keys).context("source topic configs")?;
        let target = topic::configs(&self.target, &self.target_topic, keys).context("target topic configs")?;
        Ok(keys
            .iter()
            .zip(source.into_iter().zip(target))
            .map(|(key, (source, target))| ConfigPair { key: key.to_string(), source, target })
            .collect())
    }
}
