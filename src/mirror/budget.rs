//! How many bytes a flow keeps on their way to the target.
//!
//! strait bounds the bytes handed to the producer and not yet acknowledged itself,
//! instead of leaning on librdkafka's queue limit, for three reasons:
//!
//! - A record larger than the bound is still admitted, alone (librdkafka's queue would
//!   refuse it forever).
//! - The bound adapts to the target: it is about [`DRAIN_SECONDS`] of what the target
//!   acknowledged lately, between a floor and `max_in_flight_bytes`. A slow target then
//!   holds little in flight, so a rebalance drains the partitions it moves in seconds,
//!   and a frozen instance has little to send when it wakes. A fast one gets the whole
//!   bound: in-flight bytes needed for full speed are throughput times round trip, far
//!   below two seconds' worth.
//! - The data path can wait for room on a condition variable instead of polling.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// In-flight bytes aim at this many seconds of the target's recent throughput.
pub(crate) const DRAIN_SECONDS: f64 = 2.0;
/// The bound never drops below this (or `max_in_flight_bytes`, if smaller). Small, so
/// that a very slow target does not hold records longer than the message timeout; the
/// bound grows quickly from here as acknowledgements come in.
const FLOOR_BYTES: u64 = 1 << 20;
/// How often the bound follows the measured throughput.
const ADAPT_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Budget {
    bytes: AtomicU64,
    limit: AtomicU64,
    max: u64,
    /// Bytes the target acknowledged, ever (for the throughput estimate).
    acked: AtomicU64,
    waiting: AtomicBool,
    lock: Mutex<()>,
    released: Condvar,
    estimate: Mutex<Estimate>,
}

struct Estimate {
    at: Instant,
    acked: u64,
    bytes_per_second: f64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            bytes: AtomicU64::new(0),
            limit: AtomicU64::new(FLOOR_BYTES.min(max)),
            max,
            acked: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            lock: Mutex::new(()),
            released: Condvar::new(),
            estimate: Mutex::new(Estimate { at: Instant::now(), acked: 0, bytes_per_second: 0.0 }),
        }
    }

    /// Reserves room for a record of `size` bytes. Only the data-path thread admits, so
    /// check-then-add cannot race with another admission. A record larger than the
    /// bound gets in when nothing else is in flight.
    pub fn try_admit(&self, size: u64) -> bool {
        let current = self.bytes.load(Ordering::Acquire);
        if current == 0 || current + size <= self.limit.load(Ordering::Relaxed) {
            self.bytes.fetch_add(size, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// Gives back room reserved for a record that was not sent after all.
    pub fn cancel(&self, size: u64) {
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }

    /// A delivery report: the record's bytes are no longer in flight.
    pub fn release(&self, size: u64, acknowledged: bool) {
        self.bytes.fetch_sub(size, Ordering::AcqRel);
        if acknowledged {
            self.acked.fetch_add(size, Ordering::Relaxed);
        }
        if self.waiting.load(Ordering::Acquire) {
            let _guard = self.lock.lock().unwrap();
            self.released.notify_one();
        }
    }

    /// Waits until some room was given back, or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.lock.lock().unwrap();
        self.waiting.store(true, Ordering::Release);
        let before = self.bytes.load(Ordering::Acquire);
        if before > 0 {
            let _ = self.released.wait_timeout(guard, timeout).unwrap();
        }
        self.waiting.store(false, Ordering::Release);
    }

    pub fn in_flight(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether in-flight bytes fell below half the bound (where paused fetching resumes:
    /// the gap between pausing when full and resuming at half keeps it from flapping).
    pub fn below_low_water(&self) -> bool {
        self.in_flight() <= self.limit() / 2
    }

    /// Follows the target's throughput (called by the data path; cheap when not due).
    pub fn adapt(&self) {
        let mut e = self.estimate.lock().unwrap();
        let elapsed = e.at.elapsed();
        if elapsed < ADAPT_EVERY {
            return;
        }
        let acked = self.acked.load(Ordering::Relaxed);
        let rate = (acked - e.acked) as f64 / elapsed.as_secs_f64();
        // Rise at once (the target shows what it can take), fall gently (one slow
        // interval, say a GC pause on a broker, should not starve the pipeline).
        e.bytes_per_second = if rate > e.bytes_per_second { rate } else { 0.7 * e.bytes_per_second + 0.3 * rate };
        e.acked = acked;
        e.at = Instant::now();
        let wanted = (e.bytes_per_second * DRAIN_SECONDS) as u64;
        self.limit.store(wanted.clamp(FLOOR_BYTES.min(self.max), self.max), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_larger_than_the_bound_gets_in_alone() {
        let b = Budget::new(1 << 20);
        assert!(b.try_admit(3 << 20), "alone, an oversized record is admitted");
        assert!(!b.try_admit(1), "nothing else while it is in flight");
        b.release(3 << 20, true);
        assert!(b.try_admit(512 << 10));
        assert!(b.try_admit(512 << 10));
        assert!(!b.try_admit(1));
    }

    #[test]
    fn the_bound_follows_the_target() {
        let b = Budget::new(64 << 20);
        assert_eq!(b.limit(), 1 << 20, "starts at the floor");
        b.acked.store(100 << 20, Ordering::Relaxed);
        b.estimate.lock().unwrap().at -= Duration::from_secs(1);
        b.adapt();
        assert_eq!(b.limit(), 64 << 20, "a fast target gets the whole bound");
        // The target slows to ~1 MiB/s: the bound shrinks towards two seconds of it.
        for _ in 0..30 {
            let acked = b.acked.load(Ordering::Relaxed);
            b.acked.store(acked + (1 << 20), Ordering::Relaxed);
            b.estimate.lock().unwrap().at -= Duration::from_secs(1);
            b.adapt();
        }
        assert!(b.limit() <= 2_200_000, "a slow target holds about two seconds in flight: {}", b.limit());
    }
}
