//! The test bed itself and `strait check`, on the real local clusters.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Produce and consume through rdkafka on both clusters: the test bed is real Kafka.
#[test]
fn both_clusters_produce_and_consume() {
    testbed();
    for bootstrap in [us_east(), eu_west()] {
        let topic = unique("smoke");
        create_topic(bootstrap, &topic, 3, &[]);
        let records: Vec<Rec> =
            (0..30).map(|i| Rec::keyed(i % 3, &format!("k{i}"), &format!("v{i}"), now_ms() + i as i64)).collect();
        produce(bootstrap, &topic, &records);
        let mut got = read_all(bootstrap, &topic);
        got.sort();
        let mut want = records.clone();
        want.sort();
        assert_eq!(got, want, "records read back from {bootstrap}");

        // And through a consumer group, as applications use Kafka.
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("g"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let mut n = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while n < 30 && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                assert!(m.payload().is_some());
                n += 1;
            }
        }
        assert_eq!(n, 30, "group consumer on {bootstrap}");
    }
}

/// Kafka's own console tools work against the test bed through `testbed tool`.
#[test]
fn testbed_tool_runs_kafka_cli() {
    testbed();
    let topic = unique("cli");
    let out = testbed_cmd(&["tool", "eu-west", "kafka-topics", "--create", "--topic", &topic, "--partitions", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = testbed_cmd(&["tool", "eu-west", "kafka-topics", "--describe", "--topic", &topic]);
    assert!(stdout(&out).contains("PartitionCount: 2"), "{}", stdout(&out));
}

#[test]
fn check_reports_both_clusters_and_matching_topics() {
    testbed();
    let topic = unique("orders");
    create_topic(us_east(), &topic, 2, &[]);
    // CreateTopics returns when the controller committed the topic; the broker's
    // metadata cache can follow a moment later on a loaded machine.
    wait_for("the new topic in metadata", Duration::from_secs(10), || partitions(us_east(), &topic));
    let cfg = config_with_flows(&flow("us-east", "eu-west", &format!("{topic}.*"), "prefix", &unique("g")));
    let (_dir, path) = write_config(&cfg);
    let out = strait(&["check", "--config", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(
        text.contains(&format!("cluster us-east ({}): reachable, 1 broker(s), Kafka 4.0 or newer", us_east())),
        "{text}"
    );
    assert!(text.contains(&format!("cluster eu-west ({}): reachable, 1 broker(s)", eu_west())), "{text}");
    assert!(text.contains(&format!("{topic} -> us-east.{topic}")), "{text}");
    // Heartbeats travel with every flow, so `heartbeats` matches too once it exists.
    let matched = text.lines().filter(|l| l.starts_with("  ") && l.contains(" -> ")).count();
    let expected = 1 + usize::from(text.contains("heartbeats -> us-east.heartbeats"));
    assert!(text.contains(&format!("flow us-east->eu-west: {expected} source topic(s) match")), "{text}");
    assert_eq!(matched, expected, "{text}");
}

/// The shipped example config works against the test bed as is.
#[test]
fn local_example_config_checks_out() {
    testbed();
    let (_dir, path) = local_example_config();
    let out = strait(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
}

#[test]
fn unreachable_cluster_exits_1_and_is_named() {
    testbed();
    // A port nothing listens on stands in for a region that is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "[clusters.us-east]\nbootstrap = \"{us_east}\"\n[clusters.ap-south]\nbootstrap = \"127.0.0.1:{port}\"\n\
         [[flows]]\nsource = \"us-east\"\ntarget = \"ap-south\"\ntopics = [\"x\"]\n",
        us_east = us_east()
    );
    let (_dir, path) = write_config(&cfg);
    let out = strait(&["check", "--config", path.to_str().unwrap(), "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("cluster ap-south (127.0.0.1:"), "{}", stdout(&out));
    assert!(stdout(&out).contains("UNREACHABLE"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("cluster us-east ({}): reachable", us_east())), "{}", stdout(&out));
    assert!(stderr(&out).contains("unreachable cluster(s): ap-south"), "{}", stderr(&out));
}

/// Each malformed config exits 2, names the offending key, and starts nothing.
#[test]
fn malformed_configs_exit_2_naming_the_key() {
    let good = config_with_flows(&flow("us-east", "eu-west", "orders", "prefix", "g"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown alias",
            good.replace("source = \"us-east\"", "source = \"us-eest\""),
            "flows[0].source: unknown cluster alias `us-eest`",
        ),
        (
            "source equals target",
            good.replace("target = \"eu-west\"", "target = \"us-east\""),
            "flows[0].target: a flow cannot mirror `us-east` onto itself",
        ),
        (
            "invalid regex",
            good.replace("topics = [\"orders\"]", "topics = [\"orders(\"]"),
            "flows[0].topics[0]: invalid regular expression",
        ),
        (
            "invalid exclude regex",
            good.replace("rename =", "topics_exclude = [\"a[\"]\nrename ="),
            "flows[0].topics_exclude[0]: invalid regular expression",
        ),
        (
            "missing bootstrap",
            good.replacen(&format!("bootstrap = \"{}\"", us_east()), "", 1),
            "clusters.us-east.bootstrap: is required",
        ),
        (
            "empty bootstrap",
            good.replacen(&format!("bootstrap = \"{}\"", us_east()), "bootstrap = \"\"", 1),
            "clusters.us-east.bootstrap: must not be empty",
        ),
        (
            "bootstrap without port",
            good.replacen(us_east(), "localhost", 1),
            "clusters.us-east.bootstrap: `localhost` is not host:port",
        ),
        (
            "unknown key in cluster",
            good.replacen("[clusters.eu-west]", "[clusters.eu-west]\nbootstrapp = \"x\"", 1),
            "clusters.eu-west.bootstrapp: unknown key",
        ),
        ("unknown key in flow", good.replace("rename =", "topicz = []\nrename ="), "flows[0].topicz: unknown key"),
        ("unknown top-level key", format!("flowz = 1\n{good}"), "flowz: unknown key"),
        ("wrong type", good.replace("topics = [\"orders\"]", "topics = 5"), "flows[0].topics: invalid type"),
        (
            "wrong type for interval",
            good.replace("refresh_interval_ms = 1000", "refresh_interval_ms = \"soon\""),
            "flows[0].refresh_interval_ms",
        ),
        (
            "bad rename",
            good.replace("rename = \"prefix\"", "rename = \"suffix\""),
            "flows[0].rename: unknown value `suffix`; expected \"prefix\" or \"identity\"",
        ),
        (
            "duplicate flow",
            format!("{good}\n{}", flow("us-east", "eu-west", "other", "prefix", "g2")),
            "flows[1]: duplicate flow us-east -> eu-west",
        ),
        ("no flows", good.split("[[flows]]").next().unwrap().to_string(), "flows: at least one"),
        (
            "empty topics",
            good.replace("topics = [\"orders\"]", "topics = []"),
            "flows[0].topics: must list at least one",
        ),
        ("bad admin listen", good.replace("127.0.0.1:0", "nowhere"), "admin.listen"),
        (
            "protected override",
            good.replacen("[clusters.eu-west]", "[clusters.eu-west]\nproducer = { acks = \"1\" }", 1),
            "clusters.eu-west.producer.\"acks\": cannot be overridden",
        ),
        ("alias with a dot", good.replace("us-east", "us.east"), "clusters.us.east"),
        ("not TOML", "[clusters\nbootstrap=".to_string(), "config"),
        (
            "commit interval too short",
            good.replace("commit_interval_ms = 200", "commit_interval_ms = 5"),
            "flows[0].commit_interval_ms: must be at least 10",
        ),
        (
            "exactly_once not a boolean",
            good.replace("commit_interval_ms = 200", "exactly_once = \"maybe\""),
            "flows[0].exactly_once: invalid type",
        ),
        (
            "exactly-once transaction longer than the broker allows",
            good.replace("commit_interval_ms = 200", "exactly_once = true\ncommit_interval_ms = 45000"),
            "flows[0].commit_interval_ms: must be at most 30000 with exactly_once",
        ),
        (
            "group offsets from an unknown place",
            good.replace("commit_interval_ms = 200", "group_offsets_source = \"zookeeper\""),
            "flows[0].group_offsets_source: unknown value `zookeeper`; expected \"consumer_offsets\" or \"admin\"",
        ),
        (
            "negative lag threshold",
            good.replace("[admin]", "[metrics]\npartition_lag_min_records = -5\n\n[admin]"),
            "metrics.partition_lag_min_records: must be 0 or more",
        ),
        (
            "negative in-flight bound",
            good.replace("commit_interval_ms = 200", "max_in_flight_bytes = -1"),
            "flows[0].max_in_flight_bytes: invalid type",
        ),
        (
            "in-flight bound too small",
            good.replace("commit_interval_ms = 200", "max_in_flight_bytes = 10"),
            "flows[0].max_in_flight_bytes: must be at least 1048576",
        ),
        (
            "invalid group regex",
            good.replace("rename =", "groups = [\"a[\"]\nrename ="),
            "flows[0].groups[0]: invalid regular expression",
        ),
        (
            "unknown key in admin",
            good.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nfoo = 1"),
            "admin.foo: unknown key",
        ),
        ("unknown log format", format!("{good}\n[log]\nformat = \"xml\"\n"), "log.format"),
        (
            "protected consumer override",
            good.replacen(
                "[clusters.eu-west]",
                "[clusters.us-east.consumer]\n\"isolation.level\" = \"read_uncommitted\"\n\n[clusters.eu-west]",
                1,
            ),
            "clusters.us-east.consumer.\"isolation.level\": cannot be overridden",
        ),
        (
            "zero replication factor",
            good.replace("commit_interval_ms = 200", "replication_factor = 0"),
            "flows[0].replication_factor: must be at least 1",
        ),
        (
            "unsupported SASL mechanism",
            format!("{good}\n[clusters.eu-west.sasl]\nmechanism = \"MD5\"\nusername = \"a\"\npassword = \"b\"\n"),
            "clusters.eu-west.sasl.mechanism: `MD5` is not supported",
        ),
    ];
    assert!(cases.len() >= 30);
    for (name, text, expected) in cases {
        let (_dir, path) = write_config(&text);
        for command in ["check", "plan", "run"] {
            let out = strait(&[command, "--config", path.to_str().unwrap()]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} ({command}): exit code; stderr: {err}");
            assert!(err.contains(expected), "{name} ({command}): expected `{expected}` in: {err}");
            assert!(stdout(&out).is_empty(), "{name} ({command}): nothing may start: {}", stdout(&out));
        }
    }
}

#[test]
fn env_overrides_a_key() {
    let cfg = config_with_flows(&flow("us-east", "eu-west", "orders", "prefix", "g"));
    let (_dir, path) = write_config(&cfg);
    let out = std::process::Command::new(strait_bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .env("STRAIT__ADMIN__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("admin.listen: `not-an-address`"), "{}", stderr(&out));
}
