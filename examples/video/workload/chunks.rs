//! A video on Kafka: one record per chunk, keyed by the video id (so all chunks of a video
//! land in one partition, in order), with headers that let any consumer put the video
//! back together and prove it intact without a side channel.

use std::ops::Range;

use anyhow::{anyhow, bail, Result};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

pub const VIDEO_ID: &str = "video.id";
pub const CHUNK_INDEX: &str = "video.chunk.index";
pub const CHUNK_COUNT: &str = "video.chunk.count";
pub const CODEC: &str = "video.codec";
pub const CHUNK_SHA256: &str = "video.chunk.sha256";
/// SHA-256 and size of the whole file, so the reassembling side can check the result
/// without a copy of the original.
pub const VIDEO_SHA256: &str = "video.sha256";
pub const VIDEO_BYTES: &str = "video.bytes";
/// Which production run the chunk belongs to: a topic kept for replay holds many runs.
pub const RUN: &str = "video.run";

/// Byte ranges of ~`chunk_bytes` each (the last one shorter).
pub fn split(len: usize, chunk_bytes: usize) -> Vec<Range<usize>> {
    assert!(chunk_bytes > 0, "chunk size must be positive");
    (0..len).step_by(chunk_bytes).map(|start| start..(start + chunk_bytes).min(len)).collect()
}

/// Byte ranges of the given sizes, the last range taking the rest.
pub fn split_sizes(len: usize, sizes: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &size in sizes {
        if start >= len {
            break;
        }
        out.push(start..(start + size).min(len));
        start += size;
    }
    if start < len {
        out.push(start..len);
    }
    out
}

/// What a chunk record's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    pub run: String,
    pub video_id: String,
    pub codec: String,
    pub index: u32,
    pub count: u32,
    pub sha256: String,
    pub video_sha256: String,
    pub video_bytes: u64,
}

impl ChunkMeta {
    pub fn to_headers(&self) -> OwnedHeaders {
        let (index, count, bytes) = (self.index.to_string(), self.count.to_string(), self.video_bytes.to_string());
        [
            (RUN, self.run.as_str()),
            (VIDEO_ID, self.video_id.as_str()),
            (CODEC, self.codec.as_str()),
            (CHUNK_INDEX, index.as_str()),
            (CHUNK_COUNT, count.as_str()),
            (CHUNK_SHA256, self.sha256.as_str()),
            (VIDEO_SHA256, self.video_sha256.as_str()),
            (VIDEO_BYTES, bytes.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new_with_capacity(8), |h, (key, value)| h.insert(Header { key, value: Some(value) }))
    }

    /// The chunk headers of `message`: `Ok(None)` for a record that is not a video chunk
    /// at all (no `video.id` header), an error naming the record and the header when a
    /// chunk's headers are missing or malformed.
    pub fn from_message<M: Message>(message: &M) -> Result<Option<ChunkMeta>> {
        let Some(headers) = message.headers() else { return Ok(None) };
        let get = |name: &str| -> Option<&[u8]> { headers.iter().find(|h| h.key == name).and_then(|h| h.value) };
        if get(VIDEO_ID).is_none() {
            return Ok(None);
        }
        let at = || format!("{}[{}]@{}", message.topic(), message.partition(), message.offset());
        let text = |name: &str| -> Result<String> {
            let value = get(name).ok_or_else(|| anyhow!("chunk record {}: header `{name}` is missing", at()))?;
            String::from_utf8(value.to_vec())
                .map_err(|_| anyhow!("chunk record {}: header `{name}` is not UTF-8", at()))
        };
        let number = |name: &str| -> Result<u64> {
            let value = text(name)?;
            value.parse().map_err(|_| anyhow!("chunk record {}: header `{name}` is not a number: {value:?}", at()))
        };
        let meta = ChunkMeta {
            run: text(RUN)?,
            video_id: text(VIDEO_ID)?,
            codec: text(CODEC)?,
            index: number(CHUNK_INDEX)? as u32,
            count: number(CHUNK_COUNT)? as u32,
            sha256: text(CHUNK_SHA256)?,
            video_sha256: text(VIDEO_SHA256)?,
            video_bytes: number(VIDEO_BYTES)?,
        };
        if meta.count == 0 || meta.index >= meta.count {
            bail!("chunk record {}: chunk index {} is not below chunk count {}", at(), meta.index, meta.count);
        }
        if message.key() != Some(meta.video_id.as_bytes()) {
            bail!("chunk record {}: key differs from header `{VIDEO_ID}` {:?}", at(), meta.video_id);
        }
        Ok(Some(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_every_byte_once() {
        assert_eq!(split(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(split(8, 4), vec![0..4, 4..8]);
        assert_eq!(split_sizes(10, &[3, 5]), vec![0..3, 3..8, 8..10]);
        assert_eq!(split_sizes(6, &[3, 5]), vec![0..3, 3..6]);
    }

    #[test]
    fn headers_round_trip_and_bad_ones_name_the_record() {
        let meta = ChunkMeta {
            run: "r1".into(),
            video_id: "v".into(),
            codec: "vp9".into(),
            index: 2,
            count: 3,
            sha256: "ab".into(),
            video_sha256: "cd".into(),
            video_bytes: 99,
        };
        let record = |headers: OwnedHeaders, key: &str| {
            rdkafka::message::OwnedMessage::new(
                Some(vec![1]),
                Some(key.as_bytes().to_vec()),
                "t".into(),
                rdkafka::Timestamp::CreateTime(1),
                4,
                17,
                Some(headers),
            )
        };
        assert_eq!(ChunkMeta::from_message(&record(meta.to_headers(), "v")).unwrap(), Some(meta.clone()));
        let err = ChunkMeta::from_message(&record(meta.to_headers(), "other")).unwrap_err().to_string();
        assert!(err.contains("t[4]@17") && err.contains("key differs"), "{err}");
        let partial = OwnedHeaders::new().insert(Header { key: VIDEO_ID, value: Some("v") });
        let err = ChunkMeta::from_message(&record(partial, "v")).unwrap_err().to_string();
        assert!(err.contains("t[4]@17") && err.contains("video.run"), "{err}");
        assert_eq!(ChunkMeta::from_message(&record(OwnedHeaders::new(), "v")).unwrap(), None);
    }
}
