//! The batched paths that let strait scale, checked for correctness at a small size on
//! the real test bed: lag read with one ListOffsets per broker must equal what a
//! request per partition reads, and group offsets read from `__consumer_offsets` must
//! translate to what the per-group admin path (`strait offsets translate`) computes —
//! including groups deleted on the source, whose commits end in tombstones.
//!
//! The scale itself (thousands of partitions, a thousand groups, idle CPU) is measured
//! by `scripts/scale`, outside the default suite.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPICS: usize = 50;
const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 10;
const GROUPS: usize = 20;

/// Commits `offsets` for `group` from outside the group (as an idle group looks).
fn commit(bootstrap: &str, group: &str, offsets: &[(String, i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
    }
    // On a fresh cluster the first commit creates `__consumer_offsets` and waits for its
    // coordinator to load.
    wait_for(&format!("a commit of {group}"), Duration::from_secs(60), || c.commit(&tpl, CommitMode::Sync).ok());
}

fn committed(bootstrap: &str, group: &str, partitions: &[(String, i32)]) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw().filter(|&o| o >= 0).map(|o| ((e.topic().to_string(), e.partition()), o)))
        .collect()
}

/// What group `g` commits: two topics, a different position in each partition.
fn group_commits(prefix: &str, g: usize) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    for t in [g % TOPICS, (g + 20) % TOPICS] {
        for p in 0..PARTITIONS {
            out.push((format!("{prefix}-t{t}"), p, ((g + p as usize) % PER_PARTITION + 1) as i64));
        }
    }
    out
}

#[test]
fn batched_lag_and_bulk_group_offsets_match_the_per_partition_paths() {
    testbed();
    let prefix = unique("scale");
    let producer = producer(us_east());
    for t in 0..TOPICS {
        let topic = format!("{prefix}-t{t}");
        create_topic(us_east(), &topic, PARTITIONS, &[]);
        let records: Vec<Rec> = (0..PARTITIONS as usize * PER_PARTITION)
            .map(|i| Rec::keyed(i as i32 % PARTITIONS, &format!("k{i}"), &format!("{topic}-v{i}"), now()))
            .collect();
        send_all(&producer, &topic, &records);
    }
    let groups: Vec<String> = (0..GROUPS).map(|g| format!("{prefix}-g{g}")).collect();
    for (g, group) in groups.iter().enumerate() {
        commit(us_east(), group, &group_commits(&prefix, g));
    }
    // A group deleted on the source: its commits end in tombstones and it must not be
    // checkpointed or synced.
    let deleted = &groups[GROUPS - 1];
    block(admin(us_east()).delete_groups(&[deleted.as_str()], &rdkafka::admin::AdminOptions::new()))
        .unwrap()
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });

    let admin_port = free_port();
    let consumer_group = unique("strait-scale");
    let text = config_with_flows(&format!(
        "{}groups = [\"{prefix}-g.*\"]\ncheckpoint_interval_ms = 1000\n",
        flow("us-east", "eu-west", &format!("{prefix}-t.*"), "prefix", &consumer_group)
    ))
    .replace("127.0.0.1:0", &format!("127.0.0.1:{admin_port}"));
    let (_dir, path) = write_config(&text);
    let _strait = Strait::start(&path);

    // Every record mirrored.
    for t in 0..TOPICS {
        let target = format!("us-east.{prefix}-t{t}");
        wait_for(&format!("{target} mirrored"), Duration::from_secs(90), || {
            let ends = end_offsets(eu_west(), &target);
            (ends.len() == PARTITIONS as usize && ends.values().all(|&e| e == PER_PARTITION as i64)).then_some(())
        });
    }

    // Lag: the batched ListOffsets of the running instance equals one request per
    // partition (`strait status --direct`'s path), partition by partition.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let config = strait::config::Config::load(&path).unwrap();
    let ends_of = |status: &[strait::lag::FlowStatus]| -> BTreeMap<(String, i32), (i64, i64, i64)> {
        status[0]
            .partitions
            .iter()
            // Not the heartbeats topic the flow also mirrors: it moves every second.
            .filter(|p| p.topic.starts_with(&prefix))
            .map(|p| ((p.topic.clone(), p.partition), (p.source_end_offset, p.mirrored_position, p.lag_records)))
            .collect()
    };
    let batched = wait_for("every partition in /status caught up", Duration::from_secs(30), || {
        let status = strait::status::fetch(addr).ok()?;
        let ends = ends_of(&status);
        (ends.len() == TOPICS * PARTITIONS as usize && ends.values().all(|&(_, _, lag)| lag == 0)).then_some(ends)
    });
    let direct = ends_of(&strait::status::direct(&config));
    assert_eq!(batched, direct, "batched lag differs from the per-partition path");
    assert!(batched.values().all(|&(end, mirrored, _)| end == PER_PARTITION as i64 && mirrored == end));

    // Group offsets: the target groups, synced from `__consumer_offsets`, hold exactly
    // what the per-group admin path translates; the deleted group holds nothing.
    let ctx = strait::failover::FlowContext::find(&config, "us-east->eu-west").unwrap();
    for (g, group) in groups.iter().enumerate().take(GROUPS - 1) {
        let partitions: Vec<(String, i32)> =
            group_commits(&prefix, g).iter().map(|(t, p, _)| (format!("us-east.{t}"), *p)).collect();
        let expected: BTreeMap<(String, i32), i64> = ctx
            .translate(group)
            .unwrap()
            .into_iter()
            .map(|t| ((t.target_topic, t.partition), t.downstream.expect("exact translation")))
            .collect();
        // Mirrored one to one into empty topics: the translation is the commit itself.
        let commits: BTreeMap<(String, i32), i64> =
            group_commits(&prefix, g).into_iter().map(|(t, p, o)| ((format!("us-east.{t}"), p), o)).collect();
        assert_eq!(expected, commits, "admin-path translation of {group}");
        wait_for(&format!("{group} synced to eu-west"), Duration::from_secs(30), || {
            (committed(eu_west(), group, &partitions) == expected).then_some(())
        });
    }
    let deleted_partitions: Vec<(String, i32)> =
        group_commits(&prefix, GROUPS - 1).iter().map(|(t, p, _)| (format!("us-east.{t}"), *p)).collect();
    assert!(
        committed(eu_west(), deleted, &deleted_partitions).is_empty(),
        "a group deleted on the source was synced to the target"
    );

    // A later commit is picked up from the tail of `__consumer_offsets`.
    let moved = vec![(format!("{prefix}-t0"), 0, 3i64)];
    commit(us_east(), &groups[0], &moved);
    wait_for("a new commit synced", Duration::from_secs(30), || {
        let now = committed(eu_west(), &groups[0], &[(format!("us-east.{prefix}-t0"), 0)]);
        // It was at 1 (group_commits), now 3.
        (now.values().next() == Some(&3)).then_some(())
    });
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (CPU seconds used so far, RSS in MiB, threads) of a process, from /proc.
fn process_usage(pid: u32) -> (f64, f64, usize) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap()
    };
    (ticks / hz, field("VmRSS:") / 1024.0, field("Threads:") as usize)
}

/// Creates `topics` × `partitions` topics with a few records each and `groups` groups
/// with committed offsets, runs strait with its defaults, and prints what an operator
/// sizing it wants to know. `scripts/scale` runs it (see README).
#[test]
#[ignore]
fn scale_report() {
    let (topics, partitions, groups) =
        (env_or("SCALE_TOPICS", 200), env_or("SCALE_PARTITIONS", 4), env_or("SCALE_GROUPS", 1000));
    let idle_seconds = env_or("SCALE_IDLE_SECONDS", 60);
    testbed();
    let prefix = unique("scale");
    let admin_client = admin(us_east());
    let setup = std::time::Instant::now();
    let names: Vec<String> = (0..topics).map(|t| format!("{prefix}-t{t}")).collect();
    for batch in names.chunks(100) {
        let new: Vec<rdkafka::admin::NewTopic> = batch
            .iter()
            .map(|t| rdkafka::admin::NewTopic::new(t, partitions as i32, rdkafka::admin::TopicReplication::Fixed(1)))
            .collect();
        for r in block(admin_client.create_topics(&new, &rdkafka::admin::AdminOptions::new())).unwrap() {
            r.unwrap_or_else(|(name, e)| panic!("create topic {name}: {e}"));
        }
    }
    let producer = producer(us_east());
    for topic in &names {
        let records: Vec<Rec> =
            (0..partitions * 4).map(|i| Rec::keyed((i % partitions) as i32, "k", &"x".repeat(100), now())).collect();
        send_all(&producer, topic, &records);
    }
    for g in 0..groups {
        let topic = &names[g % topics];
        let offsets: Vec<(String, i32, i64)> = (0..partitions as i32).map(|p| (topic.clone(), p, 2)).collect();
        commit(us_east(), &format!("{prefix}-g{g}"), &offsets);
    }
    eprintln!("scale: set up {topics} topics x {partitions} partitions, {groups} groups in {:?}", setup.elapsed());

    let admin_port = free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let text = config_with_flows(&format!(
        "[[flows]]\nsource = \"us-east\"\ntarget = \"eu-west\"\ntopics = [\"{prefix}-t.*\"]\ngroups = [\"{prefix}-g.*\"]\n"
    ))
    .replace("127.0.0.1:0", &admin_addr);
    let (_dir, path) = write_config(&text);
    let started = std::time::Instant::now();
    let strait = Strait::start(&path);
    let pid = strait.child.id();
    let addr: std::net::SocketAddr = admin_addr.parse().unwrap();
    let total = topics * partitions;
    wait_for("every partition caught up", Duration::from_secs(1200), || {
        let status = strait::status::fetch(addr).ok()?;
        let mine: Vec<_> =
            status.first()?.partitions.iter().filter(|p| p.topic.starts_with(&prefix)).cloned().collect();
        (mine.len() == total && mine.iter().all(|p| p.lag_records == 0)).then_some(())
    });
    let caught_up = started.elapsed();
    wait_for("every group checkpointed", Duration::from_secs(600), || {
        (metric(&admin_addr, "strait_checkpoint_groups").unwrap_or(0.0) as usize >= groups).then_some(())
    });
    let checkpointed = started.elapsed();
    // Idle: nothing is produced; measure the CPU strait uses.
    std::thread::sleep(Duration::from_secs(15));
    let (cpu0, _, _) = process_usage(pid);
    let idle_from = std::time::Instant::now();
    let mut rounds = Vec::new();
    while idle_from.elapsed() < Duration::from_secs(idle_seconds as u64) {
        std::thread::sleep(Duration::from_secs(5));
        rounds.extend(metric(&admin_addr, "strait_checkpoint_round_seconds"));
    }
    let (cpu1, rss, threads) = process_usage(pid);
    let idle_cores = (cpu1 - cpu0) / idle_from.elapsed().as_secs_f64();
    let metrics_body =
        Command::new("curl").args(["-sf", &format!("http://{admin_addr}/metrics")]).output().unwrap().stdout;
    let round = rounds.iter().copied().fold(0.0, f64::max);
    let report = format!(
        "| partitions | groups | caught up | all groups checkpointed | idle CPU (cores) | per 1,000 partitions | checkpoint round (max idle) | RSS | threads | /metrics |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {total} ({topics} × {partitions}) | {groups} | {:.1} s | {:.1} s | {idle_cores:.4} | {:.4} | {round:.2} s | {rss:.0} MiB | {threads} | {:.1} MiB, {} lines |\n",
        caught_up.as_secs_f64(),
        checkpointed.as_secs_f64(),
        idle_cores * 1000.0 / total as f64,
        metrics_body.len() as f64 / 1048576.0,
        metrics_body.iter().filter(|&&b| b == b'\n').count(),
    );
    println!("{report}");
    let out = repo_root().join("target/scale-report.txt");
    let mut previous = std::fs::read_to_string(&out).unwrap_or_default();
    previous.push_str(&report);
    std::fs::write(&out, previous).unwrap();
}
