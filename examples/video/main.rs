//! The video-streaming workload across two regions, with real encoded video.
//!
//! ```sh
//! scripts/ensure-ffmpeg                                  # ffmpeg + ffprobe (Debian)
//! cargo run --release --example video -- generate        # six H.264/VP9 test videos
//! cargo run --release --example video -- demo            # produce, mirror, reassemble, replay
//! ```
//!
//! `demo` expects strait to mirror `video.chunks` from us-east to eu-west
//! (`make video-demo` starts everything). The steps also run on their own:
//! `produce` (us-east), `consume` (eu-west, any consumer group; prints the per-video
//! table; exit 1 unless every video is complete and decodable). The defaults point at
//! the local test bed (`deploy/local/testbed up`), honouring STRAIT_TESTBED_PORT_OFFSET.
//! Settings for large records and why chunks are not compressed: see `workload`.

mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use workload::encode::{self, Manifest};
use workload::produce::{produce, Pace, Upload};
use workload::reassemble::{consume, ConsumeOptions};
use workload::scenario::Scenario;

#[derive(Parser)]
#[command(about = "Real encoded video, chunked through Kafka across two regions and put back together")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render the test videos with ffmpeg into DIR and write DIR/manifest.json.
    Generate {
        #[command(flatten)]
        videos: VideoDir,
    },
    /// Produce every video of the manifest to the source topic, all at once.
    Produce {
        #[command(flatten)]
        videos: VideoDir,
        #[command(flatten)]
        source: Source,
        /// Chunk size in bytes.
        #[arg(long, default_value_t = workload::CHUNK_BYTES)]
        chunk_bytes: usize,
        /// Run id written into every chunk (default: run-<unix ms>).
        #[arg(long)]
        run: Option<String>,
        #[command(flatten)]
        pace: PaceArg,
    },
    /// Reassemble and verify the videos from the target topic; print the per-video table.
    Consume {
        #[command(flatten)]
        videos: VideoDir,
        #[command(flatten)]
        target: Target,
        /// Consumer group; a new one reads from the start (a replay).
        #[arg(long)]
        group: Option<String>,
        /// Only chunks of this run count (default: every run; duplicates are skipped).
        #[arg(long)]
        run: Option<String>,
        /// Where reassembled files go (default: DIR/out/<group>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stop when no chunk arrived for this many seconds.
        #[arg(long, default_value_t = 30)]
        idle_timeout_s: u64,
    },
    /// Everything: generate, produce to us-east, reassemble live on eu-west, replay.
    Demo {
        #[command(flatten)]
        videos: VideoDir,
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = workload::CHUNK_BYTES)]
        chunk_bytes: usize,
        /// Stop waiting when no chunk arrived for this many seconds.
        #[arg(long, default_value_t = 60)]
        idle_timeout_s: u64,
        #[command(flatten)]
        pace: PaceArg,
    },
}

#[derive(Args)]
struct PaceArg {
    /// Send each video's chunks over its playing time divided by FACTOR, as a live
    /// encoder would (default: every chunk at once, a burst of uploads).
    #[arg(long, value_name = "FACTOR")]
    pace: Option<f64>,
}

impl PaceArg {
    fn pace(&self) -> Pace {
        self.pace.map_or(Pace::Burst, Pace::RealTime)
    }
}

#[derive(Args)]
struct VideoDir {
    /// Directory of the test videos and their manifest (default: target/video, or
    /// target/video-small with --small).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The two short videos of the default test suite instead of the full set.
    #[arg(long)]
    small: bool,
}

impl VideoDir {
    fn path(&self) -> PathBuf {
        let default = if self.small { "target/video-small" } else { "target/video" };
        self.dir.clone().unwrap_or_else(|| default.into())
    }
}

#[derive(Args)]
struct Source {
    /// Source cluster (default: the test bed's us-east).
    #[arg(long)]
    source: Option<String>,
    #[arg(long, default_value = "video.chunks")]
    topic: String,
    /// Partitions of the topic, if it has to be created.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

#[derive(Args)]
struct Target {
    /// Target cluster (default: the test bed's eu-west).
    #[arg(long)]
    target: Option<String>,
    /// The topic's name on the target (strait's default `prefix` naming).
    #[arg(long, default_value = "us-east.video.chunks")]
    target_topic: String,
}

/// A test-bed address, shifted like deploy/local/testbed by STRAIT_TESTBED_PORT_OFFSET.
fn testbed(port: u16) -> String {
    let offset: u16 = std::env::var("STRAIT_TESTBED_PORT_OFFSET").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    format!("127.0.0.1:{}", port + offset)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): the command ran but not every video came through intact.
fn run(command: Command) -> Result<bool> {
    match command {
        Command::Generate { videos } => {
            let manifest = generate(&videos)?;
            print_compression(&manifest);
            Ok(true)
        }
        Command::Produce { videos, source, chunk_bytes, run, pace } => {
            let manifest = Manifest::load(&videos.path())?;
            let bootstrap = source.source.unwrap_or_else(|| testbed(19092));
            workload::topic::ensure(&bootstrap, &source.topic, source.partitions, &workload::topic_configs())?;
            let uploads: Vec<Upload> =
                manifest.videos.iter().map(|v| Upload::load(&videos.path(), v, chunk_bytes)).collect::<Result<_>>()?;
            let run = run.unwrap_or_else(|| format!("run-{}", workload::now_ms() as u64));
            let produced = produce(&bootstrap, &source.topic, &run, &uploads, pace.pace())?;
            println!(
                "run {run}: produced {} chunks, {:.1} MiB of {} videos in {:.2} s; partitions {:?}",
                produced.chunks,
                produced.bytes as f64 / 1048576.0,
                uploads.len(),
                produced.elapsed.as_secs_f64(),
                produced.partitions
            );
            Ok(true)
        }
        Command::Consume { videos, target, group, run, out, idle_timeout_s } => {
            let manifest = Manifest::load(&videos.path())?;
            let group = group.unwrap_or_else(|| format!("video-reassembler-{}", workload::now_ms() as u64));
            let options = ConsumeOptions {
                bootstrap: target.target.unwrap_or_else(|| testbed(29092)),
                topic: target.target_topic,
                out_dir: out.unwrap_or_else(|| videos.path().join("out").join(&group)),
                group,
                run,
                idle_timeout: Duration::from_secs(idle_timeout_s),
                timeout: Duration::from_secs(3600),
                start_offsets: None,
            };
            let report = consume(&options, &manifest, None)?;
            print!("{}", report.table());
            Ok(report.all_complete())
        }
        Command::Demo { videos, source, target, chunk_bytes, idle_timeout_s, pace } => {
            let manifest = generate(&videos)?;
            let run = format!("run-{}", workload::now_ms() as u64);
            let scenario = Scenario {
                source: source.source.unwrap_or_else(|| testbed(19092)),
                target: target.target.unwrap_or_else(|| testbed(29092)),
                topic: source.topic,
                target_topic: target.target_topic,
                partitions: source.partitions,
                chunk_bytes,
                out_dir: videos.path().join("out").join(&run),
                video_dir: videos.path(),
                group_prefix: format!("video-demo.{run}"),
                run,
                idle_timeout: Duration::from_secs(idle_timeout_s),
                pace: pace.pace(),
            };
            let outcome = scenario.run(&manifest)?;
            print_compression(&manifest);
            println!(
                "\ntopic configs, {} on {} -> {} on {}:",
                scenario.topic, scenario.source, scenario.target_topic, scenario.target
            );
            for c in &outcome.configs {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                println!(
                    "  {:<20} {:>12} -> {:<12}{}",
                    c.key,
                    show(&c.source),
                    show(&c.target),
                    if c.source == c.target { "" } else { "  DIFFERS" }
                );
            }
            let p = &outcome.produced;
            let mode = match scenario.pace {
                Pace::Burst => "burst: every chunk at once".to_string(),
                Pace::RealTime(f) => format!("paced: each video over its playing time / {f}"),
            };
            println!(
                "\nproduced ({mode}): {} videos, {} chunks, {:.1} MiB in {:.2} s ({:.1} MiB/s), run {}",
                manifest.videos.len(),
                p.chunks,
                p.bytes as f64 / 1048576.0,
                p.elapsed.as_secs_f64(),
                p.bytes as f64 / 1048576.0 / p.elapsed.as_secs_f64(),
                scenario.run
            );
            println!(
                "\nlive: reassembled on {} while producing (latency: produce on {} to reassembly)",
                scenario.target, scenario.source
            );
            print!("{}", outcome.live.table());
            println!(
                "\nreplay: a new consumer group from the start of {} (latency here is the chunks' age)",
                scenario.target_topic
            );
            print!("{}", outcome.replay.table());
            Ok(outcome.all_complete() && outcome.configs.iter().all(|c| c.source == c.target))
        }
    }
}

fn generate(videos: &VideoDir) -> Result<Manifest> {
    let specs = if videos.small { encode::small_set() } else { encode::full_set() };
    encode::generate(&videos.path(), &specs)
}

/// What lz4 and zstd would save on these files: why the producer sends them uncompressed.
fn print_compression(manifest: &Manifest) {
    println!(
        "\n{:<22} {:<5} {:>9} {:>7} {:>7} {:>9} {:>9}",
        "video", "codec", "MiB", "frames", "s", "lz4 saves", "zstd saves"
    );
    for v in &manifest.videos {
        println!(
            "{:<22} {:<5} {:>9.2} {:>7} {:>7.2} {:>8.2}% {:>9.2}%",
            v.id,
            v.codec,
            v.bytes as f64 / 1048576.0,
            v.probe.frames,
            v.probe.duration_s,
            100.0 * v.lz4_saving,
            100.0 * v.zstd_saving
        );
    }
}
