//! The video-streaming workload: real encoded video, cut into ~1 MiB chunks keyed by video
//! id, produced to `video.chunks` on one region, mirrored by strait, and reassembled and
//! verified on the other region.
//!
//! Shared by the `video` example (`cargo run --release --example video -- …`) and by
//! `tests/video.rs`, which includes this directory as a module, so the test exercises the
//! same code the demo runs.
//!
//! - [`encode`]: test videos made with ffmpeg, probed with ffprobe, described in a manifest.
//! - [`chunks`]: cutting a file into chunk records and reading their headers back.
//! - [`produce`]: producing several videos concurrently, each in order.
//! - [`reassemble`]: putting videos back together on the other side and checking them.
//! - [`report`]: the per-video table (complete, chunks, bytes, latency, throughput).
//! - [`topic`]: the chunk topic and its configs on both sides.
//! - [`scenario`]: all of it across two regions, live and replayed.
//!
//! # Settings large records need
//!
//! A video chunk is a ~1 MiB record, just above several of Kafka's 1 MB defaults. Each
//! limit below is set deliberately; [`topic_configs`], [`producer_config`] and
//! [`consumer_config`] are the single place they live.
//!
//! | where | setting | default | here | why |
//! |---|---|---|---|---|
//! | topic | `max.message.bytes` | broker's `message.max.bytes` (1048588) | 4 MiB | a 1 MiB chunk plus key, headers and batch framing is just over the default |
//! | producer | `message.max.bytes` | 1000000 | 4 MiB | librdkafka refuses bigger records locally before they reach a broker |
//! | producer | `compression.type` | none | none | encoded video is already entropy-coded (see below) |
//! | producer | `enable.idempotence` | false | true | retries can neither reorder nor duplicate the chunks of a video |
//! | consumer | `max.partition.fetch.bytes` | 1 MiB | 8 MiB | several chunks per fetch per partition instead of one |
//! | consumer | `fetch.max.bytes` | 50 MiB | 64 MiB | room for every partition's share in one response |
//!
//! `fetch.max.bytes` and `max.partition.fetch.bytes` are soft limits (a fetch always
//! returns at least one whole batch), so a record above them still arrives, one per
//! round trip; `receive.message.max.bytes` (librdkafka, 100 MB) is the hard one.
//! strait's own clients already allow 100 MB records (its producer sets
//! `message.max.bytes` to 104857600) and topic sync copies the source topic's
//! `max.message.bytes` to the target, so mirroring needs no extra setting as long as
//! the limit is set on the *topic* (a broker-wide `message.max.bytes` is not a topic
//! config and is not copied).
//!
//! # Why the chunks are not compressed
//!
//! H.264 and VP9 output is entropy-coded: lz4 and zstd find almost nothing left to take
//! out (the manifest records both ratios per video, measured on the real files; see the
//! generate command's output), but every producer would still spend CPU on each chunk and
//! every consumer on decompressing it. librdkafka sends a batch uncompressed when
//! compression does not make it smaller, so strait's lz4 on the target costs some CPU
//! but never grows a record past the limit it had on the source.

// Shared by the example and tests/video.rs; each uses its own part of it.
#![allow(dead_code)]

pub mod chunks;
pub mod encode;
pub mod produce;
pub mod reassemble;
pub mod report;
pub mod scenario;
pub mod topic;

use rdkafka::ClientConfig;

/// Target chunk size: ~1 MiB, what video platforms put on Kafka.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// `max.message.bytes` of the chunk topic: 4× the chunk size leaves room for headers,
/// framing and chunks cut at keyframes, which vary in size.
pub const TOPIC_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Topic configs for a chunk topic. strait copies all of them to the target.
pub fn topic_configs() -> Vec<(&'static str, String)> {
    vec![
        ("max.message.bytes", TOPIC_MAX_MESSAGE_BYTES.to_string()),
        // Replays (rewind, re-transcode) need the chunks for days; set on the topic, the
        // retention does not depend on each cluster's broker default, and strait copies it.
        ("retention.ms", (7 * 24 * 3_600_000u64).to_string()),
        // The broker keeps whatever the producer sent (here: uncompressed).
        ("compression.type", "producer".to_string()),
    ]
}

/// The producer for chunk records. `max_record_bytes` is the largest record it may send.
pub fn producer_config(bootstrap: &str, max_record_bytes: usize) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "none")
        .set("message.max.bytes", max_record_bytes.max(1_000_000).to_string())
        // A chunk fills a batch on its own; waiting longer would only add latency.
        .set("linger.ms", "5")
        // The same partition for a video id as Kafka's Java producer would choose.
        .set("partitioner", "murmur2_random");
    cfg
}

/// A consumer of chunk records in consumer group `group`, from the earliest offset.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "true")
        .set("max.partition.fetch.bytes", (8 * 1024 * 1024).to_string())
        .set("fetch.max.bytes", (64 * 1024 * 1024).to_string())
        .set("fetch.wait.max.ms", "50")
        // The chunk topic may appear on the target only after the consumer started.
        .set("topic.metadata.refresh.interval.ms", "1000");
    cfg
}

/// Milliseconds since the Unix epoch, the unit of Kafka record timestamps.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
