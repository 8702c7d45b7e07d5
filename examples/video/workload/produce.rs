//! Producing videos: one thread per video sends its chunks in order through one shared
//! idempotent producer, so several videos travel at once over several partitions while
//! each video's chunks keep their order (same key, same partition; idempotence keeps the
//! order across retries).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::chunks::ChunkMeta;
use super::encode::Video;

/// A video ready to send: its bytes and where each chunk starts and ends.
pub struct Upload {
    pub video: Video,
    pub data: Vec<u8>,
    pub ranges: Vec<Range<usize>>,
}

impl Upload {
    /// The video's file from `dir`, cut into chunks of `chunk_bytes`.
    pub fn load(dir: &Path, video: &Video, chunk_bytes: usize) -> Result<Upload> {
        let data = read_checked(dir, video)?;
        let ranges = super::chunks::split(data.len(), chunk_bytes);
        Ok(Upload { video: video.clone(), data, ranges })
    }

    /// The video's file from `dir`, cut into chunks of the given sizes (the last takes
    /// the rest): for a chunk of unusual size.
    pub fn with_sizes(dir: &Path, video: &Video, sizes: &[usize]) -> Result<Upload> {
        let data = read_checked(dir, video)?;
        let ranges = super::chunks::split_sizes(data.len(), sizes);
        Ok(Upload { video: video.clone(), data, ranges })
    }

    pub fn bytes(&self) -> u64 {
        self.data.len() as u64
    }
}

fn read_checked(dir: &Path, video: &Video) -> Result<Vec<u8>> {
    let path = dir.join(&video.file);
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if super::sha256_hex(&data) != video.sha256 {
        bail!("{} changed since the manifest was written; run `generate` again", path.display());
    }
    Ok(data)
}

/// What a production run did.
#[derive(Debug)]
pub struct Produced {
    pub chunks: usize,
    pub bytes: u64,
    pub elapsed: Duration,
    /// The partition each video went to.
    pub partitions: BTreeMap<String, i32>,
}

/// Collects delivery reports: the partition of each video, and every failure.
#[derive(Default)]
struct Deliveries {
    partitions: Mutex<BTreeMap<String, i32>>,
    failures: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<(String, u32)>;

    fn delivery(&self, result: &DeliveryResult<'_>, chunk: Self::DeliveryOpaque) {
        let (video, index) = *chunk;
        match result {
            Ok(m) => {
                self.partitions.lock().unwrap().insert(video, m.partition());
            }
            Err((e, m)) => self.failures.lock().unwrap().push(format!(
                "video {video} chunk {index} ({} bytes) to {}: {e}",
                m.payload_len(),
                m.topic()
            )),
        }
    }
}

/// How fast each video's chunks are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the producer takes them: a burst of uploads (measures throughput).
    Burst,
    /// Each video's chunks spread over its playing time divided by the factor, as a live
    /// encoder would emit them (measures a chunk's own latency, without a backlog).
    RealTime(f64),
}

/// Sends every upload to `topic` on `bootstrap`, all videos at once, and waits until
/// the cluster acknowledged each chunk. Any refused chunk is an error naming it.
pub fn produce(bootstrap: &str, topic: &str, run: &str, uploads: &[Upload], pace: Pace) -> Result<Produced> {
    let largest = uploads.iter().flat_map(|u| u.ranges.iter().map(|r| r.len())).max().unwrap_or(0);
    // Room for key, headers and framing on top of the largest chunk.
    let producer: ThreadedProducer<Deliveries> = super::producer_config(bootstrap, largest + 64 * 1024)
        .create_with_context(Deliveries::default())
        .context("creating the producer")?;
    // Connect before the clock starts: the first chunk's latency is the data's, not the
    // client's bootstrap.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("reading the metadata of {topic} on {bootstrap}"))?;
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let threads: Vec<_> =
            uploads.iter().map(|upload| scope.spawn(|| send_video(&producer, topic, run, upload, pace))).collect();
        threads.into_iter().try_for_each(|t| t.join().expect("producer thread panicked"))
    })?;
    producer.flush(Duration::from_secs(120)).context("waiting for acknowledgements")?;
    let failures = producer.context().failures.lock().unwrap().clone();
    if !failures.is_empty() {
        bail!("{} chunk(s) were refused by {bootstrap}:\n  {}", failures.len(), failures.join("\n  "));
    }
    let partitions = producer.context().partitions.lock().unwrap().clone();
    Ok(Produced {
        chunks: uploads.iter().map(|u| u.ranges.len()).sum(),
        bytes: uploads.iter().map(Upload::bytes).sum(),
        elapsed: started.elapsed(),
        partitions,
    })
}

fn send_video(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    run: &str,
    upload: &Upload,
    pace: Pace,
) -> Result<()> {
    let video = &upload.video;
    let started = Instant::now();
    let interval = match pace {
        Pace::Burst => Duration::ZERO,
        Pace::RealTime(factor) => {
            Duration::from_secs_f64(video.probe.duration_s / upload.ranges.len() as f64 / factor.max(1e-3))
        }
    };
    for (index, range) in upload.ranges.iter().enumerate() {
        std::thread::sleep((started + interval * index as u32).saturating_duration_since(Instant::now()));
        let bytes = &upload.data[range.clone()];
        let meta = ChunkMeta {
            run: run.to_string(),
            video_id: video.id.clone(),
            codec: video.codec.clone(),
            index: index as u32,
            count: upload.ranges.len() as u32,
            sha256: super::sha256_hex(bytes),
            video_sha256: video.sha256.clone(),
            video_bytes: video.bytes,
        };
        let headers = meta.to_headers();
        let mut record = BaseRecord::with_opaque_to(topic, Box::new((video.id.clone(), index as u32)))
            .key(video.id.as_bytes())
            .payload(bytes)
            .headers(headers);
        loop {
            // The record's timestamp is the moment of sending: the start of the
            // end-to-end latency the reassembling side reports.
            record = record.timestamp(super::now_ms() as i64);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("video {} chunk {index} ({} bytes) to {topic}: {e}", video.id, bytes.len()),
            }
        }
    }
    Ok(())
}
