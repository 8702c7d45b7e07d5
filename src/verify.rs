//! `strait verify`: proof, from the clusters themselves, that a flow's target holds an
//! exact copy of its source.
//!
//! For every source partition, the offset map says where each record's newest copy is.
//! verify reads the source partition (read_committed) up to the *mirrored position* (the
//! map's frontier, read once at start, so it works while strait keeps mirroring) and the
//! target partition up to the last mapped copy, both as streams of per-record digests
//! (key, value, headers, timestamp), and merges them in one pass ([`compare`]). Nothing
//! of a topic is held in memory beyond a sliding window of digests.
//!
//! Findings per partition: records checked; *missing* (no copy mapped, or the mapped copy
//! is gone from the target); *corrupted* (the copy differs); *out of order*; *extra*
//! target records that are nobody's copy (*duplicates* of a nearby source record, or
//! *foreign*), reported apart from loss; and the offsets *not yet mirrored*.
//!
//! Exit codes: 0 the copy is complete and identical up to the mirrored position (extra
//! records only warn); 1 something is missing, corrupted or out of order (or extra, with
//! `--strict`); 2 a bad config or argument; 3 verification could not finish (a cluster
//! or partition could not be read), which says nothing about the copy.

mod compare;
mod read;
mod report;

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

pub use compare::{Counts, Fault, FaultKind};
pub use report::{PartitionReport, Report, Totals};

use crate::cluster::{Cluster, ClusterError};
use crate::config::{anchored, Config, RenamePolicy};
use crate::failover::{FailoverError, FlowContext};
use crate::naming::TopicSelector;
use crate::offset_map::{self, FlowMap, MapReader};
use compare::Plan;
use read::{Entries, IgnoredHeader, Range};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Partitions compared at the same time (each with a reader thread per side).
const WORKERS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no flow `{wanted}` in the config (flows: {known})")]
    UnknownFlow { wanted: String, known: String },
    #[error("--topic `{pattern}` is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("--topic `{pattern}` matches none of the topics flow {flow} mirrors from `{source_alias}`")]
    NoTopic { pattern: String, flow: String, source_alias: String },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("cluster `{cluster}`: reading {topic}[{partition}] failed: {reason}")]
    Read { cluster: String, topic: String, partition: i32, reason: String },
}

impl VerifyError {
    /// The exit code: 2 for a bad argument, 3 when the clusters could not be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::UnknownFlow { .. } | VerifyError::BadPattern { .. } | VerifyError::NoTopic { .. } => 2,
            VerifyError::Cluster(_) | VerifyError::Read { .. } => 3,
        }
    }
}

/// What to verify, from the command line.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub flow: String,
    /// Anchored regular expression over the flow's source topics.
    pub topic: Option<String>,
    /// Only records from this Unix time (ms) on.
    pub since_ms: Option<i64>,
    pub strict: bool,
}

/// Parses `--since`: an RFC 3339 time (`2025-01-31T12:00:00Z`), Unix milliseconds, or a
/// duration before now (`90s`, `5m`, `1h`).
pub fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t.duration_since(UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?.as_millis() as i64);
    }
    if text.len() >= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("`{text}` is not a Unix time in milliseconds"));
    }
    let ago = crate::failover::parse_duration(text).map_err(|_| {
        format!("`{text}` is not a time: use RFC 3339 (2025-01-31T12:00:00Z), Unix milliseconds, or a duration ago (90s, 5m, 1h)")
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(now.saturating_sub(ago).as_millis() as i64)
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {human_pos}/{human_len} records ({rate}, eta {eta})",
        )
        .expect("valid template")
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} records/s", state.per_sec());
        })
        .progress_chars("=> "),
    );
    bar
}

/// Compares every selected source partition of the flow with its copy.
pub fn verify(config: &Config, options: &VerifyOptions, progress: &ProgressBar) -> Result<Report, VerifyError> {
    // `find` fails only for a flow the config does not have.
    let ctx = FlowContext::find(config, &options.flow).map_err(|e| match e {
        FailoverError::UnknownFlow { wanted, known } => VerifyError::UnknownFlow { wanted, known },
        other => VerifyError::UnknownFlow { wanted: options.flow.clone(), known: other.to_string() },
    })?;
    let topics = select_topics(&ctx, options.topic.as_deref())?;
    let target_meta = ctx.target.metadata_client()?;
    let target_topics: HashMap<String, usize> = ctx.target.topics(&target_meta, TIMEOUT)?.into_iter().collect();
    let map = read_map(&ctx, &target_topics)?;
    let source_meta = ctx.source.metadata_client()?;
    let selector = TopicSelector::new(&ctx.flow);
    let mut jobs = Vec::new();
    for (topic, partitions) in &topics {
        let target_topic = selector.target_topic(topic);
        let target_partitions = target_topics.get(&target_topic).copied().unwrap_or(0);
        for partition in 0..*partitions as i32 {
            let on_target = (partition < target_partitions as i32).then_some(&target_meta);
            let side = Sides { ctx: &ctx, source_meta: &source_meta, target_meta: on_target };
            jobs.push(side.job(topic, &target_topic, partition, &map, options.since_ms)?);
        }
    }
    progress.set_length(jobs.iter().map(|j| (j.source.end - j.source.start).max(0) as u64).sum());
    let ignore = (ctx.flow.rename == RenamePolicy::Identity).then(|| IgnoredHeader {
        name: ctx.flow.provenance_header.clone(),
        value: ctx.flow.source.as_bytes().to_vec(),
    });
    let reports = run_jobs(&ctx, jobs, ignore.as_ref(), progress)?;
    progress.finish_and_clear();
    Ok(Report::new(ctx.flow.name(), ctx.flow.source.clone(), ctx.flow.target.clone(), options.strict, reports))
}

/// The flow's source topics, narrowed by `--topic`, sorted.
fn select_topics(ctx: &FlowContext, pattern: Option<&str>) -> Result<Vec<(String, usize)>, VerifyError> {
    let re = pattern
        .map(|p| anchored(p).map_err(|e| VerifyError::BadPattern { pattern: p.to_string(), reason: e.to_string() }))
        .transpose()?;
    let selector = TopicSelector::new(&ctx.flow);
    let meta = ctx.source.metadata_client()?;
    let mut topics: Vec<(String, usize)> = ctx
        .source
        .topics(&meta, TIMEOUT)?
        .into_iter()
        .filter(|(t, _)| selector.select(t).is_ok() && re.as_ref().is_none_or(|re| re.is_match(t)))
        .collect();
    topics.sort();
    if let (Some(pattern), true) = (pattern, topics.is_empty()) {
        return Err(VerifyError::NoTopic {
            pattern: pattern.to_string(),
            flow: ctx.flow.name(),
            source_alias: ctx.flow.source.clone(),
        });
    }
    Ok(topics)
}

/// The flow's offset map as it stands now; empty when strait never wrote one.
fn read_map(ctx: &FlowContext, target_topics: &HashMap<String, usize>) -> Result<FlowMap, VerifyError> {
    if !target_topics.contains_key(&offset_map::map_topic(&ctx.flow.source)) {
        return Ok(FlowMap::new(crate::naming::TopicSelector::new(&ctx.flow)));
    }
    let mut reader = MapReader::new(&ctx.target, &ctx.flow)?;
    reader.catch_up(&ctx.target, Duration::from_secs(120))?;
    Ok(reader.map)
}

/// One partition to compare: what to read on each side and the map between them.
struct Job {
    topic: String,
    target_topic: String,
    partition: i32,
    plan: Plan,
    source: Range,
    target: Range,
    mirrored_position: Option<i64>,
    not_yet_mirrored: i64,
    target_after_mapped: i64,
}

/// Clients for planning a partition's job.
struct Sides<'a> {
    ctx: &'a FlowContext,
    source_meta: &'a BaseConsumer,
    /// None when the target topic lacks the partition.
    target_meta: Option<&'a BaseConsumer>,
}

impl Sides<'_> {
    fn job(
        &self,
        topic: &str,
        target_topic: &str,
        partition: i32,
        map: &FlowMap,
        since_ms: Option<i64>,
    ) -> Result<Job, VerifyError> {
        let read_error = |cluster: &Cluster, topic: &str, e: &dyn std::fmt::Display| VerifyError::Read {
            cluster: cluster.alias.clone(),
            topic: topic.to_string(),
            partition,
            reason: e.to_string(),
        };
        let (low, high) = self
            .source_meta
            .fetch_watermarks(topic, partition, TIMEOUT)
            .map_err(|e| read_error(&self.ctx.source, topic, &e))?;
        let from = match since_ms {
            Some(ms) => offset_at(self.source_meta, topic, partition, ms, high)
                .map_err(|e| read_error(&self.ctx.source, topic, &e))?
                .max(low),
            None => low,
        };
        let pm = map.partition(topic, partition);
        let plan = Plan::new(pm.segments());
        let mirrored_position = pm.frontier.map(|f| f.upstream);
        let upto = mirrored_position.unwrap_or(from).max(from);
        let (target_range, after_mapped) = match self.target_meta {
            Some(meta) => {
                let (target_low, target_high) = meta
                    .fetch_watermarks(target_topic, partition, TIMEOUT)
                    .map_err(|e| read_error(&self.ctx.target, target_topic, &e))?;
                let end = if mirrored_position.is_some() { plan.target_end() } else { target_low };
                // Before the source's first record, target records may be copies of
                // records retention has since deleted (and their map entries pruned):
                // they cannot be told from foreign ones, so start at the first copy.
                let start =
                    if from == 0 { target_low } else { plan.target_offset_from(from).unwrap_or(end).max(target_low) };
                ((start.min(end), end), (target_high - end.max(target_low)).max(0))
            }
            None => ((0, 0), 0),
        };
        Ok(Job {
            topic: topic.to_string(),
            target_topic: target_topic.to_string(),
            partition,
            plan,
            source: Range { topic: topic.to_string(), partition, start: from, end: upto },
            target: Range { topic: target_topic.to_string(), partition, start: target_range.0, end: target_range.1 },
            mirrored_position,
            not_yet_mirrored: (high - upto).max(0),
            target_after_mapped: after_mapped,
        })
    }
}

/// The first offset whose timestamp is at or after `ms` (`high` when there is none).
fn offset_at(meta: &BaseConsumer, topic: &str, partition: i32, ms: i64, high: i64) -> Result<i64, String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms)).map_err(|e| e.to_string())?;
    let found = meta.offsets_for_times(tpl, TIMEOUT).map_err(|e| e.to_string())?;
    let offset = found.find_partition(topic, partition).map(|e| e.offset());
    Ok(match offset {
        Some(Offset::Offset(o)) => o,
        _ => high,
    })
}

/// Compares the jobs on [`WORKERS`] threads; reports come back in job order.
fn run_jobs(
    ctx: &FlowContext,
    jobs: Vec<Job>,
    ignore: Option<&IgnoredHeader>,
    progress: &ProgressBar,
) -> Result<Vec<PartitionReport>, VerifyError> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS.min(count))
            .map(|_| {
                s.spawn(|| -> Result<(), VerifyError> {
                    let source = read::consumer(&ctx.source)?;
                    let target = read::consumer(&ctx.target)?;
                    loop {
                        let Some((i, job)) = queue.lock().expect("queue").pop_front() else { return Ok(()) };
                        let report = compare_partition(ctx, &job, [&source, &target], ignore, progress);
                        if report.is_err() {
                            queue.lock().expect("queue").clear();
                        }
                        results.lock().expect("results").push((i, report?));
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().expect("verify worker panicked"))
    })?;
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// Reads both sides of one partition on two threads and merges them.
fn compare_partition(
    ctx: &FlowContext,
    job: &Job,
    consumers: [&BaseConsumer; 2],
    ignore: Option<&IgnoredHeader>,
    progress: &ProgressBar,
) -> Result<PartitionReport, VerifyError> {
    let (source_tx, source_rx) = sync_channel(8);
    let (target_tx, target_rx) = sync_channel(8);
    let tally = std::thread::scope(|s| {
        s.spawn(move || read::stream(consumers[0], &job.source, ignore, &source_tx));
        s.spawn(move || read::stream(consumers[1], &job.target, ignore, &target_tx));
        let source = Entries::new(source_rx).map(|r| r.map_err(|e| (&ctx.source, &job.source, e)));
        let target = Entries::new(target_rx).map(|r| r.map_err(|e| (&ctx.target, &job.target, e)));
        compare::compare(&job.plan, source, target, compare::WINDOW, &mut |n| progress.inc(n))
    })
    .map_err(|(cluster, range, reason)| VerifyError::Read {
        cluster: cluster.alias.clone(),
        topic: range.topic.clone(),
        partition: range.partition,
        reason,
    })?;
    Ok(PartitionReport {
        topic: job.topic.clone(),
        target_topic: job.target_topic.clone(),
        partition: job.partition,
        source_from: job.source.start,
        mirrored_position: job.mirrored_position,
        target_from: job.target.start,
        target_to: job.target.end,
        extra: tally.counts.extra(),
        counts: tally.counts,
        not_yet_mirrored: job.not_yet_mirrored,
        target_after_mapped: job.target_after_mapped,
        faults: tally.faults,
        faults_omitted: tally.faults_omitted,
    })
}

/// `strait verify`: runs, prints the table (or JSON) and returns the exit code.
pub fn run(config: &Config, options: &VerifyOptions, json: bool) -> u8 {
    let progress = progress_bar();
    match verify(config, options, &progress) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
                if report.totals.extra > 0 && !options.strict {
                    eprintln!(
                        "warning: {} extra record(s) on the target (see `extra` per partition)",
                        report.totals.extra
                    );
                }
            } else {
                print!("{}", report.render());
            }
            report.exit_code
        }
        Err(e) => {
            progress.finish_and_clear();
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_unix_milliseconds_or_a_duration_ago() {
        assert_eq!(parse_since("2025-01-31T12:00:00Z"), Ok(1_738_324_800_000));
        assert_eq!(parse_since("1738324800000"), Ok(1_738_324_800_000));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        let hour_ago = parse_since("1h").unwrap();
        assert!((now - 3_600_000 - hour_ago).abs() < 5_000, "{hour_ago}");
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
