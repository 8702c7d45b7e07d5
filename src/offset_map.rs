//! The offset map: for every mirrored record, where its copy is on the target.
//!
//! Per source partition the map is a list of [`Run`]s: consecutive copies of upstream
//! records at consecutive downstream offsets. Upstream offsets that hold no mirrored
//! record (a transaction marker, aborted or compacted records, a record skipped as a
//! loop) do not end a run: they are kept inside it as *gaps*, a few bytes each. A run
//! ends only where the downstream side jumps (a re-send, another writer) or after
//! [`writer::GAPS_PER_RUN`] gaps. Runs are stored packed in *chunks* (one map record
//! each), so a transactional source with a marker every hundred records needs about one
//! map record per five hundred transactions, and translation inside a run stays exact.
//!
//! Every ownership of a partition (a data path that took it over after a start, a
//! restart or a rebalance) has a *generation*, larger than any generation stored for
//! the partition before. Its first record is a *claim*: "from upstream `owned_from` on,
//! my copies replace every older mapping". Resolution applies generations in order, so
//! an instance that lost the partition and wakes up later (a zombie) cannot overwrite
//! the mappings of the owner that replaced it: its generation is older. Within one
//! generation a re-send (after a target timeout) is a newer chunk at a larger
//! downstream offset, and the newest copy wins in the same way.
//!
//! Each generation also stores a *frontier*: every upstream offset below it is
//! accounted for (mapped, or known to hold no mirrored record). A group committed at
//! upstream `U` translates exactly when `U <= frontier`: to the downstream offset of the
//! first mapped record at or after `U`, or, past the last one, to the next downstream
//! offset. The frontier record also remembers the target topic's id, so that a target
//! topic deleted and recreated under strait is recognised (see `mirror`), and the last
//! source end offset seen, for the RPO a source-less failover reports.
//!
//! The map lives on the target in the compacted topic `<source>.offset-map.strait.internal`
//! (keys below). Source progress is committed only up to a frontier that is already
//! stored, and a restarted data path resumes from the stored frontier, so after any
//! crash the map covers everything the restarted flow will not mirror again.

pub(crate) mod writer;

use std::collections::{BTreeMap, HashMap};

use crate::naming::TopicSelector;

/// `upstream..upstream+len` were copied to `downstream..downstream+len`: a stretch of a
/// [`Run`] between two gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub upstream: i64,
    pub downstream: i64,
    pub len: i64,
}

impl Segment {
    pub fn upstream_end(&self) -> i64 {
        self.upstream + self.len
    }
    pub fn downstream_end(&self) -> i64 {
        self.downstream + self.len
    }
}

/// Copies of upstream records, in order, at consecutive downstream offsets from
/// `downstream`. Upstream offsets inside the run without a copy are `gaps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    pub upstream: i64,
    pub downstream: i64,
    /// Copies in the run.
    pub len: i64,
    /// Upstream offsets without a copy, as (first offset, count), ascending; a run never
    /// starts or ends with one.
    pub gaps: Vec<(i64, i64)>,
}

impl Run {
    pub fn new(upstream: i64, downstream: i64) -> Run {
        Run { upstream, downstream, len: 1, gaps: Vec::new() }
    }

    /// A run without gaps.
    pub fn contiguous(upstream: i64, downstream: i64, len: i64) -> Run {
        Run { upstream, downstream, len, gaps: Vec::new() }
    }

    fn gap_total(&self) -> i64 {
        self.gaps.iter().map(|g| g.1).sum()
    }

    /// One past the last upstream offset the run covers.
    pub fn upstream_end(&self) -> i64 {
        self.upstream + self.len + self.gap_total()
    }

    pub fn downstream_end(&self) -> i64 {
        self.downstream + self.len
    }

    /// Extends the run with the copy of `upstream` at `downstream` if it continues it:
    /// the next downstream offset, and an upstream offset at or after the run's end (the
    /// offsets skipped become a gap). At most `max_gaps` gaps.
    pub fn extend(&mut self, upstream: i64, downstream: i64, max_gaps: usize) -> bool {
        let end = self.upstream_end();
        if downstream != self.downstream_end() || upstream < end {
            return false;
        }
        if upstream > end {
            if self.gaps.len() >= max_gaps {
                return false;
            }
            self.gaps.push((end, upstream - end));
        }
        self.len += 1;
        true
    }

    /// Copies of records below upstream offset `at` (clamped to the run).
    fn copies_below(&self, at: i64) -> i64 {
        let at = at.clamp(self.upstream, self.upstream_end());
        let in_gaps: i64 = self.gaps.iter().map(|&(g, n)| (at.min(g + n) - g).max(0)).sum();
        at - self.upstream - in_gaps
    }

    /// The upstream offset of the run's `k`-th copy.
    fn upstream_of(&self, k: i64) -> i64 {
        let mut upstream = self.upstream + k;
        for &(g, n) in &self.gaps {
            if g <= upstream {
                upstream += n;
            } else {
                break;
            }
        }
        upstream
    }

    /// Keeps only what lies below upstream offset `at`.
    fn truncate(&mut self, at: i64) {
        self.len = self.copies_below(at);
        let last_copy_end = self.upstream_of(self.len - 1) + 1;
        self.gaps.retain(|&(g, _)| g < last_copy_end);
    }

    /// The stretches between gaps.
    pub fn pieces(&self) -> impl Iterator<Item = Segment> + '_ {
        let mut upstream = self.upstream;
        let mut downstream = self.downstream;
        let mut gaps = self.gaps.iter().peekable();
        let mut remaining = self.len;
        std::iter::from_fn(move || {
            if remaining <= 0 {
                return None;
            }
            let len = match gaps.peek() {
                Some(&&(g, _)) => (g - upstream).min(remaining),
                None => remaining,
            };
            let piece = Segment { upstream, downstream, len };
            remaining -= len;
            downstream += len;
            upstream += len;
            if let Some(&(g, n)) = gaps.next_if(|&&(g, _)| g == upstream) {
                upstream = g + n;
            }
            Some(piece)
        })
    }
}

/// Where the frontier of a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontier {
    /// Every upstream offset below this is accounted for.
    pub upstream: i64,
    /// The downstream offset the next mirrored record gets; -1 when unknown.
    pub next_downstream: i64,
}

/// A generation's frontier record, with what it tells beyond the frontier itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFrontier {
    pub generation: u64,
    /// Where this generation's ownership began: older mappings from here on are replaced.
    pub owned_from: i64,
    pub frontier: Frontier,
    /// The source partition's end offset as last seen by the data path (-1 unknown).
    pub source_end: i64,
    /// Wall-clock time of the write, Unix ms.
    pub written_ms: i64,
    /// The target topic's id when the generation began (all zero: unknown).
    pub target_topic_id: [u8; 16],
    /// In exactly-once mode, the transactional producer that wrote it.
    pub writer: Option<TransactionalWriter>,
}

/// Which transactional producer owns a partition (exactly-once mode), so that the next
/// owner can fence it when it did not hand the partition over (see
/// `mirror::transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionalWriter {
    /// The writing instance: its transactional id is derived from the flow and this.
    pub instance: u64,
    /// The owner gave the partition up in this transaction: nothing of it can follow.
    pub released: bool,
}

/// The result of translating an upstream position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// The exact downstream position.
    Exact(i64),
    /// Past the last mirrored record: the next downstream offset, which is unknown when
    /// nothing was mirrored yet (the caller uses the target partition's end).
    AtEnd(Option<i64>),
    /// The position is ahead of what has been mirrored; translate again later.
    NotYetMirrored { frontier: Option<i64> },
    /// Records from the position on were mirrored before this map began (or its older
    /// entries were pruned) and still exist on the source: no exact answer exists.
    OlderThanMap { first_mapped: i64 },
}

/// The resolved map of one source partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionMap {
    /// Non-overlapping runs by upstream start, newest copies only.
    runs: BTreeMap<i64, Run>,
    pub frontier: Option<Frontier>,
}

impl PartitionMap {
    /// Builds the resolved map from stored runs in any order, treating a larger
    /// downstream offset as a newer copy (one generation).
    pub fn resolve(mut stored: Vec<Run>, frontier: Option<Frontier>) -> PartitionMap {
        stored.sort_by_key(|r| r.downstream);
        let mut map = PartitionMap { runs: BTreeMap::new(), frontier };
        for run in stored {
            map.apply(run);
        }
        map
    }

    /// Adds a newer copy: it replaces every older mapping from its start on, because
    /// re-mirroring proceeds in order from its restart point.
    fn apply(&mut self, run: Run) {
        self.supersede_from(run.upstream);
        if run.len > 0 {
            self.runs.insert(run.upstream, run);
        }
    }

    fn supersede_from(&mut self, upstream: i64) {
        let later: Vec<i64> = self.runs.range(upstream..).map(|(k, _)| *k).collect();
        for k in later {
            self.runs.remove(&k);
        }
        if let Some((_, prev)) = self.runs.range_mut(..upstream).next_back() {
            if prev.upstream_end() > upstream {
                prev.truncate(upstream);
            }
        }
    }

    /// The resolved copies as stretches without gaps, by upstream offset.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.runs.values().flat_map(Run::pieces)
    }

    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    /// Where a group whose next upstream record is `upstream` continues on the target.
    /// `source_log_start` is the partition's first offset on the source now: records
    /// below the map's first run are fine to step over only if they are gone there.
    pub fn translate(&self, upstream: i64, source_log_start: i64) -> Translation {
        let frontier = self.frontier.map(|f| f.upstream);
        if frontier.is_none_or(|f| upstream > f) {
            return Translation::NotYetMirrored { frontier };
        }
        if let Some(first) = self.runs.values().next() {
            if upstream < first.upstream && source_log_start < first.upstream {
                return Translation::OlderThanMap { first_mapped: first.upstream };
            }
        }
        // The run containing `upstream` (a position on a gap continues with the copy
        // of the next record), or else the first one after it.
        if let Some((_, run)) = self.runs.range(..=upstream).next_back() {
            if upstream < run.upstream_end() {
                return Translation::Exact(run.downstream + run.copies_below(upstream));
            }
        }
        if let Some((_, run)) = self.runs.range(upstream..).next() {
            return Translation::Exact(run.downstream);
        }
        let next = self.frontier.map(|f| f.next_downstream).filter(|d| *d >= 0);
        let last = self.runs.values().next_back().map(Run::downstream_end);
        Translation::AtEnd(next.max(last))
    }

    /// The inverse, for failback: where a group whose next downstream record is
    /// `downstream` continues on the source.
    pub fn translate_back(&self, downstream: i64) -> Option<i64> {
        let mut first_after: Option<&Run> = None;
        for run in self.runs.values() {
            if downstream >= run.downstream && downstream < run.downstream_end() {
                return Some(run.upstream_of(downstream - run.downstream));
            }
            if run.downstream >= downstream && first_after.is_none_or(|f| run.downstream < f.downstream) {
                first_after = Some(run);
            }
        }
        match first_after {
            Some(run) => Some(run.upstream),
            None => self.frontier.map(|f| f.upstream),
        }
    }
}

/// What the map topic holds for one partition: chunks by (generation, first downstream
/// offset) and one frontier per generation.
#[derive(Debug, Default, Clone)]
pub struct StoredPartition {
    chunks: BTreeMap<(u64, i64), Vec<Run>>,
    frontiers: BTreeMap<u64, StoredFrontier>,
}

impl StoredPartition {
    /// The newest generation's frontier record.
    pub fn latest(&self) -> Option<&StoredFrontier> {
        self.frontiers.values().next_back()
    }

    /// Stored map records (chunks and frontiers).
    pub fn records(&self) -> usize {
        self.chunks.len() + self.frontiers.len()
    }

    /// The largest generation any record of the partition carries.
    pub fn max_generation(&self) -> u64 {
        let chunks = self.chunks.keys().next_back().map_or(0, |k| k.0);
        let frontiers = self.frontiers.keys().next_back().copied().unwrap_or(0);
        chunks.max(frontiers)
    }

    /// Applies generations in order: each claim replaces older mappings from where its
    /// ownership began, then its chunks (oldest copy first) apply as newer copies.
    pub fn resolve(&self) -> PartitionMap {
        let mut map = PartitionMap::default();
        let mut generations: Vec<u64> = self.frontiers.keys().copied().collect();
        generations.extend(self.chunks.keys().map(|k| k.0));
        generations.sort_unstable();
        generations.dedup();
        for generation in generations {
            if let Some(claim) = self.frontiers.get(&generation) {
                if generation > 0 && claim.owned_from >= 0 {
                    map.supersede_from(claim.owned_from);
                }
            }
            for (_, runs) in self.chunks.range((generation, i64::MIN)..=(generation, i64::MAX)) {
                for run in runs {
                    map.apply(run.clone());
                }
            }
        }
        map.frontier = self.latest().map(|f| f.frontier);
        map
    }
}

/// The maps of every partition of a flow, as read back from the map topic.
///
/// The map topic holds the maps of every flow from one source cluster to the target.
/// Each record names the source partition and the target topic its copies went to, so
/// two flows copying one source topic to two target topics (say, `prefix` and
/// `identity` naming) keep separate maps; a flow reads only its own.
#[derive(Debug)]
pub struct FlowMap {
    naming: TopicSelector,
    stored: HashMap<(String, i32), StoredPartition>,
    /// Records of the first map format (no generations, no target topic), read as
    /// generation 0 of every flow.
    legacy: HashMap<(String, i32), StoredPartition>,
}

impl FlowMap {
    pub fn new(naming: TopicSelector) -> FlowMap {
        FlowMap { naming, stored: HashMap::new(), legacy: HashMap::new() }
    }

    /// Applies one record of the map topic (`value == None` is a tombstone).
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some(key) = codec::decode_key(key) else { return };
        match key {
            codec::MapKey::Chunk { topic, partition, target_topic, generation, first_downstream } => {
                if target_topic != self.naming.target_topic(&topic) {
                    return;
                }
                let entry = self.stored.entry((topic, partition)).or_default();
                match value.and_then(codec::decode_chunk) {
                    Some(runs) => entry.chunks.insert((generation, first_downstream), runs),
                    None => entry.chunks.remove(&(generation, first_downstream)),
                };
            }
            codec::MapKey::Frontier { topic, partition, target_topic, generation } => {
                if target_topic != self.naming.target_topic(&topic) {
                    return;
                }
                let entry = self.stored.entry((topic, partition)).or_default();
                match value.and_then(|v| codec::decode_frontier(generation, v)) {
                    Some(f) => entry.frontiers.insert(generation, f),
                    None => entry.frontiers.remove(&generation),
                };
            }
            codec::MapKey::LegacySegment { topic, partition, upstream } => {
                let entry = self.legacy.entry((topic, partition)).or_default();
                match value.and_then(codec::decode_legacy_pair) {
                    Some((downstream, len)) => {
                        entry.chunks.insert((0, downstream), vec![Run::contiguous(upstream, downstream, len)])
                    }
                    // A legacy tombstone names the upstream start only.
                    None => {
                        let key = entry
                            .chunks
                            .iter()
                            .find(|(_, runs)| runs.first().is_some_and(|r| r.upstream == upstream))
                            .map(|(k, _)| *k);
                        key.and_then(|k| entry.chunks.remove(&k))
                    }
                };
            }
            codec::MapKey::LegacyFrontier { topic, partition } => {
                let entry = self.legacy.entry((topic, partition)).or_default();
                match value.and_then(codec::decode_legacy_pair) {
                    Some((upstream, next_downstream)) => {
                        entry.frontiers.insert(0, legacy_frontier(upstream, next_downstream))
                    }
                    None => entry.frontiers.remove(&0),
                };
            }
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> PartitionMap {
        self.stored(topic, partition).map(|s| s.resolve()).unwrap_or_default()
    }

    /// What is stored for one partition (legacy records merged in as generation 0).
    pub fn stored(&self, topic: &str, partition: i32) -> Option<StoredPartition> {
        let key = (topic.to_string(), partition);
        match (self.stored.get(&key), self.legacy.get(&key)) {
            (Some(s), None) => Some(s.clone()),
            (None, Some(l)) => Some(l.clone()),
            (Some(s), Some(l)) => {
                let mut merged = s.clone();
                merged.chunks.extend(l.chunks.iter().map(|(k, v)| (*k, v.clone())));
                if let Some(f) = l.frontiers.get(&0) {
                    merged.frontiers.entry(0).or_insert(*f);
                }
                Some(merged)
            }
            (None, None) => None,
        }
    }

    /// The newest generation's frontier record of a partition.
    pub fn latest_frontier(&self, topic: &str, partition: i32) -> Option<StoredFrontier> {
        let key = (topic.to_string(), partition);
        self.stored
            .get(&key)
            .and_then(|s| s.latest())
            .or_else(|| self.legacy.get(&key).and_then(|s| s.latest()))
            .copied()
    }

    pub fn partitions(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self.stored.keys().chain(self.legacy.keys()).cloned().collect();
        all.sort();
        all.dedup();
        all
    }

    /// Keys of stored records that no translation can need any more (see [`prunable`]).
    pub fn prunable(&self, topic: &str, partition: i32, source_log_start: i64) -> Vec<Vec<u8>> {
        let Some(stored) = self.stored(topic, partition) else { return Vec::new() };
        let target_topic = self.naming.target_topic(topic);
        prunable(&stored, source_log_start)
            .into_iter()
            .map(|k| match k {
                Prunable::Chunk { generation: 0, legacy_upstream: Some(upstream), .. } => {
                    codec::legacy_segment_key(topic, partition, upstream)
                }
                Prunable::Chunk { generation, first_downstream, .. } => {
                    codec::chunk_key(topic, partition, &target_topic, generation, first_downstream)
                }
                Prunable::Frontier { generation: 0 } => codec::legacy_frontier_key(topic, partition),
                Prunable::Frontier { generation } => codec::frontier_key(topic, partition, &target_topic, generation),
            })
            .collect()
    }

    /// Every stored key of one source topic's map, for `strait recopy` to delete.
    pub fn keys_of_topic(&self, topic: &str) -> Vec<Vec<u8>> {
        let target_topic = self.naming.target_topic(topic);
        let mut keys = Vec::new();
        for ((t, p), stored) in self.stored.iter().filter(|((t, _), _)| t == topic) {
            for (generation, first_downstream) in stored.chunks.keys() {
                keys.push(codec::chunk_key(t, *p, &target_topic, *generation, *first_downstream));
            }
            for generation in stored.frontiers.keys() {
                keys.push(codec::frontier_key(t, *p, &target_topic, *generation));
            }
        }
        for ((t, p), stored) in self.legacy.iter().filter(|((t, _), _)| t == topic) {
            for runs in stored.chunks.values() {
                if let Some(run) = runs.first() {
                    keys.push(codec::legacy_segment_key(t, *p, run.upstream));
                }
            }
            keys.push(codec::legacy_frontier_key(t, *p));
        }
        keys
    }

    /// Forgets one source topic's map (after `strait recopy` deleted it).
    pub fn forget_topic(&mut self, topic: &str) {
        self.stored.retain(|(t, _), _| t != topic);
        self.legacy.retain(|(t, _), _| t != topic);
    }

    /// Number of stored runs, for tests and the size metric.
    pub fn stored_segments(&self) -> usize {
        self.stored.values().chain(self.legacy.values()).flat_map(|s| s.chunks.values()).map(Vec::len).sum()
    }

    /// Number of stored map records (chunks and frontiers).
    pub fn stored_records(&self) -> usize {
        self.stored.values().chain(self.legacy.values()).map(|s| s.chunks.len() + s.frontiers.len()).sum()
    }
}

fn legacy_frontier(upstream: i64, next_downstream: i64) -> StoredFrontier {
    StoredFrontier {
        generation: 0,
        owned_from: -1,
        frontier: Frontier { upstream, next_downstream },
        source_end: -1,
        written_ms: 0,
        target_topic_id: [0; 16],
        writer: None,
    }
}

/// A stored record that can be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    Chunk { generation: u64, first_downstream: i64, legacy_upstream: Option<i64> },
    Frontier { generation: u64 },
}

/// Stored records that can be deleted: chunks none of whose runs survive resolution (a
/// newer copy or generation replaced them) and that lie below the frontier, chunks
/// wholly below the source's log start (retention removed their records, so no group
/// can sit in them), and the frontiers of older generations. The chunk holding the last
/// resolved run is always kept. Keeps the map as small as the data the source holds.
///
/// Chunk keys name their generation and first downstream offset, so no key is ever
/// reused by a later write: a deletion can never remove a record written meanwhile.
pub fn prunable(stored: &StoredPartition, source_log_start: i64) -> Vec<Prunable> {
    let resolved = stored.resolve();
    let frontier = resolved.frontier.map_or(-1, |f| f.upstream);
    let last = resolved.runs.values().next_back();
    // The part of a stored run that survives resolution (a newer copy may cut its tail).
    let surviving = |run: &Run| resolved.runs.get(&run.upstream).filter(|r| r.downstream == run.downstream);
    let mut out = Vec::new();
    for ((generation, first_downstream), runs) in &stored.chunks {
        let holds_last =
            last.is_some_and(|l| runs.iter().any(|r| r.upstream == l.upstream && r.downstream == l.downstream));
        if holds_last {
            continue;
        }
        let end = runs.iter().map(Run::upstream_end).max().unwrap_or(0);
        let live_end = runs.iter().filter_map(surviving).map(Run::upstream_end).max();
        let superseded = live_end.is_none() && end <= frontier;
        let expired = live_end.unwrap_or(end) <= source_log_start;
        if superseded || expired {
            let legacy_upstream = (*generation == 0).then(|| runs.first().map(|r| r.upstream)).flatten();
            out.push(Prunable::Chunk { generation: *generation, first_downstream: *first_downstream, legacy_upstream });
        }
    }
    let newest = stored.frontiers.keys().next_back().copied();
    out.extend(stored.frontiers.keys().filter(|g| Some(**g) != newest).map(|g| Prunable::Frontier { generation: *g }));
    out
}

/// The map topic on the target for flows from `source`.
pub fn map_topic(source: &str) -> String {
    format!("{source}.offset-map{}", crate::naming::STRAIT_INTERNAL_SUFFIX)
}

/// Keys and values of the map topic.
///
/// - `C|topic|partition|target topic|generation|first_downstream` → a chunk: version
///   byte 2, then the runs as zig-zag varint deltas (upstream from the previous run's
///   end, downstream from the previous run's end, length).
/// - `G|topic|partition|target topic|generation` → a frontier: version byte 2, then big-endian
///   owned_from, upstream, next_downstream, source_end, written_ms (i64 each) and the
///   target topic id (16 bytes).
/// - Legacy (before generations, read as generation 0): `S|topic|partition|upstream` →
///   (downstream, len) and `F|topic|partition` → (upstream, next_downstream), i64 pairs.
pub(crate) mod codec {
    use super::{Run, StoredFrontier};

    pub enum MapKey {
        Chunk { topic: String, partition: i32, target_topic: String, generation: u64, first_downstream: i64 },
        Frontier { topic: String, partition: i32, target_topic: String, generation: u64 },
        LegacySegment { topic: String, partition: i32, upstream: i64 },
        LegacyFrontier { topic: String, partition: i32 },
    }

    const VERSION: u8 = 2;

    pub fn chunk_key(
        topic: &str,
        partition: i32,
        target_topic: &str,
        generation: u64,
        first_downstream: i64,
    ) -> Vec<u8> {
        format!("C|{topic}|{partition}|{target_topic}|{generation}|{first_downstream}").into_bytes()
    }

    pub fn frontier_key(topic: &str, partition: i32, target_topic: &str, generation: u64) -> Vec<u8> {
        format!("G|{topic}|{partition}|{target_topic}|{generation}").into_bytes()
    }

    pub fn legacy_segment_key(topic: &str, partition: i32, upstream: i64) -> Vec<u8> {
        format!("S|{topic}|{partition}|{upstream}").into_bytes()
    }

    pub fn legacy_frontier_key(topic: &str, partition: i32) -> Vec<u8> {
        format!("F|{topic}|{partition}").into_bytes()
    }

    pub fn decode_key(key: &[u8]) -> Option<MapKey> {
        let key = std::str::from_utf8(key).ok()?;
        let mut parts = key.split('|');
        let kind = parts.next()?;
        let topic = parts.next()?.to_string();
        let partition = parts.next()?.parse().ok()?;
        let key = match kind {
            "C" => MapKey::Chunk {
                topic,
                partition,
                target_topic: parts.next()?.to_string(),
                generation: parts.next()?.parse().ok()?,
                first_downstream: parts.next()?.parse().ok()?,
            },
            "G" => MapKey::Frontier {
                topic,
                partition,
                target_topic: parts.next()?.to_string(),
                generation: parts.next()?.parse().ok()?,
            },
            "S" => MapKey::LegacySegment { topic, partition, upstream: parts.next()?.parse().ok()? },
            "F" => MapKey::LegacyFrontier { topic, partition },
            _ => return None,
        };
        parts.next().is_none().then_some(key)
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn get_varint(input: &mut &[u8]) -> Option<i64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }

    /// Each run: upstream start (from the previous run's end), downstream start (from
    /// the previous run's end), copies, gap count, then each gap as (start from the
    /// previous gap's end or the run's start, count).
    pub fn encode_chunk(runs: &[Run]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + runs.len() * 6);
        out.push(VERSION);
        let (mut u, mut d) = (0i64, 0i64);
        for run in runs {
            put_varint(&mut out, run.upstream - u);
            put_varint(&mut out, run.downstream - d);
            put_varint(&mut out, run.len);
            put_varint(&mut out, run.gaps.len() as i64);
            let mut at = run.upstream;
            for &(g, n) in &run.gaps {
                put_varint(&mut out, g - at);
                put_varint(&mut out, n);
                at = g + n;
            }
            u = run.upstream_end();
            d = run.downstream_end();
        }
        out
    }

    pub fn decode_chunk(value: &[u8]) -> Option<Vec<Run>> {
        let (&version, mut rest) = value.split_first()?;
        if version != VERSION {
            return None;
        }
        let mut runs = Vec::new();
        let (mut u, mut d) = (0i64, 0i64);
        while !rest.is_empty() {
            let upstream = u + get_varint(&mut rest)?;
            let downstream = d + get_varint(&mut rest)?;
            let len = get_varint(&mut rest)?;
            let gap_count = usize::try_from(get_varint(&mut rest)?).ok()?;
            let mut gaps = Vec::with_capacity(gap_count.min(4096));
            let mut at = upstream;
            for _ in 0..gap_count {
                let g = at + get_varint(&mut rest)?;
                let n = get_varint(&mut rest)?;
                gaps.push((g, n));
                at = g + n;
            }
            let run = Run { upstream, downstream, len, gaps };
            u = run.upstream_end();
            d = run.downstream_end();
            runs.push(run);
        }
        Some(runs)
    }

    pub fn encode_frontier(f: &StoredFrontier) -> Vec<u8> {
        let mut out = Vec::with_capacity(57);
        out.push(VERSION);
        for v in [f.owned_from, f.frontier.upstream, f.frontier.next_downstream, f.source_end, f.written_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&f.target_topic_id);
        if let Some(writer) = &f.writer {
            // Exactly-once only, so that at-least-once maps stay readable by older versions.
            out.push(u8::from(writer.released));
            out.extend_from_slice(&writer.instance.to_be_bytes());
        }
        out
    }

    pub fn decode_frontier(generation: u64, value: &[u8]) -> Option<StoredFrontier> {
        if value.len() < 57 || value[0] != VERSION {
            return None;
        }
        let writer = match &value[57..] {
            [] => None,
            [released, instance @ ..] if instance.len() == 8 => Some(super::TransactionalWriter {
                instance: u64::from_be_bytes(instance.try_into().expect("8 bytes")),
                released: *released == 1,
            }),
            _ => return None,
        };
        let i64_at = |i: usize| i64::from_be_bytes(value[1 + i * 8..9 + i * 8].try_into().expect("8 bytes"));
        Some(StoredFrontier {
            generation,
            owned_from: i64_at(0),
            frontier: super::Frontier { upstream: i64_at(1), next_downstream: i64_at(2) },
            source_end: i64_at(3),
            written_ms: i64_at(4),
            target_topic_id: value[41..57].try_into().expect("16 bytes"),
            writer,
        })
    }

    pub fn decode_legacy_pair(v: &[u8]) -> Option<(i64, i64)> {
        if v.len() != 16 {
            return None;
        }
        Some((i64::from_be_bytes(v[..8].try_into().ok()?), i64::from_be_bytes(v[8..].try_into().ok()?)))
    }
}

/// Reads a flow's offset map from the target and keeps following it.
pub struct MapReader {
    consumer: rdkafka::consumer::BaseConsumer,
    topic: String,
    next_offset: i64,
    pub map: FlowMap,
}

impl MapReader {
    /// A reader of `flow`'s map, on the flow's target cluster.
    pub fn new(
        target: &crate::cluster::Cluster,
        flow: &crate::config::FlowConfig,
    ) -> Result<MapReader, crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        let consumer = target.metadata_client()?;
        let topic = map_topic(&flow.source);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
            .map_err(|e| target.request_error("reading the offset map", e))?;
        consumer.assign(&tpl).map_err(|e| target.request_error("reading the offset map", e))?;
        Ok(MapReader { consumer, topic, next_offset: 0, map: FlowMap::new(TopicSelector::new(flow)) })
    }

    /// Applies every map record written so far.
    pub fn catch_up(
        &mut self,
        cluster: &crate::cluster::Cluster,
        timeout: std::time::Duration,
    ) -> Result<(), crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        let what = || format!("reading `{}`", self.topic);
        let (_, end) =
            self.consumer.fetch_watermarks(&self.topic, 0, timeout).map_err(|e| cluster.request_error(what(), e))?;
        self.catch_up_to(cluster, end, timeout)
    }

    /// Applies every map record written so far, including those written after a
    /// transaction that is still open: [`MapReader::catch_up`] stops at the last stable
    /// offset (this reader is `read_committed`), so with exactly-once flows writing the
    /// map, one open transaction hides everything committed after it — say, the frontier
    /// an owner released while handing partitions over. This waits until the open
    /// transactions ended (they commit every commit interval; a dead writer's is aborted
    /// by fencing or by the transaction timeout), at most `timeout`.
    pub fn catch_up_through_transactions(
        &mut self,
        cluster: &crate::cluster::Cluster,
        timeout: std::time::Duration,
    ) -> Result<(), crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        let what = || format!("reading `{}`", self.topic);
        let uncommitted = cluster.uncommitted_metadata_client()?;
        let (_, end) =
            uncommitted.fetch_watermarks(&self.topic, 0, timeout).map_err(|e| cluster.request_error(what(), e))?;
        self.catch_up_to(cluster, end, timeout)
    }

    fn catch_up_to(
        &mut self,
        cluster: &crate::cluster::Cluster,
        end: i64,
        timeout: std::time::Duration,
    ) -> Result<(), crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        use rdkafka::message::Message;
        let what = || format!("reading `{}`", self.topic);
        let deadline = std::time::Instant::now() + timeout;
        while self.next_offset < end {
            if std::time::Instant::now() > deadline {
                return Err(cluster.request_error(what(), "timed out"));
            }
            match self.consumer.poll(std::time::Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    self.next_offset = m.offset() + 1;
                    if let Some(key) = m.key() {
                        self.map.apply_record(key, m.payload());
                    }
                }
                Some(Err(e)) => return Err(cluster.request_error(what(), e)),
                None => {
                    // Transaction markers (exactly-once flows) and aborted map records are
                    // never returned: the consumer's position steps over them.
                    let position = self
                        .consumer
                        .position()
                        .ok()
                        .and_then(|tpl| tpl.find_partition(&self.topic, 0).and_then(|e| e.offset().to_raw()));
                    if let Some(position) = position {
                        self.next_offset = self.next_offset.max(position);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(upstream: i64, downstream: i64, len: i64) -> Run {
        Run::contiguous(upstream, downstream, len)
    }

    fn frontier(upstream: i64, next_downstream: i64) -> Option<Frontier> {
        Some(Frontier { upstream, next_downstream })
    }

    fn claim(generation: u64, owned_from: i64, upstream: i64, next_downstream: i64) -> StoredFrontier {
        StoredFrontier {
            generation,
            owned_from,
            frontier: Frontier { upstream, next_downstream },
            source_end: -1,
            written_ms: 0,
            target_topic_id: [0; 16],
            writer: None,
        }
    }

    #[test]
    fn translates_exactly_across_gaps() {
        // 0..100 copied to 0..100; upstream 100 is a marker; 101..200 copied to 100..199.
        let m = PartitionMap::resolve(vec![seg(0, 0, 100), seg(101, 100, 99)], frontier(201, 199));
        assert_eq!(m.translate(0, 0), Translation::Exact(0));
        assert_eq!(m.translate(50, 0), Translation::Exact(50));
        assert_eq!(m.translate(100, 0), Translation::Exact(100), "a group on the marker continues with 101's copy");
        assert_eq!(m.translate(101, 0), Translation::Exact(100));
        assert_eq!(m.translate(199, 0), Translation::Exact(198));
        assert_eq!(m.translate(200, 0), Translation::AtEnd(Some(199)));
        assert_eq!(m.translate(201, 0), Translation::AtEnd(Some(199)), "past a trailing marker");
        assert_eq!(m.translate(202, 0), Translation::NotYetMirrored { frontier: Some(201) });
    }

    #[test]
    fn newest_copy_wins_after_a_crash() {
        // 0..150 copied to 0..150; crash; re-mirrored from 120: 120.. copied to 150..
        let stored = vec![seg(120, 150, 50), seg(0, 0, 150)];
        let m = PartitionMap::resolve(stored, frontier(170, 200));
        assert_eq!(m.translate(119, 0), Translation::Exact(119));
        assert_eq!(m.translate(120, 0), Translation::Exact(150));
        assert_eq!(m.translate(130, 0), Translation::Exact(160));
        assert_eq!(m.translate_back(160), Some(130));
        assert_eq!(m.translate_back(119), Some(119));
        // Mid re-mirror: only 120..125 re-copied so far; 126.. is not translatable yet.
        let m = PartitionMap::resolve(vec![seg(0, 0, 150), seg(120, 150, 6)], frontier(126, 156));
        assert_eq!(m.translate(125, 0), Translation::Exact(155));
        assert_eq!(m.translate(126, 0), Translation::AtEnd(Some(156)));
        assert!(matches!(m.translate(130, 0), Translation::NotYetMirrored { .. }));
    }

    #[test]
    fn positions_before_the_map_are_refused_while_their_records_exist() {
        let m = PartitionMap::resolve(vec![seg(1000, 0, 100)], frontier(1100, 100));
        assert_eq!(m.translate(123, 0), Translation::OlderThanMap { first_mapped: 1000 });
        // Retention removed everything before 1000 on the source: nothing to re-read.
        assert_eq!(m.translate(123, 1000), Translation::Exact(0));
        // A group below the log start while unmapped records above it still exist.
        assert_eq!(m.translate(5, 10), Translation::OlderThanMap { first_mapped: 1000 });
        assert_eq!(m.translate(1000, 0), Translation::Exact(0));
    }

    fn naming() -> TopicSelector {
        let flow: crate::config::FlowConfig =
            serde_json::from_value(serde_json::json!({"source": "a", "target": "b", "topics": ["t"]})).unwrap();
        TopicSelector::new(&flow)
    }

    fn flow_map(records: &[(Vec<u8>, Vec<u8>)]) -> FlowMap {
        let mut fm = FlowMap::new(naming());
        for (k, v) in records {
            fm.apply_record(k, Some(v));
        }
        fm
    }

    fn chunk(generation: u64, runs: &[Run]) -> (Vec<u8>, Vec<u8>) {
        (codec::chunk_key("t", 0, "a.t", generation, runs[0].downstream), codec::encode_chunk(runs))
    }

    fn front(f: StoredFrontier) -> (Vec<u8>, Vec<u8>) {
        (codec::frontier_key("t", 0, "a.t", f.generation), codec::encode_frontier(&f))
    }

    /// A transactional source: 100 records, a marker, 100 records, a marker, ...
    fn transactional_run(transactions: i64) -> Run {
        let mut run = Run::new(0, 0);
        for t in 0..transactions {
            for i in 0..100 {
                let (u, d) = (t * 101 + i, t * 100 + i);
                if (u, d) != (0, 0) {
                    assert!(run.extend(u, d, usize::MAX));
                }
            }
        }
        run
    }

    #[test]
    fn gaps_stay_inside_one_run() {
        let run = transactional_run(50);
        assert_eq!((run.len, run.gaps.len(), run.upstream_end()), (5000, 49, 5049));
        assert!(!run.clone().extend(5049, 4999, usize::MAX), "a downstream jump ends the run");
        assert!(run.clone().extend(5049, 5000, 10), "a copy right after the run needs no gap");
        assert!(!run.clone().extend(5050, 5000, 10), "a gap beyond the limit ends the run");
        let pieces: Vec<Segment> = run.pieces().collect();
        assert_eq!(pieces.len(), 50);
        assert_eq!(pieces[1], Segment { upstream: 101, downstream: 100, len: 100 });
        let m = PartitionMap::resolve(vec![run.clone()], frontier(5050, 5000));
        assert_eq!(m.translate(0, 0), Translation::Exact(0));
        assert_eq!(m.translate(100, 0), Translation::Exact(100), "a group on a marker continues after it");
        assert_eq!(m.translate(101, 0), Translation::Exact(100));
        assert_eq!(m.translate(4949, 0), Translation::Exact(4900));
        assert_eq!(m.translate(5049, 0), Translation::AtEnd(Some(5000)), "past the trailing marker");
        assert_eq!(m.translate_back(100), Some(101));
        assert_eq!(m.translate_back(4999), Some(5048));
        // A newer copy from the middle of a gap cuts the run before the gap.
        let mut cut = run.clone();
        cut.truncate(201);
        assert_eq!((cut.len, cut.gaps.clone(), cut.upstream_end()), (200, vec![(100, 1)], 201));
        let mut cut = run;
        cut.truncate(200);
        assert_eq!((cut.len, cut.gaps.clone(), cut.upstream_end()), (199, vec![(100, 1)], 200));
    }

    #[test]
    fn a_chunk_holds_many_gaps_and_round_trips() {
        let runs = vec![transactional_run(500), seg(60_000, 50_000, 10)];
        let encoded = codec::encode_chunk(&runs);
        assert!(encoded.len() < 500 * 5, "a gap costs a few bytes: {} bytes for 500 gaps", encoded.len());
        assert_eq!(codec::decode_chunk(&encoded), Some(runs.clone()));
        let fm = flow_map(&[chunk(7, &runs), front(claim(7, 0, 60_010, 50_010))]);
        let m = fm.partition("t", 0);
        assert_eq!(m.translate(101, 0), Translation::Exact(100));
        assert_eq!(m.translate(4949, 0), Translation::Exact(4900));
        assert_eq!(m.translate(55_000, 0), Translation::Exact(50_000), "between runs: the next copy");
        assert_eq!(fm.stored_records(), 2);
        // Another flow's copies of the same source partition (another target topic) are not ours.
        let mut other = flow_map(&[]);
        other.apply_record(&codec::chunk_key("t", 0, "t", 7, 0), Some(&codec::encode_chunk(&runs)));
        assert_eq!(other.stored_records(), 0);
    }

    #[test]
    fn a_newer_generation_replaces_older_mappings_from_its_claim_on() {
        // Generation 5 copied 0..100 to 0..100. Generation 6 took over at 80 and re-copied
        // 80..120 to 100..140. A zombie of generation 5 then appended 80..90 at 140..150.
        let fm = flow_map(&[
            chunk(5, &[seg(0, 0, 100)]),
            front(claim(5, 0, 100, 100)),
            front(claim(6, 80, 120, 140)),
            chunk(6, &[seg(80, 100, 40)]),
            chunk(5, &[seg(80, 140, 10)]),
        ]);
        let m = fm.partition("t", 0);
        assert_eq!(m.translate(79, 0), Translation::Exact(79));
        assert_eq!(m.translate(85, 0), Translation::Exact(105), "the zombie's late copy must not win");
        assert_eq!(m.translate(120, 0), Translation::AtEnd(Some(140)));
        // A claim with nothing copied yet already fences the zombie's later mappings.
        let fm = flow_map(&[chunk(5, &[seg(0, 0, 100)]), front(claim(6, 80, 80, 100)), chunk(5, &[seg(80, 140, 10)])]);
        let m = fm.partition("t", 0);
        assert_eq!(m.translate(80, 0), Translation::AtEnd(Some(100)));
        assert!(matches!(m.translate(85, 0), Translation::NotYetMirrored { .. }));
    }

    #[test]
    fn the_newest_generation_frontier_counts_even_when_written_first() {
        let fm = flow_map(&[front(claim(9, 10, 10, 10)), front(claim(8, 0, 50, 60))]);
        assert_eq!(fm.partition("t", 0).frontier, frontier(10, 10));
        assert_eq!(fm.stored("t", 0).unwrap().max_generation(), 9);
    }

    #[test]
    fn pruning_drops_replaced_chunks_and_old_frontiers_only() {
        let stored = flow_map(&[
            chunk(1, &[seg(0, 0, 150)]),
            front(claim(1, 0, 150, 150)),
            chunk(2, &[seg(120, 150, 50)]),
            front(claim(2, 120, 170, 200)),
            chunk(3, &[seg(130, 200, 5)]),
            front(claim(3, 130, 135, 205)),
        ]);
        let p = prunable(&stored.stored("t", 0).unwrap(), 0);
        // Generation 2's chunk is replaced from 130 on but still maps 120..130: kept.
        assert!(p.contains(&Prunable::Frontier { generation: 1 }));
        assert!(p.contains(&Prunable::Frontier { generation: 2 }));
        assert!(!p.iter().any(|x| matches!(x, Prunable::Chunk { .. })), "{p:?}");
        let p = prunable(&stored.stored("t", 0).unwrap(), 125);
        assert!(p.contains(&Prunable::Chunk { generation: 1, first_downstream: 0, legacy_upstream: None }));
        assert!(!p.contains(&Prunable::Chunk { generation: 3, first_downstream: 200, legacy_upstream: None }));
    }

    #[test]
    fn legacy_records_are_read_as_generation_zero() {
        let mut fm = FlowMap::new(naming());
        let pair = |a: i64, b: i64| [a.to_be_bytes(), b.to_be_bytes()].concat();
        fm.apply_record(&codec::legacy_segment_key("t", 0, 0), Some(&pair(0, 20)));
        fm.apply_record(&codec::legacy_segment_key("t", 0, 21), Some(&pair(20, 5)));
        fm.apply_record(&codec::legacy_frontier_key("t", 0), Some(&pair(26, 25)));
        let m = fm.partition("t", 0);
        assert_eq!(m.translate(20, 0), Translation::Exact(20));
        assert_eq!(m.translate(26, 0), Translation::AtEnd(Some(25)));
        fm.apply_record(&codec::legacy_segment_key("t", 0, 21), None);
        assert_eq!(fm.partition("t", 0).segments().count(), 1);
        // A newer generation takes over from the legacy map.
        fm.apply_record(&codec::frontier_key("t", 0, "a.t", 3), Some(&codec::encode_frontier(&claim(3, 20, 20, 25))));
        assert_eq!(fm.partition("t", 0).translate(20, 0), Translation::AtEnd(Some(25)));
    }

    #[test]
    fn unknown_frontier_translates_nothing() {
        let m = PartitionMap::resolve(vec![seg(0, 0, 10)], None);
        assert!(matches!(m.translate(0, 0), Translation::NotYetMirrored { frontier: None }));
    }
}
