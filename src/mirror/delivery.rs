//! The target's answers: librdkafka's delivery reports for mirrored records, run on the
//! producer's own thread (the only writer of each slot's acknowledgements).
//!
//! Three outcomes, each handled for the partition's current copy run only:
//! - acknowledged: the slot's run extends (and with it the offset map);
//! - not delivered for now (the record timed out, or was purged): the run must be re-sent
//!   from what the target acknowledged; the data path does so (see `mirror::resend`);
//! - refused (a permanent error such as a record over the topic's `max.message.bytes`):
//!   the flow stops. The producer runs with `enable.gapless.guarantee`, so nothing after
//!   the refused record reaches the target either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

use super::slots::unpack;
use super::transaction::MAP_RECORD;
use super::{FlowShared, MirrorError};
use crate::metrics;

/// Receives the target's acknowledgements.
pub struct DeliveryTracker {
    pub(crate) shared: Arc<FlowShared>,
    /// This producer was replaced: its queue was discarded on purpose, so the fatal
    /// "gap-less ordering" error librdkafka raises for it is expected, not a fault.
    pub(crate) retired: AtomicBool,
}

impl ClientContext for DeliveryTracker {
    fn stats(&self, statistics: rdkafka::Statistics) {
        metrics::librdkafka_statistics(&self.shared.name, "producer", &statistics);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if self.retired.load(Ordering::Relaxed) {
            tracing::debug!(cluster = %self.shared.target.alias, facility, "replaced producer: {message}");
            return;
        }
        crate::logging::librdkafka(&self.shared.target.alias, "producer", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.retired.load(Ordering::Relaxed) {
            tracing::debug!(cluster = %self.shared.target.alias, "replaced producer: {reason}");
            return;
        }
        metrics::error(&self.shared.name, "target");
        self.shared.set_error(format!("target: {reason}"));
        crate::logging::librdkafka_error(&self.shared.target.alias, "producer", &error, reason);
    }
}

/// Errors after which the record may simply be sent again.
fn retriable(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let shared = &self.shared;
        if opaque == MAP_RECORD {
            // Exactly-once: an offset-map record of the open transaction.
            if let Err((error, _)) = result {
                shared.refuse(MirrorError::Other {
                    flow: shared.name.clone(),
                    message: format!("exactly-once: writing the offset map: {error}"),
                });
            }
            return;
        }
        let (slot_index, epoch, source_offset) = unpack(opaque);
        let slot = shared.slots.get(slot_index);
        let message = match result {
            Ok(m) => m,
            Err((_, m)) => m,
        };
        let size = (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
        match result {
            Ok(m) => {
                let timestamp = m.timestamp().to_millis();
                match slot.acknowledge(epoch, source_offset, m.offset(), timestamp) {
                    Ok(_) => {
                        shared.acked_records.fetch_add(1, Ordering::Relaxed);
                        shared.acked_bytes.fetch_add(size, Ordering::Relaxed);
                        if let Some(metrics) = slot.metrics.get() {
                            metrics.record_acknowledged(size as usize, m.timestamp());
                        }
                    }
                    Err(previous) => shared.refuse(MirrorError::TargetTopicLost {
                        flow: shared.name.clone(),
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        detail: format!(
                            "a copy landed at offset {} although strait had already written up to offset {previous}",
                            m.offset()
                        ),
                    }),
                }
            }
            Err((error, m)) if shared.exactly_once.is_some() => {
                // Whatever failed, the open transaction cannot commit.
                if slot.fail(epoch, false) {
                    shared.refuse(MirrorError::Other {
                        flow: shared.name.clone(),
                        message: format!(
                            "exactly-once: {}[{}]@{source_offset} was not written: {error}; the open transaction \
                             is aborted and the next start resumes from the last committed one. {}",
                            m.topic(),
                            m.partition(),
                            refusal_hint(error, m.topic())
                        ),
                    });
                }
            }
            Err((error, m)) if retriable(error.rdkafka_error_code()) => {
                if slot.fail(epoch, true) {
                    shared.target.restart_requested.store(true, Ordering::SeqCst);
                    tracing::debug!(flow = %shared.name, "{}[{}]@{source_offset}: {error}; re-sending", m.topic(), m.partition());
                }
            }
            Err((error, m)) => {
                if slot.fail(epoch, false) {
                    let topic =
                        shared.slots.name(slot_index).map_or_else(|| m.topic().to_string(), |(t, _)| t.to_string());
                    shared.refuse(MirrorError::Refused {
                        flow: shared.name.clone(),
                        topic,
                        partition: m.partition(),
                        offset: source_offset,
                        reason: error.to_string(),
                        hint: refusal_hint(error, m.topic()),
                    });
                }
            }
        }
        slot.in_flight.fetch_sub(1, Ordering::SeqCst);
        shared.budget.release(size, result.is_ok());
    }
}

/// What the operator can do about a refused record.
pub(crate) fn refusal_hint(error: &KafkaError, target_topic: &str) -> String {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => format!(
            "Raise `max.message.bytes` of topic `{target_topic}` on the target (and the broker's \
             `message.max.bytes` if needed), then restart strait. If the record itself is below \
             that limit, a batch of records was not: the limit must be at least the producer's \
             `batch.size` (topic sync keeps copied limits there; lower `batch.size` under \
             [clusters.<target>.producer] for topics whose limit strait does not manage)."
        ),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => format!("Grant strait WRITE on `{target_topic}`."),
        _ => String::new(),
    }
}
