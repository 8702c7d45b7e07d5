//! The data path and topic sync on real Kafka: fidelity, topic changes, crash and
//! restart, scale-out, active/active loops, and `plan`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminOptions, NewPartitions, ResourceSpecifier};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

/// Timestamps near now: the brokers' time-based retention would delete older records.
fn t0() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 600_000
}

fn keyed_records(prefix: &str, n: usize, partitions: i32) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            Rec::keyed(
                (i % partitions as usize) as i32,
                &format!("{prefix}-k{i}"),
                &format!("{prefix}-v{i}"),
                t0() + i as i64,
            )
        })
        .collect()
}

fn target_config(topic: &str, key: &str) -> Option<String> {
    let admin = admin(eu_west());
    let res = block(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())).unwrap();
    let r = res.into_iter().next()?.ok()?;
    r.get(key).and_then(|e| e.value.clone())
}

fn start_flow(pattern: &str, rename: &str) -> (tempfile::TempDir, Strait) {
    let cfg = config_with_flows(&flow("us-east", "eu-west", pattern, rename, &unique("strait")));
    let (dir, path) = write_config(&cfg);
    let s = Strait::start(&path);
    (dir, s)
}

/// 100k keyed records with headers over 6 partitions, some in committed and some in
/// aborted transactions: the copy equals the source record for record.
#[test]
fn mirrors_records_exactly_and_skips_aborted_transactions() {
    testbed();
    let topic = unique("fidelity");
    create_topic(us_east(), &topic, 6, &[]);
    // Some records exist before strait starts, the rest arrive while it runs.
    let records = keyed_records("a", 100_000, 6);
    produce(us_east(), &topic, &records[..30_000]);
    let (_dir, mut strait) = start_flow(&topic, "prefix");
    produce(us_east(), &topic, &records[30_000..]);

    let tx: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", us_east()).set("transactional.id", unique("tx")).create().unwrap();
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    for (round, commit) in [(0, true), (1, false), (2, true), (3, false)] {
        tx.begin_transaction().unwrap();
        let label = if commit { "committed" } else { "aborted" };
        let recs: Vec<Rec> = (0..500)
            .map(|i| {
                Rec::keyed(i % 6, &format!("tx{round}-{i}"), &format!("{label}-{round}-{i}"), t0() + 200_000 + i as i64)
            })
            .collect();
        send_all(&tx, &topic, &recs);
        tx.flush(Duration::from_secs(30)).unwrap();
        if commit {
            tx.commit_transaction(Duration::from_secs(30)).unwrap();
        } else {
            tx.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    }
    // Plain records after the transactions, so the target must read past the markers.
    let tail = keyed_records("z", 600, 6);
    produce(us_east(), &topic, &tail);

    let source = read_all(us_east(), &topic);
    assert_eq!(source.len(), 100_000 + 1_000 + 600);
    let target_topic = format!("us-east.{topic}");
    let target = wait_for_count(eu_west(), &target_topic, source.len(), Duration::from_secs(180));
    assert_eq!(partitions(eu_west(), &target_topic), Some(6));
    assert_eq!(target.len(), source.len(), "no duplicates and nothing missing");
    assert!(target.iter().all(|r| !r.value.as_ref().unwrap().starts_with(b"aborted")), "aborted records were mirrored");
    let (s, t) = (by_partition(&source), by_partition(&target));
    for (p, recs) in &s {
        assert_eq!(recs, &t[p], "partition {p}: key, value, headers, timestamp and order");
    }
    assert!(strait.is_running(), "{}", strait.log_text());
}

/// New topics, partition increases and config changes follow within the refresh interval.
#[test]
fn topic_sync_follows_new_topics_partitions_and_configs() {
    testbed();
    let base = unique("sync");
    let (_dir, strait) = start_flow(&format!("{base}\\..*"), "prefix");
    std::thread::sleep(Duration::from_secs(2));

    let topic = format!("{base}.late");
    create_topic(
        us_east(),
        &topic,
        2,
        &[("retention.ms", "3600000"), ("cleanup.policy", "delete"), ("min.insync.replicas", "1")],
    );
    let started = Instant::now();
    let target_topic = format!("us-east.{topic}");
    wait_for("new topic on the target", Duration::from_secs(15), || partitions(eu_west(), &target_topic));
    eprintln!("new topic mirrored after {:?}", started.elapsed());
    assert_eq!(partitions(eu_west(), &target_topic), Some(2));
    assert_eq!(target_config(&target_topic, "retention.ms").as_deref(), Some("3600000"));
    produce(us_east(), &topic, &keyed_records("late", 100, 2));
    wait_for_count(eu_west(), &target_topic, 100, Duration::from_secs(60));

    // Partition increase.
    let admin = admin(us_east());
    block(admin.create_partitions([&NewPartitions::new(&topic, 4)], &AdminOptions::new())).unwrap()[0].clone().unwrap();
    wait_for("partition increase on the target", Duration::from_secs(15), || {
        (partitions(eu_west(), &target_topic) == Some(4)).then_some(())
    });
    produce(us_east(), &topic, &[Rec::keyed(3, "p3", "in the new partition", t0())]);
    let got = wait_for_count(eu_west(), &target_topic, 101, Duration::from_secs(60));
    assert!(got.iter().any(|r| r.partition == 3 && r.key.as_deref() == Some(&b"p3"[..])));

    // Config change, incremental: an unrelated config set only on the target survives.
    let out = testbed_cmd(&[
        "tool",
        "eu-west",
        "kafka-configs",
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        &target_topic,
        "--add-config",
        "segment.ms=7200000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = testbed_cmd(&[
        "tool",
        "us-east",
        "kafka-configs",
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
        "--add-config",
        "retention.ms=7200000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("retention.ms on the target", Duration::from_secs(15), || {
        (target_config(&target_topic, "retention.ms").as_deref() == Some("7200000")).then_some(())
    });
    assert_eq!(target_config(&target_topic, "segment.ms").as_deref(), Some("7200000"), "unrelated config was reset");
    drop(strait);
}

/// kill -9 mid-stream, restart: nothing is missing, order holds per partition.
#[test]
fn crash_and_restart_loses_nothing() {
    testbed();
    let topic = unique("crash");
    create_topic(us_east(), &topic, 4, &[]);
    let cfg = config_with_flows(&flow("us-east", "eu-west", &topic, "prefix", &unique("strait")));
    let (_dir, path) = write_config(&cfg);
    let target_topic = format!("us-east.{topic}");

    let records = keyed_records("c", 60_000, 4);
    let producing = {
        let records = records.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            for chunk in records.chunks(2_000) {
                produce(us_east(), &topic, chunk);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut first = Strait::start(&path);
    wait_for("some records mirrored", Duration::from_secs(60), || {
        let n: i64 = end_offsets(eu_west(), &target_topic).values().sum();
        (n > 5_000).then_some(())
    });
    first.kill9();
    let _second = Strait::start(&path);
    producing.join().unwrap();
    let target = wait_for_count(eu_west(), &target_topic, records.len(), Duration::from_secs(180));
    assert_same_records_allowing_redelivery(&records, &target);
}

/// Every source record is on the target, and in each partition the first copies appear
/// in source order (a crash may repeat a suffix of the in-flight window, nothing else).
fn assert_same_records_allowing_redelivery(source: &[Rec], target: &[Rec]) {
    let (s, t) = (by_partition(source), by_partition(target));
    for (p, want) in s {
        let got = t.get(&p).cloned().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<Rec> = got.into_iter().filter(|r| seen.insert(r.key.clone())).collect();
        assert_eq!(firsts.len(), want.len(), "partition {p}: records missing");
        assert!(firsts == want, "partition {p}: order differs");
    }
}

/// Two instances share a flow's partitions; killing one loses nothing.
#[test]
fn two_instances_share_partitions_and_survive_losing_one() {
    testbed();
    let topic = unique("scale");
    create_topic(us_east(), &topic, 6, &[]);
    let cfg = config_with_flows(&flow("us-east", "eu-west", &topic, "prefix", &unique("strait")));
    let (_dir, path) = write_config(&cfg);
    let target_topic = format!("us-east.{topic}");
    let mut a = Strait::start(&path);
    let b = Strait::start(&path);
    let first = keyed_records("s1", 6_000, 6);
    produce(us_east(), &topic, &first);
    wait_for_count(eu_west(), &target_topic, 6_000, Duration::from_secs(90));
    // Both instances own part of the flow.
    wait_for("both instances assigned", Duration::from_secs(60), || {
        (a.log_text().contains("partitions assigned") && b.log_text().contains("partitions assigned")).then_some(())
    });

    let done = Arc::new(AtomicBool::new(false));
    let records = keyed_records("s2", 30_000, 6);
    let producing = {
        let (records, topic, done) = (records.clone(), topic.clone(), done.clone());
        std::thread::spawn(move || {
            for chunk in records.chunks(1_000) {
                produce(us_east(), &topic, chunk);
                std::thread::sleep(Duration::from_millis(30));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    a.kill9();
    producing.join().unwrap();
    let mut all = first;
    all.extend(records);
    let target = wait_for_count(eu_west(), &target_topic, all.len(), Duration::from_secs(180));
    assert_same_records_allowing_redelivery(&all, &target);
    drop(b);
}

/// Active/active with `prefix`: A→B and B→A; nothing comes back.
#[test]
fn active_active_prefix_never_loops() {
    testbed();
    let topic = unique("aa-prefix");
    create_topic(us_east(), &topic, 2, &[]);
    create_topic(eu_west(), &topic, 2, &[]);
    // Patterns also match the other side's copies, so only the cycle rule stops them.
    let pattern = format!("(us-east\\.|eu-west\\.)*{topic}");
    let cfg = config_with_flows(&format!(
        "{}\n{}",
        flow("us-east", "eu-west", &pattern, "prefix", &unique("ab")),
        flow("eu-west", "us-east", &pattern, "prefix", &unique("ba"))
    ));
    let (_dir, path) = write_config(&cfg);
    let strait = Strait::start(&path);
    produce(us_east(), &topic, &keyed_records("east", 500, 2));
    produce(eu_west(), &topic, &keyed_records("west", 300, 2));
    wait_for_count(eu_west(), &format!("us-east.{topic}"), 500, Duration::from_secs(90));
    wait_for_count(us_east(), &format!("eu-west.{topic}"), 300, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(4)); // several refresh intervals
    let east = topic_names(us_east());
    let west = topic_names(eu_west());
    assert!(!east.iter().any(|t| t.contains(&format!("us-east.{topic}"))), "copied back to us-east: {east:?}");
    assert!(!west.iter().any(|t| t.contains(&format!("eu-west.{topic}"))), "copied back to eu-west: {west:?}");
    assert_eq!(read_all(eu_west(), &format!("us-east.{topic}")).len(), 500);
    assert_eq!(read_all(us_east(), &format!("eu-west.{topic}")).len(), 300);
    drop(strait);
}

/// Active/active with `identity`: the same topic on both sides; each record exactly once
/// on each side, none sent back, marked with its origin.
#[test]
fn active_active_identity_never_loops() {
    testbed();
    let topic = unique("aa-identity");
    create_topic(us_east(), &topic, 2, &[]);
    create_topic(eu_west(), &topic, 2, &[]);
    let cfg = config_with_flows(&format!(
        "{}\n{}",
        flow("us-east", "eu-west", &topic, "identity", &unique("ab")),
        flow("eu-west", "us-east", &topic, "identity", &unique("ba"))
    ));
    let (_dir, path) = write_config(&cfg);
    let strait = Strait::start(&path);
    produce(us_east(), &topic, &keyed_records("east", 400, 2));
    produce(eu_west(), &topic, &keyed_records("west", 300, 2));
    let east = wait_for_count(us_east(), &topic, 700, Duration::from_secs(90));
    let west = wait_for_count(eu_west(), &topic, 700, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(4));
    for (name, bootstrap) in [("us-east", us_east()), ("eu-west", eu_west())] {
        let recs = read_all(bootstrap, &topic);
        assert_eq!(recs.len(), 700, "{name}: each record exactly once");
        let mut keys: Vec<_> = recs.iter().map(|r| r.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 700, "{name}: a record came back");
    }
    let origin = |r: &Rec| r.headers.iter().find(|(k, _)| k == "strait.origin").and_then(|(_, v)| v.clone());
    assert!(west
        .iter()
        .filter(|r| r.key.as_ref().unwrap().starts_with(b"east"))
        .all(|r| origin(r) == Some(b"us-east".to_vec())));
    assert!(east
        .iter()
        .filter(|r| r.key.as_ref().unwrap().starts_with(b"west"))
        .all(|r| origin(r) == Some(b"eu-west".to_vec())));
    drop(strait);
}

/// `plan` prints the diff and changes nothing.
#[test]
fn plan_shows_the_diff_and_changes_nothing() {
    testbed();
    let base = unique("plan");
    let fresh = format!("{base}.fresh");
    let grown = format!("{base}.grown");
    create_topic(us_east(), &fresh, 3, &[("retention.ms", "86400000")]);
    create_topic(us_east(), &grown, 4, &[("retention.ms", "3600000")]);
    create_topic(eu_west(), &format!("us-east.{grown}"), 2, &[("retention.ms", "60000")]);
    let cfg = config_with_flows(&flow("us-east", "eu-west", &format!("{base}\\..*"), "prefix", &unique("g")));
    let (_dir, path) = write_config(&cfg);
    // Other tests create topics concurrently; compare only this test's names.
    let mine = |names: Vec<String>| names.into_iter().filter(|t| t.contains(&base)).collect::<Vec<_>>();
    let before = mine(topic_names(eu_west()));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "+ create topic us-east.{fresh} on eu-west (partitions 3, replication factor target default)"
        )),
        "{text}"
    );
    assert!(text.contains("retention.ms = 86400000"), "{text}");
    assert!(text.contains(&format!("~ add partitions to us-east.{grown} on eu-west: 2 -> 4")), "{text}");
    assert!(
        text.contains(&format!("~ set config of us-east.{grown} on eu-west: retention.ms = 3600000 (was 60000)")),
        "{text}"
    );
    assert_eq!(mine(topic_names(eu_west())), before, "plan created or deleted topics");
    assert_eq!(partitions(eu_west(), &format!("us-east.{grown}")), Some(2));
    assert_eq!(target_config(&format!("us-east.{grown}"), "retention.ms").as_deref(), Some("60000"));
}

/// SIGTERM drains and commits: exit 0 within seconds, and a restart re-sends nothing.
#[test]
fn graceful_shutdown_resends_nothing() {
    testbed();
    let topic = unique("graceful");
    create_topic(us_east(), &topic, 3, &[]);
    let cfg = config_with_flows(&flow("us-east", "eu-west", &topic, "prefix", &unique("strait")));
    let (_dir, path) = write_config(&cfg);
    let target_topic = format!("us-east.{topic}");
    let mut first = Strait::start(&path);
    produce(us_east(), &topic, &keyed_records("g1", 5_000, 3));
    wait_for_count(eu_west(), &target_topic, 5_000, Duration::from_secs(90));
    let (status, took) = first.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", first.log_text());
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    produce(us_east(), &topic, &keyed_records("g2", 1_000, 3));
    let _second = Strait::start(&path);
    wait_for_count(eu_west(), &target_topic, 6_000, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read_all(eu_west(), &target_topic).len(), 6_000, "a clean shutdown re-sent records");
}

/// Records of several MiB arrive intact when both topics allow them.
#[test]
fn large_records_arrive_intact() {
    testbed();
    let topic = unique("large");
    create_topic(us_east(), &topic, 1, &[("max.message.bytes", "16777216")]);
    let (_dir, strait) = start_flow(&topic, "prefix");
    let records: Vec<Rec> = (0..6u8)
        .map(|i| Rec {
            partition: 0,
            key: Some(format!("video-{i}").into_bytes()),
            value: Some((0..5 * 1024 * 1024).map(|j| (j % 251) as u8 ^ i).collect()),
            headers: vec![("chunk".into(), Some(vec![i]))],
            timestamp: Some(t0() + i as i64),
        })
        .collect();
    produce(us_east(), &topic, &records);
    let target = wait_for_count(eu_west(), &format!("us-east.{topic}"), records.len(), Duration::from_secs(120));
    assert!(target == records, "large records differ");
    drop(strait);
}
