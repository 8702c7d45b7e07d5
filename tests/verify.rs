//! `strait verify` on real Kafka: strait mirrors a topic first, then each kind of fault
//! is injected into the target copy, and verify must find every one of them, naming the
//! partition and the offsets, with the documented exit code.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::admin::AdminOptions;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

/// Timestamps near now: the brokers' time-based retention would delete older records.
fn t0() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 600_000
}

fn keyed_records(prefix: &str, n: usize, partitions: i32, t0: i64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let p = (i % partitions as usize) as i32;
            Rec::keyed(p, &format!("{prefix}-k{i}"), &format!("{prefix}-v{i}"), t0 + i as i64)
        })
        .collect()
}

/// A topic on us-east that strait has mirrored to eu-west.
struct Mirrored {
    _dir: tempfile::TempDir,
    config: PathBuf,
    topic: String,
    target_topic: String,
    partitions: i32,
    /// What was produced, in order.
    records: Vec<Rec>,
    strait: Strait,
}

impl Mirrored {
    /// Creates the topic, produces `n` records, starts strait and waits until verify
    /// sees all of them mirrored (strait keeps running).
    fn new(name: &str, partitions: i32, n: usize, rename: &str) -> Mirrored {
        testbed();
        let topic = unique(name);
        create_topic(us_east(), &topic, partitions, &[]);
        let records = keyed_records("r", n, partitions, t0());
        produce(us_east(), &topic, &records);
        let cfg = config_with_flows(&flow("us-east", "eu-west", &topic, rename, &unique("strait")));
        let (dir, config) = write_config(&cfg);
        let strait = Strait::start(&config);
        let target_topic = if rename == "prefix" { format!("us-east.{topic}") } else { topic.clone() };
        let m = Mirrored { _dir: dir, config, topic, target_topic, partitions, records, strait };
        m.wait_until_mirrored(n as u64);
        m
    }

    /// Waits until the offset map accounts for `n` source records.
    fn wait_until_mirrored(&self, n: u64) {
        wait_for("the offset map to cover every record", Duration::from_secs(90), || {
            let (_, report) = self.verify_json(&[]);
            (report["totals"]["checked"].as_u64() == Some(n) && report["totals"]["not_yet_mirrored"] == 0).then_some(())
        });
    }

    fn verify(&self, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["verify", "--config", self.config.to_str().unwrap(), "--flow", "us-east->eu-west"];
        args.extend(["--topic", &self.topic]);
        args.extend(extra);
        let out = strait(&args);
        (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
    }

    fn verify_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--json"];
        args.extend(extra);
        let (code, out, err) = self.verify(&args);
        let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify --json: {e}\n{out}\n{err}"));
        (code, report)
    }

    /// Stops strait cleanly (its map is complete), so the target can be tampered with.
    fn stop(&mut self) {
        let (status, _) = self.strait.terminate();
        assert!(status.success(), "strait run exited with {status}:\n{}", self.strait.log_text());
    }

    fn source_in_partition(&self, p: i32) -> Vec<Rec> {
        self.records.iter().filter(|r| r.partition == p).cloned().collect()
    }

    /// Deletes the target topic, recreates it, and produces `records` into it: the map's
    /// offsets now point at whatever `records` holds.
    fn replace_target(&self, records: &[Rec]) {
        let admin = admin(eu_west());
        block(admin.delete_topics(&[&self.target_topic], &AdminOptions::new())).unwrap();
        wait_for("the target topic to be recreated", Duration::from_secs(60), || {
            let t = NewTopic::new(&self.target_topic, self.partitions, TopicReplication::Fixed(1));
            let res = block(admin.create_topics([&t], &AdminOptions::new())).ok()?;
            res.into_iter().all(|r| r.is_ok()).then_some(())
        });
        wait_for("the recreated topic's partitions", Duration::from_secs(30), || {
            (partitions(eu_west(), &self.target_topic) == Some(self.partitions as usize)).then_some(())
        });
        produce(eu_west(), &self.target_topic, records);
    }
}

fn partition_report(report: &Value, p: i64) -> &Value {
    report["partitions"].as_array().unwrap().iter().find(|r| r["partition"] == p).expect("partition in report")
}

/// Every count of a partition report that is not a fault kind is zero except `checked`.
fn assert_counts(p: &Value, checked: u64, missing: u64, corrupted: u64, out_of_order: u64, dup: u64, foreign: u64) {
    let got: Vec<u64> = ["checked", "missing", "corrupted", "out_of_order", "duplicates", "foreign"]
        .iter()
        .map(|k| p[k].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![checked, missing, corrupted, out_of_order, dup, foreign], "counts of {p}");
}

#[test]
fn a_clean_copy_passes_with_exact_counts_across_transactions() {
    let mut m = Mirrored::new("verify-clean", 2, 200, "prefix");
    // Committed and aborted transactions: markers and aborted records leave gaps in the
    // source offsets that the map has no entry for, and that are not missing.
    let tx: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", us_east()).set("transactional.id", unique("tx")).create().unwrap();
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    for (round, commit) in [(0, true), (1, false), (2, true)] {
        tx.begin_transaction().unwrap();
        send_all(&tx, &m.topic, &keyed_records(&format!("tx{round}"), 20, 2, t0() + 10_000));
        tx.flush(Duration::from_secs(30)).unwrap();
        if commit {
            tx.commit_transaction(Duration::from_secs(30)).unwrap();
        } else {
            tx.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    }
    m.wait_until_mirrored(240);
    m.stop();

    let (code, out, err) = m.verify(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("OK: us-east->eu-west: 240 records checked"), "{out}");
    assert!(out.contains(&format!("{}[1]", m.topic)), "the table lists each partition:\n{out}");

    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    assert_eq!(report["exit_code"], 0);
    for p in 0..2 {
        let part = partition_report(&report, p);
        assert_counts(part, 120, 0, 0, 0, 0, 0);
        assert_eq!(part["not_yet_mirrored"], 0);
        // 100 plain + 20 committed records + 3 markers (2 commits, 1 abort) + 10 aborted.
        let position = part["mirrored_position"].as_i64().unwrap();
        assert!(position == 132 || position == 133, "past the last commit marker or on it: {part}");
    }

    // --since: only records from the 100th one's timestamp on.
    let since = m.records[100].timestamp.unwrap().to_string();
    let (code, report) = m.verify_json(&["--since", &since]);
    assert_eq!(code, 0);
    assert_eq!(report["totals"]["checked"], 100 + 40, "{report}");
}

#[test]
fn extra_records_are_found_and_only_fail_with_strict() {
    let mut m = Mirrored::new("verify-extra", 2, 100, "prefix");
    // A duplicate of source record 0 of partition 0 and a foreign record, produced into
    // the target's partition 0, then more source records that strait mirrors after them.
    let end = end_offsets(eu_west(), &m.target_topic)[&0];
    let duplicate = m.source_in_partition(0)[0].clone();
    let foreign = Rec::keyed(0, "intruder", "not from us-east", t0());
    produce(eu_west(), &m.target_topic, &[duplicate, foreign]);
    let more = keyed_records("late", 20, 2, t0() + 1000);
    produce(us_east(), &m.topic, &more);
    m.wait_until_mirrored(120);
    m.stop();

    let (code, out, err) = m.verify(&[]);
    assert_eq!(code, 0, "extra records alone are no loss:\n{out}\n{err}");
    assert!(out.contains("warning: 2 extra record(s) on eu-west: 1 duplicate(s), 1 foreign"), "{out}");
    assert!(
        out.contains(&format!(
            "{}[0]: extra (duplicate): {} offset {end} repeats source offset 0",
            m.topic, m.target_topic
        )),
        "{out}"
    );
    assert!(out.contains(&format!("offset {} is no copy of any source record", end + 1)), "{out}");

    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 0);
    let p0 = partition_report(&report, 0);
    assert_counts(p0, 60, 0, 0, 0, 1, 1);
    assert_eq!(p0["faults"][0]["kind"], "duplicate");
    assert_eq!(p0["faults"][0]["target_offset"], end);
    assert_eq!(p0["faults"][0]["duplicate_of"], 0);
    assert_eq!(p0["faults"][1]["kind"], "foreign");
    assert_eq!(p0["faults"][1]["target_offset"], end + 1);
    assert_counts(partition_report(&report, 1), 60, 0, 0, 0, 0, 0);

    let (code, out, _) = m.verify(&["--strict"]);
    assert_eq!(code, 1, "--strict fails on extra records:\n{out}");
    let (code, report) = m.verify_json(&["--strict"]);
    assert_eq!((code, &report["ok"], &report["exit_code"]), (1, &Value::Bool(false), &Value::from(1)));
}

#[test]
fn an_altered_record_is_corrupted() {
    let mut m = Mirrored::new("verify-altered", 2, 40, "prefix");
    m.stop();
    let mut copy = read_all(eu_west(), &m.target_topic);
    let victim = copy.iter().position(|r| r.partition == 1 && r.key == m.source_in_partition(1)[7].key).unwrap();
    copy[victim].value = Some(b"tampered".to_vec());
    m.replace_target(&copy);

    let (code, out, err) = m.verify(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{}[1]: corrupted: source offset 7 differs from its copy at {} offset 7",
            m.topic, m.target_topic
        )),
        "{out}"
    );
    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 1);
    let p1 = partition_report(&report, 1);
    assert_counts(p1, 20, 0, 1, 0, 0, 0);
    assert_eq!(p1["faults"][0]["source_offset"], 7);
    assert_eq!(p1["faults"][0]["target_offset"], 7);
    assert_counts(partition_report(&report, 0), 20, 0, 0, 0, 0, 0);
}

#[test]
fn a_reordered_record_is_out_of_order() {
    let mut m = Mirrored::new("verify-reordered", 2, 40, "prefix");
    m.stop();
    let copy = read_all(eu_west(), &m.target_topic);
    let mut p0: Vec<Rec> = copy.iter().filter(|r| r.partition == 0).cloned().collect();
    p0.swap(3, 4);
    let p1: Vec<Rec> = copy.iter().filter(|r| r.partition == 1).cloned().collect();
    m.replace_target(&[p0, p1].concat());

    let (code, out, err) = m.verify(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains(&format!("{}[0]: out of order: source offset 3: its copy at {} offset 3 holds another record; this content is at offset 4",
            m.topic, m.target_topic
        )),
        "{out}"
    );
    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 1);
    let part = partition_report(&report, 0);
    assert_counts(part, 20, 0, 0, 2, 0, 0);
    let faults: Vec<(i64, i64, i64)> = part["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "out_of_order");
            (
                f["source_offset"].as_i64().unwrap(),
                f["target_offset"].as_i64().unwrap(),
                f["content_found_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(faults, vec![(3, 3, 4), (4, 4, 3)]);
}

#[test]
fn a_truncated_partition_is_missing() {
    let mut m = Mirrored::new("verify-truncated", 2, 40, "prefix");
    m.stop();
    let dir = tempfile::tempdir().unwrap();
    let offsets = dir.path().join("offsets.json");
    std::fs::write(
        &offsets,
        format!(r#"{{"version":1,"partitions":[{{"topic":"{}","partition":0,"offset":5}}]}}"#, m.target_topic),
    )
    .unwrap();
    let out =
        testbed_cmd(&["tool", "eu-west", "kafka-delete-records", "--offset-json-file", offsets.to_str().unwrap()]);
    assert!(out.status.success(), "kafka-delete-records:\n{}\n{}", stdout(&out), stderr(&out));

    let (code, out, err) = m.verify(&[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{}[0]: missing: source offsets 0..=4 (5 records): their copies at {} offsets 0..=4 are gone",
            m.topic, m.target_topic
        )),
        "{out}"
    );
    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 1);
    let p0 = partition_report(&report, 0);
    assert_counts(p0, 20, 5, 0, 0, 0, 0);
    let f = &p0["faults"][0];
    assert_eq!(
        (&f["kind"], &f["count"], &f["source_offset"], &f["target_offset"]),
        (&"missing".into(), &5.into(), &0.into(), &0.into())
    );
    assert_counts(partition_report(&report, 1), 20, 0, 0, 0, 0, 0);
}

#[test]
fn verify_passes_while_strait_mirrors_a_live_stream() {
    let m = Mirrored::new("verify-live", 3, 300, "prefix");
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (stop, topic) = (stop.clone(), m.topic.clone());
        std::thread::spawn(move || {
            let p = producer(us_east());
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 200_000 {
                send_all(&p, &topic, &keyed_records(&format!("live{i}"), 100, 3, t0() + 5000 + i as i64));
                i += 100;
                std::thread::sleep(Duration::from_millis(20));
            }
            p.flush(Duration::from_secs(30)).unwrap();
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let (code, report) = m.verify_json(&[]);
    stop.store(true, Ordering::SeqCst);
    producing.join().unwrap();
    assert_eq!(code, 0, "{report}");
    let totals = &report["totals"];
    assert!(totals["checked"].as_u64().unwrap() > 300, "{totals}");
    for k in ["missing", "corrupted", "out_of_order", "duplicates", "foreign"] {
        assert_eq!(totals[k], 0, "{k}: {report}");
    }
}

#[test]
fn identity_names_ignore_the_provenance_header() {
    let m = Mirrored::new("verify-identity", 1, 30, "identity");
    let copy = read_all(eu_west(), &m.target_topic);
    assert!(copy[0].headers.iter().any(|(k, _)| k == "strait.origin"), "the copy carries the provenance header");
    let (code, report) = m.verify_json(&[]);
    assert_eq!(code, 0, "{report}");
    assert_counts(partition_report(&report, 0), 30, 0, 0, 0, 0, 0);
}

#[test]
fn bad_arguments_exit_2() {
    let cfg = config_with_flows(&flow("us-east", "eu-west", "nothing-here", "prefix", "g"));
    let (_dir, config) = write_config(&cfg);
    let config = config.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = strait(&[&["verify", "--config", config][..], args].concat());
        (out.status.code(), stderr(&out))
    };
    let (code, err) = run(&["--flow", "us-east->mars"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no flow `us-east->mars`"), "{err}");
    let (code, err) = run(&["--flow", "us-east->eu-west", "--topic", "("]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--topic `(` is not a valid regular expression"), "{err}");
    let (code, err) = run(&["--flow", "us-east->eu-west", "--since", "yesterday-ish"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a time"), "{err}");
    let (code, err) = run(&["--config-typo"]);
    assert_eq!(code, Some(2), "{err}");
}

/// Speed of `strait verify` against a plain read of both topics with the same client
/// settings. Not in the default suite; `scripts/bench-verify` runs it:
/// `VERIFY_BENCH_RECORDS` (default 1000000), `VERIFY_BENCH_SIZE` (value bytes, 1024),
/// `VERIFY_BENCH_PARTITIONS` (6). Prints figures; asserts only that the copy verifies.
#[test]
#[ignore]
fn bench_verify_against_a_plain_read() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n, size, partitions) =
        (env("VERIFY_BENCH_RECORDS", 1_000_000), env("VERIFY_BENCH_SIZE", 1024), env("VERIFY_BENCH_PARTITIONS", 6));
    testbed();
    let topic = unique("bench-verify");
    create_topic(us_east(), &topic, partitions as i32, &[]);
    let started = std::time::Instant::now();
    bench::produce_random(&topic, n, size, partitions as i32);
    println!("produced {n} records of {size} B to {partitions} partitions in {:.1} s", started.elapsed().as_secs_f64());

    let cfg = config_with_flows(&flow("us-east", "eu-west", &topic, "prefix", &unique("strait")));
    let (_dir, config) = write_config(&cfg);
    let started = std::time::Instant::now();
    let mut strait = Strait::start(&config);
    let target_topic = format!("us-east.{topic}");
    let source_ends = end_offsets(us_east(), &topic);
    wait_for("strait to mirror everything", Duration::from_secs(1800), || {
        (end_offsets(eu_west(), &target_topic) == source_ends).then_some(())
    });
    println!("strait mirrored them in {:.1} s", started.elapsed().as_secs_f64());
    assert!(strait.terminate().0.success());

    for round in 1..=3 {
        let plain = bench::plain_read(&[(us_east(), &topic), (eu_west(), &target_topic)]);
        let verify = bench::timed(&[
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--flow",
            "us-east->eu-west",
            "--topic",
            &topic,
            "--json",
        ]);
        let report: Value = serde_json::from_str(&verify.stdout).unwrap();
        assert_eq!(report["totals"]["checked"], n as u64, "{}", verify.stdout);
        assert_eq!(report["ok"], true);
        let mb = (n * size) as f64 / 1e6;
        println!(
            "round {round}: plain read of both topics: {:.2} s ({:.0} records/s, {:.0} MB/s per side), CPU {:.1} s",
            plain.seconds,
            n as f64 / plain.seconds,
            mb / plain.seconds,
            plain.cpu_seconds
        );
        println!(
            "round {round}: strait verify:              {:.2} s ({:.0} records/s, {:.0} MB/s per side), CPU {:.1} s, \
             peak RSS {:.0} MiB; {:.2}x the plain read's time",
            verify.seconds,
            n as f64 / verify.seconds,
            mb / verify.seconds,
            verify.cpu_seconds,
            verify.peak_rss_kib as f64 / 1024.0,
            verify.seconds / plain.seconds
        );
    }
    let admin = admin(us_east());
    let _ = block(admin.delete_topics(&[&topic], &AdminOptions::new()));
    let admin = common::admin(eu_west());
    let _ = block(admin.delete_topics(&[&target_topic], &AdminOptions::new()));
}

/// Helpers of the throughput measurement.
mod bench {
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Message, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::common::{strait_bin, unique};

    /// Keyed records with a header and pseudo-random values (incompressible, like
    /// encrypted or already-compressed payloads).
    pub fn produce_random(topic: &str, n: usize, size: usize, partitions: i32) {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", super::us_east())
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create()
            .unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let pool: Vec<u8> = (0..(1 << 20) + size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let now = super::t0() + 590_000;
        for i in 0..n {
            let key = format!("key-{i}");
            let start = (i * 7919) % (1 << 20);
            let headers = OwnedHeaders::new().insert(Header { key: "seq", value: Some(&i.to_le_bytes()[..]) });
            let mut record = BaseRecord::to(topic)
                .partition((i % partitions as usize) as i32)
                .key(&key)
                .payload(&pool[start..start + size])
                .timestamp(now + (i / 1000) as i64)
                .headers(headers);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(300)).unwrap();
    }

    pub struct Timing {
        pub seconds: f64,
        pub cpu_seconds: f64,
        pub peak_rss_kib: u64,
        pub stdout: String,
    }

    fn cpu_seconds(who: i32) -> f64 {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(usage.ru_utime) + t(usage.ru_stime)
    }

    /// Reads every record of each `(bootstrap, topic)` concurrently, as verify's reader
    /// threads do (same librdkafka settings as `strait::cluster`'s consumer), touching
    /// keys, values and headers.
    pub fn plain_read(topics: &[(&str, &str)]) -> Timing {
        let cpu = cpu_seconds(libc::RUSAGE_SELF);
        let started = Instant::now();
        std::thread::scope(|s| {
            for (bootstrap, topic) in topics {
                s.spawn(move || read_topic(bootstrap, topic));
            }
        });
        Timing {
            seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: cpu_seconds(libc::RUSAGE_SELF) - cpu,
            peak_rss_kib: 0,
            stdout: String::new(),
        }
    }

    fn read_topic(bootstrap: &str, topic: &str) -> u64 {
        let settings: strait::config::ClusterConfig =
            serde_json::from_value(serde_json::json!({ "bootstrap": bootstrap })).unwrap();
        let cluster = strait::cluster::Cluster::new("bench", &settings);
        let mut cfg = cluster.consumer_config(&unique("bench"));
        cfg.set("enable.partition.eof", "true");
        let c: BaseConsumer = cfg.create().unwrap();
        let n = super::partitions(bootstrap, topic).unwrap() as i32;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut remaining: HashSet<i32> = (0..n).collect();
        let mut bytes = 0u64;
        while !remaining.is_empty() {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    bytes += m.payload().map_or(0, |v| v.len() as u64) + m.key().map_or(0, |k| k.len() as u64);
                    bytes += m.headers().map_or(0, |h| rdkafka::message::Headers::count(h) as u64);
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    remaining.remove(&p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        bytes
    }

    /// Runs strait with `args`, measuring wall time, CPU time and peak memory.
    pub fn timed(args: &[&str]) -> Timing {
        let cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
        let started = Instant::now();
        let child = std::process::Command::new(strait_bin())
            .args(args)
            .env("STRAIT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status_file = format!("/proc/{}/status", child.id());
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            std::thread::spawn(move || {
                while let Ok(status) = std::fs::read_to_string(&status_file) {
                    let hwm = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                    match hwm {
                        Some(kib) => peak.fetch_max(kib, std::sync::atomic::Ordering::SeqCst),
                        None => break, // a zombie has no memory lines
                    };
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let out = child.wait_with_output().unwrap();
        let seconds = started.elapsed().as_secs_f64();
        sampler.join().unwrap();
        assert!(out.status.success(), "strait {args:?} failed: {}", String::from_utf8_lossy(&out.stdout));
        Timing {
            seconds,
            cpu_seconds: cpu_seconds(libc::RUSAGE_CHILDREN) - cpu,
            peak_rss_kib: peak.load(std::sync::atomic::Ordering::SeqCst),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }
}
