//! The per-video report: complete or not, chunks, bytes, end-to-end latency from produce
//! to reassembly (p50/p99 over the video's chunks) and throughput.
//!
//! Throughput is the video's bytes over the time from its first chunk's production (or
//! the consumer's start, whichever is later, so a replay of old chunks is measured from
//! when reading began) to its last chunk's reassembly.

use std::fmt::Write;

use super::encode::Probe;
use super::reassemble::VideoState;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Every chunk arrived, the bytes equal the source and it decodes like the source.
    Complete(Probe),
    /// Chunks are missing from `next` on.
    Incomplete { next: u32 },
    /// Something is wrong with the chunks that arrived; the message says what and where.
    Broken(String),
    /// Not one chunk arrived.
    Missing,
}

/// The countable side of a video, or of all videos together.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub partition: Option<i32>,
    /// Chunks appended, and how many the video has (None: unknown, nothing arrived).
    pub chunks: u32,
    pub chunk_count: Option<u32>,
    pub bytes: u64,
    pub duplicates: u32,
    /// Produce-to-reassembly time of each appended chunk.
    pub latencies_ms: Vec<f64>,
    /// When the measured span starts and ends (ms since the epoch).
    pub span_ms: Option<(f64, f64)>,
}

impl Figures {
    pub fn latency_ms(&self, quantile: f64) -> Option<f64> {
        percentile(&self.latencies_ms, quantile)
    }

    pub fn mib_per_s(&self) -> Option<f64> {
        let (from, to) = self.span_ms?;
        (to > from).then(|| self.bytes as f64 / MIB / ((to - from) / 1000.0))
    }
}

#[derive(Debug, Clone)]
pub struct VideoReport {
    pub id: String,
    pub codec: String,
    pub status: Status,
    pub figures: Figures,
}

impl VideoReport {
    pub fn missing(id: &str, codec: &str) -> VideoReport {
        VideoReport { id: id.into(), codec: codec.into(), status: Status::Missing, figures: Figures::default() }
    }

    pub fn from_state(id: &str, state: &VideoState, status: Status, consumer_started_ms: f64) -> VideoReport {
        let figures = Figures {
            partition: Some(state.partition),
            chunks: state.next(),
            chunk_count: Some(state.count),
            bytes: state.data.len() as u64,
            duplicates: state.duplicates,
            latencies_ms: state.latencies_ms.clone(),
            span_ms: Some((state.first_produced_ms.max(consumer_started_ms), state.last_arrival_ms)),
        };
        VideoReport { id: id.into(), codec: state.codec.clone(), status, figures }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self.status, Status::Complete(_))
    }
}

/// Nearest-rank percentile (`quantile` in 0..=1) of unsorted samples.
pub fn percentile(samples: &[f64], quantile: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[derive(Debug, Clone)]
pub struct Report {
    pub videos: Vec<VideoReport>,
    /// Records without chunk headers in the topic (skipped).
    pub foreign_records: u64,
    /// Chunk records of other production runs (skipped), and their bytes.
    pub other_runs: u64,
    pub other_runs_bytes: u64,
}

impl Report {
    pub fn all_complete(&self) -> bool {
        !self.videos.is_empty() && self.videos.iter().all(VideoReport::is_complete)
    }

    pub fn video(&self, id: &str) -> Option<&VideoReport> {
        self.videos.iter().find(|v| v.id == id)
    }

    /// The table printed by the example: one row per video, then all videos together
    /// (latency over every chunk, throughput over the whole span), then what went wrong.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:<5} {:>4}  {:<10} {:>7} {:>8} {:>4} {:>9} {:>9} {:>7}  decoded",
            "video", "codec", "part", "status", "chunks", "MiB", "dup", "p50 ms", "p99 ms", "MiB/s"
        );
        for v in &self.videos {
            let (status, decoded) = match &v.status {
                Status::Complete(p) => (
                    "complete",
                    format!("{} {}x{}, {} frames, {:.2} s", p.codec, p.width, p.height, p.frames, p.duration_s),
                ),
                Status::Incomplete { .. } => ("INCOMPLETE", String::new()),
                Status::Broken(_) => ("BROKEN", String::new()),
                Status::Missing => ("MISSING", String::new()),
            };
            row(&mut out, &v.figures, &v.id, &v.codec, status, &decoded);
        }
        let total = self.total();
        let complete = self.videos.iter().filter(|v| v.is_complete()).count();
        row(&mut out, &total, "all videos", "", &format!("{complete}/{} ok", self.videos.len()), "");
        for v in &self.videos {
            let problem = match &v.status {
                Status::Incomplete { next } => format!("chunk {next} and later never arrived"),
                Status::Broken(problem) => problem.clone(),
                Status::Missing => "no chunk arrived".into(),
                Status::Complete(_) => continue,
            };
            let _ = writeln!(out, "{}: {problem}", v.id);
        }
        if self.foreign_records + self.other_runs > 0 {
            let _ = writeln!(
                out,
                "skipped: {} chunk records of other runs ({:.1} MiB), {} records without chunk headers",
                self.other_runs,
                self.other_runs_bytes as f64 / MIB,
                self.foreign_records
            );
        }
        out
    }

    /// All videos as one: chunks, bytes, latency over every chunk, overall throughput.
    pub fn total(&self) -> Figures {
        let spans: Vec<(f64, f64)> = self.videos.iter().filter_map(|v| v.figures.span_ms).collect();
        let span = (!spans.is_empty()).then(|| {
            let from = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
            (from, spans.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max))
        });
        let figures = || self.videos.iter().map(|v| &v.figures);
        Figures {
            partition: None,
            chunks: figures().map(|f| f.chunks).sum(),
            chunk_count: Some(figures().map(|f| f.chunk_count.unwrap_or(0)).sum()),
            bytes: figures().map(|f| f.bytes).sum(),
            duplicates: figures().map(|f| f.duplicates).sum(),
            latencies_ms: figures().flat_map(|f| f.latencies_ms.iter().copied()).collect(),
            span_ms: span,
        }
    }
}

fn row(out: &mut String, v: &Figures, name: &str, codec: &str, status: &str, decoded: &str) {
    let num = |x: Option<f64>, digits: usize| x.map_or("-".to_string(), |x| format!("{x:.digits$}"));
    let _ = writeln!(
        out,
        "{name:<22} {codec:<5} {:>4}  {status:<10} {:>7} {:>8.2} {:>4} {:>9} {:>9} {:>7}  {decoded}",
        v.partition.map_or("-".into(), |p| p.to_string()),
        format!("{}/{}", v.chunks, v.chunk_count.map_or("?".into(), |c| c.to_string())),
        v.bytes as f64 / MIB,
        v.duplicates,
        num(v.latency_ms(0.5), 1),
        num(v.latency_ms(0.99), 1),
        num(v.mib_per_s(), 1),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
