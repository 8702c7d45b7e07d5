//! Faults that must never lose, skip or reorder a record, each reproduced on the real
//! test bed: a record the target refuses, rebalance storms with crashes, a target topic
//! deleted under a running flow, a frozen instance (a "zombie"), records larger than the
//! in-flight bound, source retention overtaking replication, a slow target during a
//! rebalance, and fetch pauses under backpressure.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Incompressible bytes (xorshift), so that compression cannot shrink a record under a limit.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn records(prefix: &str, range: std::ops::Range<usize>, partitions: i32, value_len: usize) -> Vec<Rec> {
    range
        .map(|i| {
            let mut r = Rec::keyed((i % partitions as usize) as i32, &format!("{prefix}-k{i}"), "", now());
            let mut value = format!("{prefix}-v{i}-").into_bytes();
            value.resize(value.len().max(value_len), b'.');
            r.value = Some(value);
            r
        })
        .collect()
}

/// A flow config with fast intervals and the given extra lines (flow keys first, then
/// whole sections such as client overrides), with an admin endpoint of its own (so only
/// one instance may run it).
fn config(topic: &str, flow_extra: &str, sections: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    config_with_admin(topic, flow_extra, sections, &format!("127.0.0.1:{}", free_port()))
}

/// Like [`config`], for several instances at once (admin endpoints on any free port).
fn shared_config(topic: &str, flow_extra: &str, sections: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path, _) = config_with_admin(topic, flow_extra, sections, "127.0.0.1:0");
    (dir, path)
}

fn config_with_admin(
    topic: &str,
    flow_extra: &str,
    sections: &str,
    admin: &str,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let admin = admin.to_string();
    let cfg =
        config_with_flows(&format!("{}{flow_extra}", flow("us-east", "eu-west", topic, "prefix", &unique("strait"))))
            .replace("127.0.0.1:0", &admin);
    let cfg = format!("{cfg}\n{sections}");
    let (dir, path) = write_config(&cfg);
    (dir, path, admin)
}

/// Consumer settings that make a lost instance's partitions move within seconds.
const FAST_GROUP: &str =
    "[clusters.us-east.consumer]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";

/// Defect 1: a record the target refuses stops its partition. Nothing after it reaches
/// the target, the flow stops with an error naming the record, and restarts (a crash
/// loop under a supervisor) add no copies.
#[test]
fn a_refused_record_stops_the_flow_and_nothing_after_it_lands() {
    testbed();
    let topic = unique("refused");
    create_topic(us_east(), &topic, 1, &[("max.message.bytes", "8388608")]);
    let target_topic = format!("us-east.{topic}");
    // The target copy keeps the broker default (1 MiB) and configs are not synced.
    create_topic(eu_west(), &target_topic, 1, &[]);
    let mut recs = records("r", 0..101, 1, 100);
    recs[50].value = Some(noise(3_300_000, 7));
    produce(us_east(), &topic, &recs);
    let (_dir, path, _) = config(&topic, "sync_topic_configs = false\n", "");

    for run in 0..3 {
        let mut strait = Strait::start(&path);
        let status = strait.wait_exit(Duration::from_secs(90)).unwrap_or_else(|| {
            panic!("run {run}: strait kept running after the target refused a record:\n{}", strait.log_text())
        });
        assert!(!status.success(), "run {run}: a refused record must make strait exit non-zero");
        let log = strait.log_text();
        assert!(log.contains(&format!("{topic}[0]@50")), "run {run}: the error must name the record:\n{log}");
        assert!(log.contains("max.message.bytes"), "run {run}: the error must say what to change:\n{log}");
        let target = read_partition(eu_west(), &target_topic, 0);
        let values: Vec<&[u8]> = target.iter().map(|t| t.2.as_deref().unwrap()).collect();
        let expected: Vec<&[u8]> = recs[..50].iter().map(|r| r.value.as_deref().unwrap()).collect();
        assert_eq!(values.len(), 50, "run {run}: the target must hold exactly the 50 records before the refused one");
        assert_eq!(values, expected, "run {run}: records 0..50 in order, nothing after the refused record");
    }
}

/// Defect 2: instances join, leave cleanly and crash while records flow, so partitions
/// move back and forth (also straight back to the instance that just gave them up).
/// Afterwards every position of every partition still translates exactly.
#[test]
fn translation_stays_exact_through_rebalance_storms_and_crashes() {
    testbed();
    let topic = unique("storm");
    create_topic(us_east(), &topic, 4, &[]);
    let (_dir, path) = shared_config(&topic, "checkpoint_interval_ms = 500\n", FAST_GROUP);
    let target_topic = format!("us-east.{topic}");
    let done = Arc::new(AtomicBool::new(false));
    let producing = {
        let (topic, done) = (topic.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                produce(us_east(), &topic, &records("s", n..n + 400, 4, 200));
                n += 400;
                std::thread::sleep(Duration::from_millis(200));
            }
            n
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(2500));
    let mut a = Strait::start(&path);
    pause();
    let mut b = Strait::start(&path);
    pause();
    b.terminate(); // partitions go straight back to `a`
    pause();
    a.kill9(); // ...which then crashes
    let mut a = Strait::start(&path);
    let mut c = Strait::start(&path);
    pause();
    c.terminate();
    pause();
    let mut b = Strait::start(&path);
    pause();
    a.kill9();
    pause();
    let mut a = Strait::start(&path);
    pause();
    b.terminate();
    pause();
    a.kill9();
    let mut last = Strait::start(&path);
    pause();
    done.store(true, Ordering::SeqCst);
    let produced = producing.join().unwrap();
    wait_for_count(eu_west(), &target_topic, produced, Duration::from_secs(180));
    // Give the map a few commit intervals to cover the end, then stop cleanly.
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = last.terminate();
    assert!(status.success(), "{}", last.log_text());
    let checked: usize = (0..4).map(|p| assert_translation_exact(&topic, &target_topic, p)).sum();
    eprintln!("{produced} records, {checked} positions translated exactly");
}

/// Defect 3: the target topic is deleted under a running flow (topic sync would
/// recreate it empty). strait must not carry on as if the records acknowledged before
/// were still there: it stops the flow and says how to re-copy; `strait recopy` then
/// copies the topic again from the source's log start.
#[test]
fn a_deleted_target_topic_stops_the_flow_until_recopied() {
    testbed();
    let topic = unique("deleted");
    create_topic(us_east(), &topic, 2, &[]);
    let first = records("d", 0..1_000, 2, 50);
    produce(us_east(), &topic, &first);
    let (_dir, path, _) = config(&topic, "", "");
    let target_topic = format!("us-east.{topic}");
    let mut strait = Strait::start(&path);
    wait_for_count(eu_west(), &target_topic, first.len(), Duration::from_secs(60));

    let out = testbed_cmd(&["tool", "eu-west", "kafka-topics", "--delete", "--topic", &target_topic]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = records("d", 1_000..1_500, 2, 50);
    produce(us_east(), &topic, &second);
    let status = strait
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("strait kept mirroring into a recreated target topic:\n{}", strait.log_text()));
    assert!(!status.success());
    let log = strait.log_text();
    assert!(
        log.contains(&target_topic) && log.contains("strait recopy"),
        "the error must name the topic and the remedy:\n{log}"
    );

    // A restart does not silently continue either.
    let mut again = Strait::start(&path);
    let status = again
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("a restarted strait mirrored into the recreated topic:\n{}", again.log_text()));
    assert!(!status.success());
    assert!(again.log_text().contains("strait recopy"), "{}", again.log_text());

    let out = common::strait(&[
        "recopy",
        "--config",
        path.to_str().unwrap(),
        "--flow",
        "us-east->eu-west",
        "--topic",
        &topic,
    ]);
    assert!(out.status.success(), "recopy failed:\n{}{}", stdout(&out), stderr(&out));
    let _strait = Strait::start(&path);
    let mut all = first.clone();
    all.extend(second);
    let target = wait_for_count(eu_west(), &target_topic, all.len(), Duration::from_secs(90));
    let (s, t) = (by_partition(&all), by_partition(&target));
    for (p, recs) in &s {
        let values: Vec<_> = recs.iter().map(|r| &r.value).collect();
        let got: Vec<_> = t[p].iter().map(|r| &r.value).collect();
        assert_eq!(got, values, "partition {p}: re-copied in order, once");
    }
    for p in 0..2 {
        assert_translation_exact(&topic, &target_topic, p);
    }
}

/// Producer ids of the record batches of one target partition, in log order (read from
/// the broker's segment files with Kafka's DumpLogSegments), for failure messages.
fn batch_producers(topic: &str, partition: i32) -> Vec<(i64, i64)> {
    let run_dir = std::env::var("STRAIT_TESTBED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("deploy/local/.run"));
    let dir = run_dir.join("eu-west/node1/data").join(format!("{topic}-{partition}"));
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "log"));
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let dump = testbed_cmd(&["java", "org.apache.kafka.tools.DumpLogSegments", "--files", file.to_str().unwrap()]);
        for line in stdout(&dump).lines() {
            let field =
                |name: &str| -> Option<i64> { line.split(name).nth(1)?.split_whitespace().next()?.parse().ok() };
            if let (Some(base), Some(pid)) = (field("baseOffset: "), field("producerId: ")) {
                out.push((base, pid));
            }
        }
    }
    out
}

/// Positions in a target partition where the copies go back in source order: the
/// start of a block of duplicates.
fn rewinds(source: &[Rec], target: &[Rec]) -> Vec<usize> {
    let index: std::collections::HashMap<&Option<Vec<u8>>, usize> =
        source.iter().enumerate().map(|(i, r)| (&r.key, i)).collect();
    let order: Vec<usize> = target.iter().map(|r| index[&r.key]).collect();
    (1..order.len()).filter(|&i| order[i] <= order[i - 1]).collect()
}

/// Defect 4: one of two instances is frozen (SIGSTOP) past the group's session timeout,
/// so the other takes its partitions, and is then resumed. The frozen one must write
/// nothing more to the partitions it lost (its unsent records expire: the message
/// timeout is below the session timeout), so no late copy lands after the new owner's,
/// the first copies stay in source order, and every position still translates exactly.
#[test]
fn a_frozen_instance_writes_nothing_after_losing_its_partitions() {
    testbed();
    let topic = unique("zombie");
    create_topic(us_east(), &topic, 4, &[]);
    let (_dir, path) = shared_config(&topic, "", FAST_GROUP);
    let target_topic = format!("us-east.{topic}");
    let done = Arc::new(AtomicBool::new(false));
    let producing = {
        let (topic, done) = (topic.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                produce(us_east(), &topic, &records("z", n..n + 500, 4, 1_000));
                n += 500;
                std::thread::sleep(Duration::from_millis(100));
            }
            n
        })
    };
    let a = Strait::start(&path);
    wait_for("the first instance to own the flow", Duration::from_secs(60), || {
        a.log_text().contains("partitions assigned").then_some(())
    });
    let mut b = Strait::start(&path);
    wait_for("both instances to own partitions", Duration::from_secs(60), || {
        b.log_text().contains("partitions assigned").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    a.freeze();
    std::thread::sleep(Duration::from_secs(12));
    a.thaw();
    std::thread::sleep(Duration::from_secs(8));
    done.store(true, Ordering::SeqCst);
    let produced = producing.join().unwrap();
    wait_for_count(eu_west(), &target_topic, produced, Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(3));
    let mut a = a;
    a.terminate();
    b.terminate();

    let source = read_all(us_east(), &topic);
    let target = read_all(eu_west(), &target_topic);
    let (s, t) = (by_partition(&source), by_partition(&target));
    for (p, want) in &s {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&Rec> = t[p].iter().filter(|r| seen.insert(r.key.clone())).collect();
        assert_eq!(firsts.len(), want.len(), "partition {p}: records missing");
        assert!(firsts.iter().zip(want).all(|(a, b)| *a == b), "partition {p}: first copies out of order");
    }
    // The new owner re-sends at most once per partition, from the last position the
    // frozen owner stored. Any further step back in source order would be the frozen
    // instance's late copies landing after the new owner's.
    for (p, want) in &s {
        let back = rewinds(want, &t[p]);
        assert!(
            back.len() <= 1,
            "partition {p}: copies went back in source order {} times (at target offsets {back:?}); \
             batches by producer: {:?}",
            back.len(),
            batch_producers(&target_topic, *p)
        );
    }
    assert!(
        a.log_text().contains("lost its partitions"),
        "the frozen instance must notice it was evicted:\n{}",
        a.log_text()
    );
    for p in 0..4 {
        assert_translation_exact(&topic, &target_topic, p);
    }
}

/// Defect 5a: a record larger than `max_in_flight_bytes` is mirrored (alone), not
/// waited on forever.
#[test]
fn a_record_larger_than_the_in_flight_bound_is_mirrored() {
    testbed();
    let topic = unique("oversized");
    create_topic(us_east(), &topic, 1, &[("max.message.bytes", "8388608")]);
    let mut recs = records("o", 0..20, 1, 100);
    recs[10].value = Some(noise(3_000_000, 11));
    produce(us_east(), &topic, &recs);
    let (_dir, path, _) = config(&topic, "max_in_flight_bytes = 1048576\n", "");
    let strait = Strait::start(&path);
    let target = wait_for_count(eu_west(), &format!("us-east.{topic}"), 20, Duration::from_secs(60));
    assert_eq!(target, recs, "every record, in order, the large one intact");
    drop(strait);
}

/// Defect 5b: source retention removes records before they were mirrored. strait
/// cannot bring them back, but it must not pass over them silently: it counts them
/// (`strait_source_records_lost_total`) and logs an error naming the range.
#[test]
fn records_lost_to_source_retention_are_counted_and_named() {
    testbed();
    let topic = unique("retention");
    create_topic(us_east(), &topic, 1, &[]);
    produce(us_east(), &topic, &records("l", 0..100, 1, 50));
    let (_dir, path, admin) = config(&topic, "", "");
    let target_topic = format!("us-east.{topic}");
    let mut strait = Strait::start(&path);
    wait_for_count(eu_west(), &target_topic, 100, Duration::from_secs(60));
    strait.terminate();
    // While strait is down, 100 more arrive and retention removes 50 of them unmirrored.
    produce(us_east(), &topic, &records("l", 100..200, 1, 50));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("delete.json");
    std::fs::write(
        &spec,
        format!(r#"{{"partitions":[{{"topic":"{topic}","partition":0,"offset":150}}],"version":1}}"#),
    )
    .unwrap();
    let out = testbed_cmd(&["tool", "us-east", "kafka-delete-records", "--offset-json-file", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let strait = Strait::start(&path);
    wait_for_count(eu_west(), &target_topic, 150, Duration::from_secs(60));
    let lost = wait_for("the loss to be counted", Duration::from_secs(30), || {
        metric(&admin, "strait_source_records_lost_total{").filter(|n| *n > 0.0)
    });
    assert_eq!(lost, 50.0);
    let log = strait.log_text();
    assert!(log.contains(&format!("{topic}[0]")) && log.contains("100..150"), "the error must name the range:\n{log}");
}

/// Sets a produce quota for one client id on eu-west (bytes per second).
fn target_quota(client_id: &str, bytes_per_second: u64) {
    let out = testbed_cmd(&[
        "tool",
        "eu-west",
        "kafka-configs",
        "--alter",
        "--entity-type",
        "clients",
        "--entity-name",
        client_id,
        "--add-config",
        &format!("producer_byte_rate={bytes_per_second}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Defect 6: with a slow target, a rebalance waits only for the records of the
/// partitions it moves, so it neither times out nor stops the flow.
#[test]
fn a_rebalance_with_a_slow_target_does_not_stop_the_flow() {
    testbed();
    let topic = unique("slow");
    create_topic(us_east(), &topic, 6, &[]);
    let client = unique("strait-slow");
    let sections = format!("{FAST_GROUP}[clusters.eu-west.producer]\n\"client.id\" = \"{client}\"\n");
    let (_dir, path) = shared_config(&topic, "", &sections);
    target_quota(&client, 500_000);
    // 40 MiB waiting on the source: far more than the target takes in 30 s (incompressible,
    // so that the quota counts every byte).
    let mut recs = records("w", 0..40_000, 6, 0);
    for (i, r) in recs.iter_mut().enumerate() {
        let mut value = r.value.take().unwrap();
        value.extend(noise(1_000, i as u64 + 1));
        r.value = Some(value);
    }
    produce(us_east(), &topic, &recs);
    let mut a = Strait::start(&path);
    std::thread::sleep(Duration::from_secs(8));
    let mut b = Strait::start(&path);
    let started = Instant::now();
    wait_for("the second instance to get partitions", Duration::from_secs(60), || {
        b.log_text().contains("partitions assigned").then_some(())
    });
    eprintln!("rebalance completed after {:?}", started.elapsed());
    std::thread::sleep(Duration::from_secs(5));
    assert!(a.is_running(), "the first instance stopped during the rebalance:\n{}", a.log_text());
    assert!(b.is_running(), "{}", b.log_text());
    target_quota(&client, 1_000_000_000);
    let target = wait_for_every(eu_west(), &format!("us-east.{topic}"), &recs, Duration::from_secs(180));
    let (s, t) = (by_partition(&recs), by_partition(&target));
    for (p, want) in &s {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&Rec> = t[p].iter().filter(|r| seen.insert(r.key.clone())).collect();
        assert_eq!(firsts.len(), want.len(), "partition {p}: records missing");
        assert!(firsts.iter().zip(want).all(|(a, b)| a.value == b.value), "partition {p}: order");
    }
    a.terminate();
    b.terminate();
}

/// Defect 10: under steady backpressure (a target slower than the source), fetching is
/// not paused and resumed over and over: each pause throws away prefetched data.
#[test]
fn backpressure_does_not_make_fetching_flap() {
    testbed();
    let topic = unique("flap");
    create_topic(us_east(), &topic, 3, &[]);
    let client = unique("strait-flap");
    let sections = format!("[clusters.eu-west.producer]\n\"client.id\" = \"{client}\"\n");
    let (_dir, path, admin) = config(&topic, "max_in_flight_bytes = 2097152\n", &sections);
    target_quota(&client, 2_000_000);
    let mut recs = records("f", 0..30_000, 3, 0);
    for (i, r) in recs.iter_mut().enumerate() {
        let mut value = r.value.take().unwrap();
        value.extend(noise(1_000, i as u64 + 1));
        r.value = Some(value);
    }
    produce(us_east(), &topic, &recs);
    let strait = Strait::start(&path);
    std::thread::sleep(Duration::from_secs(15));
    let pauses = metric(&admin, "strait_fetch_pauses_total{").expect("strait_fetch_pauses_total is exported");
    let mirrored: i64 = end_offsets(eu_west(), &format!("us-east.{topic}")).values().sum();
    eprintln!("{pauses} pauses while {mirrored} records were mirrored in 15 s");
    assert!(mirrored > 5_000, "the flow must keep moving at the target's pace");
    assert!(pauses <= 3.0, "fetching paused {pauses} times under steady backpressure");
    target_quota(&client, 1_000_000_000);
    drop(strait);
}

/// Diagnosis aid (not part of the suite): `STRAIT_DIAG_TOPIC=<source topic>
/// STRAIT_DIAG_PARTITION=<n> cargo test --release --test faults diagnose -- --ignored
/// --nocapture` prints the source offsets missing on the target and the order of copies.
#[test]
#[ignore]
fn diagnose() {
    let topic = std::env::var("STRAIT_DIAG_TOPIC").unwrap();
    let partition: i32 = std::env::var("STRAIT_DIAG_PARTITION").unwrap().parse().unwrap();
    let source = read_partition(us_east(), &topic, partition);
    let target = read_partition(eu_west(), &format!("us-east.{topic}"), partition);
    let index: std::collections::HashMap<Vec<u8>, i64> =
        source.iter().map(|(o, k, _)| (k.clone().unwrap(), *o)).collect();
    let copies: Vec<i64> = target.iter().map(|(_, k, _)| index[k.as_ref().unwrap()]).collect();
    let have: std::collections::HashSet<i64> = copies.iter().copied().collect();
    let mut missing: Vec<(i64, i64)> = Vec::new();
    for (o, _, _) in &source {
        if !have.contains(o) {
            match missing.last_mut() {
                Some(r) if r.1 + 1 == *o => r.1 = *o,
                _ => missing.push((*o, *o)),
            }
        }
    }
    eprintln!("source {} records, target {} copies, missing ranges {missing:?}", source.len(), target.len());
    let mut runs: Vec<(i64, i64, i64)> = Vec::new(); // (target start, source start, len)
    for (pos, s) in copies.iter().enumerate() {
        match runs.last_mut() {
            Some(r) if r.1 + r.2 == *s => r.2 += 1,
            _ => runs.push((target[pos].0, *s, 1)),
        }
    }
    eprintln!("copy runs (target offset, source offset, len): {runs:?}");
}

/// Defect 9: a transactional source (a commit marker after every 50 records) needs few
/// map records: the gaps stay inside runs and chunks pack the runs. Every position,
/// markers included, still translates exactly.
#[test]
fn a_transactional_source_needs_few_map_records() {
    testbed();
    let topic = unique("txmap");
    create_topic(us_east(), &topic, 1, &[]);
    let tx: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", us_east())
        .set("transactional.id", unique("tx"))
        .set("linger.ms", "0")
        .create()
        .unwrap();
    use rdkafka::producer::Producer;
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    let transactions = 200;
    for t in 0..transactions {
        tx.begin_transaction().unwrap();
        send_all(&tx, &topic, &records(&format!("t{t}"), 0..50, 1, 20));
        tx.commit_transaction(Duration::from_secs(30)).unwrap();
    }
    let (_dir, path, _) = config(&topic, "", "");
    let mut strait = Strait::start(&path);
    let target_topic = format!("us-east.{topic}");
    wait_for_count(eu_west(), &target_topic, transactions * 50, Duration::from_secs(120));
    let (status, _) = strait.terminate();
    assert!(status.success(), "{}", strait.log_text());

    let flow: strait::config::FlowConfig =
        serde_json::from_value(serde_json::json!({"source": "us-east", "target": "eu-west", "topics": [".*"]}))
            .unwrap();
    let mut reader = strait::offset_map::MapReader::new(&cluster("eu-west", eu_west()), &flow).unwrap();
    reader.catch_up(&cluster("eu-west", eu_west()), Duration::from_secs(30)).unwrap();
    let stored = reader.map.stored(&topic, 0).expect("a map for the topic");
    let runs: Vec<_> = reader.map.partition(&topic, 0).runs().cloned().collect();
    eprintln!(
        "{transactions} transactions: {} map records, {} runs, {} gaps",
        stored.records(),
        runs.len(),
        runs.iter().map(|r| r.gaps.len()).sum::<usize>()
    );
    assert!(stored.records() <= 4, "{} map records for {transactions} transactions", stored.records());
    assert_translation_exact(&topic, &target_topic, 0);
}

/// Defects 8 and 9 measured at the size the review asked for (`scripts/bench-gappy`, not
/// in the default suite): a 1M-record transactional source (a commit marker after every
/// 1,000 records, so 1,000 gaps) mirrored with nobody scraping `/metrics`. Prints the
/// map records the partition needed and strait's memory (current and peak RSS), and
/// checks that every position still translates exactly.
#[test]
#[ignore]
fn a_million_record_transactional_source_needs_few_map_records_and_bounded_memory() {
    let total: usize = std::env::var("GAPPY_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let per_transaction = 1_000;
    testbed();
    let topic = unique("gappy");
    create_topic(us_east(), &topic, 1, &[]);
    let tx: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", us_east())
        .set("transactional.id", unique("tx"))
        .set("linger.ms", "5")
        .create()
        .unwrap();
    use rdkafka::producer::Producer;
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    for t in 0..total / per_transaction {
        tx.begin_transaction().unwrap();
        send_all(&tx, &topic, &records(&format!("t{t}"), 0..per_transaction, 1, 100));
        tx.commit_transaction(Duration::from_secs(30)).unwrap();
    }
    let (_dir, path, _) = config(&topic, "", "");
    let mut strait = Strait::start(&path);
    let pid = strait.child.id();
    let target_topic = format!("us-east.{topic}");
    let started = std::time::Instant::now();
    wait_for("every record mirrored", Duration::from_secs(600), || {
        (end_offsets(eu_west(), &target_topic).get(&0).copied().unwrap_or(0) >= total as i64).then_some(())
    });
    let mirrored_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let (rss, peak) = (kib("VmRSS:") / 1024, kib("VmHWM:") / 1024);
    let (exit, _) = strait.terminate();
    assert!(exit.success(), "{}", strait.log_text());

    let flow: strait::config::FlowConfig =
        serde_json::from_value(serde_json::json!({"source": "us-east", "target": "eu-west", "topics": [".*"]}))
            .unwrap();
    let mut reader = strait::offset_map::MapReader::new(&cluster("eu-west", eu_west()), &flow).unwrap();
    reader.catch_up(&cluster("eu-west", eu_west()), Duration::from_secs(60)).unwrap();
    let stored = reader.map.stored(&topic, 0).expect("a map for the topic");
    let runs: Vec<_> = reader.map.partition(&topic, 0).runs().cloned().collect();
    println!(
        "{total} records in {} transactions mirrored in {:.1} s, no scrape: {} map records, {} runs, {} gaps; \
         strait RSS {rss} MiB, peak {peak} MiB",
        total / per_transaction,
        mirrored_in.as_secs_f64(),
        stored.records(),
        runs.len(),
        runs.iter().map(|r| r.gaps.len()).sum::<usize>()
    );
    assert_translation_exact(&topic, &target_topic, 0);
}
