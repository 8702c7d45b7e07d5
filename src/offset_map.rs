//! The offset map: for every mirrored record, where its copy is on the target.
//!
//! Per source partition the map is a list of run-length *segments*: upstream offsets
//! `u..u+len` were copied to downstream offsets `d..d+len`. A new segment starts wherever
//! the two sides stop advancing together: a gap upstream (transaction markers, aborted or
//! compacted records), or a re-send after a crash. Mirroring a million records without
//! gaps is one segment.
//!
//! After a crash, records are re-mirrored from the last committed position, so an
//! upstream offset can have two copies. The newest copy wins: its downstream offset is
//! larger (a target partition's offsets only grow), so resolution needs no ordering of
//! the stored records, and survives log compaction of the map topic.
//!
//! Each partition also has a *frontier*: every upstream offset below it is accounted for
//! (mapped, or known to hold no mirrored record). A group committed at upstream `U`
//! translates exactly when `U <= frontier`: to the downstream offset of the first mapped
//! record at or after `U`, or, past the last one, to the next downstream offset.
//!
//! The map is stored on the target in the compacted topic
//! `<source>.offset-map.strait.internal`: key `S|topic|partition|upstream` → segment,
//! key `F|topic|partition` → frontier. Source progress is committed only up to a
//! frontier that is already stored, so after any crash the map covers everything the
//! restarted flow will not mirror again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// `upstream..upstream+len` were copied to `downstream..downstream+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub upstream: i64,
    pub downstream: i64,
    pub len: i64,
}

impl Segment {
    fn upstream_end(&self) -> i64 {
        self.upstream + self.len
    }
    fn downstream_end(&self) -> i64 {
        self.downstream + self.len
    }
}

/// Where the frontier of a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontier {
    /// Every upstream offset below this is accounted for.
    pub upstream: i64,
    /// The downstream offset the next mirrored record gets; -1 when nothing was mirrored.
    pub next_downstream: i64,
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
    /// Non-overlapping segments by upstream start, newest copies only.
    segments: BTreeMap<i64, Segment>,
    pub frontier: Option<Frontier>,
}

impl PartitionMap {
    /// Builds the resolved map from stored segments in any order.
    pub fn resolve(mut stored: Vec<Segment>, frontier: Option<Frontier>) -> PartitionMap {
        stored.sort_by_key(|s| s.downstream);
        let mut map = PartitionMap { segments: BTreeMap::new(), frontier };
        for seg in stored {
            map.supersede_from(seg.upstream);
            if seg.len > 0 {
                map.segments.insert(seg.upstream, seg);
            }
        }
        map
    }

    /// A newer copy starting at `upstream` replaces every older mapping from there on:
    /// re-mirroring proceeds in order from its restart point.
    fn supersede_from(&mut self, upstream: i64) {
        let later: Vec<i64> = self.segments.range(upstream..).map(|(k, _)| *k).collect();
        for k in later {
            self.segments.remove(&k);
        }
        if let Some((_, prev)) = self.segments.range_mut(..upstream).next_back() {
            if prev.upstream_end() > upstream {
                prev.len = upstream - prev.upstream;
            }
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.values()
    }

    /// Where a group whose next upstream record is `upstream` continues on the target.
    /// `source_log_start` is the partition's first offset on the source now: records
    /// below the map's first segment are fine to step over only if they are gone there.
    pub fn translate(&self, upstream: i64, source_log_start: i64) -> Translation {
        let frontier = self.frontier.map(|f| f.upstream);
        if frontier.is_none_or(|f| upstream > f) {
            return Translation::NotYetMirrored { frontier };
        }
        if let Some(first) = self.segments.values().next() {
            if upstream < first.upstream && source_log_start < first.upstream {
                return Translation::OlderThanMap { first_mapped: first.upstream };
            }
        }
        // The segment containing `upstream`, or else the first one after it.
        if let Some((_, seg)) = self.segments.range(..=upstream).next_back() {
            if upstream < seg.upstream_end() {
                return Translation::Exact(seg.downstream + (upstream - seg.upstream));
            }
        }
        if let Some((_, seg)) = self.segments.range(upstream..).next() {
            return Translation::Exact(seg.downstream);
        }
        let next = self.frontier.map(|f| f.next_downstream).filter(|d| *d >= 0);
        let last = self.segments.values().next_back().map(Segment::downstream_end);
        Translation::AtEnd(next.max(last))
    }

    /// The inverse, for failback: where a group whose next downstream record is
    /// `downstream` continues on the source.
    pub fn translate_back(&self, downstream: i64) -> Option<i64> {
        let mut first_after: Option<&Segment> = None;
        for seg in self.segments.values() {
            if downstream >= seg.downstream && downstream < seg.downstream_end() {
                return Some(seg.upstream + (downstream - seg.downstream));
            }
            if seg.downstream >= downstream && first_after.is_none_or(|f| seg.downstream < f.downstream) {
                first_after = Some(seg);
            }
        }
        match first_after {
            Some(seg) => Some(seg.upstream),
            None => self.frontier.map(|f| f.upstream),
        }
    }
}

/// The maps of every partition of a flow, as read back from the map topic.
#[derive(Debug, Default)]
pub struct FlowMap {
    stored: HashMap<(String, i32), (HashMap<i64, Segment>, Option<Frontier>)>,
}

impl FlowMap {
    /// Applies one record of the map topic (`value == None` is a tombstone).
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) {
        match decode_key(key) {
            Some(MapKey::Segment { topic, partition, upstream }) => {
                let entry = self.stored.entry((topic, partition)).or_default();
                match value.and_then(decode_segment) {
                    Some((downstream, len)) => {
                        entry.0.insert(upstream, Segment { upstream, downstream, len });
                    }
                    None => {
                        entry.0.remove(&upstream);
                    }
                }
            }
            Some(MapKey::Frontier { topic, partition }) => {
                let entry = self.stored.entry((topic, partition)).or_default();
                entry.1 = value.and_then(decode_frontier);
            }
            None => {}
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> PartitionMap {
        match self.stored.get(&(topic.to_string(), partition)) {
            Some((segments, frontier)) => PartitionMap::resolve(segments.values().copied().collect(), *frontier),
            None => PartitionMap::default(),
        }
    }

    pub fn partitions(&self) -> impl Iterator<Item = &(String, i32)> {
        self.stored.keys()
    }

    /// Keys of stored segments that no translation can need any more (see [`prunable`]).
    pub fn prunable(&self, topic: &str, partition: i32, source_log_start: i64) -> Vec<String> {
        let Some((stored, frontier)) = self.stored.get(&(topic.to_string(), partition)) else { return Vec::new() };
        let frontier = frontier.map_or(-1, |f| f.upstream);
        prunable(stored.values().copied().collect(), source_log_start, frontier)
            .into_iter()
            .map(|upstream| segment_key(topic, partition, upstream))
            .collect()
    }

    /// Number of stored segments, for tests and the size metric.
    pub fn stored_segments(&self) -> usize {
        self.stored.values().map(|(s, _)| s.len()).sum()
    }
}

/// Stored segments that can be deleted: those a newer copy replaced entirely and that
/// the current run has passed (below the stored frontier, so the writer will not reuse
/// their key), and those wholly below the source's log start (retention removed their
/// records, so no group can sit in them). The last segment is always kept: it carries
/// the next downstream offset. Keeps the map's size bounded by what the source holds.
pub fn prunable(stored: Vec<Segment>, source_log_start: i64, frontier: i64) -> Vec<i64> {
    let resolved = PartitionMap::resolve(stored.clone(), None);
    let last = resolved.segments.values().next_back().map(|s| s.upstream);
    stored
        .into_iter()
        .filter(|seg| {
            let superseded = resolved.segments.get(&seg.upstream).is_none_or(|r| r.downstream != seg.downstream)
                && seg.upstream_end() <= frontier;
            let expired = seg.upstream_end() <= source_log_start && Some(seg.upstream) != last;
            superseded || expired
        })
        .map(|seg| seg.upstream)
        .collect()
}

/// The map topic on the target for flows from `source`.
pub fn map_topic(source: &str) -> String {
    format!("{source}.offset-map{}", crate::naming::STRAIT_INTERNAL_SUFFIX)
}

enum MapKey {
    Segment { topic: String, partition: i32, upstream: i64 },
    Frontier { topic: String, partition: i32 },
}

pub fn segment_key(topic: &str, partition: i32, upstream: i64) -> String {
    format!("S|{topic}|{partition}|{upstream}")
}

pub fn frontier_key(topic: &str, partition: i32) -> String {
    format!("F|{topic}|{partition}")
}

pub fn encode_segment(seg: &Segment) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&seg.downstream.to_be_bytes());
    v[8..].copy_from_slice(&seg.len.to_be_bytes());
    v
}

pub fn encode_frontier(f: &Frontier) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&f.upstream.to_be_bytes());
    v[8..].copy_from_slice(&f.next_downstream.to_be_bytes());
    v
}

fn two_i64(v: &[u8]) -> Option<(i64, i64)> {
    if v.len() != 16 {
        return None;
    }
    Some((i64::from_be_bytes(v[..8].try_into().ok()?), i64::from_be_bytes(v[8..].try_into().ok()?)))
}

fn decode_segment(v: &[u8]) -> Option<(i64, i64)> {
    two_i64(v)
}

fn decode_frontier(v: &[u8]) -> Option<Frontier> {
    two_i64(v).map(|(upstream, next_downstream)| Frontier { upstream, next_downstream })
}

fn decode_key(key: &[u8]) -> Option<MapKey> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.split('|');
    let kind = parts.next()?;
    let topic = parts.next()?.to_string();
    let partition = parts.next()?.parse().ok()?;
    match kind {
        "S" => Some(MapKey::Segment { topic, partition, upstream: parts.next()?.parse().ok()? }),
        "F" => Some(MapKey::Frontier { topic, partition }),
        _ => None,
    }
}

/// Records the open segment of one partition from delivery reports, without locks.
///
/// One thread writes (librdkafka's delivery-report thread); the flow loop reads
/// snapshots. A sequence counter, odd while a write is under way, lets the reader retry
/// instead of seeing a torn segment.
#[derive(Default)]
pub struct SegmentRecorder {
    seq: AtomicU64,
    upstream: AtomicI64,
    downstream: AtomicI64,
    len: AtomicI64,
}

impl SegmentRecorder {
    /// Records that `upstream` was copied to `downstream`. Returns the segment this
    /// closed, if the record did not continue the open one.
    pub fn record(&self, upstream: i64, downstream: i64) -> Option<Segment> {
        let open = self.read_unguarded();
        if open.len > 0 && upstream == open.upstream_end() && downstream == open.downstream_end() {
            self.write(Segment { len: open.len + 1, ..open });
            None
        } else {
            self.write(Segment { upstream, downstream, len: 1 });
            (open.len > 0).then_some(open)
        }
    }

    /// The open segment, if any record was recorded.
    pub fn snapshot(&self) -> Option<Segment> {
        loop {
            let before = self.seq.load(Ordering::SeqCst);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let seg = self.read_unguarded();
            if self.seq.load(Ordering::SeqCst) == before {
                return (seg.len > 0).then_some(seg);
            }
        }
    }

    fn read_unguarded(&self) -> Segment {
        Segment {
            upstream: self.upstream.load(Ordering::SeqCst),
            downstream: self.downstream.load(Ordering::SeqCst),
            len: self.len.load(Ordering::SeqCst),
        }
    }

    /// Forgets the open segment (a new ownership of the partition begins).
    pub fn clear(&self) {
        self.write(Segment { upstream: 0, downstream: 0, len: 0 });
    }

    fn write(&self, seg: Segment) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        self.upstream.store(seg.upstream, Ordering::SeqCst);
        self.downstream.store(seg.downstream, Ordering::SeqCst);
        self.len.store(seg.len, Ordering::SeqCst);
        self.seq.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(upstream: i64, downstream: i64, len: i64) -> Segment {
        Segment { upstream, downstream, len }
    }

    fn frontier(upstream: i64, next_downstream: i64) -> Option<Frontier> {
        Some(Frontier { upstream, next_downstream })
    }

    #[test]
    fn recorder_builds_run_length_segments() {
        let r = SegmentRecorder::default();
        assert_eq!(r.snapshot(), None);
        for i in 0..100 {
            assert_eq!(r.record(i, i), None);
        }
        assert_eq!(r.snapshot(), Some(seg(0, 0, 100)));
        // A transaction marker at upstream 100: the next record is 101.
        assert_eq!(r.record(101, 100), Some(seg(0, 0, 100)));
        assert_eq!(r.record(102, 101), None);
        assert_eq!(r.snapshot(), Some(seg(101, 100, 2)));
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

    #[test]
    fn pruning_drops_superseded_and_expired_segments_only() {
        // Old copy 0..150 superseded from 120 on; an even older, fully replaced copy at 130.
        let stored = vec![seg(0, 0, 150), seg(130, 140, 5), seg(120, 150, 50), seg(170, 200, 30)];
        let mut p = prunable(stored.clone(), 0, 200);
        p.sort();
        assert_eq!(p, vec![130], "only the fully replaced copy goes while all records exist");
        assert!(prunable(stored.clone(), 0, 130).is_empty(), "not before the current run has passed it");
        let mut p = prunable(stored.clone(), 175, 200);
        p.sort();
        assert_eq!(p, vec![0, 120, 130], "segments wholly below the log start go too");
        let mut p = prunable(stored, 10_000, 200);
        p.sort();
        assert_eq!(p, vec![0, 120, 130], "the last segment stays: it carries the next offset");
    }

    #[test]
    fn unknown_frontier_translates_nothing() {
        let m = PartitionMap::resolve(vec![seg(0, 0, 10)], None);
        assert!(matches!(m.translate(0, 0), Translation::NotYetMirrored { frontier: None }));
    }

    #[test]
    fn flow_map_reads_records_back() {
        let mut fm = FlowMap::default();
        fm.apply_record(segment_key("t", 0, 0).as_bytes(), Some(&encode_segment(&seg(0, 0, 10))));
        fm.apply_record(segment_key("t", 0, 0).as_bytes(), Some(&encode_segment(&seg(0, 0, 20))));
        fm.apply_record(segment_key("t", 0, 21).as_bytes(), Some(&encode_segment(&seg(21, 20, 5))));
        fm.apply_record(
            frontier_key("t", 0).as_bytes(),
            Some(&encode_frontier(&Frontier { upstream: 26, next_downstream: 25 })),
        );
        let m = fm.partition("t", 0);
        assert_eq!(m.translate(20, 0), Translation::Exact(20));
        assert_eq!(m.translate(26, 0), Translation::AtEnd(Some(25)));
        fm.apply_record(segment_key("t", 0, 21).as_bytes(), None);
        assert_eq!(fm.partition("t", 0).segments().count(), 1);
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
    pub fn new(
        target: &crate::cluster::Cluster,
        source_alias: &str,
    ) -> Result<MapReader, crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        let consumer = target.metadata_client()?;
        let topic = map_topic(source_alias);
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
            .map_err(|e| target.request_error("reading the offset map", e))?;
        consumer.assign(&tpl).map_err(|e| target.request_error("reading the offset map", e))?;
        Ok(MapReader { consumer, topic, next_offset: 0, map: FlowMap::default() })
    }

    /// Applies every map record written so far.
    pub fn catch_up(
        &mut self,
        cluster: &crate::cluster::Cluster,
        timeout: std::time::Duration,
    ) -> Result<(), crate::cluster::ClusterError> {
        use rdkafka::consumer::Consumer;
        use rdkafka::message::Message;
        let (_, end) = self
            .consumer
            .fetch_watermarks(&self.topic, 0, timeout)
            .map_err(|e| cluster.request_error(format!("reading `{}`", self.topic), e))?;
        let deadline = std::time::Instant::now() + timeout;
        while self.next_offset < end {
            if std::time::Instant::now() > deadline {
                return Err(cluster.request_error(format!("reading `{}`", self.topic), "timed out"));
            }
            match self.consumer.poll(std::time::Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    self.next_offset = m.offset() + 1;
                    if let Some(key) = m.key() {
                        self.map.apply_record(key, m.payload());
                    }
                }
                Some(Err(e)) => return Err(cluster.request_error(format!("reading `{}`", self.topic), e)),
                None => {}
            }
        }
        Ok(())
    }
}
