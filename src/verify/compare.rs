//! Comparing one source partition with its target copy, record by record, in one pass.
//!
//! Both sides arrive as streams of `(offset, digest)` in offset order. The offset map's
//! resolved runs say which target offset holds the copy of each source record. The newest
//! copy of a record is written after the copies of the records before it, so the expected
//! target offsets grow with the source offsets and a merge of the two streams visits every
//! pair once, holding neither topic in memory.
//!
//! Deciding *what kind* of difference a record shows needs a little context: a copy that
//! holds another record's content is out of order if that content belongs to a nearby
//! source record and its own content sits at a nearby target offset, and corrupted
//! otherwise; a target record that is nobody's copy is a duplicate if it equals a nearby
//! source record, and foreign otherwise. "Nearby" is a sliding [`Window`] of digests,
//! `reach` records behind and ahead of the cursor on each side, so memory stays bounded.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::offset_map::Segment;

/// A digest of everything a copy must preserve (key, value, headers, timestamp).
pub(crate) type Digest = u128;

/// One record of either side, as the comparison sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub offset: i64,
    pub digest: Digest,
}

/// How many records behind and ahead of the cursor count as "nearby" by default: wide
/// enough to hold the re-sent records of a crashed instance (in flight plus one commit
/// interval), small enough to keep verify's memory in tens of megabytes.
pub(crate) const WINDOW: usize = 100_000;

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A source record below the mirrored position has no copy: unmapped, or its mapped
    /// copy is gone from the target (deleted, truncated).
    Missing,
    /// The mapped copy differs from the source record.
    Corrupted,
    /// The mapped copy holds a nearby source record's content, and this record's content
    /// is at another nearby target offset: the copies are in the wrong order.
    OutOfOrder,
    /// A target record that is no record's resolved copy but equals a nearby source record.
    Duplicate,
    /// A target record that is no record's copy and equals no nearby source record.
    Foreign,
}

/// A run of `count` consecutive records with the same fault. Each offset is the first
/// record's; the following records' offsets follow one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub count: u64,
    /// The source record (none for extra target records).
    pub source_offset: Option<i64>,
    /// Where the copy is or should be (none for a source record the map has no copy of).
    pub target_offset: Option<i64>,
    /// Out of order: the target offset where the source record's content was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_found_at: Option<i64>,
    /// Duplicate: the source offset of the record it equals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<i64>,
}

impl Fault {
    fn one(kind: FaultKind, source_offset: Option<i64>, target_offset: Option<i64>) -> Fault {
        Fault { kind, count: 1, source_offset, target_offset, content_found_at: None, duplicate_of: None }
    }

    /// True when `next` is the record right after this run, with the same fault.
    fn continued_by(&self, next: &Fault) -> bool {
        let step = self.count as i64;
        let follows = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => b == a + step,
            _ => false,
        };
        self.kind == next.kind
            && follows(self.source_offset, next.source_offset)
            && follows(self.target_offset, next.target_offset)
            && follows(self.content_found_at, next.content_found_at)
            && follows(self.duplicate_of, next.duplicate_of)
    }
}

/// Record counts of one partition (or of all of them, added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Source records below the mirrored position that were examined.
    pub checked: u64,
    pub missing: u64,
    pub corrupted: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    pub foreign: u64,
}

impl Counts {
    /// Target records that are no record's copy.
    pub fn extra(&self) -> u64 {
        self.duplicates + self.foreign
    }

    /// Something was lost, changed or reordered.
    pub fn failed(&self) -> bool {
        self.missing + self.corrupted + self.out_of_order > 0
    }

    pub fn add(&mut self, o: &Counts) {
        self.checked += o.checked;
        self.missing += o.missing;
        self.corrupted += o.corrupted;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.foreign += o.foreign;
    }
}

/// Runs of faults kept per partition; counts stay exact beyond it.
const MAX_FAULT_RUNS: usize = 1000;

/// The outcome of comparing one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub counts: Counts,
    pub faults: Vec<Fault>,
    /// Fault runs not listed because of the limit (their records are counted).
    pub faults_omitted: u64,
}

impl Tally {
    fn record(&mut self, fault: Fault) {
        let c = &mut self.counts;
        match fault.kind {
            FaultKind::Missing => c.missing += 1,
            FaultKind::Corrupted => c.corrupted += 1,
            FaultKind::OutOfOrder => c.out_of_order += 1,
            FaultKind::Duplicate => c.duplicates += 1,
            FaultKind::Foreign => c.foreign += 1,
        }
        let listed = self.faults.len();
        match self.faults.last_mut() {
            Some(run) if self.faults_omitted == 0 && run.continued_by(&fault) => run.count += 1,
            _ if listed < MAX_FAULT_RUNS => self.faults.push(fault),
            _ => self.faults_omitted += 1,
        }
    }
}

/// The resolved runs of one partition's map, split into those whose target offsets grow
/// with the source offsets and those that break that order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    runs: Vec<Segment>,
    misordered: Vec<Segment>,
}

impl Plan {
    pub fn new(segments: impl IntoIterator<Item = Segment>) -> Plan {
        let mut all: Vec<Segment> = segments.into_iter().filter(|s| s.len > 0).collect();
        all.sort_by_key(|s| s.upstream);
        let mut plan = Plan::default();
        let mut end = i64::MIN;
        for seg in all {
            if seg.downstream >= end {
                end = seg.downstream + seg.len;
                plan.runs.push(seg);
            } else {
                plan.misordered.push(seg);
            }
        }
        plan
    }

    /// One past the last mapped target offset (0 when nothing is mapped).
    pub fn target_end(&self) -> i64 {
        self.runs.iter().chain(&self.misordered).map(|s| s.downstream + s.len).max().unwrap_or(0)
    }

    /// The target offset of the first mapped copy of a source record at or after `upstream`.
    pub fn target_offset_from(&self, upstream: i64) -> Option<i64> {
        let run = self.runs.iter().find(|s| s.upstream + s.len > upstream)?;
        Some(run.downstream + (upstream - run.upstream).max(0))
    }
}

/// Where the copy of a source record should be.
enum Expected {
    Unmapped,
    At(i64),
    /// In a run that breaks the order of target offsets.
    Misordered(i64),
}

/// Compares a source partition's records with the target partition's, through `plan`.
/// `progress` is told how many more source records were examined, now and then.
pub(crate) fn compare<E>(
    plan: &Plan,
    source: impl Iterator<Item = Result<Entry, E>>,
    target: impl Iterator<Item = Result<Entry, E>>,
    reach: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Tally, E> {
    let mut m = Merge {
        plan,
        up: 0,
        down: 0,
        src: Window::new(source, reach),
        tgt: Window::new(target, reach),
        tally: Tally::default(),
    };
    let mut reported = 0;
    loop {
        match (m.src.current()?, m.tgt.current()?) {
            (None, None) => break,
            (Some(s), t) => m.step(s, t),
            (None, Some(t)) => {
                m.target_only(t);
                m.tgt.advance();
            }
        }
        if m.tally.counts.checked - reported >= 4096 {
            progress(m.tally.counts.checked - reported);
            reported = m.tally.counts.checked;
        }
    }
    progress(m.tally.counts.checked - reported);
    Ok(m.tally)
}

struct Merge<'p, S, T> {
    plan: &'p Plan,
    /// Index of the run at or after the current source offset.
    up: usize,
    /// Index of the run at or after the current target offset.
    down: usize,
    src: Window<S>,
    tgt: Window<T>,
    tally: Tally,
}

impl<S, T, E> Merge<'_, S, T>
where
    S: Iterator<Item = Result<Entry, E>>,
    T: Iterator<Item = Result<Entry, E>>,
{
    /// Takes the next step with source record `s` current.
    fn step(&mut self, s: Entry, t: Option<Entry>) {
        match self.expected(s.offset) {
            Expected::Unmapped => self.source_fault(Fault::one(FaultKind::Missing, Some(s.offset), None)),
            Expected::Misordered(d) => self.source_fault(Fault::one(FaultKind::OutOfOrder, Some(s.offset), Some(d))),
            Expected::At(d) => match t {
                Some(t) if t.offset < d => {
                    self.target_only(t);
                    self.tgt.advance();
                }
                Some(t) if t.offset == d => {
                    self.pair(s, t);
                    self.src.advance();
                    self.tgt.advance();
                }
                // The target has nothing at `d`: the copy was deleted or truncated away.
                _ => self.source_fault(Fault::one(FaultKind::Missing, Some(s.offset), Some(d))),
            },
        }
    }

    fn source_fault(&mut self, fault: Fault) {
        self.tally.counts.checked += 1;
        self.tally.record(fault);
        self.src.advance();
    }

    /// A source record and its mapped copy.
    fn pair(&mut self, s: Entry, t: Entry) {
        self.tally.counts.checked += 1;
        if s.digest == t.digest {
            return;
        }
        let holds_other_record = self.src.nearby(t.digest).is_some();
        match self.tgt.nearby(s.digest) {
            Some(found) if holds_other_record => self.tally.record(Fault {
                content_found_at: Some(found),
                ..Fault::one(FaultKind::OutOfOrder, Some(s.offset), Some(t.offset))
            }),
            _ => self.tally.record(Fault::one(FaultKind::Corrupted, Some(s.offset), Some(t.offset))),
        }
    }

    /// A target record no current source record expects.
    fn target_only(&mut self, t: Entry) {
        if self.covered(t.offset) {
            // The resolved copy of a source record that is no longer on the source
            // (compacted or deleted after mirroring), or of a misordered run.
            return;
        }
        match self.src.nearby(t.digest) {
            Some(original) => self.tally.record(Fault {
                duplicate_of: Some(original),
                ..Fault::one(FaultKind::Duplicate, None, Some(t.offset))
            }),
            None => self.tally.record(Fault::one(FaultKind::Foreign, None, Some(t.offset))),
        }
    }

    fn expected(&mut self, upstream: i64) -> Expected {
        let runs = &self.plan.runs;
        while self.up < runs.len() && runs[self.up].upstream + runs[self.up].len <= upstream {
            self.up += 1;
        }
        if let Some(run) = runs.get(self.up).filter(|r| r.upstream <= upstream) {
            return Expected::At(run.downstream + (upstream - run.upstream));
        }
        match self.plan.misordered.iter().find(|r| r.upstream <= upstream && upstream < r.upstream + r.len) {
            Some(r) => Expected::Misordered(r.downstream + (upstream - r.upstream)),
            None => Expected::Unmapped,
        }
    }

    /// True when target offset `d` is the resolved copy of some source record.
    fn covered(&mut self, d: i64) -> bool {
        let runs = &self.plan.runs;
        while self.down < runs.len() && runs[self.down].downstream + runs[self.down].len <= d {
            self.down += 1;
        }
        runs.get(self.down).is_some_and(|r| r.downstream <= d)
            || self.plan.misordered.iter().any(|r| r.downstream <= d && d < r.downstream + r.len)
    }
}

/// A stream with the digests of the records within `reach` positions of its cursor.
///
/// The records stay in a queue; the index by digest that answers [`Window::nearby`] is
/// built only when a question comes up and dropped again after a quiet stretch, so a
/// clean copy pays for a queue push and pop per record and nothing more.
struct Window<I> {
    input: I,
    entries: VecDeque<Entry>,
    cursor: usize,
    reach: usize,
    ended: bool,
    index: Option<HashMap<u64, Seen, BuildHasherDefault<DigestHasher>>>,
    /// Records passed since the last question.
    quiet: usize,
}

/// How often a digest occurs in the window, and the offset of its latest occurrence.
#[derive(Clone, Copy)]
struct Seen {
    count: u32,
    offset: i64,
}

impl<I, E> Window<I>
where
    I: Iterator<Item = Result<Entry, E>>,
{
    fn new(input: I, reach: usize) -> Window<I> {
        Window { input, entries: VecDeque::new(), cursor: 0, reach, ended: false, index: None, quiet: 0 }
    }

    /// The record at the cursor, with `reach` records read ahead of it.
    fn current(&mut self) -> Result<Option<Entry>, E> {
        while !self.ended && self.entries.len() <= self.cursor + self.reach {
            match self.input.next() {
                Some(Ok(e)) => {
                    if let Some(index) = &mut self.index {
                        remember(index, e);
                    }
                    self.entries.push_back(e);
                }
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            }
        }
        Ok(self.entries.get(self.cursor).copied())
    }

    fn advance(&mut self) {
        self.cursor += 1;
        if self.cursor > self.reach {
            if let (Some(old), Some(index)) = (self.entries.pop_front(), &mut self.index) {
                let k = key(old.digest);
                if let Some(seen) = index.get_mut(&k) {
                    seen.count -= 1;
                    if seen.count == 0 {
                        index.remove(&k);
                    }
                }
            }
            self.cursor -= 1;
        }
        self.quiet += 1;
        if self.quiet > 4 * self.reach {
            self.index = None;
        }
    }

    /// The offset of a record with this digest within reach, if any.
    fn nearby(&mut self, digest: Digest) -> Option<i64> {
        self.quiet = 0;
        let entries = &self.entries;
        let index = self.index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity_and_hasher(entries.len(), BuildHasherDefault::default());
            entries.iter().for_each(|e| remember(&mut index, *e));
            index
        });
        index.get(&key(digest)).map(|s| s.offset)
    }
}

fn remember(index: &mut HashMap<u64, Seen, BuildHasherDefault<DigestHasher>>, e: Entry) {
    let seen = index.entry(key(e.digest)).or_insert(Seen { count: 0, offset: e.offset });
    seen.count += 1;
    seen.offset = e.offset;
}

fn key(digest: Digest) -> u64 {
    digest as u64
}

/// Digests are already uniformly distributed: hashing them again would only cost time.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(upstream: i64, downstream: i64, len: i64) -> Segment {
        Segment { upstream, downstream, len }
    }

    /// Records with offsets and contents; content `c` stands for a record's digest.
    fn side(records: &[(i64, u128)]) -> impl Iterator<Item = Result<Entry, ()>> + '_ {
        records.iter().map(|&(offset, digest)| Ok(Entry { offset, digest }))
    }

    fn run(plan: &Plan, source: &[(i64, u128)], target: &[(i64, u128)]) -> Tally {
        compare(plan, side(source), side(target), 8, &mut |_| {}).unwrap()
    }

    fn seq(offsets: std::ops::Range<i64>, first_content: u128) -> Vec<(i64, u128)> {
        offsets.enumerate().map(|(i, o)| (o, first_content + i as u128)).collect()
    }

    fn fault(kind: FaultKind, count: u64, source: Option<i64>, target: Option<i64>) -> Fault {
        Fault { count, ..Fault::one(kind, source, target) }
    }

    #[test]
    fn identical_copy_across_gaps_passes() {
        // Upstream 10 is a transaction marker: two runs, one target sequence.
        let mut source = seq(0..10, 100);
        source.extend(seq(11..20, 110));
        let target = seq(0..19, 100);
        let t = run(&Plan::new([seg(0, 0, 10), seg(11, 10, 9)]), &source, &target);
        assert_eq!(t.counts, Counts { checked: 19, ..Counts::default() });
        assert!(t.faults.is_empty());
    }

    #[test]
    fn unmapped_and_truncated_records_are_missing() {
        let source = seq(0..20, 100);
        // 5..8 has no run; the target lost its first three records (delete-records).
        let plan = Plan::new([seg(0, 0, 5), seg(8, 5, 12)]);
        let target = seq(3..17, 103).into_iter().map(|(o, c)| (o, if o < 5 { c } else { c + 3 })).collect::<Vec<_>>();
        let t = run(&plan, &source, &target);
        assert_eq!(t.counts.missing, 6);
        assert_eq!(t.counts.checked, 20);
        assert_eq!(
            t.faults,
            vec![fault(FaultKind::Missing, 3, Some(0), Some(0)), fault(FaultKind::Missing, 3, Some(5), None),]
        );
    }

    #[test]
    fn altered_copy_is_corrupted() {
        let source = seq(0..10, 100);
        let mut target = source.clone();
        target[4].1 = 999;
        let t = run(&Plan::new([seg(0, 0, 10)]), &source, &target);
        assert_eq!(t.faults, vec![fault(FaultKind::Corrupted, 1, Some(4), Some(4))]);
    }

    #[test]
    fn swapped_copies_are_out_of_order() {
        let source = seq(0..10, 100);
        let mut target = source.clone();
        target.swap(3, 4);
        target[3].0 = 3;
        target[4].0 = 4;
        let t = run(&Plan::new([seg(0, 0, 10)]), &source, &target);
        assert_eq!(t.counts.out_of_order, 2);
        assert_eq!(t.counts.corrupted, 0);
        assert_eq!(t.faults[0].source_offset, Some(3));
        assert_eq!(t.faults[0].content_found_at, Some(4));
        assert_eq!(t.faults[1].source_offset, Some(4));
        assert_eq!(t.faults[1].content_found_at, Some(3));
    }

    #[test]
    fn identical_neighbours_do_not_turn_a_corruption_into_a_reordering() {
        let source: Vec<(i64, u128)> = (0..10).map(|o| (o, 7)).collect();
        let mut target = source.clone();
        target[5].1 = 8;
        let t = run(&Plan::new([seg(0, 0, 10)]), &source, &target);
        assert_eq!(t.faults, vec![fault(FaultKind::Corrupted, 1, Some(5), Some(5))]);
    }

    #[test]
    fn extra_records_are_duplicates_or_foreign() {
        // Target: copies of 0..3, a foreign record, a duplicate of source 1, copies of 3..10.
        let source = seq(0..10, 100);
        let mut target = seq(0..3, 100);
        target.push((3, 555));
        target.push((4, 101));
        target.extend(seq(5..12, 103));
        let t = run(&Plan::new([seg(0, 0, 3), seg(3, 5, 7)]), &source, &target);
        assert_eq!(t.counts, Counts { checked: 10, foreign: 1, duplicates: 1, ..Counts::default() });
        assert!(!t.counts.failed());
        assert_eq!(t.faults[0], fault(FaultKind::Foreign, 1, None, Some(3)));
        assert_eq!(t.faults[1], Fault { duplicate_of: Some(1), ..fault(FaultKind::Duplicate, 1, None, Some(4)) });
    }

    #[test]
    fn records_re_sent_after_a_crash_are_one_run_of_duplicates() {
        // 0..15 copied to 0..15; crash; re-mirrored from 10: 10..20 copied to 15..25.
        let source = seq(0..20, 100);
        let mut target = seq(0..15, 100);
        target.extend(seq(15..25, 110));
        let plan = Plan::new([seg(0, 0, 10), seg(10, 15, 10)]);
        let t = run(&plan, &source, &target);
        assert_eq!(t.counts, Counts { checked: 20, duplicates: 5, ..Counts::default() });
        assert_eq!(t.faults, vec![Fault { duplicate_of: Some(10), ..fault(FaultKind::Duplicate, 5, None, Some(10)) }]);
    }

    #[test]
    fn a_map_whose_target_offsets_go_backwards_is_out_of_order() {
        let source = seq(0..10, 100);
        let mut target = seq(0..5, 105);
        target.extend(seq(5..10, 100));
        let plan = Plan::new([seg(0, 5, 5), seg(5, 0, 5)]);
        let t = run(&plan, &source, &target);
        assert_eq!(t.counts.out_of_order, 5);
        assert_eq!(t.counts.extra(), 0, "the misordered run's copies are not extra");
        assert_eq!(t.faults, vec![fault(FaultKind::OutOfOrder, 5, Some(5), Some(0))]);
    }

    #[test]
    fn copies_of_records_gone_from_the_source_are_not_extra() {
        // Source compaction removed 3 and 4 after they were mirrored.
        let source: Vec<(i64, u128)> = seq(0..10, 100).into_iter().filter(|(o, _)| *o != 3 && *o != 4).collect();
        let target = seq(0..10, 100);
        let t = run(&Plan::new([seg(0, 0, 10)]), &source, &target);
        assert_eq!(t.counts, Counts { checked: 8, ..Counts::default() });
    }

    #[test]
    fn the_window_slides_without_losing_counts() {
        let source = seq(0..1000, 0);
        let target = seq(0..1000, 0);
        let mut seen = 0;
        let t = compare(&Plan::new([seg(0, 0, 1000)]), side(&source), side(&target), 8, &mut |n| seen += n).unwrap();
        assert_eq!(t.counts.checked, 1000);
        assert_eq!(seen, 1000);
    }

    #[test]
    fn plan_finds_the_target_offset_of_a_source_position() {
        let plan = Plan::new([seg(0, 0, 10), seg(12, 10, 5)]);
        assert_eq!(plan.target_offset_from(5), Some(5));
        assert_eq!(plan.target_offset_from(10), Some(10));
        assert_eq!(plan.target_offset_from(14), Some(12));
        assert_eq!(plan.target_offset_from(17), None);
        assert_eq!(plan.target_end(), 15);
    }
}
