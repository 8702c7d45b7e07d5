//! The fault battery (`scripts/fault-battery`; not in the default suite, whose short
//! versions of these scenarios live in tests/faults.rs, tests/outage.rs and
//! tests/exactly_once.rs). Each scenario streams records into the source while a fault
//! hits strait or a cluster, then counts on the target, independently of strait, what is
//! lost, duplicated and out of order, runs `strait verify` on the copy, and prints one
//! row of a table.
//!
//! `FAULT_BATTERY_RECORDS` (default 1000000) records of `FAULT_BATTERY_SIZE` bytes (100)
//! per stream, spread over `FAULT_BATTERY_SECS` seconds (60); `FAULT_BATTERY_OUTAGE_SECS`
//! (60) for the target outage; `FAULT_BATTERY_ONLY` (a scenario name) to run one.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::ClientConfig;

fn env(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Consumer settings that make a lost instance's partitions move within seconds.
const FAST_GROUP: &str = "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";
const PARTITIONS: i32 = 6;

/// One scenario's figures.
struct Row {
    scenario: &'static str,
    records: usize,
    lost: usize,
    duplicated: usize,
    reordered: usize,
    recovery: Option<f64>,
    verify: String,
}

/// Where a scenario reads from and writes to.
struct Clusters {
    source_alias: &'static str,
    source: String,
    target_alias: &'static str,
    target: String,
}

impl Clusters {
    fn default_pair() -> Clusters {
        Clusters {
            source_alias: "us-east",
            source: us_east().to_string(),
            target_alias: "eu-west",
            target: eu_west().to_string(),
        }
    }

    fn config(&self, topic: &str, group: &str, flow_extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let text = format!(
            "[clusters.{sa}]\nbootstrap = \"{s}\"\n\n[clusters.{sa}.consumer]\n{FAST_GROUP}\n\
             [clusters.{ta}]\nbootstrap = \"{t}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [[flows]]\nsource = \"{sa}\"\ntarget = \"{ta}\"\ntopics = [\"{topic}\"]\nconsumer_group = \"{group}\"\n\
             refresh_interval_ms = 1000\nheartbeat_interval_ms = 0\n{flow_extra}",
            sa = self.source_alias,
            s = self.source,
            ta = self.target_alias,
            t = self.target,
        );
        write_config(&text)
    }
}

/// Streams `n` keyed records into `topic` over about `secs` seconds, in the background.
fn stream(bootstrap: &str, topic: &str, n: usize, size: usize, secs: u64) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let p = producer(&bootstrap);
        let chunk = 10_000.min(n.max(1));
        let chunks = n.div_ceil(chunk);
        let pause = Duration::from_secs(secs) / chunks as u32;
        for c in 0..chunks {
            let started = Instant::now();
            let records: Vec<Rec> = (c * chunk..((c + 1) * chunk).min(n))
                .map(|i| {
                    let mut r = Rec::keyed((i % PARTITIONS as usize) as i32, &format!("k{i:08}"), "", now());
                    let mut value = format!("v{i:08}-").into_bytes();
                    value.resize(size.max(value.len()), b'.');
                    r.value = Some(value);
                    r
                })
                .collect();
            send_all(&p, &topic, &records);
            p.flush(Duration::from_secs(120)).expect("source flush");
            std::thread::sleep(pause.saturating_sub(started.elapsed()));
        }
    })
}

/// Waits until the target holds a copy of every source record, and returns when that
/// happened; gives up after `timeout` (the row then shows what is lost).
fn caught_up(c: &Clusters, topic: &str, target_topic: &str, n: usize, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let distinct: usize = {
            let total: i64 = end_offsets(&c.target, target_topic).values().sum();
            if (total as usize) < n {
                0
            } else {
                let mut keys: std::collections::HashSet<Option<Vec<u8>>> = Default::default();
                read_all(&c.target, target_topic).into_iter().for_each(|r| {
                    keys.insert(r.key);
                });
                keys.len()
            }
        };
        if distinct >= n {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            let _ = topic;
            return None;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Counts lost, duplicated and reordered records per partition, from both sides.
fn count(c: &Clusters, topic: &str, target_topic: &str) -> (usize, usize, usize, usize) {
    let source = by_partition(&read_all(&c.source, topic));
    let target = by_partition(&read_all(&c.target, target_topic));
    let (mut records, mut lost, mut duplicated, mut reordered) = (0, 0, 0, 0);
    for (p, want) in &source {
        records += want.len();
        let index: HashMap<&Option<Vec<u8>>, usize> = want.iter().enumerate().map(|(i, r)| (&r.key, i)).collect();
        let mut seen = vec![false; want.len()];
        let mut last_first = None;
        for r in target.get(p).map(Vec::as_slice).unwrap_or_default() {
            let Some(&i) = index.get(&r.key) else { continue };
            if seen[i] {
                duplicated += 1;
                continue;
            }
            seen[i] = true;
            if last_first.is_some_and(|l| i < l) {
                reordered += 1;
            }
            last_first = Some(i);
        }
        lost += seen.iter().filter(|s| !**s).count();
    }
    (records, lost, duplicated, reordered)
}

/// `strait verify --json` on the copy: "ok" or what it found.
fn verify(config: &std::path::Path, flow: &str, topic: &str) -> String {
    let out = strait(&["verify", "--config", config.to_str().unwrap(), "--flow", flow, "--topic", topic, "--json"]);
    let Ok(report) = serde_json::from_str::<serde_json::Value>(&stdout(&out)) else {
        return format!("exit {:?}: {}", out.status.code(), stderr(&out).lines().last().unwrap_or(""));
    };
    let t = &report["totals"];
    if report["ok"] == true {
        format!("ok ({} checked, {} dup)", t["checked"], t["duplicates"])
    } else {
        format!("FAILED: {} missing, {} corrupted, {} out of order", t["missing"], t["corrupted"], t["out_of_order"])
    }
}

/// What a fault acts on.
struct Fault<'a> {
    config: &'a std::path::Path,
    topic: &'a str,
    target_topic: &'a str,
}

/// Runs `fault` while a stream flows through strait, then measures. The fault returns
/// when it ended: recovery is counted from there until everything is on the target.
fn scenario(
    name: &'static str,
    c: &Clusters,
    flow_extra: &str,
    fault: impl FnOnce(&Fault, &mut Vec<Strait>) -> Instant,
) -> Row {
    let (n, size, secs) = (
        env("FAULT_BATTERY_RECORDS", 1_000_000) as usize,
        env("FAULT_BATTERY_SIZE", 100) as usize,
        env("FAULT_BATTERY_SECS", 60),
    );
    let topic = unique(&format!("battery-{name}"));
    create_topic(&c.source, &topic, PARTITIONS, &[]);
    let target_topic = format!("{}.{topic}", c.source_alias);
    let (_dir, config) = c.config(&topic, &unique("strait"), flow_extra);
    let producer = stream(&c.source, &topic, n, size, secs);
    let mut instances = vec![Strait::start(&config)];
    let recovered_from = fault(&Fault { config: &config, topic: &topic, target_topic: &target_topic }, &mut instances);
    producer.join().expect("stream");
    if !instances.iter_mut().any(Strait::is_running) {
        instances.push(Strait::start(&config));
    }
    let done = caught_up(c, &topic, &target_topic, n, Duration::from_secs(600));
    let recovery = done.map(|d| d.saturating_duration_since(recovered_from).as_secs_f64());
    for s in instances.iter_mut() {
        if s.is_running() {
            s.terminate();
        }
    }
    let (records, lost, duplicated, reordered) = count(c, &topic, &target_topic);
    let flow = format!("{}->{}", c.source_alias, c.target_alias);
    let verify = verify(&config, &flow, &topic);
    Row { scenario: name, records, lost, duplicated, reordered, recovery, verify }
}

/// Five times: once the instance mirrors, let it run a little, then kill -9 it and
/// start another (a crash loop under a supervisor).
fn kill_five_times(f: &Fault, instances: &mut Vec<Strait>) -> Instant {
    for kill in 0..5 {
        let current = instances.last_mut().unwrap();
        wait_for("strait to take the partitions", Duration::from_secs(120), || {
            current.log_text().contains("partitions assigned").then_some(())
        });
        std::thread::sleep(Duration::from_millis(1_500 + 400 * kill));
        current.kill9();
        instances.push(Strait::start(f.config));
    }
    Instant::now()
}

/// The broker leading partition 0 of `topic` on `bootstrap`.
fn leader(bootstrap: &str, topic: &str) -> i32 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    md.topics()[0].partitions()[0].leader()
}

fn kill_leader(cluster: &str, bootstrap: &str, topic: &str) -> Instant {
    std::thread::sleep(Duration::from_secs(8));
    let node = leader(bootstrap, topic).to_string();
    let out = testbed_cmd(&["kill", cluster, "--node", &node]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(10));
    let out = testbed_cmd(&["up", cluster]);
    assert!(out.status.success(), "{}", stderr(&out));
    Instant::now()
}

fn three_broker_cluster(name: &str, slot: u16) -> String {
    let port = 19_092 + port_offset() + slot;
    let out = testbed_cmd(&["up", name, "--port", &port.to_string(), "--brokers", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = testbed_cmd(&["bootstrap", name]);
    stdout(&out).trim().to_string()
}

fn print(rows: &[Row]) {
    println!("\n| scenario | records | lost | duplicated | reordered | recovery s | strait verify |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let recovery = r.recovery.map_or("not recovered".to_string(), |s| format!("{s:.1}"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario, r.records, r.lost, r.duplicated, r.reordered, recovery, r.verify
        );
    }
}

#[test]
#[ignore]
fn fault_battery() {
    testbed();
    let only = std::env::var("FAULT_BATTERY_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut rows = Vec::new();
    let pair = Clusters::default_pair();
    if wanted("kill-9-x5") {
        rows.push(scenario("kill-9-x5", &pair, "", kill_five_times));
    }
    if wanted("kill-9-x5-exactly-once") {
        rows.push(scenario("kill-9-x5-exactly-once", &pair, "exactly_once = true\n", kill_five_times));
    }
    if wanted("target-down") {
        let outage = env("FAULT_BATTERY_OUTAGE_SECS", 60);
        rows.push(scenario("target-down", &pair, "", |_, _| {
            std::thread::sleep(Duration::from_secs(5));
            let out = testbed_cmd(&["down", "eu-west"]);
            assert!(out.status.success(), "{}", stderr(&out));
            std::thread::sleep(Duration::from_secs(outage));
            let out = testbed_cmd(&["up", "eu-west"]);
            assert!(out.status.success(), "{}", stderr(&out));
            Instant::now()
        }));
    }
    if wanted("source-leader-killed") {
        let bootstrap = three_broker_cluster("battery-src", 300);
        let c = Clusters { source_alias: "battery-src", source: bootstrap.clone(), ..Clusters::default_pair() };
        rows.push(scenario("source-leader-killed", &c, "", |f, _| kill_leader("battery-src", &bootstrap, f.topic)));
        testbed_cmd(&["down", "battery-src"]);
    }
    if wanted("target-leader-killed") {
        let bootstrap = three_broker_cluster("battery-dst", 500);
        let c = Clusters { target_alias: "battery-dst", target: bootstrap.clone(), ..Clusters::default_pair() };
        rows.push(scenario("target-leader-killed", &c, "", |f, _| {
            wait_for("the target topic", Duration::from_secs(60), || partitions(&bootstrap, f.target_topic));
            kill_leader("battery-dst", &bootstrap, f.target_topic)
        }));
        testbed_cmd(&["down", "battery-dst"]);
    }
    if wanted("three-instances") {
        rows.push(scenario("three-instances", &pair, "", |f, instances| {
            instances.push(Strait::start(f.config));
            instances.push(Strait::start(f.config));
            std::thread::sleep(Duration::from_secs(8));
            instances[0].kill9();
            instances[1].freeze();
            let frozen = Instant::now();
            std::thread::sleep(Duration::from_secs(12));
            instances[1].thaw();
            frozen
        }));
    }
    print(&rows);
    assert!(rows.iter().all(|r| r.lost == 0 && r.reordered == 0), "a scenario lost or reordered records");
}
