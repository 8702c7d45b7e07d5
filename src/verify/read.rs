//! Reading one side of a partition as a stream of record digests.
//!
//! A reader thread per side polls its own consumer (read_committed, assigned, no group
//! membership) and sends digests in batches over a bounded channel, so reading, hashing
//! and comparing overlap while memory stays bounded.

use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use xxhash_rust::xxh3::Xxh3;

use super::compare::{Digest, Entry};
use crate::cluster::{Cluster, ClusterError};

/// How long a partition may deliver nothing before it counts as unreadable.
const STALL: Duration = Duration::from_secs(60);

/// Digests per batch sent to the comparison.
const BATCH: usize = 2048;

/// A header left out of digests on both sides: with `rename = "identity"` the data path
/// adds `provenance_header = <source alias>` to records that lack it, so a copy carries
/// one header more than its original.
#[derive(Debug, Clone)]
pub(crate) struct IgnoredHeader {
    pub name: String,
    pub value: Vec<u8>,
}

/// The digest of what a copy must preserve: key, value, headers (in order) and timestamp.
/// Each field is tagged and length-prefixed, so different records cannot collide by
/// moving bytes between fields.
pub(crate) fn digest<M: Message>(m: &M, ignore: Option<&IgnoredHeader>) -> Digest {
    let mut h = Xxh3::new();
    field(&mut h, m.key());
    field(&mut h, m.payload());
    if let Some(headers) = m.headers() {
        for header in headers.iter() {
            if ignore.is_some_and(|i| header.key == i.name && header.value == Some(i.value.as_slice())) {
                continue;
            }
            h.update(b"H");
            field(&mut h, Some(header.key.as_bytes()));
            field(&mut h, header.value);
        }
    }
    h.update(b"T");
    h.update(&m.timestamp().to_millis().unwrap_or(i64::MIN).to_le_bytes());
    h.digest128()
}

fn field(h: &mut Xxh3, bytes: Option<&[u8]>) {
    match bytes {
        None => h.update(&[0]),
        Some(b) => {
            h.update(&[1]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
}

/// A consumer for reading one side: read_committed, never commits, reports the end of a
/// partition so that a range ending on a transaction marker still finishes.
pub(crate) fn consumer(cluster: &Cluster) -> Result<BaseConsumer, ClusterError> {
    let mut cfg = cluster.consumer_config("strait.verify");
    cfg.set("enable.partition.eof", "true");
    cfg.create().map_err(|e| ClusterError::Client { alias: cluster.alias.clone(), reason: e.to_string() })
}

/// Offsets `start..end` of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

pub(crate) type Batch = Result<Vec<Entry>, String>;

/// Sends the digests of the committed records in `range`, in batches. Stops at the
/// range's end, at the partition's end, or when the receiver hangs up; an error is sent
/// as the last batch.
pub(crate) fn stream(consumer: &BaseConsumer, range: &Range, ignore: Option<&IgnoredHeader>, out: &SyncSender<Batch>) {
    if range.start >= range.end {
        return;
    }
    if let Err(e) = read(consumer, range, ignore, out) {
        let _ = out.send(Err(e));
    }
    let _ = consumer.unassign();
}

fn read(
    consumer: &BaseConsumer,
    range: &Range,
    ignore: Option<&IgnoredHeader>,
    out: &SyncSender<Batch>,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.start)).map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if m.topic() != range.topic || m.partition() != range.partition || m.offset() < range.start {
                    continue; // left over from an earlier assignment
                }
                last_progress = Instant::now();
                if m.offset() >= range.end {
                    break;
                }
                batch.push(Entry { offset: m.offset(), digest: digest(&m, ignore) });
                if m.offset() + 1 == range.end {
                    let _ = out.send(Ok(batch));
                    return Ok(());
                }
                if batch.len() == BATCH
                    && out.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err()
                {
                    return Ok(()); // the comparison stopped
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) if p == range.partition => break,
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None if last_progress.elapsed() > STALL => {
                return Err(format!("no record arrived for {}s", STALL.as_secs()));
            }
            None => {}
        }
    }
    if !batch.is_empty() {
        let _ = out.send(Ok(batch));
    }
    Ok(())
}

/// The receiving end as one stream of records.
pub(crate) struct Entries {
    rx: Receiver<Batch>,
    current: std::vec::IntoIter<Entry>,
}

impl Entries {
    pub fn new(rx: Receiver<Batch>) -> Entries {
        Entries { rx, current: Vec::new().into_iter() }
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.current.next() {
                return Some(Ok(e));
            }
            match self.rx.recv().ok()? {
                Ok(batch) => self.current = batch.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
