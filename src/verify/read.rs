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
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64};

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
/// Everything but the value is written, tagged and length-prefixed, into `scratch` (so
/// no two records collide by moving bytes between fields) and hashed into the seed of
/// the value's hash: two one-shot hashes are much cheaper than one streaming hash.
pub(crate) fn digest<M: Message>(m: &M, ignore: Option<&IgnoredHeader>, scratch: &mut Vec<u8>) -> Digest {
    scratch.clear();
    field(scratch, m.key());
    if let Some(headers) = m.headers() {
        for header in headers.iter() {
            if ignore.is_some_and(|i| header.key == i.name && header.value == Some(i.value.as_slice())) {
                continue;
            }
            scratch.push(b'H');
            field(scratch, Some(header.key.as_bytes()));
            field(scratch, header.value);
        }
    }
    scratch.push(b'T');
    scratch.extend_from_slice(&m.timestamp().to_millis().unwrap_or(i64::MIN).to_le_bytes());
    let value = m.payload();
    match value {
        None => scratch.push(0),
        Some(v) => {
            scratch.push(1);
            scratch.extend_from_slice(&(v.len() as u64).to_le_bytes());
        }
    }
    xxh3_128_with_seed(value.unwrap_or_default(), xxh3_64(scratch))
}

/// A tag for absent or present, the length, and the bytes.
fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// A consumer for reading one side: read_committed, never commits, reports the end of a
/// partition so that a range ending on a transaction marker still finishes.
pub(crate) fn consumer(cluster: &Cluster) -> Result<BaseConsumer, ClusterError> {
    let mut cfg = cluster.consumer_config("strait.verify");
    cfg.set("enable.partition.eof", "true");
    // One partition is read at a time, so let one fetch bring more of it than the
    // default 1 MiB (unless the cluster's settings say otherwise).
    let s = &cluster.settings;
    for (key, value) in [("max.partition.fetch.bytes", "8388608")] {
        if !s.client.contains_key(key) && !s.consumer.contains_key(key) {
            cfg.set(key, value);
        }
    }
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
    let mut scratch = Vec::new();
    let mut idle_since: Option<Instant> = None;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                // Messages of an earlier assignment are discarded by librdkafka; the
                // check is cheap insurance (the topic name would cost a UTF-8 check).
                if m.partition() != range.partition || m.offset() < range.start {
                    continue;
                }
                idle_since = None;
                if m.offset() >= range.end {
                    break;
                }
                batch.push(Entry { offset: m.offset(), digest: digest(&m, ignore, &mut scratch) });
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
            None if idle_since.get_or_insert_with(Instant::now).elapsed() > STALL => {
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

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    use super::*;

    fn msg(key: &[u8], value: &[u8], headers: &[(&str, &[u8])], ts: i64) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(*v) });
        }
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(key.to_vec()),
            "t".into(),
            Timestamp::CreateTime(ts),
            0,
            0,
            Some(h),
        )
    }

    fn d(m: &OwnedMessage, ignore: Option<&IgnoredHeader>) -> Digest {
        digest(m, ignore, &mut Vec::new())
    }

    #[test]
    fn digests_cover_every_field_a_copy_must_keep() {
        let base = d(&msg(b"k", b"v", &[("h", b"1")], 5), None);
        assert_eq!(base, d(&msg(b"k", b"v", &[("h", b"1")], 5), None));
        assert_ne!(base, d(&msg(b"K", b"v", &[("h", b"1")], 5), None), "key");
        assert_ne!(base, d(&msg(b"k", b"V", &[("h", b"1")], 5), None), "value");
        assert_ne!(base, d(&msg(b"k", b"v", &[("h", b"2")], 5), None), "header value");
        assert_ne!(base, d(&msg(b"k", b"v", &[], 5), None), "header missing");
        assert_ne!(base, d(&msg(b"k", b"v", &[("h", b"1")], 6), None), "timestamp");
        assert_ne!(
            d(&msg(b"ab", b"c", &[], 5), None),
            d(&msg(b"a", b"bc", &[], 5), None),
            "bytes moved between fields"
        );
        let two = d(&msg(b"k", b"v", &[("a", b"1"), ("b", b"2")], 5), None);
        assert_ne!(two, d(&msg(b"k", b"v", &[("b", b"2"), ("a", b"1")], 5), None), "header order");
    }

    #[test]
    fn the_provenance_header_is_ignored_only_with_the_source_alias() {
        let ignore = IgnoredHeader { name: "strait.origin".into(), value: b"us-east".to_vec() };
        let original = d(&msg(b"k", b"v", &[("h", b"1")], 5), Some(&ignore));
        let copy = d(&msg(b"k", b"v", &[("h", b"1"), ("strait.origin", b"us-east")], 5), Some(&ignore));
        assert_eq!(original, copy);
        let other = d(&msg(b"k", b"v", &[("h", b"1"), ("strait.origin", b"ap-south")], 5), Some(&ignore));
        assert_ne!(original, other, "a header naming another cluster is data");
    }
}
