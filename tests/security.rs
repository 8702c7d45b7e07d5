//! TLS and SASL on real Kafka: two test bed clusters with SASL_SSL listeners
//! (`testbed up NAME --port P --sasl-ssl`: certificates from the test bed's own CA, SCRAM
//! users created at format time). strait mirrors between them end to end (data,
//! checkpoints, failover), `check` fails fast and names the cause for a wrong password
//! and an untrusted certificate, and no output of any command contains a secret.
//!
//! The two clusters are started once per run (about 20 s the first time) and left
//! running like the default ones; `testbed down` stops them with the rest.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A SASL_SSL test bed cluster and what a client needs to reach it.
struct Secure {
    name: &'static str,
    bootstrap: String,
    ca_file: PathBuf,
    password_file: PathBuf,
    password: String,
}

fn secure(name: &'static str, port: u16) -> Secure {
    let out = testbed_cmd(&["up", name, "--port", &port.to_string(), "--sasl-ssl"]);
    assert!(out.status.success(), "testbed up {name} --sasl-ssl failed:\n{}\n{}", stdout(&out), stderr(&out));
    let out = testbed_cmd(&["security", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: BTreeMap<String, String> =
        stdout(&out).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(info["protocol"], "SASL_SSL");
    let password_file = PathBuf::from(&info["password_file"]);
    let password = std::fs::read_to_string(&password_file).unwrap().trim().to_string();
    assert!(password.len() >= 16, "test bed passwords are random and long");
    Secure {
        name,
        bootstrap: format!("127.0.0.1:{port}"),
        ca_file: PathBuf::from(&info["ca_file"]),
        password_file,
        password,
    }
}

/// Both SASL_SSL clusters, started once per test binary. Ports lie in the range the
/// helper guide reserves for extra clusters (19092 + offset + 10 ..= + 900).
fn clusters() -> &'static (Secure, Secure) {
    static CLUSTERS: OnceLock<(Secure, Secure)> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        let base = 19092 + port_offset();
        (secure("sasl-east", base + 20), secure("sasl-west", base + 30))
    })
}

impl Secure {
    /// librdkafka settings for the test's own clients (user strait, SCRAM-SHA-512).
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", self.ca_file.to_str().unwrap())
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "strait")
            .set("sasl.password", &self.password);
        c
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for r in block(admin.create_topics([&t], &AdminOptions::new())).unwrap() {
            r.unwrap_or_else(|(name, e)| panic!("create topic {name}: {e}"));
        }
    }

    fn produce(&self, topic: &str, values: &[String], partitions: i32) {
        let p: BaseProducer = self.client().set("enable.idempotence", "true").create().unwrap();
        for (i, v) in values.iter().enumerate() {
            let record = BaseRecord::to(topic).partition(i as i32 % partitions).key(v).payload(v);
            p.send::<String, String>(record).unwrap();
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60)).unwrap();
    }

    /// Reads `want` records as consumer group `group` (subscribed) and commits exactly
    /// what it read; with `expect_end`, also checks that no further record comes.
    fn consume_as_group(&self, topic: &str, group: &str, want: usize, expect_end: bool) -> Vec<String> {
        let c: BaseConsumer = self
            .client()
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("max.poll.interval.ms", "300000")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let mut got = Vec::new();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while got.len() < want && Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                    positions.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => panic!("consuming {topic} on {}: {e}", self.name),
                None => {}
            }
        }
        // Where the topic should hold no more for this group, prove it: 3 s of silence.
        let quiet_until = Instant::now() + Duration::from_secs(3);
        while expect_end && Instant::now() < quiet_until {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                panic!("group {group} read more than {want} records of {topic}: offset {} again", m.offset());
            }
        }
        assert_eq!(got.len(), want, "group {group} on {} read {} of {want} records of {topic}", self.name, got.len());
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
        }
        if tpl.count() > 0 {
            c.commit(&tpl, CommitMode::Sync).unwrap();
        }
        got
    }

    /// Keys and values of every record in a topic, read from the beginning.
    fn read_topic(&self, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let c: BaseConsumer = self.client().set("group.id", unique("reader")).create().unwrap();
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let parts = md.topics()[0].partitions().len() as i32;
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0;
        for p in 0..parts {
            let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            remaining += hi - lo;
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while (out.len() as i64) < remaining && Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
            }
        }
        out
    }

    fn topic_exists(&self, topic: &str) -> bool {
        let c: BaseConsumer = self.client().create().unwrap();
        c.fetch_metadata(Some(topic), Duration::from_secs(10))
            .ok()
            .and_then(|md| md.topics().first().map(|t| t.error().is_none() && !t.partitions().is_empty()))
            .unwrap_or(false)
    }
}

/// The environment variable the target cluster's password comes from in the configs
/// below (the source's comes from its password file): both ways are exercised.
const TARGET_PW_VAR: &str = "STRAIT_TEST_SASL_WEST_PASSWORD";

fn config(topic_pattern: &str, group: &str, admin: &str, east_ca: &Path, west_ca: &Path) -> String {
    let (east, west) = clusters();
    format!(
        r#"[clusters.sasl-east]
bootstrap = "{east_bootstrap}"
[clusters.sasl-east.tls]
ca_file = "{east_ca}"
[clusters.sasl-east.sasl]
mechanism = "SCRAM-SHA-512"
username = "strait"
password_file = "{east_pw}"

[clusters.sasl-west]
bootstrap = "{west_bootstrap}"
[clusters.sasl-west.tls]
ca_file = "{west_ca}"
[clusters.sasl-west.sasl]
mechanism = "SCRAM-SHA-256"
username = "strait"
password = "${{{TARGET_PW_VAR}}}"

[admin]
listen = "{admin}"

[[flows]]
source = "sasl-east"
target = "sasl-west"
topics = ["{topic_pattern}"]
consumer_group = "{group}"
refresh_interval_ms = 1000
commit_interval_ms = 200
checkpoint_interval_ms = 1000
"#,
        east_bootstrap = east.bootstrap,
        east_ca = east_ca.display(),
        east_pw = east.password_file.display(),
        west_bootstrap = west.bootstrap,
        west_ca = west_ca.display(),
    )
}

/// Runs strait with the target password in the environment, as an operator would.
fn strait_cmd(args: &[&str], west_password: &str) -> Output {
    Command::new(strait_bin())
        .args(args)
        .env("STRAIT_LOG", "debug")
        .env(TARGET_PW_VAR, west_password)
        .output()
        .expect("run strait")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(addr: &str, path: &str) -> String {
    let out = Command::new("curl").args(["-s", &format!("http://{addr}{path}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything a command showed, for the secret grep.
struct Transcript(Vec<(String, String)>);

impl Transcript {
    fn add(&mut self, what: &str, out: &Output) {
        self.0.push((what.to_string(), format!("{}{}", stdout(out), stderr(out))));
    }

    fn add_text(&mut self, what: &str, text: String) {
        self.0.push((what.to_string(), text));
    }

    fn assert_free_of(&self, secrets: &[&str]) {
        for (what, text) in &self.0 {
            assert!(!text.is_empty() || what.starts_with("/healthz"), "{what} printed nothing");
            for secret in secrets {
                assert!(!text.contains(secret), "a secret appears in the output of {what}:\n{text}");
            }
        }
    }
}

/// Mirrors SASL_SSL to SASL_SSL, checks the copy and the checkpoints, fails a consumer
/// group over exactly, and greps every output (logs at debug, /status, /metrics, the
/// status page, plan, check, status, translate, failover) for both clusters' passwords.
#[test]
fn sasl_ssl_mirroring_checkpoints_and_failover_without_leaking_secrets() {
    let (east, west) = clusters();
    let topic = unique("secure");
    let group = unique("billing");
    east.create_topic(&topic, 3);
    let values: Vec<String> = (0..300).map(|i| format!("{topic}-v{i}")).collect();
    east.produce(&topic, &values, 3);
    // The application group reads the first 120 records in sasl-east and commits.
    let first = east.consume_as_group(&topic, &group, 120, false);

    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = config(&regex_escape(&topic), &unique("strait"), &admin, &east.ca_file, &west.ca_file);
    let (_dir, path) = write_config(&cfg);
    let path = path.to_str().unwrap();
    let mut seen = Transcript(Vec::new());

    let out = strait_cmd(&["check", "--config", path], &west.password);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("cluster sasl-east (") && stdout(&out).contains("SASL_SSL SCRAM-SHA-512, authenticated")
    );
    assert!(stdout(&out).contains("SASL_SSL SCRAM-SHA-256, authenticated"), "{}", stdout(&out));
    seen.add("check", &out);
    let out = strait_cmd(&["check", "--offline", "--config", path], &west.password);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("clusters.sasl-west.sasl.password from env {TARGET_PW_VAR}")));
    seen.add("check --offline", &out);
    let out = strait_cmd(&["plan", "--config", path], &west.password);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("sasl-east.{topic}")), "{}", stdout(&out));
    seen.add("plan", &out);

    let log = PathBuf::from(path).with_extension("log");
    let mut run = Command::new(strait_bin())
        .args(["run", "--config", path])
        .env("STRAIT_LOG", "debug")
        .env(TARGET_PW_VAR, &west.password)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let target_topic = format!("sasl-east.{topic}");
    let copied = wait_for("all 300 records on sasl-west", Duration::from_secs(120), || {
        let recs = if west.topic_exists(&target_topic) { west.read_topic(&target_topic) } else { vec![] };
        (recs.len() >= 300).then_some(recs)
    });
    let copied_values: BTreeSet<Vec<u8>> = copied.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(copied.len(), 300, "no duplicates");
    assert_eq!(copied_values, values.iter().map(|v| v.as_bytes().to_vec()).collect(), "every record, once");

    // A checkpoint for the group (MM2 format: key = group, topic, partition).
    wait_for("a checkpoint for the group on sasl-west", Duration::from_secs(60), || {
        west.read_topic("sasl-east.checkpoints.internal")
            .iter()
            .any(|(k, _)| k.windows(group.len()).any(|w| w == group.as_bytes()))
            .then_some(())
    });

    seen.add_text("/status", http_get(&admin, "/status"));
    // The status page, its assets, and its history endpoint (tests/status_page.rs checks
    // the rendered page in a browser).
    for path in ["/", "/ui/status.js", "/ui/status.css", "/status/history"] {
        seen.add_text(path, http_get(&admin, path));
    }
    seen.add_text("/metrics", http_get(&admin, "/metrics"));
    seen.add_text("/readyz", http_get(&admin, "/readyz"));
    let out = strait_cmd(&["status", "--config", path], &west.password);
    assert!(out.status.success(), "{}", stderr(&out));
    seen.add("status", &out);
    let out = strait_cmd(&["status", "--direct", "--config", path], &west.password);
    seen.add("status --direct", &out);
    let flow = "sasl-east->sasl-west";
    let out =
        strait_cmd(&["offsets", "translate", "--config", path, "--flow", flow, "--group", &group], &west.password);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    seen.add("offsets translate", &out);
    let out = strait_cmd(
        &["failover", "--config", path, "--flow", flow, "--group", &group, "--wait-for-zero-lag", "--timeout", "120s"],
        &west.password,
    );
    assert!(out.status.success(), "failover: {}\n{}", stdout(&out), stderr(&out));
    seen.add("failover", &out);

    // The same group continues on sasl-west exactly where it stopped.
    let rest = west.consume_as_group(&target_topic, &group, 180, true);
    let mut all: Vec<String> = first.iter().chain(&rest).cloned().collect();
    all.sort();
    let mut want = values.clone();
    want.sort();
    assert_eq!(all, want, "failover: nothing read twice, nothing skipped");

    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let status = run.wait().unwrap();
    assert!(status.success(), "strait run exit: {status}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("DEBUG"), "the run log is at debug level");
    seen.add_text("run log", log_text);
    seen.assert_free_of(&[&east.password, &west.password]);
}

/// A wrong password and an untrusted certificate each make `check` exit 1 within a
/// couple of seconds (not the 10 s timeout), naming the cluster and the cause.
#[test]
fn wrong_password_and_untrusted_certificate_fail_check_fast() {
    let (east, west) = clusters();
    let dir = tempfile::tempdir().unwrap();
    let admin = "127.0.0.1:0";

    // Wrong password for sasl-west (from the environment).
    let cfg = config("x", "g", admin, &east.ca_file, &west.ca_file);
    let (_d, path) = write_config(&cfg);
    let wrong = "Wrong-Password-4711";
    let started = Instant::now();
    let out = strait_cmd(&["check", "--config", path.to_str().unwrap()], wrong);
    let took = started.elapsed();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(took < Duration::from_secs(5), "check took {took:?}:\n{text}");
    assert!(text.contains("cluster sasl-west ("), "{text}");
    assert!(text.contains("REFUSED") && text.contains("Authentication failed"), "{text}");
    assert!(text.contains("check clusters.sasl-west.sasl"), "{text}");
    assert!(text.contains("cluster sasl-east (") && text.contains("authenticated"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(&west.password) && !text.contains(&east.password), "{text}");

    // A CA that did not sign the brokers' certificates, for sasl-east.
    let other_ca = dir.path().join("other-ca.pem");
    let gen = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the test bed CA", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", stderr(&gen));
    let cfg = config("x", "g", admin, &other_ca, &west.ca_file);
    let (_d2, path) = write_config(&cfg);
    let started = Instant::now();
    let out = strait_cmd(&["check", "--config", path.to_str().unwrap()], &west.password);
    let took = started.elapsed();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(took < Duration::from_secs(5), "check took {took:?}:\n{text}");
    assert!(text.contains("cluster sasl-east (") && text.contains("certificate verify failed"), "{text}");
    assert!(text.contains("check clusters.sasl-east.tls.ca_file"), "{text}");
    assert!(text.contains("error: cluster(s) refused TLS or SASL: sasl-east"), "{text}");
    assert!(!text.contains(&west.password) && !text.contains(&east.password), "{text}");
}

/// Security settings that cannot work are refused before anything starts (exit 2, the
/// key named), and no error message repeats a secret.
#[test]
fn bad_security_settings_exit_2_naming_the_key_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "Sup3r-Secret-Value\n").unwrap();
    let base = |cluster_extra: &str| {
        format!(
            "[clusters.a]\nbootstrap = \"127.0.0.1:1\"\n{cluster_extra}\n[clusters.b]\nbootstrap = \"127.0.0.1:2\"\n\
             [[flows]]\nsource = \"a\"\ntarget = \"b\"\ntopics = [\"t\"]\n"
        )
    };
    let sasl = |body: &str| format!("[clusters.a.tls]\n[clusters.a.sasl]\n{body}");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unset variable",
            sasl("mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"${STRAIT_TEST_UNSET_VAR}\""),
            "clusters.a.sasl.password: environment variable `STRAIT_TEST_UNSET_VAR` is not set",
        ),
        (
            "missing password file",
            sasl("mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword_file = \"/nonexistent/pw\""),
            "clusters.a.sasl.password_file: cannot read `/nonexistent/pw`",
        ),
        (
            "both password and file",
            sasl(&format!(
                "mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"x\"\npassword_file = \"{}\"",
                pw_file.display()
            )),
            "clusters.a.sasl.password: give either sasl.password or sasl.password_file",
        ),
        ("no password", sasl("mechanism = \"PLAIN\"\nusername = \"u\""), "clusters.a.sasl.password: is required"),
        (
            "oauthbearer",
            sasl("mechanism = \"OAUTHBEARER\"\nusername = \"u\"\npassword = \"x\""),
            "clusters.a.sasl.mechanism: OAUTHBEARER is not supported",
        ),
        (
            "gssapi",
            sasl("mechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"x\""),
            "clusters.a.sasl.mechanism: `GSSAPI` is not supported",
        ),
        (
            "PLAIN without TLS",
            "[clusters.a.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"x\"".into(),
            "clusters.a.sasl.mechanism: PLAIN sends the password in clear text",
        ),
        (
            "missing CA file",
            "[clusters.a.tls]\nca_file = \"/nonexistent/ca.pem\"".into(),
            "clusters.a.tls.ca_file: cannot read `/nonexistent/ca.pem`",
        ),
        (
            "cert without key",
            "[clusters.a.tls]\ncert_file = \"/c.pem\"".into(),
            "clusters.a.tls.key_file: cert_file and key_file go together",
        ),
        ("unknown tls key", "[clusters.a.tls]\nca_flie = \"/c.pem\"".into(), "clusters.a.tls.ca_flie: unknown key"),
        (
            "raw password",
            "[clusters.a.client]\n\"sasl.password\" = \"Sup3r-Secret-Value\"".into(),
            "clusters.a.client.\"sasl.password\": cannot be overridden: security settings are typed keys",
        ),
        (
            "role overrides security",
            "[clusters.a.producer]\n\"security.protocol\" = \"PLAINTEXT\"".into(),
            "clusters.a.producer.\"security.protocol\": cannot be overridden",
        ),
        (
            "role TLS setting",
            "[clusters.a.consumer]\n\"ssl.cipher.suites\" = \"ECDHE\"".into(),
            "clusters.a.consumer.\"ssl.cipher.suites\": cannot be overridden: TLS settings apply to every client",
        ),
    ];
    for (name, extra, expected) in cases {
        let (_d, path) = write_config(&base(&extra));
        for args in [vec!["check"], vec!["run"], vec!["plan"]] {
            let mut all = args.clone();
            all.extend(["--config", path.to_str().unwrap()]);
            let out = strait(&all);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} ({args:?}): {err}");
            assert!(err.contains(expected), "{name} ({args:?}): expected `{expected}` in: {err}");
            assert!(!err.contains("Sup3r-Secret-Value"), "{name}: secret in the error: {err}");
        }
    }
    // Offline validation reads no secret: an unset variable and a missing file are fine
    // there (they belong to the machine the config is for), shape errors are not.
    let (_d, path) = write_config(&base(&sasl(
        "mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"${STRAIT_TEST_UNSET_VAR}\"",
    )));
    let out = strait(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("clusters.a.sasl.password from env STRAIT_TEST_UNSET_VAR"), "{}", stdout(&out));
    let (_d, path) =
        write_config(&base("[clusters.a.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"x\""));
    let out = strait(&["check", "--offline", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', '\\', c] }).collect()
}
