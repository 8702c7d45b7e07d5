//! What `strait verify` prints: a table per partition and the faults found, or JSON.

use std::fmt::Write;

use serde::Serialize;

use super::compare::{Counts, Fault, FaultKind};

/// The outcome for one source partition and its copy.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub target_topic: String,
    pub partition: i32,
    /// Source offsets `source_from..mirrored_position` were checked.
    pub source_from: i64,
    /// Every source offset below it is mirrored, per the offset map read at start; none
    /// when strait has not mirrored this partition yet.
    pub mirrored_position: Option<i64>,
    /// Target offsets `target_from..target_to` were read (the last one is the end of the
    /// last mapped copy).
    pub target_from: i64,
    pub target_to: i64,
    #[serde(flatten)]
    pub counts: Counts,
    /// Extra target records (duplicates + foreign).
    pub extra: u64,
    /// Source offsets at or beyond the mirrored position when verify started (records
    /// still on their way; not an error).
    pub not_yet_mirrored: i64,
    /// Target records after the last mapped copy when verify started, not checked:
    /// copies in flight while strait runs, extra records if it is stopped.
    pub target_after_mapped: i64,
    pub faults: Vec<Fault>,
    /// Fault runs left out of `faults` (their records are counted).
    pub faults_omitted: u64,
}

/// The outcome for a flow.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub flow: String,
    pub source: String,
    pub target: String,
    pub strict: bool,
    /// Nothing missing, corrupted or out of order (and, with `strict`, nothing extra).
    pub ok: bool,
    pub exit_code: u8,
    pub totals: Totals,
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub partitions: usize,
    #[serde(flatten)]
    pub counts: Counts,
    pub extra: u64,
    pub not_yet_mirrored: i64,
    pub target_after_mapped: i64,
}

impl Report {
    pub fn new(flow: String, source: String, target: String, strict: bool, partitions: Vec<PartitionReport>) -> Report {
        let mut totals = Totals { partitions: partitions.len(), ..Totals::default() };
        for p in &partitions {
            totals.counts.add(&p.counts);
            totals.not_yet_mirrored += p.not_yet_mirrored;
            totals.target_after_mapped += p.target_after_mapped;
        }
        totals.extra = totals.counts.extra();
        let ok = !(totals.counts.failed() || strict && totals.extra > 0);
        Report { flow, source, target, strict, ok, exit_code: if ok { 0 } else { 1 }, totals, partitions }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The table, the faults, and the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>8} {:>9} {:>12} {:>19} {:>16}",
            "TOPIC[PARTITION]",
            "CHECKED",
            "MISSING",
            "CORRUPTED",
            "OUT-OF-ORDER",
            "EXTRA (DUP/FOREIGN)",
            "NOT YET MIRRORED"
        );
        let many = self.partitions.len() > MAX_ROWS;
        for p in &self.partitions {
            if many && p.faults.is_empty() && p.faults_omitted == 0 {
                continue;
            }
            row(&mut out, &format!("{}[{}]", p.topic, p.partition), &p.counts, p.not_yet_mirrored);
        }
        if many {
            let _ = writeln!(
                out,
                "({} partitions without faults not listed)",
                self.partitions.iter().filter(|p| p.faults.is_empty()).count()
            );
        }
        row(
            &mut out,
            &format!("TOTAL ({} partitions)", self.totals.partitions),
            &self.totals.counts,
            self.totals.not_yet_mirrored,
        );
        let faults: Vec<&PartitionReport> = self.partitions.iter().filter(|p| !p.faults.is_empty()).collect();
        if !faults.is_empty() {
            out.push_str("\nfaults (offsets are per partition; a range is inclusive):\n");
            for p in faults {
                for f in &p.faults {
                    let _ = writeln!(out, "  {}[{}]: {}", p.topic, p.partition, describe(f, &p.target_topic));
                }
                if p.faults_omitted > 0 {
                    let _ = writeln!(
                        out,
                        "  {}[{}]: ... and {} more fault runs (see the counts)",
                        p.topic, p.partition, p.faults_omitted
                    );
                }
            }
        }
        out.push('\n');
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }

    /// One line: what holds, and what does not.
    pub fn verdict(&self) -> String {
        let c = &self.totals.counts;
        let mut line = if c.failed() {
            format!(
                "FAILED: {}: {} missing, {} corrupted, {} out of order of {} records checked",
                self.flow, c.missing, c.corrupted, c.out_of_order, c.checked
            )
        } else {
            format!(
                "OK: {}: {} records checked; the copy is complete and identical up to the mirrored position",
                self.flow, c.checked
            )
        };
        if self.totals.extra > 0 {
            let strict = if self.strict { " (fails with --strict)" } else { " (not a loss; --strict fails on it)" };
            let _ = write!(
                line,
                "\n{}: {} extra record(s) on {}: {} duplicate(s), {} foreign{strict}",
                if self.strict { "FAILED" } else { "warning" },
                self.totals.extra,
                self.target,
                c.duplicates,
                c.foreign
            );
        }
        if self.totals.not_yet_mirrored > 0 {
            let _ = write!(
                line,
                "\nnote: {} source offset(s) not yet mirrored when verify started (not checked)",
                self.totals.not_yet_mirrored
            );
        }
        if self.totals.target_after_mapped > 0 {
            let _ = write!(
                line,
                "\nnote: {} target record(s) after the last mapped copy were not checked (copies in flight \
                 while strait runs; extra records if it is stopped)",
                self.totals.target_after_mapped
            );
        }
        line
    }
}

/// Beyond this many partitions, the table lists only those with faults.
const MAX_ROWS: usize = 50;

fn row(out: &mut String, name: &str, c: &Counts, not_yet_mirrored: i64) {
    let extra = format!("{} ({}/{})", c.extra(), c.duplicates, c.foreign);
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>8} {:>9} {:>12} {:>19} {:>16}",
        name, c.checked, c.missing, c.corrupted, c.out_of_order, extra, not_yet_mirrored
    );
}

/// `5`, or `5..=9` for a run.
fn offsets(first: i64, count: u64) -> String {
    if count <= 1 {
        first.to_string()
    } else {
        format!("{first}..={}", first + count as i64 - 1)
    }
}

/// One line per fault run, naming the partition's offsets on both sides.
fn describe(f: &Fault, target_topic: &str) -> String {
    let n = f.count;
    let one = n == 1;
    let at = |o: Option<i64>| o.map_or_else(|| "?".to_string(), |o| offsets(o, n));
    let subject = if one {
        format!("source offset {}", at(f.source_offset))
    } else {
        format!("source offsets {} ({n} records)", at(f.source_offset))
    };
    let place = format!("{target_topic} offset{} {}", if one { "" } else { "s" }, at(f.target_offset));
    let (copy, is) = if one { ("its copy", "is") } else { ("their copies", "are") };
    match f.kind {
        FaultKind::Missing if f.target_offset.is_some() => format!("missing: {subject}: {copy} at {place} {is} gone"),
        FaultKind::Missing => format!("missing: {subject}: never copied (the offset map has no copy)"),
        FaultKind::Corrupted => {
            format!("corrupted: {subject} {} from {copy} at {place}", if one { "differs" } else { "differ" })
        }
        FaultKind::OutOfOrder => match f.content_found_at {
            Some(found) => format!(
                "out of order: {subject}: {copy} at {place} {} another record; this content is at offset {}",
                if one { "holds" } else { "hold" },
                offsets(found, n)
            ),
            None => format!("out of order: {subject} copied to {place}, before copies of earlier records"),
        },
        FaultKind::Duplicate => format!(
            "extra (duplicate): {place} {} source offset {}",
            if one { "repeats" } else { "repeat" },
            f.duplicate_of.map_or_else(|| "?".into(), |o| offsets(o, n))
        ),
        FaultKind::Foreign => format!("extra (foreign): {place} {is} no copy of any source record"),
    }
}
