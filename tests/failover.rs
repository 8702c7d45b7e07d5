//! Exact offset translation, failover and failback, with a real Java consumer group:
//! Kafka's console consumer reads part of a topic on the source, strait moves the group,
//! and the same group reads the rest on the target. The union of the reads must be the
//! source sequence exactly: no duplicates, no gaps.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn records(prefix: &str, n: usize, partitions: i32) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            Rec::keyed((i % partitions as usize) as i32, &format!("{prefix}-k{i}"), &format!("{prefix}-v{i}"), now())
        })
        .collect()
}

/// Values per partition, as Kafka's console consumer in `group` reads them: at most
/// `max` records (all when None), one record per poll so the commit is exact.
fn console_read(cluster: &str, topic: &str, group: &str, max: Option<usize>) -> BTreeMap<i32, Vec<String>> {
    let mut args: Vec<String> = vec![
        "tool",
        cluster,
        "kafka-console-consumer",
        "--topic",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--command-property",
        "max.poll.records=1",
        "--command-property",
        "isolation.level=read_committed",
        "--formatter-property",
        "print.partition=true",
        "--timeout-ms",
        "15000",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(max) = max {
        args.extend(["--max-messages".to_string(), max.to_string()]);
    }
    let out = Command::new(repo_root().join("deploy/local/testbed")).args(&args).output().unwrap();
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((p, value)) = line.strip_prefix("Partition:").and_then(|l| l.split_once('\t')) {
            by_partition.entry(p.parse().unwrap()).or_default().push(value.to_string());
        }
    }
    by_partition
}

fn values(records: &[Rec]) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(String::from_utf8(r.value.clone().unwrap()).unwrap());
    }
    out
}

fn concat(a: &BTreeMap<i32, Vec<String>>, b: &BTreeMap<i32, Vec<String>>) -> BTreeMap<i32, Vec<String>> {
    let mut out = a.clone();
    for (p, v) in b {
        out.entry(*p).or_default().extend(v.iter().cloned());
    }
    out.retain(|_, v| !v.is_empty());
    out
}

fn count(m: &BTreeMap<i32, Vec<String>>) -> usize {
    m.values().map(Vec::len).sum()
}

struct Setup {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    topic: String,
    target_topic: String,
    flow: &'static str,
}

fn setup(name: &str, partitions: i32, topic_configs: &[(&str, &str)]) -> Setup {
    testbed();
    let topic = unique(name);
    create_topic(us_east(), &topic, partitions, topic_configs);
    let cfg = config_with_flows(&format!(
        "{}checkpoint_interval_ms = 1000\n",
        flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
    ));
    let (dir, config) = write_config(&cfg);
    Setup { _dir: dir, config, target_topic: format!("us-east.{topic}"), topic, flow: "us-east->eu-west" }
}

impl Setup {
    fn strait(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", self.config.to_str().unwrap(), "--flow", self.flow]);
        strait(&all)
    }

    fn failover(&self, group: &str) {
        let out = self.strait(&["failover", "--group", group, "--wait-for-zero-lag", "--timeout", "120s"]);
        assert!(out.status.success(), "failover failed:\n{}\n{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("failed over from us-east to eu-west"), "{}", stdout(&out));
    }

    /// Consume `first` records on the source, fail over, consume the rest on the
    /// target, and compare the union with the source sequence.
    fn check_exact_failover(&self, source_records: &BTreeMap<i32, Vec<String>>, first: Option<usize>, group: &str) {
        let read_source = match first {
            Some(n) => console_read("us-east", &self.topic, group, Some(n)),
            None => BTreeMap::new(),
        };
        self.failover(group);
        let read_target = console_read("eu-west", &self.target_topic, group, None);
        let union = concat(&read_source, &read_target);
        assert_eq!(
            count(&union),
            count(source_records),
            "read {} on us-east + {} on eu-west",
            count(&read_source),
            count(&read_target)
        );
        assert_eq!(&union, source_records, "the reads must be the source sequence exactly");
    }
}

#[test]
fn failover_exact_in_the_middle_and_failback() {
    let s = setup("fo-middle", 3, &[]);
    let recs = records("m", 3_000, 3);
    produce(us_east(), &s.topic, &recs);
    let _strait = Strait::start(&s.config);
    let group = unique("app");
    let read_source = console_read("us-east", &s.topic, &group, Some(700));
    assert_eq!(count(&read_source), 700);
    s.failover(&group);
    // The group continues on eu-west for a while, then moves back.
    let read_target = console_read("eu-west", &s.target_topic, &group, Some(1_000));
    assert_eq!(count(&read_target), 1_000);
    let out = s.strait(&["failback", "--group", &group]);
    assert!(out.status.success(), "failback failed:\n{}\n{}", stdout(&out), stderr(&out));
    let read_back = console_read("us-east", &s.topic, &group, None);
    let union = concat(&concat(&read_source, &read_target), &read_back);
    assert_eq!(union, values(&recs), "source, then target, then source again must read each record once");
}

#[test]
fn failover_exact_at_zero_at_the_end_and_far_behind() {
    let s = setup("fo-edges", 2, &[]);
    let recs = records("e", 12_000, 2);
    produce(us_east(), &s.topic, &recs);
    let _strait = Strait::start(&s.config);
    let source = values(&recs);

    // At offset 0: committed offsets exist, nothing consumed.
    let at_zero = unique("zero");
    let out = testbed_cmd(&[
        "tool",
        "us-east",
        "kafka-consumer-groups",
        "--group",
        &at_zero,
        "--topic",
        &s.topic,
        "--reset-offsets",
        "--to-earliest",
        "--execute",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.check_exact_failover(&source, None, &at_zero);

    // At the end: everything consumed on the source, nothing left on the target.
    s.check_exact_failover(&source, Some(12_000), &unique("end"));

    // Far behind: more than 10k records behind the end (MM2 cannot translate these).
    s.check_exact_failover(&source, Some(150), &unique("behind"));
}

#[test]
fn failover_exact_across_aborted_transactions() {
    let s = setup("fo-tx", 2, &[]);
    let tx: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", us_east()).set("transactional.id", unique("tx")).create().unwrap();
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    let mut committed = Vec::new();
    for round in 0..8 {
        let batch = records(&format!("t{round}"), 200, 2);
        tx.begin_transaction().unwrap();
        send_all(&tx, &s.topic, &batch);
        tx.flush(Duration::from_secs(30)).unwrap();
        if round % 3 == 1 {
            tx.abort_transaction(Duration::from_secs(30)).unwrap();
        } else {
            tx.commit_transaction(Duration::from_secs(30)).unwrap();
            committed.extend(batch);
        }
    }
    let _strait = Strait::start(&s.config);
    s.check_exact_failover(&values(&committed), Some(450), &unique("app"));
}

#[test]
fn failover_exact_across_compaction_gaps() {
    // Every other record repeats one of 50 keys; compaction removes all but the last of
    // each, leaving gaps all through the source log before strait mirrors it.
    let s = setup(
        "fo-compact",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ],
    );
    let recs: Vec<Rec> = (0..4_000)
        .map(|i| {
            let key = if i % 2 == 0 { format!("dup-{}", (i / 2) % 50) } else { format!("u-{i}") };
            Rec::keyed(0, &key, &format!("c-v{i}"), now())
        })
        .collect();
    produce(us_east(), &s.topic, &recs);
    // Later appends roll the segment so that the cleaner can compact the earlier ones.
    let source = wait_for("compaction to leave gaps", Duration::from_secs(120), || {
        produce(us_east(), &s.topic, &[Rec::keyed(0, "roll", "roll", now())]);
        let read = read_all(us_east(), &s.topic);
        (read.iter().filter(|r| r.value.as_deref() != Some(b"roll")).count() < 2_500).then_some(read)
    });
    let end: i64 = end_offsets(us_east(), &s.topic).values().sum();
    assert!((source.len() as i64) < end, "the source log has gaps");
    let _strait = Strait::start(&s.config);
    s.check_exact_failover(&values(&source), Some(source.len() / 3), &unique("app"));
}

#[test]
fn failover_exact_after_strait_restarts() {
    let s = setup("fo-restart", 3, &[]);
    let first_half = records("r1", 2_000, 3);
    produce(us_east(), &s.topic, &first_half);
    let mut strait = Strait::start(&s.config);
    let group = unique("app");
    let read_source = console_read("us-east", &s.topic, &group, Some(900));
    wait_for_count(eu_west(), &s.target_topic, 2_000, Duration::from_secs(60));
    strait.kill9();
    let second_half = records("r2", 2_000, 3);
    produce(us_east(), &s.topic, &second_half);
    let _again = Strait::start(&s.config);
    s.failover(&group);
    let read_target = console_read("eu-west", &s.target_topic, &group, None);
    let mut all = first_half;
    all.extend(second_half);
    // A crash may leave duplicate copies on the target; the group must still see each
    // record once.
    assert_eq!(concat(&read_source, &read_target), values(&all));
}

#[test]
fn failover_refuses_a_group_active_on_the_target() {
    let s = setup("fo-active", 1, &[]);
    produce(us_east(), &s.topic, &records("a", 100, 1));
    let _strait = Strait::start(&s.config);
    wait_for_count(eu_west(), &s.target_topic, 100, Duration::from_secs(60));
    let group = unique("app");
    console_read("us-east", &s.topic, &group, Some(10));
    // A consumer of the group is running on eu-west.
    let mut member = Command::new(repo_root().join("deploy/local/testbed"))
        .args([
            "tool",
            "eu-west",
            "kafka-console-consumer",
            "--topic",
            &s.target_topic,
            "--group",
            &group,
            "--timeout-ms",
            "60000",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the member to join", Duration::from_secs(30), || {
        let out =
            testbed_cmd(&["tool", "eu-west", "kafka-consumer-groups", "--describe", "--group", &group, "--members"]);
        stdout(&out).contains("console-consumer").then_some(())
    });
    let out = s.strait(&["failover", "--group", &group]);
    let _ = member.kill();
    let _ = member.wait();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("active member(s) on `eu-west`"), "{}", stderr(&out));
}

/// MirrorMaker 2's own client library reads strait's checkpoints and gets the same
/// offsets as `strait offsets translate`.
#[test]
fn mirrormaker2_remote_cluster_utils_agrees() {
    let s = setup("fo-mm2", 3, &[]);
    produce(us_east(), &s.topic, &records("x", 1_500, 3));
    let _strait = Strait::start(&s.config);
    let group = unique("app");
    console_read("us-east", &s.topic, &group, Some(400));
    wait_for_count(eu_west(), &s.target_topic, 1_500, Duration::from_secs(60));

    let ours = wait_for("translation", Duration::from_secs(60), || {
        let out = s.strait(&["offsets", "translate", "--group", &group]);
        let rows: Vec<String> = stdout(&out)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 5 && f[4] != "-").then(|| format!("{} {} {}", f[3], f[1], f[4]))
            })
            .collect();
        (rows.len() == 3).then_some(rows)
    });
    let java = repo_root().join("tests/java/TranslateOffsets.java");
    let theirs = wait_for("MM2 to see all checkpoints", Duration::from_secs(60), || {
        let out = testbed_cmd(&["java", java.to_str().unwrap(), eu_west(), "us-east", &group]);
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        (lines == ours).then_some(lines)
    });
    assert_eq!(theirs, ours);
}

/// Without any command, strait keeps an idle group's offsets on the target in step
/// (group offset sync): consumers that simply switch regions resume exactly.
#[test]
fn group_offset_sync_lets_an_idle_group_switch_exactly() {
    let s = setup("fo-sync", 2, &[]);
    let recs = records("s", 2_000, 2);
    produce(us_east(), &s.topic, &recs);
    let _strait = Strait::start(&s.config);
    let group = unique("app");
    let read_source = console_read("us-east", &s.topic, &group, Some(777));
    // The synced offsets on eu-west reach the translated position (never more).
    let expected = wait_for("translation", Duration::from_secs(60), || {
        let out = s.strait(&["offsets", "translate", "--group", &group]);
        let rows: Vec<(String, String)> = stdout(&out)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 5 && f[4] != "-").then(|| (f[1].to_string(), f[4].to_string()))
            })
            .collect();
        (rows.len() == 2).then_some(rows)
    });
    wait_for("group offsets synced to eu-west", Duration::from_secs(60), || {
        let out = testbed_cmd(&["tool", "eu-west", "kafka-consumer-groups", "--describe", "--group", &group]);
        let text = stdout(&out);
        expected
            .iter()
            .all(|(p, o)| {
                text.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1] == s.target_topic && f[2] == p && f[3] == o
                })
            })
            .then_some(())
    });
    let read_target = console_read("eu-west", &s.target_topic, &group, None);
    assert_eq!(concat(&read_source, &read_target), values(&recs));

    // `strait status --direct` asks the clusters: everything is mirrored.
    let out = strait(&["status", "--config", s.config.to_str().unwrap(), "--direct"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Lagging partitions are listed under the flow; this topic's must not be (the flow
    // also carries `heartbeats`, which other tests' instances keep writing).
    assert!(stdout(&out).contains("us-east->eu-west"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(&format!("{}[", s.topic)), "a partition still lags: {}", stdout(&out));
}

/// `--wait-for-zero-lag` that runs out of time reports the records at risk (the RPO)
/// and changes nothing.
#[test]
fn failover_reports_the_rpo_when_replication_cannot_catch_up() {
    let s = setup("fo-rpo", 2, &[]);
    // No strait runs: nothing gets mirrored.
    produce(us_east(), &s.topic, &records("p", 300, 2));
    let group = unique("app");
    console_read("us-east", &s.topic, &group, Some(100));
    let out = s.strait(&["failover", "--group", &group, "--wait-for-zero-lag", "--timeout", "3s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("300 record(s) not yet on `eu-west` (the RPO if you fail over now)"), "{err}");
    assert!(stdout(&out).contains("waiting for replication: 300 record(s)"), "{}", stdout(&out));
    let described = testbed_cmd(&["tool", "eu-west", "kafka-consumer-groups", "--describe", "--group", &group]);
    assert!(!stdout(&described).contains(&s.target_topic), "nothing may be committed on eu-west");
}

/// The offset map stays bounded: chunks whose records the source's retention removed are
/// pruned, and translation stays exact afterwards.
#[test]
fn offset_map_is_pruned_below_the_source_log_start() {
    testbed();
    let topic = unique("fo-prune");
    create_topic(us_east(), &topic, 1, &[]);
    // 600 transactions of 5 records: a commit marker after each. The gaps stay inside
    // the runs; the first chunk closes when it holds 512 of them.
    let tx: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", us_east())
        .set("transactional.id", unique("tx"))
        .set("linger.ms", "0")
        .create()
        .unwrap();
    tx.init_transactions(Duration::from_secs(30)).unwrap();
    let mut all = Vec::new();
    for round in 0..600 {
        let batch = records(&format!("t{round}"), 5, 1);
        tx.begin_transaction().unwrap();
        send_all(&tx, &topic, &batch);
        tx.commit_transaction(Duration::from_secs(30)).unwrap();
        all.extend(batch);
    }
    let cfg = config_with_flows(&format!(
        "{}checkpoint_interval_ms = 500\nheartbeat_interval_ms = 0\ntopics_exclude = [\"heartbeats\"]\n",
        flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
    ));
    let (_dir, path) = write_config(&cfg);
    let _strait = Strait::start(&path);
    let target_topic = format!("us-east.{topic}");
    wait_for_count(eu_west(), &target_topic, all.len(), Duration::from_secs(90));
    let group = unique("app");
    let read_source = console_read("us-east", &topic, &group, Some(2_700));
    let chunks = || map_records(&topic, 0) - 1; // minus the frontier record
    let before = wait_for("the first chunk to close", Duration::from_secs(60), || (chunks() >= 2).then(chunks));

    // Retention (here: delete-records) removes the first 517 transactions and markers,
    // everything the first chunk maps.
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("delete.json");
    std::fs::write(
        &spec,
        format!(r#"{{"partitions":[{{"topic":"{topic}","partition":0,"offset":3102}}],"version":1}}"#),
    )
    .unwrap();
    let out = testbed_cmd(&["tool", "us-east", "kafka-delete-records", "--offset-json-file", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_for("the chunk below the log start to be pruned", Duration::from_secs(60), || {
        (chunks() < before).then_some(())
    });

    // Still exact for a group past the pruned range.
    let out =
        strait(&["failover", "--config", path.to_str().unwrap(), "--flow", "us-east->eu-west", "--group", &group]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let read_target = console_read("eu-west", &target_topic, &group, None);
    assert_eq!(concat(&read_source, &read_target), values(&all));
}
