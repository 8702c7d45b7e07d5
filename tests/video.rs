//! The video-streaming workload, small: two real ffmpeg-encoded videos (H.264 and VP9,
//! a few MiB) cut into chunks, produced to us-east, mirrored by strait, reassembled on
//! eu-west byte for byte, decoded with ffprobe, and replayed with a new consumer group;
//! and a chunk over the target topic's limit, which must stop strait by name with
//! nothing after it on the target. The full run is `make video-demo`.
//!
//! Uses the same code as the example (`examples/video/workload`). Needs ffmpeg
//! (`scripts/ensure-ffmpeg` installs Debian's package when missing).

mod common;
#[path = "../examples/video/workload/mod.rs"]
mod workload;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use workload::encode::Manifest;
use workload::reassemble::{consume, ConsumeOptions};
use workload::report::Status;

/// The small set, rendered once per build directory (reused while its spec is unchanged).
fn small_videos() -> (PathBuf, Manifest) {
    static VIDEOS: OnceLock<(PathBuf, Manifest)> = OnceLock::new();
    VIDEOS
        .get_or_init(|| {
            let install = Command::new(repo_root().join("scripts/ensure-ffmpeg")).output().unwrap();
            assert!(install.status.success(), "scripts/ensure-ffmpeg: {}", stderr(&install));
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("video-small");
            let manifest = workload::encode::generate(&dir, &workload::encode::small_set()).unwrap();
            (dir, manifest)
        })
        .clone()
}

fn start_strait(topic: &str, extra: &str) -> (tempfile::TempDir, Strait) {
    let flow = flow("us-east", "eu-west", &regex::escape(topic), "prefix", &unique("strait"));
    let (dir, path) = write_config(&config_with_flows(&format!("{flow}{extra}")));
    let strait = Strait::start(&path);
    (dir, strait)
}

fn header(rec: &Rec, name: &str) -> String {
    let value = rec.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone());
    String::from_utf8(value.unwrap_or_default()).unwrap()
}

/// Two videos at once over two partitions: both arrive complete, byte-identical and
/// decodable, each video's chunks in order in one partition, the topic's large-record
/// configs copied, and a replay with a new group gives the same files.
#[test]
fn two_videos_cross_regions_intact_in_order_and_replayable() {
    testbed();
    let (video_dir, manifest) = small_videos();
    let out = tempfile::tempdir().unwrap();
    let topic = unique("video.chunks");
    let (_config, mut strait) = start_strait(&topic, "");
    let chunk_bytes = 256 * 1024;
    let scenario = workload::scenario::Scenario {
        source: us_east().into(),
        target: eu_west().into(),
        target_topic: format!("us-east.{topic}"),
        topic,
        partitions: 2,
        chunk_bytes,
        video_dir: video_dir.clone(),
        out_dir: out.path().into(),
        run: unique("run"),
        group_prefix: unique("video"),
        idle_timeout: Duration::from_secs(60),
        pace: workload::produce::Pace::Burst,
    };
    let outcome = scenario.run(&manifest).unwrap();
    eprintln!("live:\n{}\nreplay:\n{}", outcome.live.table(), outcome.replay.table());
    assert!(outcome.live.all_complete(), "live run:\n{}", outcome.live.table());
    assert!(outcome.replay.all_complete(), "replay:\n{}", outcome.replay.table());

    for video in &manifest.videos {
        let expected_chunks = video.bytes.div_ceil(chunk_bytes as u64) as u32;
        assert!(expected_chunks > 2, "{} should span several chunks", video.id);
        for (name, report) in [("live", &outcome.live), ("replay", &outcome.replay)] {
            let row = report.video(&video.id).unwrap();
            assert_eq!(row.figures.chunks, expected_chunks, "{name} {}", video.id);
            assert_eq!(row.figures.duplicates, 0, "{name} {}", video.id);
            assert_eq!(row.status, Status::Complete(video.probe.clone()), "{name} {}", video.id);
            assert_eq!(row.figures.partition, outcome.produced.partitions.get(&video.id).copied());
            let copy = std::fs::read(out.path().join(name).join(&video.file)).unwrap();
            assert!(copy == std::fs::read(video_dir.join(&video.file)).unwrap(), "{name} {} differs", video.id);
        }
    }
    let partitions: std::collections::BTreeSet<i32> = outcome.produced.partitions.values().copied().collect();
    assert_eq!(partitions.len(), 2, "the two videos share a partition: {:?}", outcome.produced.partitions);

    // Order on the target itself, not only as the reassembler saw it.
    let mut records = read_all(eu_west(), &scenario.target_topic);
    records.retain(|r| r.key.as_deref() != Some(workload::scenario::WARM_UP.as_bytes()));
    for (partition, recs) in by_partition(&records) {
        let indices: Vec<u32> = recs.iter().map(|r| header(r, "video.chunk.index").parse().unwrap()).collect();
        assert_eq!(indices, (0..indices.len() as u32).collect::<Vec<_>>(), "partition {partition}");
        assert!(recs.iter().all(|r| r.key == recs[0].key), "one video per partition here");
    }

    for c in &outcome.configs {
        assert_eq!(c.source, c.target, "topic config {} not synced", c.key);
    }
    let max = outcome.configs.iter().find(|c| c.key == "max.message.bytes").unwrap();
    assert_eq!(max.target.as_deref(), Some(workload::TOPIC_MAX_MESSAGE_BYTES.to_string().as_str()));
    assert!(strait.is_running(), "{}", strait.log_text());
}

/// A chunk larger than the target topic allows (the target topic was made by hand with a
/// smaller `max.message.bytes` and configs are not synced): strait stops with an error
/// naming the record, and the target holds exactly the chunks before it, so the video is
/// reported incomplete from that chunk on, never silently short.
#[test]
fn a_chunk_over_the_target_limit_stops_strait_by_name_and_nothing_after_it_lands() {
    testbed();
    let (video_dir, manifest) = small_videos();
    let video = manifest.videos.iter().find(|v| v.codec == "h264").unwrap().clone();
    let topic = unique("video.chunks");
    let target_topic = format!("us-east.{topic}");
    create_topic(us_east(), &topic, 1, &[("max.message.bytes", "8388608")]);
    create_topic(eu_west(), &target_topic, 1, &[("max.message.bytes", "1048576")]);
    // Chunks 0 and 1 fit, chunk 2 (1.25 MiB) is over the target's 1 MiB, the rest fit.
    let k = 1024;
    let mut sizes = vec![128 * k, 128 * k, 1280 * k];
    sizes.extend(std::iter::repeat_n(64 * k, 64));
    let upload = workload::produce::Upload::with_sizes(&video_dir, &video, &sizes).unwrap();
    assert!(upload.ranges.len() >= 6, "{} is too short for chunks after the big one", video.id);
    let burst = workload::produce::Pace::Burst;
    workload::produce::produce(us_east(), &topic, "oversize", std::slice::from_ref(&upload), burst).unwrap();

    let (_config, mut strait) = start_strait(&topic, "sync_topic_configs = false\n");
    let stopped = Instant::now();
    wait_for("strait to stop on the refused chunk", Duration::from_secs(90), || (!strait.is_running()).then_some(()));
    let status = strait.child.wait().unwrap();
    let log = strait.log_text();
    assert_eq!(status.code(), Some(1), "exit status {status:?}\n{log}");
    let record = format!("{topic}[0]@2");
    assert!(log.contains(&record), "the error does not name {record}:\n{log}");
    assert!(log.contains("max.message.bytes"), "the error does not say which limit to raise:\n{log}");
    eprintln!("strait stopped {:?} after starting", stopped.elapsed());

    // Give late deliveries time to land, then reassemble on the target: the video must
    // be reported short from chunk 2 on, whatever else is there.
    std::thread::sleep(Duration::from_secs(3));
    let mut expected = Manifest::default();
    expected.videos.push(video.clone());
    let out = tempfile::tempdir().unwrap();
    let options = ConsumeOptions {
        bootstrap: eu_west().into(),
        topic: target_topic.clone(),
        group: unique("video"),
        run: Some("oversize".into()),
        out_dir: out.path().into(),
        idle_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
        start_offsets: None,
    };
    let report = consume(&options, &expected, None).unwrap();
    let table = report.table();
    eprintln!("{table}");
    let row = report.video(&video.id).unwrap();
    assert!(!row.is_complete(), "{table}");
    assert!(table.contains("chunk 2 and later never arrived") || table.contains("chunk 2 was expected"), "{table}");

    // Nothing of the partition after the record before the refused one.
    let target = read_all(eu_west(), &target_topic);
    let indices: Vec<String> = target.iter().map(|r| header(r, "video.chunk.index")).collect();
    assert_eq!(indices, ["0", "1"], "later chunks arrived on the target after the refused chunk 2");
    assert_eq!(row.status, Status::Incomplete { next: 2 }, "{table}");
}
