//! Live sample traffic for `make demo`: keyed orders with headers, and ~1 MiB video chunks
//! keyed by video id (the workload strait was built for). Runs until killed.
//!
//! Usage: demo_traffic BOOTSTRAP [ORDERS_PER_SEC] [CHUNKS_PER_SEC]

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::ClientConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:19092");
    let orders_per_sec: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let chunks_per_sec: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(2);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "8388608")
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let (mut orders, mut chunks) = (0u64, 0u64);
    loop {
        let elapsed = started.elapsed().as_secs_f64();
        while (orders as f64) < elapsed * orders_per_sec as f64 {
            let key = format!("customer-{}", orders % 97);
            let value = format!("{{\"order\":{orders},\"amount\":{}}}", orders % 1000);
            let headers = OwnedHeaders::new().insert(Header { key: "source", value: Some("demo") });
            let record = BaseRecord::to("orders").key(&key).payload(&value).headers(headers);
            if producer.send(record).is_err() {
                break;
            }
            orders += 1;
        }
        while (chunks as f64) < elapsed * chunks_per_sec as f64 {
            let key = format!("video-{}", chunks % 5);
            let record = BaseRecord::to("video.chunks").key(&key).payload(&chunk[..]);
            if producer.send(record).is_err() {
                break;
            }
            chunks += 1;
        }
        producer.poll(Duration::from_millis(50));
        if orders % 2000 == 0 && orders > 0 {
            eprintln!("demo traffic: {orders} orders, {chunks} video chunks produced to us-east");
        }
    }
}
