//! The data path's side of the offset map: turns what the target acknowledged into
//! chunk and frontier records, and tells the data path which frontiers are stored.
//!
//! Writes go out in rounds (each commit tick, and before partitions are given up). One
//! round's records form a *batch*, and only one batch is in flight at a time: when it is
//! acknowledged, its frontiers count as stored (source progress may then be committed up
//! to them); when any of its records fails, the batch's content is sent again in the
//! next round. Between rounds the state keeps folding in new runs, so nothing waits on a
//! slow round but the next write.
//!
//! The map has a producer of its own, so that a fatal error of the data producer (a
//! record the target refused: see `mirror`) still lets the final progress be stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::codec;
use super::{Frontier, Run, StoredFrontier, TransactionalWriter};

/// A map record: key and value.
pub(crate) type MapRecord = (Vec<u8>, Vec<u8>);

/// Gaps one run holds at most (a gap takes 2-6 bytes stored, 16 in memory).
pub(crate) const GAPS_PER_RUN: usize = 512;
/// A chunk (one map record) closes at this many runs, or this many gaps in all. The
/// open chunk is rewritten while it grows, so this bounds the record size and the
/// write amplification of gappy sources.
pub(crate) const RUNS_PER_CHUNK: usize = 64;
const GAPS_PER_CHUNK: usize = GAPS_PER_RUN;

/// Acknowledgements of map batches (the map producer's delivery reports).
pub(crate) struct MapAcks {
    /// The target cluster's alias, for logs.
    alias: String,
    /// The newest batch whose last record was acknowledged.
    acked: AtomicU64,
    /// The newest batch one of whose records failed.
    failed: AtomicU64,
}

impl MapAcks {
    pub fn new(alias: &str) -> MapAcks {
        MapAcks { alias: alias.to_string(), acked: AtomicU64::new(0), failed: AtomicU64::new(0) }
    }
}

impl ClientContext for MapAcks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::logging::librdkafka(&self.alias, "offset-map", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::logging::librdkafka_error(&self.alias, "offset-map", &error, reason);
    }
}

impl ProducerContext for MapAcks {
    /// `batch << 1 | 1` on the last record of a batch.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let batch = (opaque >> 1) as u64;
        match result {
            Ok(_) if opaque & 1 == 1 => self.acked.fetch_max(batch, Ordering::SeqCst),
            Ok(_) => 0,
            Err((e, _)) => {
                tracing::debug!("offset-map record of batch {batch} not stored: {e}");
                self.failed.fetch_max(batch, Ordering::SeqCst)
            }
        };
    }
}

/// Who owns a partition in the map, for one generation.
#[derive(Debug, Clone)]
pub(crate) struct Ownership {
    pub topic: Arc<str>,
    pub partition: i32,
    pub target_topic: Arc<str>,
    pub generation: u64,
    pub owned_from: i64,
    pub target_topic_id: [u8; 16],
}

/// What the data path knows about one owned partition at a write round.
#[derive(Debug, Default)]
pub(crate) struct PartitionUpdate {
    pub slot: usize,
    /// The copy run (ownership epoch) these runs belong to.
    pub epoch: u32,
    /// Runs closed since the last round, in order.
    pub closed: Vec<Run>,
    /// The run still growing.
    pub open: Option<Run>,
    /// Everything below this upstream offset is on the target (-1: unknown).
    pub frontier: i64,
    /// Target offset of the next copy (-1: unknown).
    pub next_downstream: i64,
    /// The source partition's end offset as last seen (-1: unknown).
    pub source_end: i64,
}

/// One owned partition's map state.
struct PartitionState {
    owner: Ownership,
    epoch: u32,
    /// Runs of the open chunk (the growing run excluded).
    runs: Vec<Run>,
    open: Option<Run>,
    /// Full chunks not yet confirmed stored: (first downstream, runs).
    closed_chunks: Vec<(i64, Vec<Run>)>,
    chunk_dirty: bool,
    frontier: Frontier,
    source_end: i64,
    frontier_dirty: bool,
    /// The newest frontier the target confirmed.
    stored: Option<i64>,
    /// Exactly-once: the partition is being given up; its last frontier says so.
    released: bool,
}

impl PartitionState {
    fn fold(&mut self, update: PartitionUpdate) {
        if update.epoch != self.epoch {
            // A re-send began (same ownership): its copies start a chunk of their own.
            self.close_chunk();
            self.epoch = update.epoch;
        }
        // The previous round's open run is now either among `update.closed` or still
        // open in `update.open`: its old, shorter snapshot must never be stored again.
        // (A chunk closed below used to take it along, after the closed run: resolving
        // that chunk let the stale snapshot supersede the full run, and the copies
        // between the two ends lost their mapping. Seen on a transactional source,
        // where a run fills with gaps in one round.)
        let previous_open = self.open.take();
        for run in update.closed {
            self.runs.push(run);
            self.chunk_dirty = true;
            let gaps: usize = self.runs.iter().map(|r| r.gaps.len()).sum();
            if self.runs.len() >= RUNS_PER_CHUNK || gaps >= GAPS_PER_CHUNK {
                self.close_chunk();
            }
        }
        if update.open != previous_open {
            self.chunk_dirty = true;
        }
        self.open = update.open;
        if update.frontier > self.frontier.upstream {
            self.frontier.upstream = update.frontier;
            self.frontier_dirty = true;
        }
        if update.next_downstream > self.frontier.next_downstream {
            self.frontier.next_downstream = update.next_downstream;
            self.frontier_dirty = true;
        }
        self.source_end = self.source_end.max(update.source_end);
    }

    fn close_chunk(&mut self) {
        let mut runs = std::mem::take(&mut self.runs);
        if let Some(open) = self.open.take() {
            runs.push(open);
        }
        if let Some(first) = runs.first() {
            self.closed_chunks.push((first.downstream, runs));
        }
        self.chunk_dirty = false;
    }

    fn open_chunk(&self) -> Option<(i64, Vec<Run>)> {
        let mut runs = self.runs.clone();
        runs.extend(self.open.clone());
        Some((runs.first()?.downstream, runs))
    }

    fn frontier_record(&self, instance: Option<u64>) -> StoredFrontier {
        StoredFrontier {
            generation: self.owner.generation,
            owned_from: self.owner.owned_from,
            frontier: self.frontier,
            source_end: self.source_end,
            written_ms: crate::metrics::now_ms(),
            target_topic_id: self.owner.target_topic_id,
            writer: instance.map(|instance| TransactionalWriter { instance, released: self.released }),
        }
    }
}

/// A batch on its way to the target.
struct InFlight {
    number: u64,
    /// Frontiers it stores: (slot, generation, upstream).
    frontiers: Vec<(usize, u64, i64)>,
    /// Full chunks it stores, to be sent again if it fails: (slot, first downstream, runs).
    closed_chunks: Vec<(usize, i64, Vec<Run>)>,
    /// Slots whose open chunk it carries.
    open_chunks: Vec<usize>,
}

/// Why the map could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the offset map to `{topic}`: {reason}")]
pub(crate) struct MapWriteError {
    topic: String,
    reason: String,
}

pub(crate) struct MapWriter {
    topic: String,
    producer: ThreadedProducer<MapAcks>,
    /// Exactly-once: the map records go into the data producer's transactions (see
    /// [`MapWriter::transaction_batch`]) and name this instance's producer.
    transactional_instance: Option<u64>,
    partitions: HashMap<usize, PartitionState>,
    next_batch: u64,
    in_flight: Option<InFlight>,
}

impl MapWriter {
    pub fn new(topic: String, producer: ThreadedProducer<MapAcks>) -> MapWriter {
        MapWriter {
            topic,
            producer,
            transactional_instance: None,
            partitions: HashMap::new(),
            next_batch: 1,
            in_flight: None,
        }
    }

    /// A new ownership of a partition begins at `start`: its claim is written in the
    /// next round.
    pub fn begin(&mut self, slot: usize, epoch: u32, owner: Ownership, next_downstream: i64, source_end: i64) {
        let frontier = Frontier { upstream: owner.owned_from, next_downstream };
        let state = PartitionState {
            owner,
            epoch,
            runs: Vec::new(),
            open: None,
            closed_chunks: Vec::new(),
            chunk_dirty: false,
            frontier,
            source_end,
            frontier_dirty: true,
            stored: None,
            released: false,
        };
        self.partitions.insert(slot, state);
    }

    /// The partition is no longer owned: nothing more is written for it.
    pub fn end(&mut self, slot: usize) {
        self.partitions.remove(&slot);
    }

    /// The frontier the target confirmed for a partition's current ownership.
    pub fn stored_frontier(&self, slot: usize) -> Option<i64> {
        self.partitions.get(&slot)?.stored
    }

    /// Folds in what the data path learnt since the last round and, unless the previous
    /// batch is still on its way, sends what changed. Returns the number of records sent.
    pub fn write(&mut self, updates: Vec<PartitionUpdate>) -> Result<usize, MapWriteError> {
        self.fold(updates);
        self.settle();
        if self.in_flight.is_some() {
            return Ok(0);
        }
        self.send_batch()
    }

    fn fold(&mut self, updates: Vec<PartitionUpdate>) {
        for update in updates {
            if let Some(state) = self.partitions.get_mut(&update.slot) {
                state.fold(update);
            }
        }
    }

    /// Exactly-once: map records are written by the transactions of `instance`.
    pub fn set_transactional(&mut self, instance: u64) {
        self.transactional_instance = Some(instance);
    }

    /// Exactly-once: the partition is given up in the coming transaction.
    pub fn release(&mut self, slot: usize) {
        if let Some(state) = self.partitions.get_mut(&slot) {
            state.released = true;
            state.frontier_dirty = true;
        }
    }

    /// Exactly-once: folds in `updates` and returns the map records (key, value) the
    /// data producer writes into the transaction it is about to commit. They count as
    /// stored once [`MapWriter::transaction_committed`] says the commit succeeded.
    pub fn transaction_batch(&mut self, updates: Vec<PartitionUpdate>) -> Vec<MapRecord> {
        self.fold(updates);
        match self.build_batch() {
            Some((batch, records)) => {
                self.next_batch += 1;
                self.in_flight = Some(batch);
                records
            }
            None => Vec::new(),
        }
    }

    /// Exactly-once: the transaction holding the last batch committed.
    pub fn transaction_committed(&mut self) {
        if let Some(batch) = self.in_flight.take() {
            self.apply_stored(batch);
        }
    }

    /// Waits until everything written so far is stored, or `deadline` passes.
    pub fn flush(&mut self, deadline: Instant) -> Result<bool, MapWriteError> {
        loop {
            self.write(Vec::new())?;
            let dirty =
                self.partitions.values().any(|p| p.frontier_dirty || p.chunk_dirty || !p.closed_chunks.is_empty());
            if self.in_flight.is_none() && !dirty {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Purges map records not yet sent (the partitions were lost, not handed over).
    pub fn purge(&mut self) {
        use rdkafka::producer::PurgeConfig;
        self.producer.purge(PurgeConfig::default().queue());
    }

    /// Applies the outcome of the batch in flight, if it is known.
    fn settle(&mut self) {
        let Some(batch) = &self.in_flight else { return };
        let acks = self.producer.client().context();
        let failed = acks.failed.load(Ordering::SeqCst) >= batch.number;
        let acked = acks.acked.load(Ordering::SeqCst) >= batch.number;
        if !failed && !acked {
            return;
        }
        let batch = self.in_flight.take().expect("checked");
        if failed {
            // Send it all again: chunks it carried, and the current frontiers.
            for (slot, first_downstream, runs) in batch.closed_chunks {
                if let Some(state) = self.partitions.get_mut(&slot) {
                    state.closed_chunks.push((first_downstream, runs));
                }
            }
            for slot in batch.open_chunks.iter().chain(batch.frontiers.iter().map(|f| &f.0)) {
                if let Some(state) = self.partitions.get_mut(slot) {
                    state.chunk_dirty = true;
                    state.frontier_dirty = true;
                }
            }
            return;
        }
        self.apply_stored(batch);
    }

    /// `batch` is stored: its frontiers may be committed to the source.
    fn apply_stored(&mut self, batch: InFlight) {
        for (slot, generation, upstream) in batch.frontiers {
            // A batch of an ownership that ended (the slot was given up and taken again)
            // confirms nothing for the new one.
            if let Some(state) = self.partitions.get_mut(&slot).filter(|s| s.owner.generation == generation) {
                state.stored = Some(state.stored.map_or(upstream, |s| s.max(upstream)));
            }
        }
    }

    fn send_batch(&mut self) -> Result<usize, MapWriteError> {
        let Some((batch, records)) = self.build_batch() else { return Ok(0) };
        let number = batch.number;
        let last = records.len() - 1;
        for (i, (key, value)) in records.iter().enumerate() {
            let opaque = (number as usize) << 1 | usize::from(i == last);
            let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&self.topic, opaque)
                .partition(0)
                .key(key.as_slice())
                .payload(value.as_slice());
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The map's own queue is small and drains on its own.
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        return Err(MapWriteError { topic: self.topic.clone(), reason: e.to_string() });
                    }
                }
            }
        }
        self.next_batch += 1;
        self.in_flight = Some(batch);
        Ok(records.len())
    }

    /// The records of the next batch: what changed since the last one.
    fn build_batch(&mut self) -> Option<(InFlight, Vec<MapRecord>)> {
        let number = self.next_batch;
        let mut batch = InFlight { number, frontiers: Vec::new(), closed_chunks: Vec::new(), open_chunks: Vec::new() };
        let mut records: Vec<MapRecord> = Vec::new();
        // Chunks before frontiers: a stored frontier is always covered by stored chunks.
        for (&slot, state) in self.partitions.iter_mut() {
            let owner = &state.owner;
            let key = |first_downstream| {
                codec::chunk_key(&owner.topic, owner.partition, &owner.target_topic, owner.generation, first_downstream)
            };
            for (first_downstream, runs) in state.closed_chunks.drain(..) {
                records.push((key(first_downstream), codec::encode_chunk(&runs)));
                batch.closed_chunks.push((slot, first_downstream, runs));
            }
            if state.chunk_dirty {
                if let Some((first_downstream, runs)) = state.open_chunk() {
                    records.push((key(first_downstream), codec::encode_chunk(&runs)));
                    batch.open_chunks.push(slot);
                }
                state.chunk_dirty = false;
            }
        }
        for (&slot, state) in self.partitions.iter_mut() {
            if state.frontier_dirty {
                let record = state.frontier_record(self.transactional_instance);
                let owner = &state.owner;
                let key = codec::frontier_key(&owner.topic, owner.partition, &owner.target_topic, owner.generation);
                records.push((key, codec::encode_frontier(&record)));
                batch.frontiers.push((slot, state.owner.generation, state.frontier.upstream));
                state.frontier_dirty = false;
            }
        }
        (!records.is_empty()).then_some((batch, records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: u64) -> PartitionState {
        PartitionState {
            owner: Ownership {
                topic: "t".into(),
                partition: 0,
                target_topic: "a.t".into(),
                generation,
                owned_from: 10,
                target_topic_id: [0; 16],
            },
            epoch: 1,
            runs: Vec::new(),
            open: None,
            closed_chunks: Vec::new(),
            chunk_dirty: false,
            frontier: Frontier { upstream: 10, next_downstream: 0 },
            source_end: -1,
            frontier_dirty: true,
            stored: None,
            released: false,
        }
    }

    fn seg(upstream: i64, downstream: i64, len: i64) -> Run {
        Run::contiguous(upstream, downstream, len)
    }

    #[test]
    fn runs_fill_chunks_and_a_resend_starts_a_new_one() {
        let mut s = state(3);
        let closed: Vec<Run> = (0..RUNS_PER_CHUNK as i64 + 5).map(|i| seg(10 + i * 11, i * 10, 10)).collect();
        s.fold(PartitionUpdate { epoch: 1, closed, frontier: 2000, next_downstream: 1500, ..Default::default() });
        assert_eq!(s.closed_chunks.len(), 1, "a full chunk is closed");
        assert_eq!(s.closed_chunks[0].1.len(), RUNS_PER_CHUNK);
        assert_eq!(s.runs.len(), 5);
        assert_eq!(s.frontier, Frontier { upstream: 2000, next_downstream: 1500 });
        // The frontier never moves back within an ownership.
        s.fold(PartitionUpdate { epoch: 1, frontier: 1000, ..Default::default() });
        assert_eq!(s.frontier.upstream, 2000);
        // A re-send (new epoch) closes the open chunk; its copies go into a new one.
        s.fold(PartitionUpdate { epoch: 2, open: Some(seg(1900, 1600, 3)), frontier: 2000, ..Default::default() });
        assert_eq!(s.closed_chunks.len(), 2);
        assert_eq!(s.open_chunk(), Some((1600, vec![seg(1900, 1600, 3)])));
    }

    /// A run that fills its gap budget closes the chunk in the round it closes; the
    /// snapshot of it from the previous round (then still open) must not go along.
    #[test]
    fn a_run_closing_with_a_full_chunk_does_not_store_its_old_snapshot() {
        let mut s = state(3);
        let mut run = Run::new(0, 0);
        let mut upstream = 0;
        let mut snapshot = None;
        for d in 1..=(GAPS_PER_CHUNK as i64 * 2) {
            upstream += if d % 2 == 0 { 2 } else { 1 }; // a gap before every other copy
            if !run.extend(upstream, d, GAPS_PER_RUN) {
                break;
            }
            if d == 100 {
                snapshot = Some(run.clone());
            }
        }
        assert_eq!(run.gaps.len(), GAPS_PER_RUN);
        s.fold(PartitionUpdate { epoch: 1, open: snapshot, frontier: 150, next_downstream: 101, ..Default::default() });
        s.fold(PartitionUpdate { epoch: 1, closed: vec![run.clone()], frontier: upstream + 1, ..Default::default() });
        assert_eq!(s.closed_chunks.len(), 1);
        assert_eq!(s.closed_chunks[0].1, vec![run.clone()], "only the full run is stored");
        let map = crate::offset_map::PartitionMap::resolve(s.closed_chunks[0].1.clone(), None);
        assert_eq!(map.runs().next(), Some(&run));
    }
}
