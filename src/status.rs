//! `strait status`: a plain table of flows and their worst partitions. By default it
//! reads a running instance's `/status`; `--direct` computes lag from the clusters (the
//! stored offset map and the source's end offsets), for when no instance is reachable.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::lag::{FlowStatus, PartitionLag};
use crate::metrics::now_ms;
use crate::naming::TopicSelector;
use crate::offset_map::MapReader;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Partitions listed under each flow, worst first.
const WORST: usize = 5;

/// Fetches `/status` from a running instance.
pub fn fetch(addr: SocketAddr) -> Result<Vec<FlowStatus>, String> {
    let (_, body) = get(addr, "/status")?;
    let value: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("malformed /status: {e}"))?;
    serde_json::from_value(value["flows"].clone()).map_err(|e| format!("malformed /status: {e}"))
}

/// `strait healthz`: asks a running instance's `/healthz`, for container health checks
/// in images without curl. Ok when it answers 200.
pub fn healthz(addr: SocketAddr) -> Result<(), String> {
    match get(addr, "/healthz")? {
        (200, _) => Ok(()),
        (code, body) => Err(format!("/healthz on {addr} answered {code}: {}", body.trim())),
    }
}

/// A plain HTTP/1.1 GET on the admin endpoint: status code and body.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let addr = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("no strait instance answers on {addr} ({e}); is `strait run` up? (or use --direct)"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("reading {path} from {addr}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("malformed HTTP response")?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed HTTP status line")?;
    Ok((code, body.to_string()))
}

/// Computes each flow's lag from the clusters, without a running instance.
pub fn direct(config: &Config) -> Vec<FlowStatus> {
    config
        .flows
        .iter()
        .map(|flow| {
            let source = Cluster::new(&flow.source, config.cluster(&flow.source));
            let target = Cluster::new(&flow.target, config.cluster(&flow.target));
            let mut status = FlowStatus { flow: flow.name(), state: "direct".into(), ..Default::default() };
            let (Ok(meta), Ok(reader)) = (source.metadata_client_logged(), MapReader::new(&target, flow)) else {
                status.last_error = Some("cannot create Kafka clients".into());
                return status;
            };
            let mut reader = reader;
            status.target_reachable = reader.catch_up(&target, TIMEOUT).is_ok();
            let topics = match source.topics(&meta, TIMEOUT) {
                Ok(t) => t,
                Err(e) => {
                    status.last_error = Some(e.to_string());
                    return status;
                }
            };
            status.source_reachable = true;
            let selector = TopicSelector::new(flow);
            let now = now_ms();
            for (topic, partitions) in topics.into_iter().filter(|(t, _)| selector.select(t).is_ok()) {
                for partition in 0..partitions as i32 {
                    let Ok((low, end)) = meta.fetch_watermarks(&topic, partition, TIMEOUT) else { continue };
                    let mirrored =
                        reader.map.partition(&topic, partition).frontier.map_or(low, |f| f.upstream.max(low));
                    let lag_records = (end - mirrored).max(0);
                    let lag_seconds = if lag_records > 0 {
                        first_record_timestamp(&source, &topic, partition, mirrored)
                            .map_or(0.0, |ts| ((now - ts).max(0) as f64) / 1000.0)
                    } else {
                        0.0
                    };
                    status.partitions.push(PartitionLag {
                        topic: topic.clone(),
                        partition,
                        source_end_offset: end,
                        mirrored_position: mirrored,
                        lag_records,
                        lag_seconds,
                    });
                }
            }
            status
        })
        .collect()
}

/// The timestamp of the first record at or after `offset`: the oldest one not mirrored.
fn first_record_timestamp(source: &Cluster, topic: &str, partition: i32, offset: i64) -> Option<i64> {
    let consumer = source.metadata_client_logged().ok()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset)).ok()?;
    consumer.assign(&tpl).ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            return m.timestamp().to_millis();
        }
    }
    None
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let head: String = text.chars().take(width - 1).collect();
        format!("{head}…")
    }
}

/// Like [`shorten`], but keeps the end (a partition's `[n]`).
fn shorten_keeping_end(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let tail: Vec<char> = text.chars().rev().take(width - 1).collect();
        format!("…{}", tail.into_iter().rev().collect::<String>())
    }
}

/// The table, at most 100 columns wide, plain text.
pub fn render(flows: &[FlowStatus]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<34} {:<8} {:>14} {:>12} {:>12}\n",
        "FLOW / PARTITION", "STATE", "LAG RECORDS", "LAG SECONDS", "RECORDS/S"
    ));
    for f in flows {
        let mut note = Vec::new();
        if !f.source_reachable && f.state != "starting" {
            note.push("source unreachable".to_string());
        }
        if !f.target_reachable && f.state != "starting" {
            note.push("target unreachable".to_string());
        }
        if let Some(e) = &f.last_error {
            note.push(format!("last error: {e}"));
        }
        out.push_str(&format!(
            "{:<34} {:<8} {:>14} {:>12.1} {:>12.1}\n",
            shorten(&f.flow, 34),
            f.state,
            f.lag_records(),
            f.worst_lag_seconds(),
            f.records_per_second,
        ));
        if !note.is_empty() {
            out.push_str(&format!("  ! {}\n", shorten(&note.join("; "), 96)));
        }
        let mut worst: Vec<&PartitionLag> = f.partitions.iter().filter(|p| p.lag_records > 0).collect();
        worst.sort_by(|a, b| b.lag_seconds.total_cmp(&a.lag_seconds).then(b.lag_records.cmp(&a.lag_records)));
        for p in worst.iter().take(WORST) {
            let name = format!("{}[{}]", p.topic, p.partition);
            out.push_str(&format!(
                "  {:<32} {:<8} {:>14} {:>12.1}\n",
                shorten_keeping_end(&name, 32),
                "",
                p.lag_records,
                p.lag_seconds
            ));
        }
        if worst.len() > WORST {
            out.push_str(&format!("  … {} more partition(s) lagging\n", worst.len() - WORST));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_fits_100_columns() {
        let flow = FlowStatus {
            flow: "a-very-long-region-name->another-very-long-region-name".into(),
            state: "paused".into(),
            source_reachable: true,
            target_reachable: false,
            records_per_second: 123456.7,
            last_error: Some("target: 1/1 brokers are down, and this message is long".into()),
            partitions: (0..8)
                .map(|p| PartitionLag {
                    topic: "video.chunks.with.a.really.long.topic.name".into(),
                    partition: p,
                    source_end_offset: 1_000_000,
                    mirrored_position: 10,
                    lag_records: 999_990,
                    lag_seconds: 12345.6,
                })
                .collect(),
            ..Default::default()
        };
        let text = render(&[flow]);
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        assert!(text.contains("3 more partition(s) lagging"));
        assert!(text.contains("target unreachable"));
    }
}
