//! The flow's target producer: the one client that writes mirrored records, and
//! replacing it when records must be sent again (see `FlowShared::restart_producer`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use super::delivery::DeliveryTracker;
use super::FlowShared;

/// The producer of mirrored records.
pub(crate) type DataProducer = ThreadedProducer<DeliveryTracker>;

pub(crate) struct TargetProducer {
    /// The target cluster's alias, for logs.
    pub alias: String,
    config: ClientConfig,
    current: Mutex<Option<Arc<DataProducer>>>,
    /// Counts replacements, so holders of a clone see cheaply that theirs is stale.
    generation: AtomicU64,
    /// Set by delivery reports when a record timed out or was purged: the loop replaces
    /// the producer and re-sends.
    pub restart_requested: AtomicBool,
    /// Set when the producer was replaced: the loop moves each partition back to what
    /// the target acknowledged (`PartitionSlot::pending_seek`).
    pub resend_requested: AtomicBool,
}

impl TargetProducer {
    /// `config` holds the cluster's secrets: it is never logged.
    pub fn new(alias: &str, config: ClientConfig) -> TargetProducer {
        TargetProducer {
            alias: alias.to_string(),
            config,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            restart_requested: AtomicBool::new(false),
            resend_requested: AtomicBool::new(false),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The current producer and its generation.
    pub fn current(&self) -> (u64, Arc<DataProducer>) {
        let producer = self.current.lock().unwrap().clone().expect("installed at start");
        (self.generation.load(Ordering::SeqCst), producer)
    }

    /// Creates a producer reporting to `shared`.
    pub fn create(&self, shared: &Arc<FlowShared>) -> Result<Arc<DataProducer>, rdkafka::error::KafkaError> {
        let tracker = DeliveryTracker { shared: shared.clone(), retired: AtomicBool::new(false) };
        self.config.create_with_context(tracker).map(Arc::new)
    }

    /// Installs `new` and returns the producer it replaces.
    pub fn install(&self, new: Arc<DataProducer>) -> Option<Arc<DataProducer>> {
        let old = self.current.lock().unwrap().replace(new);
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(old) = &old {
            old.context().retired.store(true, Ordering::Relaxed);
        }
        old
    }
}
