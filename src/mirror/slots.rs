//! Per-partition progress of a flow, shared by the data-path thread (which sends), the
//! producer's delivery-report thread (which records what the target acknowledged), and
//! the lag monitor and checkpointer (which read it).
//!
//! A partition's *slot* is found by number, packed into each produced record's opaque
//! word, so a delivery report needs no lookup by name: slot (16 bits) | epoch (8) |
//! source offset (40). The *epoch* changes whenever a new copy run of the partition
//! begins (an assignment, or a re-send after a target timeout); a late report of an
//! earlier run only releases its in-flight accounting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::FlowMetrics;
use crate::offset_map::writer::GAPS_PER_RUN;
use crate::offset_map::Run;

/// Partitions one flow can track at once.
pub(crate) const MAX_SLOTS: usize = 1 << SLOT_BITS;
const SLOT_BITS: u32 = 16;
const EPOCH_BITS: u32 = 8;
const OFFSET_BITS: u32 = 64 - SLOT_BITS - EPOCH_BITS;
pub(crate) const MAX_PACKED_OFFSET: i64 = (1i64 << OFFSET_BITS) - 1;

pub(crate) fn pack(slot: usize, epoch: u32, offset: i64) -> usize {
    let epoch = (epoch as u64) & ((1 << EPOCH_BITS) - 1);
    ((slot as u64) << (OFFSET_BITS + EPOCH_BITS) | epoch << OFFSET_BITS | offset as u64) as usize
}

pub(crate) fn unpack(opaque: usize) -> (usize, u32, i64) {
    let word = opaque as u64;
    let slot = (word >> (OFFSET_BITS + EPOCH_BITS)) as usize;
    let epoch = ((word >> OFFSET_BITS) & ((1 << EPOCH_BITS) - 1)) as u32;
    (slot, epoch, (word & ((1u64 << OFFSET_BITS) - 1)) as i64)
}

fn same_epoch(a: u32, b: u32) -> bool {
    (a ^ b) & ((1 << EPOCH_BITS) - 1) == 0
}

/// What the target acknowledged in the current copy run. Written by the delivery-report
/// thread under the slot's lock (one uncontended lock per report), so that a new run
/// cannot begin between the epoch check and the update.
#[derive(Debug, Default)]
pub(crate) struct Acks {
    pub epoch: u32,
    /// One past the last source offset the target acknowledged; -1 = none in this run.
    pub acked_next: i64,
    /// Target offset of the last acknowledged copy (or, before any, the target's end when
    /// the ownership began, minus one): copies only ever land above it.
    pub last_target_offset: i64,
    /// Source timestamp (ms) of the last acknowledged record.
    pub last_timestamp: i64,
    /// The run of consecutive copies still growing, and runs closed since the map's last
    /// write round.
    pub open: Option<Run>,
    pub closed: Vec<Run>,
    /// A record was refused: progress never passes it.
    pub failed: bool,
    /// A record timed out or was purged: the run must be re-sent from `acked_next`.
    pub resend: bool,
}

impl Acks {
    /// `upstream` was copied to `downstream`: extend the open run (skipped upstream
    /// offsets become gaps in it), or close it where the downstream side jumps.
    fn record(&mut self, upstream: i64, downstream: i64) {
        if let Some(run) = &mut self.open {
            if run.extend(upstream, downstream, GAPS_PER_RUN) {
                return;
            }
        }
        if let Some(run) = self.open.take() {
            self.closed.push(run);
        }
        self.open = Some(Run::new(upstream, downstream));
    }
}

/// Progress of one source partition.
pub struct PartitionSlot {
    /// The current copy run, stamped on every record sent (loop thread writes).
    pub(crate) epoch: AtomicU32,
    /// This instance owns the partition now.
    pub(crate) assigned: AtomicBool,
    /// Records handed to the producer and not yet reported.
    pub(crate) in_flight: AtomicU32,
    /// One past the last source offset handed to the producer or skipped; -1 = none.
    pub(crate) fetched_next: AtomicI64,
    /// Where the current run began: everything below was on the target already.
    pub(crate) started_at: AtomicI64,
    /// The target acknowledged a record of the current run. Until then the run keeps a
    /// single record in flight: the broker checks a producer's sequence numbers only
    /// once it has seen a batch of it, so a refused *first* batch would not stop the
    /// batches behind it.
    pub(crate) confirmed: AtomicBool,
    /// The consumer's position may be used for the frontier (it also steps over
    /// transaction markers). False after the loop dropped fetched records of the
    /// partition or moved its position (a re-send): until a record fetched from the new
    /// position is handed over, the reported position may still count dropped records.
    pub(crate) position_trusted: AtomicBool,
    /// The consumer's position as the loop last saw it between polls, when every
    /// record returned so far had been handed over (-1: none). Read from the loop only:
    /// inside rebalance callbacks, and while the consumer closes, librdkafka may count
    /// records it discards.
    pub(crate) position_seen: AtomicI64,
    /// Where the loop must move the consumer because a new run began elsewhere (a
    /// producer restart); -1: nowhere.
    pub(crate) pending_seek: AtomicI64,
    /// The frontier the loop last computed (it also steps over transaction markers).
    pub(crate) frontier_seen: AtomicI64,
    pub(crate) acks: Mutex<Acks>,
    /// When records of the current run were handed to the producer (loop thread only).
    pub(crate) sent: Mutex<SendMarks>,
    pub(crate) metrics: OnceLock<FlowMetrics>,
}

/// When the records of a run were handed to the producer, coarsely: a (source offset,
/// time) mark at most every [`MARK_EVERY`]. It answers how long the oldest record not yet
/// acknowledged has waited, so the data path re-sends before librdkafka's own message
/// timeout can expire *part* of a partition's queue (see `FlowShared::resend_stalled`).
#[derive(Debug, Default)]
pub(crate) struct SendMarks {
    marks: VecDeque<(i64, Instant)>,
}

/// How far apart send marks are: a waiting time is overestimated by at most this.
const MARK_EVERY: Duration = Duration::from_millis(50);

impl SendMarks {
    /// `offset` was handed to the producer at `now`.
    pub(crate) fn sent(&mut self, offset: i64, now: Instant) {
        if self.marks.back().is_none_or(|(_, at)| now.duration_since(*at) >= MARK_EVERY) {
            self.marks.push_back((offset, now));
        }
    }

    /// How long the record at `oldest` (the first not acknowledged) has waited, at most.
    /// Marks wholly below it are dropped.
    pub(crate) fn waited(&mut self, oldest: i64, now: Instant) -> Option<Duration> {
        while self.marks.len() >= 2 && self.marks[1].0 <= oldest {
            self.marks.pop_front();
        }
        self.marks.front().map(|(_, at)| now.duration_since(*at))
    }

    fn clear(&mut self) {
        self.marks.clear();
    }
}

impl Default for PartitionSlot {
    fn default() -> PartitionSlot {
        PartitionSlot {
            epoch: AtomicU32::new(0),
            assigned: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            fetched_next: AtomicI64::new(-1),
            started_at: AtomicI64::new(-1),
            confirmed: AtomicBool::new(false),
            position_trusted: AtomicBool::new(true),
            position_seen: AtomicI64::new(-1),
            pending_seek: AtomicI64::new(-1),
            frontier_seen: AtomicI64::new(-1),
            acks: Mutex::new(Acks { acked_next: -1, last_target_offset: -1, ..Acks::default() }),
            sent: Mutex::new(SendMarks::default()),
            metrics: OnceLock::new(),
        }
    }
}

impl PartitionSlot {
    /// A new copy run begins at `start` (nothing in flight of this partition may be
    /// acknowledged into it any more). `last_target_offset` is the highest target offset
    /// known to hold an earlier copy.
    pub(crate) fn begin_run(&self, epoch: u32, start: i64, last_target_offset: i64) {
        let mut acks = self.acks.lock().unwrap();
        *acks =
            Acks { epoch, acked_next: -1, last_target_offset, last_timestamp: acks.last_timestamp, ..Acks::default() };
        self.epoch.store(epoch, Ordering::SeqCst);
        self.sent.lock().unwrap().clear();
        self.fetched_next.store(-1, Ordering::SeqCst);
        self.started_at.store(start, Ordering::SeqCst);
        self.confirmed.store(false, Ordering::SeqCst);
        self.position_trusted.store(true, Ordering::SeqCst);
        self.position_seen.store(-1, Ordering::SeqCst);
        self.frontier_seen.fetch_max(start, Ordering::SeqCst);
    }

    /// The partition is no longer owned: reports still on their way are ignored.
    pub(crate) fn retire(&self) {
        let mut acks = self.acks.lock().unwrap();
        acks.epoch = acks.epoch.wrapping_add(1);
        self.epoch.store(acks.epoch, Ordering::SeqCst);
        self.assigned.store(false, Ordering::SeqCst);
        self.sent.lock().unwrap().clear();
    }

    /// How long the oldest record of the current run not yet acknowledged has waited for
    /// the target; `None` when nothing is in flight.
    pub(crate) fn oldest_wait(&self, now: Instant) -> Option<Duration> {
        let oldest = {
            let acks = self.acks.lock().unwrap();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                // Everything sent is acknowledged: no mark can matter any more.
                self.sent.lock().unwrap().clear();
                return None;
            }
            acks.acked_next.max(self.started_at.load(Ordering::SeqCst))
        };
        self.sent.lock().unwrap().waited(oldest, now)
    }

    /// Records an acknowledgement of the current run. False when the report belongs to an
    /// earlier run (ignored), or when the copy landed below an earlier one: the target
    /// partition was deleted and recreated (`Err(previous target offset)`).
    pub(crate) fn acknowledge(
        &self,
        epoch: u32,
        upstream: i64,
        downstream: i64,
        timestamp: Option<i64>,
    ) -> Result<bool, i64> {
        let mut acks = self.acks.lock().unwrap();
        // After a record of the run timed out or was purged, a later one may still land
        // (librdkafka's gapless guarantee does not cover timeouts). Counting it would
        // move `acked_next` past the record that never arrived, and the re-send would
        // skip it: the run ends at the first record not delivered.
        if !same_epoch(acks.epoch, epoch) || acks.failed || acks.resend {
            return Ok(false);
        }
        if downstream <= acks.last_target_offset {
            acks.failed = true;
            return Err(acks.last_target_offset);
        }
        acks.record(upstream, downstream);
        acks.last_target_offset = downstream;
        if let Some(ts) = timestamp {
            acks.last_timestamp = ts;
        }
        acks.acked_next = upstream + 1;
        self.confirmed.store(true, Ordering::Release);
        Ok(true)
    }

    /// Marks the current run as refused (`resend == false`) or to be re-sent. False when
    /// the report belongs to an earlier run.
    pub(crate) fn fail(&self, epoch: u32, resend: bool) -> bool {
        let mut acks = self.acks.lock().unwrap();
        if !same_epoch(acks.epoch, epoch) {
            return false;
        }
        if resend {
            acks.resend = true;
        } else {
            acks.failed = true;
        }
        true
    }

    fn waiting_or_failed(&self, acks: &Acks) -> bool {
        // In flight is read after the acks lock is held: a refusal or acknowledgement
        // is recorded before its report decrements the count.
        self.in_flight.load(Ordering::SeqCst) > 0 || acks.failed || acks.resend
    }

    /// The source offset up to which every record is safely on the target: everything
    /// acknowledged, or, when nothing is in flight, everything fetched (records skipped
    /// as loops, and transaction markers, have no acknowledgement of their own).
    /// `None` when nothing is known yet.
    pub fn safe_position(&self) -> Option<i64> {
        let acks = self.acks.lock().unwrap();
        let floor = acks.acked_next.max(self.started_at.load(Ordering::SeqCst));
        let position =
            if self.waiting_or_failed(&acks) { floor } else { floor.max(self.fetched_next.load(Ordering::SeqCst)) };
        (position >= 0).then_some(position)
    }

    /// Everything below this upstream offset is on the target, given the consumer's
    /// last seen position (which also steps over transaction markers) when nothing is
    /// waiting.
    pub(crate) fn frontier(&self) -> i64 {
        let acks = self.acks.lock().unwrap();
        let floor = acks.acked_next.max(self.started_at.load(Ordering::SeqCst));
        if self.waiting_or_failed(&acks) {
            return floor;
        }
        let position =
            if self.position_trusted.load(Ordering::SeqCst) { self.position_seen.load(Ordering::SeqCst) } else { -1 };
        floor.max(self.fetched_next.load(Ordering::SeqCst)).max(position)
    }

    /// Source offset up to which the partition is mirrored, if known.
    pub fn mirrored_position(&self) -> Option<i64> {
        let p = self.safe_position().unwrap_or(-1).max(self.frontier_seen.load(Ordering::SeqCst));
        (p >= 0).then_some(p)
    }

    pub fn last_acked_timestamp(&self) -> Option<i64> {
        let ts = self.acks.lock().unwrap().last_timestamp;
        (ts > 0).then_some(ts)
    }

    /// Runs closed since the last call and the open one, for the map's write round.
    pub(crate) fn take_runs(&self) -> (u32, Vec<Run>, Option<Run>, i64) {
        let mut acks = self.acks.lock().unwrap();
        let next_downstream = if acks.last_target_offset >= 0 { acks.last_target_offset + 1 } else { -1 };
        (acks.epoch, std::mem::take(&mut acks.closed), acks.open.clone(), next_downstream)
    }

    /// Where a new run must begin so that nothing unacknowledged is skipped, and the
    /// highest target offset known to hold a copy. (-1, _) for a refused partition.
    pub(crate) fn unacknowledged_from(&self) -> (i64, i64) {
        let acks = self.acks.lock().unwrap();
        if acks.failed {
            return (-1, acks.last_target_offset);
        }
        let floor = acks.acked_next.max(self.started_at.load(Ordering::SeqCst));
        let resume =
            if self.waiting_or_failed(&acks) { floor } else { floor.max(self.fetched_next.load(Ordering::SeqCst)) };
        (resume, acks.last_target_offset)
    }
}

/// Partition names and slot numbers. Changed only on the data-path thread (rebalance
/// callbacks run inside its `poll`).
#[derive(Default)]
pub(crate) struct Registry {
    by_name: HashMap<(Arc<str>, i32), usize>,
    names: Vec<(Arc<str>, i32)>,
}

impl Registry {
    pub fn get(&self, topic: &str, partition: i32) -> Option<usize> {
        // A lookup by &str needs an owned key; registry calls are off the hot path.
        self.by_name.get(&(Arc::from(topic), partition)).copied()
    }

    pub fn name(&self, slot: usize) -> Option<&(Arc<str>, i32)> {
        self.names.get(slot)
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, &(Arc<str>, i32))> {
        self.names.iter().enumerate()
    }

    pub fn insert(&mut self, topic: &str, partition: i32) -> Option<usize> {
        if let Some(slot) = self.get(topic, partition) {
            return Some(slot);
        }
        let slot = self.names.len();
        if slot >= MAX_SLOTS {
            return None;
        }
        let name = (Arc::<str>::from(topic), partition);
        self.by_name.insert(name.clone(), slot);
        self.names.push(name);
        Some(slot)
    }
}

/// All slots of a flow. Slots are allocated the first time a partition is seen and
/// kept for the life of the process, so a partition that comes back reuses its slot.
pub(crate) struct Slots {
    slots: Box<[OnceLock<Box<PartitionSlot>>]>,
    pub registry: Mutex<Registry>,
}

impl Slots {
    pub fn new() -> Slots {
        Slots { slots: (0..MAX_SLOTS).map(|_| OnceLock::new()).collect(), registry: Mutex::new(Registry::default()) }
    }

    /// The slot of a partition, allocating it on first sight. None when the flow already
    /// tracks [`MAX_SLOTS`] partitions.
    pub fn slot_for(&self, topic: &str, partition: i32) -> Option<usize> {
        let slot = self.registry.lock().unwrap().insert(topic, partition)?;
        self.slots[slot].get_or_init(Box::default);
        Some(slot)
    }

    pub fn get(&self, slot: usize) -> &PartitionSlot {
        self.slots[slot].get().expect("slots are allocated before records of them are sent")
    }

    pub fn try_get(&self, slot: usize) -> Option<&PartitionSlot> {
        self.slots.get(slot)?.get().map(|b| &**b)
    }

    /// Owned partitions with their slots, sorted by name.
    pub fn owned(&self) -> Vec<(Arc<str>, i32, usize)> {
        let registry = self.registry.lock().unwrap();
        let mut out: Vec<_> = registry
            .iter()
            .filter(|(slot, _)| self.try_get(*slot).is_some_and(|s| s.assigned.load(Ordering::SeqCst)))
            .map(|(slot, (t, p))| (t.clone(), *p, slot))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    pub fn name(&self, slot: usize) -> Option<(Arc<str>, i32)> {
        self.registry.lock().unwrap().name(slot).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_packs_slot_epoch_and_offset() {
        for (slot, epoch, offset) in
            [(0, 0, 0), (1, 3, 42), (MAX_SLOTS - 1, 255, MAX_PACKED_OFFSET), (7, 256 + 9, 1 << 39)]
        {
            assert_eq!(unpack(pack(slot, epoch, offset)), (slot, epoch % 256, offset));
        }
    }

    #[test]
    fn safe_position_waits_for_in_flight_records_and_never_passes_a_refusal() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 8, -1);
        assert_eq!(slot.safe_position(), Some(8));
        slot.in_flight.store(2, Ordering::SeqCst);
        slot.fetched_next.store(10, Ordering::SeqCst);
        assert_eq!(slot.acknowledge(1, 8, 100, None), Ok(true));
        assert_eq!(slot.safe_position(), Some(9));
        slot.in_flight.store(0, Ordering::SeqCst);
        assert_eq!(slot.safe_position(), Some(10));
        assert!(slot.fail(1, false));
        assert_eq!(slot.safe_position(), Some(9), "never pass a refused record");
    }

    #[test]
    fn reports_of_an_earlier_run_are_ignored() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 0, -1);
        assert_eq!(slot.acknowledge(1, 0, 0, None), Ok(true));
        slot.begin_run(2, 1, 0);
        assert_eq!(slot.acknowledge(1, 1, 1, None), Ok(false));
        assert!(!slot.fail(1, false));
        assert_eq!(slot.acknowledge(2, 1, 5, None), Ok(true));
        let (epoch, closed, open, next) = slot.take_runs();
        assert_eq!((epoch, closed, open, next), (2, vec![], Some(Run::new(1, 5)), 6));
    }

    #[test]
    fn a_copy_below_an_earlier_one_means_the_target_partition_was_recreated() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 100, 499);
        assert_eq!(slot.acknowledge(1, 100, 500, None), Ok(true));
        assert_eq!(slot.acknowledge(1, 101, 0, None), Err(500));
        assert_eq!(slot.safe_position(), Some(101));
    }

    #[test]
    fn upstream_gaps_stay_in_the_run_and_downstream_jumps_close_it() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 0, -1);
        for (u, d) in [(0, 0), (1, 1), (3, 2), (4, 3), (5, 7)] {
            slot.acknowledge(1, u, d, None).unwrap();
        }
        let (_, closed, open, _) = slot.take_runs();
        assert_eq!(closed, vec![Run { upstream: 0, downstream: 0, len: 4, gaps: vec![(2, 1)] }]);
        assert_eq!(open, Some(Run::new(5, 7)));
        assert!(slot.take_runs().1.is_empty(), "closed runs are handed over once");
    }

    #[test]
    fn a_record_landing_after_a_timed_out_one_does_not_move_progress_past_it() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 10, -1);
        slot.in_flight.store(3, Ordering::SeqCst);
        assert_eq!(slot.acknowledge(1, 10, 100, None), Ok(true));
        assert!(slot.fail(1, true), "11 timed out");
        assert_eq!(slot.acknowledge(1, 12, 101, None), Ok(false), "12 landed after the gap");
        assert_eq!(slot.unacknowledged_from().0, 11, "the re-send starts at the record that never arrived");
    }

    #[test]
    fn the_oldest_wait_follows_acknowledgements() {
        let mut marks = SendMarks::default();
        let t0 = Instant::now();
        marks.sent(0, t0);
        marks.sent(1, t0 + Duration::from_millis(10)); // within MARK_EVERY: no new mark
        marks.sent(2, t0 + Duration::from_millis(100));
        marks.sent(5, t0 + Duration::from_millis(300));
        let now = t0 + Duration::from_secs(1);
        assert_eq!(marks.waited(1, now), Some(Duration::from_secs(1)), "1 was sent with 0, at most");
        assert_eq!(marks.waited(3, now), Some(Duration::from_millis(900)));
        assert_eq!(marks.waited(5, now), Some(Duration::from_millis(700)));
        let slot = PartitionSlot::default();
        slot.begin_run(1, 0, -1);
        assert_eq!(slot.oldest_wait(now), None, "nothing in flight");
    }

    #[test]
    fn send_marks_are_dropped_once_everything_is_acknowledged() {
        let slot = PartitionSlot::default();
        slot.begin_run(1, 0, -1);
        let t0 = Instant::now();
        for i in 0..1000 {
            slot.sent.lock().unwrap().sent(i, t0 + MARK_EVERY * i as u32);
        }
        assert_eq!(slot.sent.lock().unwrap().marks.len(), 1000);
        assert_eq!(slot.oldest_wait(t0), None, "nothing in flight");
        assert!(slot.sent.lock().unwrap().marks.is_empty(), "marks of acknowledged records kept");
    }
}
