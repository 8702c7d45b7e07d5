//! Region outages, for real: a cluster is stopped and restarted. The tests of this binary
//! take turns (`ONE_OUTAGE_AT_A_TIME`), and cargo runs test binaries one after another,
//! so nothing else runs while a cluster is down.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

static ONE_OUTAGE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn outage_slot() -> std::sync::MutexGuard<'static, ()> {
    ONE_OUTAGE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Brings us-east back even when an assertion fails.
struct RestoreUsEast;

impl Drop for RestoreUsEast {
    fn drop(&mut self) {
        let out = testbed_cmd(&["up", "us-east"]);
        if !out.status.success() {
            eprintln!("could not restart us-east: {}", stderr(&out));
        }
    }
}

/// Brings eu-west back even when an assertion fails, so later test binaries find it up.
struct RestoreEuWest;

impl Drop for RestoreEuWest {
    fn drop(&mut self) {
        let out = testbed_cmd(&["up", "eu-west"]);
        if !out.status.success() {
            eprintln!("could not restart eu-west: {}", stderr(&out));
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn target_outage_pauses_then_recovers_without_loss() {
    let _slot = outage_slot();
    testbed();
    let topic = unique("outage");
    create_topic(us_east(), &topic, 3, &[]);
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("127.0.0.1:{admin_port}");
    let cfg = config_with_flows(&format!(
        "{}max_in_flight_bytes = 2097152\n",
        flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
    ))
    .replace("127.0.0.1:0", &admin);
    let (_dir, path) = write_config(&cfg);
    let target_topic = format!("us-east.{topic}");
    let mut strait = Strait::start(&path);
    let first: Vec<Rec> =
        (0..3_000).map(|i| Rec::keyed(i % 3, &format!("a{i}"), &"x".repeat(200), now() + i as i64)).collect();
    produce(us_east(), &topic, &first);
    wait_for_count(eu_west(), &target_topic, first.len(), Duration::from_secs(60));

    // The region goes down.
    let _restore = RestoreEuWest;
    let out = testbed_cmd(&["down", "eu-west"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // `strait check` names the unreachable region and exits 1.
    let (_local_dir, local) = local_example_config();
    let out = common::strait(&["check", "--config", local.to_str().unwrap(), "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("cluster eu-west ({}): UNREACHABLE", eu_west())), "{}", stdout(&out));
    assert!(stderr(&out).contains("unreachable cluster(s): eu-west"), "{}", stderr(&out));

    // Records keep arriving on the source: 40 MiB, far more than the 2 MiB in-flight bound.
    let during: Vec<Rec> =
        (0..20_000).map(|i| Rec::keyed(i % 3, &format!("b{i}"), &"y".repeat(2_000), now() + i as i64)).collect();
    produce(us_east(), &topic, &during);
    let rss_before = rss_kib(strait.child.id());
    std::thread::sleep(Duration::from_secs(8));
    let rss_during = rss_kib(strait.child.id());
    assert!(strait.is_running(), "strait must ride out a target outage:\n{}", strait.log_text());
    assert_eq!(metric(&admin, "strait_flow_paused"), Some(1.0), "fetching should be paused while the target is down");
    eprintln!("RSS before {rss_before} KiB, during outage {rss_during} KiB");
    assert!(rss_during < 400 * 1024, "memory must stay bounded during an outage: {rss_during} KiB");

    // The region comes back: strait resumes by itself and nothing is missing.
    let back = Instant::now();
    let out = testbed_cmd(&["up", "eu-west"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut all = first.clone();
    all.extend(during);
    let target = wait_for_every(eu_west(), &target_topic, &all, Duration::from_secs(180));
    eprintln!("caught up {:?} after eu-west returned", back.elapsed());
    let (s, t) = (by_partition(&all), by_partition(&target));
    for (p, want) in s {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<Rec> = t[&p].iter().filter(|r| seen.insert(r.key.clone())).cloned().collect();
        assert!(firsts == want, "partition {p}: records missing or out of order after the outage");
    }
    wait_for("fetching resumed", Duration::from_secs(30), || {
        (metric(&admin, "strait_flow_paused") == Some(0.0)).then_some(())
    });
    let (status, _) = strait.terminate();
    assert!(status.success());
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Defect 7: the source region is gone for good. `strait failover` still moves a group,
/// from the last checkpoints already on the target, and says what may be missing (the
/// RPO per partition); the group then reads on the target exactly where it stopped.
#[test]
fn failover_works_with_the_source_region_gone() {
    let _slot = outage_slot();
    testbed();
    let topic = unique("srcdown");
    create_topic(us_east(), &topic, 2, &[]);
    let recs: Vec<Rec> = (0..2_000).map(|i| Rec::keyed(i % 2, &format!("k{i}"), &format!("v{i}"), now())).collect();
    produce(us_east(), &topic, &recs);
    let cfg = config_with_flows(&format!(
        "{}checkpoint_interval_ms = 500\n",
        flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
    ));
    let (_dir, path) = write_config(&cfg);
    let target_topic = format!("us-east.{topic}");
    let _strait = Strait::start(&path);
    wait_for_count(eu_west(), &target_topic, recs.len(), Duration::from_secs(60));
    let group = unique("app");
    let read_source = consume_as_group(us_east(), &topic, &group, 700);
    assert_eq!(read_source.values().map(Vec::len).sum::<usize>(), 700);
    // Let a checkpoint round carry the group's position to eu-west.
    wait_for("the group's checkpoint", Duration::from_secs(60), || {
        let out = strait(&[
            "offsets",
            "translate",
            "--config",
            path.to_str().unwrap(),
            "--flow",
            "us-east->eu-west",
            "--group",
            &group,
        ]);
        if std::env::var("STRAIT_TEST_DEBUG").is_ok() {
            eprintln!("{}{}", stdout(&out), stderr(&out));
        }
        (stdout(&out).matches("exact").count() == read_source.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));

    let _restore = RestoreUsEast;
    let out = testbed_cmd(&["down", "us-east"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        strait(&["failover", "--config", path.to_str().unwrap(), "--flow", "us-east->eu-west", "--group", &group]);
    assert!(out.status.success(), "failover without the source failed:\n{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("us-east is unreachable"), "{text}");
    assert!(text.contains("RPO"), "the output must state what may be missing:\n{text}");
    let read_target = consume_as_group(eu_west(), &target_topic, &group, usize::MAX);
    let mut union = read_source.clone();
    for (p, values) in read_target {
        union.entry(p).or_default().extend(values);
    }
    let mut expected: std::collections::BTreeMap<i32, Vec<String>> = std::collections::BTreeMap::new();
    for r in &recs {
        expected.entry(r.partition).or_default().push(String::from_utf8(r.value.clone().unwrap()).unwrap());
    }
    assert_eq!(union, expected, "source reads then target reads must be the source sequence exactly");
}
