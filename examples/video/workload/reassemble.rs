//! Putting videos back together on the other region, and proving them intact.
//!
//! Chunks of a video arrive in one partition, in order. The [`Reassembler`] appends each
//! chunk after checking its SHA-256, and refuses anything else by name: a chunk whose
//! index is past the next expected one (a lost or reordered chunk), a chunk with other
//! content than its hash, a video split over two partitions. A chunk seen before with the
//! same content is a duplicate (a mirror may re-send after a crash) and is counted, not
//! appended. A complete video is checked against the whole file's SHA-256 and written
//! out; ffprobe decodes the written files once consuming is over, so decoders do not
//! compete for CPU with the data path while the latency figures are taken.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::chunks::ChunkMeta;
use super::encode::{Manifest, Probe};
use super::report::{Report, Status, VideoReport};

/// One video being put back together.
#[derive(Debug)]
pub struct VideoState {
    pub codec: String,
    pub partition: i32,
    pub count: u32,
    pub video_sha256: String,
    pub data: Vec<u8>,
    /// SHA-256 of every chunk appended so far, to recognise duplicates.
    pub chunk_hashes: Vec<String>,
    pub duplicates: u32,
    /// Produce-to-reassembly time of each appended chunk, in milliseconds.
    pub latencies_ms: Vec<f64>,
    pub first_produced_ms: f64,
    pub last_arrival_ms: f64,
    /// Why the video can never complete; set once, at the first problem.
    pub broken: Option<String>,
}

impl VideoState {
    pub fn next(&self) -> u32 {
        self.chunk_hashes.len() as u32
    }

    pub fn is_complete(&self) -> bool {
        self.broken.is_none() && self.next() == self.count
    }
}

/// Where a chunk came from and when.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub produced_ms: f64,
    pub arrived_ms: f64,
}

impl Arrival<'_> {
    fn at(&self) -> String {
        format!("{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// The reassembly state of every video of one run.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Only chunks of this run count; None accepts every run.
    pub run: Option<String>,
    pub videos: BTreeMap<String, VideoState>,
    /// Chunk records of other runs, skipped, and their bytes.
    pub other_runs: u64,
    pub other_runs_bytes: u64,
}

impl Reassembler {
    pub fn new(run: Option<String>) -> Reassembler {
        Reassembler { run, ..Default::default() }
    }

    /// Takes one chunk. Returns the video's id when this chunk completed it.
    pub fn accept(&mut self, meta: &ChunkMeta, payload: &[u8], arrival: Arrival<'_>) -> Option<String> {
        if self.run.as_ref().is_some_and(|run| *run != meta.run) {
            self.other_runs += 1;
            self.other_runs_bytes += payload.len() as u64;
            return None;
        }
        let state = self.videos.entry(meta.video_id.clone()).or_insert_with(|| VideoState {
            codec: meta.codec.clone(),
            partition: arrival.partition,
            count: meta.count,
            video_sha256: meta.video_sha256.clone(),
            data: Vec::with_capacity(meta.video_bytes as usize),
            chunk_hashes: Vec::new(),
            duplicates: 0,
            latencies_ms: Vec::new(),
            first_produced_ms: arrival.produced_ms,
            last_arrival_ms: arrival.arrived_ms,
            broken: None,
        });
        if state.broken.is_some() {
            return None;
        }
        match append(state, meta, payload, arrival) {
            Err(problem) => state.broken = Some(problem),
            Ok(true) if state.next() == state.count => {
                if super::sha256_hex(&state.data) == state.video_sha256 {
                    return Some(meta.video_id.clone());
                }
                state.broken = Some(format!(
                    "all {} chunks arrived but the file's SHA-256 differs from header {}",
                    state.count,
                    super::chunks::VIDEO_SHA256
                ));
            }
            Ok(_) => {}
        }
        None
    }
}

/// Appends one chunk (true) or counts a duplicate (false), or says why the video cannot
/// go on.
fn append(state: &mut VideoState, meta: &ChunkMeta, payload: &[u8], arrival: Arrival<'_>) -> Result<bool, String> {
    let at = arrival.at();
    if meta.count != state.count || meta.codec != state.codec || meta.video_sha256 != state.video_sha256 {
        return Err(format!("chunk {} at {at} belongs to another upload of the same video id", meta.index));
    }
    if arrival.partition != state.partition {
        return Err(format!("chunk {} at {at} is in another partition than chunk 0", meta.index));
    }
    let hash = super::sha256_hex(payload);
    if hash != meta.sha256 {
        return Err(format!("chunk {} at {at}: SHA-256 of the content differs from its header", meta.index));
    }
    let next = state.next();
    if meta.index < next {
        if state.chunk_hashes[meta.index as usize] != hash {
            return Err(format!("chunk {} at {at} arrived again with other content", meta.index));
        }
        state.duplicates += 1;
        return Ok(false);
    }
    if meta.index > next {
        return Err(format!(
            "chunk {} at {at} arrived while chunk {next} was expected (lost or out of order)",
            meta.index
        ));
    }
    state.data.extend_from_slice(payload);
    state.chunk_hashes.push(hash);
    state.latencies_ms.push(arrival.arrived_ms - arrival.produced_ms);
    state.last_arrival_ms = arrival.arrived_ms;
    Ok(true)
}

/// Where and how long to consume.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub run: Option<String>,
    /// Where reassembled files are written.
    pub out_dir: PathBuf,
    /// Give up when no chunk of the run arrived for this long.
    pub idle_timeout: Duration,
    /// Give up after this long in any case.
    pub timeout: Duration,
    /// Read partitions `0..n` from these offsets (assigned, not subscribed); None: the
    /// group's committed position, or the start of the topic for a new group.
    pub start_offsets: Option<Vec<i64>>,
}

/// Consumes until every video of `manifest` is complete (or can never complete), or a
/// timeout passes, and reports each video. Errors only for a malformed chunk record or a
/// client failure; a missing or damaged video is a row of the report, not an error.
/// `ready` hears once the consumer owns partitions of the topic.
pub fn consume(options: &ConsumeOptions, manifest: &Manifest, mut ready: Option<Sender<()>>) -> Result<Report> {
    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let consumer: BaseConsumer =
        super::consumer_config(&options.bootstrap, &options.group).create().context("creating the consumer")?;
    match &options.start_offsets {
        Some(offsets) => {
            let mut assignment = TopicPartitionList::new();
            for (partition, offset) in offsets.iter().enumerate() {
                assignment.add_partition_offset(&options.topic, partition as i32, Offset::Offset(*offset))?;
            }
            consumer.assign(&assignment).with_context(|| format!("assigning {}", options.topic))?;
        }
        None => consumer.subscribe(&[&options.topic]).with_context(|| format!("subscribing to {}", options.topic))?,
    }
    let started_ms = super::now_ms();
    let started = Instant::now();
    let mut last_chunk = Instant::now();
    let mut reassembler = Reassembler::new(options.run.clone());
    let mut written: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut foreign = 0u64;
    let settled = |r: &Reassembler| {
        manifest.videos.iter().all(|v| r.videos.get(&v.id).is_some_and(|s| s.is_complete() || s.broken.is_some()))
    };
    while !settled(&reassembler) && last_chunk.elapsed() < options.idle_timeout && started.elapsed() < options.timeout {
        let polled = consumer.poll(Duration::from_millis(100));
        if ready.is_some() && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            let _ = ready.take().map(|tx| tx.send(()));
        }
        let Some(result) = polled else { continue };
        let message = result.with_context(|| format!("consuming {}", options.topic))?;
        if message.key() == Some(super::scenario::WARM_UP.as_bytes()) {
            continue;
        }
        let Some(meta) = ChunkMeta::from_message(&message)? else {
            foreign += 1;
            continue;
        };
        let arrival = Arrival {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            produced_ms: message.timestamp().to_millis().unwrap_or_default() as f64,
            arrived_ms: super::now_ms(),
        };
        let other_runs = reassembler.other_runs;
        let completed = reassembler.accept(&meta, message.payload().unwrap_or_default(), arrival);
        if reassembler.other_runs == other_runs {
            last_chunk = Instant::now();
        }
        if let Some(id) = completed {
            let path = write(&options.out_dir, manifest, &id, &reassembler.videos[&id].data)?;
            written.insert(id, path);
        }
    }
    let decoding: Vec<(String, JoinHandle<Result<Probe, String>>)> = written
        .into_iter()
        .map(|(id, path)| (id, std::thread::spawn(move || super::encode::probe(&path).map_err(|e| e.to_string()))))
        .collect();
    let decoded: BTreeMap<String, Result<Probe, String>> =
        decoding.into_iter().map(|(id, t)| (id, t.join().expect("ffprobe thread panicked"))).collect();
    Ok(build_report(manifest, &reassembler, &decoded, started_ms, foreign))
}

/// Writes a reassembled video into `dir`, under the source file's name.
fn write(dir: &Path, manifest: &Manifest, id: &str, data: &[u8]) -> Result<PathBuf> {
    let name = manifest.video(id).map_or_else(|| format!("{id}.bin"), |v| v.file.clone());
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn build_report(
    manifest: &Manifest,
    reassembler: &Reassembler,
    decoded: &BTreeMap<String, Result<Probe, String>>,
    started_ms: f64,
    foreign: u64,
) -> Report {
    let mut ids: Vec<&String> = manifest.videos.iter().map(|v| &v.id).collect();
    ids.extend(reassembler.videos.keys().filter(|id| manifest.video(id).is_none()));
    let videos = ids
        .into_iter()
        .map(|id| {
            let expected = manifest.video(id);
            let Some(state) = reassembler.videos.get(id) else {
                return VideoReport::missing(id, expected.map_or("?", |v| v.codec.as_str()));
            };
            let status = if let Some(problem) = &state.broken {
                Status::Broken(problem.clone())
            } else if !state.is_complete() {
                Status::Incomplete { next: state.next() }
            } else {
                verify(id, state, expected, decoded.get(id))
            };
            VideoReport::from_state(id, state, status, started_ms)
        })
        .collect();
    Report {
        videos,
        foreign_records: foreign,
        other_runs: reassembler.other_runs,
        other_runs_bytes: reassembler.other_runs_bytes,
    }
}

/// A video whose chunks all arrived: the same bytes as the source file, and it decodes
/// to the same codec, duration and frame count.
fn verify(
    id: &str,
    state: &VideoState,
    expected: Option<&super::encode::Video>,
    decoded: Option<&Result<Probe, String>>,
) -> Status {
    let Some(expected) = expected else {
        return Status::Broken(format!("video {id} is not in the manifest"));
    };
    if super::sha256_hex(&state.data) != expected.sha256 {
        return Status::Broken("reassembled bytes differ from the source file".into());
    }
    match decoded {
        Some(Ok(probe)) if *probe == expected.probe => Status::Complete(probe.clone()),
        Some(Ok(probe)) => Status::Broken(format!("decodes as {probe:?}, source was {:?}", expected.probe)),
        Some(Err(e)) => Status::Broken(format!("does not decode: {e}")),
        None => Status::Broken("was not decoded".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(run: &str, index: u32, count: u32, payload: &[u8], whole: &[u8]) -> ChunkMeta {
        ChunkMeta {
            run: run.into(),
            video_id: "v".into(),
            codec: "h264".into(),
            index,
            count,
            sha256: super::super::sha256_hex(payload),
            video_sha256: super::super::sha256_hex(whole),
            video_bytes: whole.len() as u64,
        }
    }

    fn at(partition: i32, offset: i64) -> Arrival<'static> {
        Arrival { topic: "t", partition, offset, produced_ms: 1000.0, arrived_ms: 1010.0 + offset as f64 }
    }

    #[test]
    fn in_order_chunks_complete_and_duplicates_are_counted() {
        let whole = b"abcdefgh";
        let mut r = Reassembler::new(Some("r".into()));
        assert_eq!(r.accept(&chunk("r", 0, 2, b"abcd", whole), b"abcd", at(1, 0)), None);
        assert_eq!(r.accept(&chunk("r", 0, 2, b"abcd", whole), b"abcd", at(1, 1)), None);
        assert_eq!(r.accept(&chunk("other", 0, 2, b"abcd", whole), b"abcd", at(1, 2)), None);
        assert_eq!(r.accept(&chunk("r", 1, 2, b"efgh", whole), b"efgh", at(1, 3)), Some("v".into()));
        let v = &r.videos["v"];
        assert!(v.is_complete());
        assert_eq!((v.duplicates, r.other_runs, v.data.as_slice()), (1, 1, &whole[..]));
        assert_eq!(v.latencies_ms, vec![10.0, 13.0]);
    }

    #[test]
    fn a_gap_a_bad_hash_or_a_second_partition_breaks_the_video_by_name() {
        let whole = b"abcdefgh";
        let mut r = Reassembler::new(None);
        r.accept(&chunk("r", 1, 2, b"efgh", whole), b"efgh", at(0, 7));
        let problem = r.videos["v"].broken.clone().unwrap();
        assert!(problem.contains("chunk 1 at t[0]@7") && problem.contains("chunk 0 was expected"), "{problem}");

        let mut r = Reassembler::new(None);
        r.accept(&chunk("r", 0, 2, b"abcd", whole), b"abXd", at(0, 3));
        assert!(r.videos["v"].broken.clone().unwrap().contains("SHA-256"));

        let mut r = Reassembler::new(None);
        r.accept(&chunk("r", 0, 2, b"abcd", whole), b"abcd", at(0, 0));
        r.accept(&chunk("r", 1, 2, b"efgh", whole), b"efgh", at(1, 0));
        assert!(r.videos["v"].broken.clone().unwrap().contains("another partition"));
    }

    #[test]
    fn chunks_that_do_not_make_the_announced_file_break_it() {
        let mut r = Reassembler::new(None);
        r.accept(&chunk("r", 0, 2, b"abcd", b"abcdXXXX"), b"abcd", at(0, 0));
        assert_eq!(r.accept(&chunk("r", 1, 2, b"efgh", b"abcdXXXX"), b"efgh", at(0, 1)), None);
        assert!(r.videos["v"].broken.clone().unwrap().contains("file's SHA-256"));
    }
}
