//! Exactly-once mode (`exactly_once = true`): the records of a round, the offset-map
//! records that say where they landed, and so the flow's progress, are written in one
//! target transaction (the pattern of Materialize's Kafka sink). A transaction cannot
//! span two clusters, so progress lives on the target: a new owner of a partition
//! resumes from the frontier stored there, which moves only when the records it covers
//! commit. Source commits follow the target's and never lead it.
//!
//! # Fencing
//! Each instance writes with one transactional producer per flow,
//! `strait.<source>.<target>.<instance>`, the instance being random per start. Every
//! frontier record names the instance that wrote it and whether that instance gave the
//! partition up in the same transaction. An instance taking over a partition whose latest
//! frontier belongs to another instance that did not give it up (it crashed, or the source
//! group evicted it while it was frozen) first *fences* that instance: it initialises a
//! producer with the same transactional id, which makes the target abort the open
//! transaction and refuse every later one of the old producer. Only then does it read the
//! frontier it resumes from. A new owner's claim is committed before it sends any record
//! of the partition, so an instance that stops before its claim is visible wrote nothing
//! of it that could ever commit.
//!
//! Why this and not one transactional id per partition (Kafka Streams before KIP-447): a
//! producer per partition costs threads and connections by the thousand. Why not
//! KIP-447's fencing by group generation: it needs the consumer group on the cluster that
//! holds the transactions, and strait's group lives on the source.
//!
//! # Failures
//! A record the target refuses, a transaction that cannot commit, or partitions lost
//! without a hand-over: the transaction is aborted and the flow stops. The next start,
//! or the instance that takes the partitions, resumes from the last committed
//! transaction; nothing of the aborted one is ever visible to `read_committed` readers.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::ownership::RebalanceHandler;
use super::{FlowShared, MirrorError};
use crate::cluster::{Cluster, TRANSACTION_TIMEOUT};
use crate::config::FlowConfig;
use crate::metrics;
use crate::offset_map::MapReader;

/// The delivery opaque of offset-map records sent through the data producer.
pub(crate) const MAP_RECORD: usize = usize::MAX;

/// This instance's transactional identity for one flow.
pub(crate) struct Transactions {
    pub instance: u64,
    pub id: String,
    map_topic: String,
}

impl Transactions {
    /// A new identity, random per start.
    pub fn new(flow: &FlowConfig) -> Transactions {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        let instance = hasher.finish();
        Transactions {
            instance,
            id: transactional_id(flow, instance),
            map_topic: crate::offset_map::map_topic(&flow.source),
        }
    }
}

/// The transactional id of `instance`'s producer for `flow`.
pub(crate) fn transactional_id(flow: &FlowConfig, instance: u64) -> String {
    format!("strait.{}.{}.{instance:016x}", flow.source, flow.target)
}

fn transaction_error(flow: &str, what: &str, e: impl std::fmt::Display) -> MirrorError {
    metrics::transaction(flow, "aborted");
    MirrorError::Other {
        flow: flow.to_string(),
        message: format!(
            "exactly-once: {what}: {e}. The open transaction is aborted; the next start resumes from the last \
             committed one"
        ),
    }
}

impl FlowShared {
    /// Exactly-once: registers the producer with the target (fencing an earlier
    /// producer of the same id) and opens the first transaction.
    pub(crate) fn begin_transactions(&self) -> Result<(), MirrorError> {
        let (_, producer) = self.target.current();
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| transaction_error(&self.name, "initialising the transactional producer", e))?;
        producer.begin_transaction().map_err(|e| transaction_error(&self.name, "beginning a transaction", e))
    }

    /// Exactly-once: waits for the open transaction's records, adds the offset-map
    /// records that describe them (with `releasing` marked as given up), commits, and
    /// opens the next transaction. Does nothing in at-least-once mode.
    pub(crate) fn commit_transaction(
        self: &Arc<Self>,
        consumer: &BaseConsumer<RebalanceHandler>,
        releasing: &[usize],
    ) -> Result<(), MirrorError> {
        let Some(tx) = &self.exactly_once else { return Ok(()) };
        let slots: Vec<usize> = self.slots.owned().into_iter().map(|o| o.2).collect();
        if !self.wait_until_acknowledged(&slots, Instant::now() + TRANSACTION_TIMEOUT) {
            return Err(transaction_error(&self.name, "committing", "the target did not acknowledge its records"));
        }
        self.check_refusal()?;
        let updates = self.map_updates(consumer, &slots);
        let records = {
            let mut writer = self.writer.lock().unwrap();
            for slot in releasing {
                writer.release(*slot);
            }
            writer.transaction_batch(updates)
        };
        let (_, producer) = self.target.current();
        for (key, value) in &records {
            let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(&tx.map_topic, MAP_RECORD)
                .partition(0)
                .key(key.as_slice())
                .payload(value.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(transaction_error(&self.name, "writing the offset map", e)),
                }
            }
        }
        producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| transaction_error(&self.name, "committing", e))?;
        metrics::transaction(&self.name, "committed");
        if !records.is_empty() {
            metrics::offset_map_written(&self.name, records.len(), Duration::ZERO);
        }
        self.writer.lock().unwrap().transaction_committed();
        producer.begin_transaction().map_err(|e| transaction_error(&self.name, "beginning a transaction", e))
    }

    /// Exactly-once: aborts the open transaction (on the way out after an error).
    pub(crate) fn abort_transaction(&self) {
        if self.exactly_once.is_none() {
            return;
        }
        let (_, producer) = self.target.current();
        match producer.abort_transaction(Duration::from_secs(10)) {
            Ok(()) => tracing::info!(flow = %self.name, "exactly-once: the open transaction was aborted"),
            // The target aborts it when it times out, or the next owner fences it.
            Err(e) => tracing::warn!(flow = %self.name, "exactly-once: aborting the open transaction: {e}"),
        }
    }
}

/// Exactly-once: fences every other instance that still owns one of `partitions` in the
/// map (it did not give them up), then reads the map again, so that the frontiers
/// read next can no longer move.
pub(crate) fn fence_previous_owners(
    shared: &FlowShared,
    target: &Cluster,
    flow: &FlowConfig,
    map: &mut MapReader,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<(), String> {
    let Some(tx) = &shared.exactly_once else { return Ok(()) };
    let owners: BTreeSet<u64> = partitions
        .iter()
        .filter_map(|(topic, partition)| map.map.stored(topic, *partition)?.latest()?.writer)
        .filter(|w| !w.released && w.instance != tx.instance)
        .map(|w| w.instance)
        .collect();
    for instance in &owners {
        let id = transactional_id(flow, *instance);
        let mut config = target.small_producer_config("fence", TRANSACTION_TIMEOUT);
        config.set("transactional.id", &id);
        config.set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string());
        let producer: BaseProducer = config.create().map_err(|e| format!("fencing `{id}`: {e}"))?;
        producer.init_transactions(TRANSACTION_TIMEOUT).map_err(|e| format!("fencing `{id}`: {e}"))?;
        metrics::producer_fenced(&shared.name);
        tracing::info!(
            flow = %shared.name,
            "exactly-once: fenced `{id}`: it owned partitions it did not hand over (it stopped or was evicted); \
             its open transaction is aborted"
        );
    }
    if !owners.is_empty() {
        // The fenced owners' open transactions are aborted now; what they committed
        // before, and what others committed after them, becomes readable.
        map.catch_up_through_transactions(target, timeout).map_err(|e| e.to_string())?;
    }
    Ok(())
}
