//! Real encoded test videos: ffmpeg renders one of its built-in test patterns (lavfi
//! sources such as `testsrc2`, `smptehdbars`, `mandelbrot`) and encodes it as H.264 in
//! MP4 or VP9 in WebM at a constant bitrate, so file sizes are predictable; ffprobe then
//! decodes every frame and reports codec, duration and frame count. The results go into
//! `manifest.json` next to the files: the reassembling side compares against it.
//!
//! ffmpeg and ffprobe come from Debian's `ffmpeg` package (`scripts/ensure-ffmpeg`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One test video to render.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub id: &'static str,
    /// `h264` (MP4) or `vp9` (WebM), as ffprobe names the codec.
    pub codec: &'static str,
    /// lavfi source, rendered at the size and rate below.
    pub pattern: &'static str,
    /// Moving noise on top of the pattern, so the encoder has real work at the bitrate.
    pub noise: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: u32,
    pub kbit_per_s: u32,
}

/// The full demo: six videos of 10–30 s, three H.264 and three VP9, ~55 MB in all.
pub fn full_set() -> Vec<Spec> {
    let s = |id, codec, pattern, noise, (width, height), fps, seconds, kbit_per_s| Spec {
        id,
        codec,
        pattern,
        noise,
        width,
        height,
        fps,
        seconds,
        kbit_per_s,
    };
    vec![
        s("bars-h264", "h264", "smptehdbars", true, (1280, 720), 25, 30, 4000),
        s("testsrc2-h264", "h264", "testsrc2", false, (1280, 720), 30, 20, 4000),
        s("mandelbrot-h264", "h264", "mandelbrot", false, (960, 540), 25, 25, 3000),
        s("testsrc-vp9", "vp9", "testsrc", true, (640, 360), 25, 20, 3000),
        s("life-vp9", "vp9", "life", false, (640, 360), 25, 15, 3000),
        s("smptebars-vp9", "vp9", "smptebars", true, (854, 480), 30, 10, 4000),
    ]
}

/// The default test suite's set: two short videos, a few MiB together.
pub fn small_set() -> Vec<Spec> {
    vec![
        Spec {
            id: "clip-h264",
            codec: "h264",
            pattern: "testsrc2",
            noise: true,
            width: 640,
            height: 360,
            fps: 25,
            seconds: 5,
            kbit_per_s: 4000,
        },
        Spec {
            id: "clip-vp9",
            codec: "vp9",
            pattern: "testsrc",
            noise: true,
            width: 320,
            height: 240,
            fps: 25,
            seconds: 4,
            kbit_per_s: 3000,
        },
    ]
}

impl Spec {
    fn file_name(&self) -> String {
        let ext = if self.codec == "vp9" { "webm" } else { "mp4" };
        format!("{}.{ext}", self.id)
    }

    /// ffmpeg's arguments, minus the output file. Also the cache key of a rendered file.
    fn ffmpeg_args(&self) -> Vec<String> {
        let mut graph =
            format!("{}=size={}x{}:rate={},format=yuv420p", self.pattern, self.width, self.height, self.fps);
        if self.noise {
            graph.push_str(",noise=alls=12:allf=t");
        }
        let rate = format!("{}k", self.kbit_per_s);
        let gop = (self.fps * 2).to_string();
        let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push(graph);
        args.extend(["-t".into(), self.seconds.to_string(), "-g".into(), gop]);
        let codec_args: &[&str] = match self.codec {
            "vp9" => &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"],
            _ => &["-c:v", "libx264", "-preset", "veryfast", "-movflags", "+faststart"],
        };
        args.extend(codec_args.iter().map(|a| a.to_string()));
        // Constant bitrate: predictable sizes whatever the pattern.
        args.extend(["-b:v".into(), rate.clone(), "-minrate".into(), rate.clone(), "-maxrate".into(), rate]);
        args.extend(["-bufsize".into(), format!("{}k", self.kbit_per_s * 2)]);
        args
    }
}

/// What ffprobe found after decoding every frame of a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub codec: String,
    pub duration_s: f64,
    pub frames: u64,
    pub width: u32,
    pub height: u32,
}

/// A rendered video as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Video {
    pub id: String,
    pub codec: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub probe: Probe,
    /// Share of the bytes lz4 (as Kafka's lz4) removes from 1 MiB chunks of this file.
    pub lz4_saving: f64,
    /// Share of the bytes zstd level 3 (Kafka's default level) removes.
    pub zstd_saving: f64,
    /// The ffmpeg arguments that rendered the file; a different spec renders it again.
    pub ffmpeg_args: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub videos: Vec<Video>,
}

impl Manifest {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("manifest.json")
    }

    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run the `generate` command first)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn video(&self, id: &str) -> Option<&Video> {
        self.videos.iter().find(|v| v.id == id)
    }
}

/// Renders every spec into `dir` (reusing files an earlier run rendered with the same
/// arguments and that still hash the same), probes them, and writes the manifest.
pub fn generate(dir: &Path, specs: &[Spec]) -> Result<Manifest> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let previous = Manifest::load(dir).unwrap_or_default();
    let mut manifest = Manifest::default();
    for spec in specs {
        let path = dir.join(spec.file_name());
        let args = spec.ffmpeg_args();
        let cached = previous.video(spec.id).filter(|v| {
            v.ffmpeg_args == args && std::fs::read(&path).is_ok_and(|data| super::sha256_hex(&data) == v.sha256)
        });
        if let Some(video) = cached {
            manifest.videos.push(video.clone());
            continue;
        }
        eprintln!("encoding {} ({} {}x{} {} s) ...", spec.id, spec.codec, spec.width, spec.height, spec.seconds);
        let out = Command::new("ffmpeg")
            .args(&args)
            .arg(&path)
            .output()
            .context("running ffmpeg (install it with scripts/ensure-ffmpeg)")?;
        if !out.status.success() {
            bail!("ffmpeg failed to render {}: {}", spec.id, String::from_utf8_lossy(&out.stderr));
        }
        manifest.videos.push(describe(spec, &path, args)?);
    }
    manifest.save(dir)?;
    Ok(manifest)
}

fn describe(spec: &Spec, path: &Path, ffmpeg_args: Vec<String>) -> Result<Video> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let probe = probe(path)?;
    if probe.codec != spec.codec {
        bail!("{}: ffprobe reports codec {}, expected {}", spec.id, probe.codec, spec.codec);
    }
    let (lz4, zstd) = compressed_sizes(&data)?;
    Ok(Video {
        id: spec.id.to_string(),
        codec: spec.codec.to_string(),
        file: spec.file_name(),
        bytes: data.len() as u64,
        sha256: super::sha256_hex(&data),
        probe,
        lz4_saving: 1.0 - lz4 as f64 / data.len() as f64,
        zstd_saving: 1.0 - zstd as f64 / data.len() as f64,
        ffmpeg_args,
    })
}

/// Sizes after compressing each ~1 MiB chunk on its own, as a producer would.
fn compressed_sizes(data: &[u8]) -> Result<(usize, usize)> {
    let (mut lz4, mut zstd) = (0, 0);
    for chunk in data.chunks(super::CHUNK_BYTES) {
        lz4 += lz4_flex::block::compress(chunk).len();
        zstd += zstd::bulk::compress(chunk, 3).context("zstd")?.len();
    }
    Ok((lz4, zstd))
}

/// Decodes every frame of `path` with ffprobe. Any decoder complaint is an error: a
/// file that plays with glitches is not intact.
pub fn probe(path: &Path) -> Result<Probe> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json", "-show_entries"])
        .arg("stream=codec_name,nb_read_frames,width,height:format=duration")
        .arg(path)
        .output()
        .context("running ffprobe (install it with scripts/ensure-ffmpeg)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        bail!("ffprobe cannot decode {} cleanly: {}", path.display(), stderr.trim());
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing ffprobe's output")?;
    let stream = &json["streams"][0];
    let field = |v: &serde_json::Value, what: &str| -> Result<String> {
        match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            _ => bail!("ffprobe reported no {what} for {}", path.display()),
        }
    };
    Ok(Probe {
        codec: field(&stream["codec_name"], "codec")?,
        duration_s: field(&json["format"]["duration"], "duration")?.parse().context("duration")?,
        frames: field(&stream["nb_read_frames"], "frame count")?.parse().context("frame count")?,
        width: field(&stream["width"], "width")?.parse().context("width")?,
        height: field(&stream["height"], "height")?.parse().context("height")?,
    })
}
