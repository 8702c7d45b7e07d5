//! Shared integration-test harness. Every test binary uses the same two local clusters
//! (`deploy/local/testbed up`, started once per run or reused) and isolates itself with
//! unique topic and group names, so tests run in parallel without seeing each other.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Added to the test bed's default ports (`STRAIT_TESTBED_PORT_OFFSET`, read by
/// deploy/local/testbed too), so that several checkouts can run their suites side by side.
pub fn port_offset() -> u16 {
    std::env::var("STRAIT_TESTBED_PORT_OFFSET").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Bootstrap address of the local `us-east` cluster.
pub fn us_east() -> &'static str {
    static ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDR.get_or_init(|| format!("127.0.0.1:{}", 19092 + port_offset()))
}

/// Bootstrap address of the local `eu-west` cluster.
pub fn eu_west() -> &'static str {
    static ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADDR.get_or_init(|| format!("127.0.0.1:{}", 29092 + port_offset()))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the two local clusters once per test binary (a no-op when they are up).
pub fn testbed() {
    static UP: Once = Once::new();
    UP.call_once(|| {
        let out = testbed_cmd(&["up"]);
        assert!(out.status.success(), "testbed up failed:\n{}\n{}", stdout(&out), stderr(&out));
    });
}

pub fn testbed_cmd(args: &[&str]) -> Output {
    Command::new(repo_root().join("deploy/local/testbed")).args(args).output().expect("run deploy/local/testbed")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000;
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

pub fn strait_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strait"))
}

/// Writes a config file into a fresh temporary directory and returns its path.
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strait.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// A config with both local clusters and the given `[[flows]]` sections.
pub fn config_with_flows(flows: &str) -> String {
    format!(
        "[clusters.us-east]\nbootstrap = \"{us_east}\"\n\n[clusters.eu-west]\nbootstrap = \"{eu_west}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n{flows}",
        us_east = us_east(),
        eu_west = eu_west()
    )
}

/// A one-directional flow selecting topics that match `pattern`, fast intervals.
pub fn flow(source: &str, target: &str, pattern: &str, rename: &str, group: &str) -> String {
    let pattern = pattern.replace('\\', "\\\\");
    format!(
        "[[flows]]\nsource = \"{source}\"\ntarget = \"{target}\"\ntopics = [\"{pattern}\"]\n\
         rename = \"{rename}\"\nconsumer_group = \"{group}\"\nrefresh_interval_ms = 1000\ncommit_interval_ms = 200\n"
    )
}

pub fn strait(args: &[&str]) -> Output {
    Command::new(strait_bin()).args(args).env("STRAIT_LOG", "warn").output().expect("run strait")
}

/// A `strait run` process, killed when dropped.
pub struct Strait {
    pub child: Child,
    pub log: PathBuf,
}

impl Strait {
    pub fn start(config: &Path) -> Strait {
        let log = config.with_extension(format!("{}.log", unique("run")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(strait_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("STRAIT_LOG", std::env::var("STRAIT_TEST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start strait run");
        Strait { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait; returns the exit status and how long shutdown took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status, started.elapsed())
    }

    pub fn kill9(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
        if std::thread::panicking() {
            eprintln!("--- strait log {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap()
}

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = block(admin.create_topics([&t], &AdminOptions::new())).unwrap();
    for r in res {
        r.unwrap_or_else(|(name, e)| panic!("create topic {name}: {e}"));
    }
}

/// Partition count, or None when the topic does not exist.
pub fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).ok()?;
    let t = md.topics().first()?;
    if t.error().is_some() || t.partitions().is_empty() {
        None
    } else {
        Some(t.partitions().len())
    }
}

pub fn topic_names(bootstrap: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap()
}

/// A record as the tests compare it on both sides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn keyed(partition: i32, key: &str, value: &str, timestamp: i64) -> Rec {
        Rec {
            partition,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("h1".into(), Some(format!("{key}-hdr").into_bytes())), ("empty".into(), None)],
            timestamp: Some(timestamp),
        }
    }
}

/// Produces records (with their partition, timestamp and headers) and waits for acks.
pub fn produce(bootstrap: &str, topic: &str, records: &[Rec]) {
    let p = producer(bootstrap);
    send_all(&p, topic, records);
    p.flush(Duration::from_secs(60)).expect("flush");
}

pub fn send_all<C: rdkafka::producer::ProducerContext>(p: &BaseProducer<C>, topic: &str, records: &[Rec])
where
    C::DeliveryOpaque: From<()>,
{
    for r in records {
        loop {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: v.as_deref() });
            }
            let mut rec: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque> =
                BaseRecord::with_opaque_to(topic, ().into()).partition(r.partition).headers(headers);
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v);
            }
            if let Some(ts) = r.timestamp {
                rec = rec.timestamp(ts);
            }
            match p.send(rec) {
                Ok(()) => break,
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    p.poll(Duration::from_millis(50));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
        p.poll(Duration::ZERO);
    }
}

/// Reads every committed record of `topic` (read_committed), per partition in order.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let Some(n) = partitions(bootstrap, topic) else { return Vec::new() };
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = std::collections::HashSet::new();
    for p in 0..n as i32 {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
            remaining.insert(p);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !remaining.is_empty() && Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push(Rec {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    assert!(remaining.is_empty(), "timed out reading {topic}");
    out
}

/// High watermark per partition (counts records plus transaction markers).
pub fn end_offsets(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let Some(n) = partitions(bootstrap, topic) else { return BTreeMap::new() };
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    // A partition whose leader is not elected yet counts as empty for now.
    (0..n as i32).map(|p| (p, c.fetch_watermarks(topic, p, Duration::from_secs(10)).map_or(0, |w| w.1))).collect()
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the target topic holds `count` records (counted with a full read).
pub fn wait_for_count(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Vec<Rec> {
    let deadline = Instant::now() + timeout;
    loop {
        let total: i64 = end_offsets(bootstrap, topic).values().sum();
        if total as usize >= count {
            let recs = read_all(bootstrap, topic);
            if recs.len() >= count {
                return recs;
            }
        }
        if Instant::now() > deadline {
            let recs = read_all(bootstrap, topic);
            panic!("timed out: {topic} on {bootstrap} has {} of {count} records", recs.len());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the target topic holds every record of `expected` (same partition and
/// key), counting duplicates once: under re-sends the total can reach `expected.len()`
/// while records are still missing, so a plain count would end the wait too early.
pub fn wait_for_every(bootstrap: &str, topic: &str, expected: &[Rec], timeout: Duration) -> Vec<Rec> {
    let want: std::collections::HashSet<(i32, Option<Vec<u8>>)> =
        expected.iter().map(|r| (r.partition, r.key.clone())).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let total: i64 = end_offsets(bootstrap, topic).values().sum();
        if total as usize >= want.len() {
            let recs = read_all(bootstrap, topic);
            let have: std::collections::HashSet<_> = recs.iter().map(|r| (r.partition, r.key.clone())).collect();
            let missing = want.difference(&have).count();
            if missing == 0 {
                return recs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out: {topic} on {bootstrap} lacks {missing} of {} records ({} read)",
                    want.len(),
                    recs.len()
                );
            }
        } else if Instant::now() > deadline {
            panic!("timed out: {topic} on {bootstrap} has {total} records, {} expected", want.len());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Groups records by partition, preserving order.
pub fn by_partition(records: &[Rec]) -> BTreeMap<i32, Vec<Rec>> {
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

pub fn write_stdin(child: &mut Child, text: &str) {
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
}

/// The first sample of metric `name` on a strait admin endpoint.
pub fn metric(admin: &str, name: &str) -> Option<f64> {
    let out = Command::new("curl").args(["-sf", &format!("http://{admin}/metrics")]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

impl Strait {
    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Freezes the process (SIGSTOP), as a long GC pause or a hung VM would.
    pub fn freeze(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn thaw(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

/// Current time in Unix milliseconds.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A free local TCP port (for admin endpoints and extra clusters).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every committed record of one partition with its offset: (offset, key, value).
/// A record read back: (offset, key, value).
pub type OffsetRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

pub fn read_partition(bootstrap: &str, topic: &str, partition: i32) -> Vec<OffsetRecord> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .unwrap();
    let (lo, hi) = c.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
    let mut out = Vec::new();
    if hi <= lo {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "timed out reading {topic}[{partition}]");
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec))),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("reading {topic}[{partition}]: {e}"),
            None => {}
        }
    }
}

/// A `Cluster` handle for the library API (offset map, translation) in tests.
pub fn cluster(alias: &str, bootstrap: &str) -> strait::cluster::Cluster {
    let settings: strait::config::ClusterConfig =
        serde_json::from_value(serde_json::json!({ "bootstrap": bootstrap })).unwrap();
    strait::cluster::Cluster::new(alias, &settings)
}

/// Checks, for every source position of one partition, that the offset map translates
/// it exactly: a consumer that read the source up to `U` and continues on the target at
/// the translated offset reads every later source record and no earlier one. Source
/// and target records are matched by value (tests write unique values). Returns the
/// number of positions checked.
pub fn assert_translation_exact(source_topic: &str, target_topic: &str, partition: i32) -> usize {
    use strait::offset_map::{MapReader, Translation};
    let source = read_partition(us_east(), source_topic, partition);
    let target = read_partition(eu_west(), target_topic, partition);
    let flow: strait::config::FlowConfig =
        serde_json::from_value(serde_json::json!({"source": "us-east", "target": "eu-west", "topics": [".*"]}))
            .unwrap();
    let mut reader = MapReader::new(&cluster("eu-west", eu_west()), &flow).unwrap();
    reader.catch_up(&cluster("eu-west", eu_west()), Duration::from_secs(30)).unwrap();
    let map = reader.map.partition(source_topic, partition);
    let index_of: std::collections::HashMap<&[u8], usize> =
        source.iter().enumerate().map(|(i, r)| (r.2.as_deref().unwrap(), i)).collect();
    // Per target position: which source record (index) it copies.
    let copies: Vec<usize> = target
        .iter()
        .map(|t| *index_of.get(t.2.as_deref().unwrap()).unwrap_or_else(|| panic!("target record not from the source")))
        .collect();
    // suffix_min[i]: the smallest source index copied at target position >= i.
    let mut suffix_min = vec![usize::MAX; copies.len() + 1];
    for i in (0..copies.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(copies[i]);
    }
    // last_copy[s]: the last target position holding a copy of source record s.
    let mut last_copy = vec![None; source.len()];
    for (pos, s) in copies.iter().enumerate() {
        last_copy[*s] = Some(pos);
    }
    // from_min[s]: the smallest "last copy position" over source records >= s.
    let mut from_min = vec![usize::MAX; source.len() + 1];
    for s in (0..source.len()).rev() {
        let last =
            last_copy[s].unwrap_or_else(|| panic!("{source_topic}[{partition}]: source record {s} was never mirrored"));
        from_min[s] = from_min[s + 1].min(last);
    }
    let end = source.last().map_or(0, |r| r.0 + 1);
    let mut checked = 0;
    for upstream in 0..=end {
        let downstream = match map.translate(upstream, 0) {
            Translation::Exact(d) | Translation::AtEnd(Some(d)) => d,
            other => panic!("{source_topic}[{partition}]@{upstream}: no exact translation: {other:?}"),
        };
        // The first source record at or after `upstream`, and the first target position
        // at or after `downstream`.
        let first_source = source.partition_point(|r| r.0 < upstream);
        let first_target = target.partition_point(|t| t.0 < downstream);
        assert!(
            from_min[first_source] == usize::MAX || from_min[first_source] >= first_target,
            "{source_topic}[{partition}]: a group at {upstream} moved to {downstream} would skip records"
        );
        assert!(
            suffix_min[first_target] == usize::MAX || suffix_min[first_target] >= first_source,
            "{source_topic}[{partition}]: a group at {upstream} moved to {downstream} would re-read records"
        );
        checked += 1;
    }
    checked
}

/// Consumes up to `max` records of `topic` as member of `group` (from the group's
/// committed position, or the beginning), commits exactly after the last one read, and
/// leaves the group. Returns the values read per partition.
pub fn consume_as_group(bootstrap: &str, topic: &str, group: &str, max: usize) -> BTreeMap<i32, Vec<String>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut read = 0;
    let mut idle_since = Instant::now();
    while read < max && idle_since.elapsed() < Duration::from_secs(10) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.entry(m.partition())
                    .or_default()
                    .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                c.store_offset_from_message(&m).unwrap();
                read += 1;
                idle_since = Instant::now();
            }
            Some(Err(e)) => panic!("consuming {topic} as {group}: {e}"),
            None => {}
        }
    }
    if read > 0 {
        c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).unwrap();
    }
    c.unsubscribe();
    out
}

/// config/local.toml (the shipped example) pointed at this run's test bed ports.
pub fn local_example_config() -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(repo_root().join("config/local.toml")).unwrap();
    write_config(&text.replace("127.0.0.1:19092", us_east()).replace("127.0.0.1:29092", eu_west()))
}

/// Map records (chunks and frontiers) stored for one partition of a us-east -> eu-west
/// prefix flow.
pub fn map_records(topic: &str, partition: i32) -> usize {
    let flow: strait::config::FlowConfig =
        serde_json::from_value(serde_json::json!({"source": "us-east", "target": "eu-west", "topics": [".*"]}))
            .unwrap();
    let mut reader = strait::offset_map::MapReader::new(&cluster("eu-west", eu_west()), &flow).unwrap();
    reader.catch_up(&cluster("eu-west", eu_west()), Duration::from_secs(30)).unwrap();
    reader.map.stored(topic, partition).map_or(0, |s| s.records())
}
