//! Logs where operators read them: no colour codes off a terminal, JSON lines a log
//! shipper can parse, and librdkafka's transient noise kept below WARN.

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

const ESC: u8 = 0x1b;

/// A source topic with a few records, mirrored by a one-flow config.
fn mirrored_topic_config() -> (tempfile::TempDir, std::path::PathBuf, String) {
    testbed();
    let topic = unique("logs");
    create_topic(us_east(), &topic, 2, &[]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let records: Vec<Rec> = (0..20).map(|i| Rec::keyed(i % 2, &format!("k{i}"), &format!("v{i}"), now)).collect();
    produce(us_east(), &topic, &records);
    let (dir, path) =
        write_config(&config_with_flows(&flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))));
    (dir, path, topic)
}

/// `strait` with stderr (and stdout) going to pipes, and no colour or filter settings
/// inherited from the environment running the tests.
fn strait_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(strait_bin());
    cmd.args(args).env_remove("NO_COLOR").env_remove("STRAIT_LOG").env_remove("STRAIT__LOG__FORMAT");
    cmd
}

/// Runs `strait run` until the topic's records are on the target, then SIGTERM; returns
/// its stderr.
fn run_until_mirrored(config: &std::path::Path, topic: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut child = strait_cmd(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start strait run");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    wait_for_count(eu_west(), &format!("us-east.{topic}"), 20, Duration::from_secs(90));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(status.success(), "strait run exited with {status:?}:\n{text}");
    text
}

fn all_output(out: &Output) -> Vec<u8> {
    [out.stdout.as_slice(), out.stderr.as_slice()].concat()
}

#[test]
fn no_colour_codes_when_output_goes_to_a_pipe() {
    let (_dir, config, topic) = mirrored_topic_config();
    let check = strait_cmd(&["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(!all_output(&check).contains(&ESC), "escape byte in `strait check` output:\n{:?}", stderr(&check));

    let log = run_until_mirrored(&config, &topic, &[]);
    assert!(log.contains(" INFO ") && log.contains("data path started"), "expected INFO lines:\n{log}");
    assert!(!log.as_bytes().contains(&ESC), "escape byte in `strait run` log:\n{log:?}");
}

/// Every line is a JSON object with the fields log shippers index.
fn parse_json_lines(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    text.lines()
        .map(|line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("not a JSON object: {line:?} ({other:?})\nwhole log:\n{text}"),
        })
        .inspect(|map| {
            for key in ["timestamp", "level", "target", "message"] {
                assert!(map.get(key).is_some_and(|v| v.is_string()), "`{key}` missing in {map:?}");
            }
        })
        .collect()
}

fn str_of<'a>(line: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    line.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

#[test]
fn json_lines_carry_level_target_message_and_flow() {
    let (_dir, config, topic) = mirrored_topic_config();
    let log = run_until_mirrored(&config, &topic, &["--log-format", "json"]);
    let lines = parse_json_lines(&log);
    let started = lines.iter().find(|l| str_of(l, "message") == "data path started").expect("data path started");
    assert_eq!(str_of(started, "level"), "INFO");
    assert_eq!(str_of(started, "target"), "strait::mirror");
    assert_eq!(str_of(started, "flow"), "us-east->eu-west");
    assert!(str_of(started, "timestamp").ends_with('Z'), "RFC 3339 UTC: {started:?}");
    for line in lines.iter().filter(|l| str_of(l, "target") == "librdkafka") {
        assert!(line.contains_key("cluster") && line.contains_key("role"), "{line:?}");
        let transient = str_of(line, "message").contains("Coordinator load in progress");
        assert!(!(transient && matches!(str_of(line, "level"), "WARN" | "ERROR")), "{line:?}");
    }
}

/// The config's equivalent (`STRAIT__LOG__FORMAT`, i.e. `[log] format`), a failing
/// command's final error included, and librdkafka's lines naming cluster and role.
#[test]
fn json_from_the_environment_covers_errors_too() {
    testbed();
    // Nothing listens there: a port of this checkout's range not used by the test bed.
    let dead = format!("127.0.0.1:{}", 19092 + port_offset() + 101);
    let cfg = format!(
        "{}\n[clusters.ap-south]\nbootstrap = \"{dead}\"\n",
        config_with_flows(&flow("us-east", "eu-west", "nothing-matches", "prefix", &unique("strait")))
    );
    let (_dir, path) = write_config(&cfg);
    let out = strait_cmd(&["check", "--timeout", "3", "--config", path.to_str().unwrap()])
        .env("STRAIT__LOG__FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = parse_json_lines(&stderr(&out));
    let last = lines.last().expect("an error line");
    assert_eq!(str_of(last, "level"), "ERROR");
    assert!(str_of(last, "message").contains("unreachable cluster(s): ap-south"), "{last:?}");
    for line in lines.iter().filter(|l| str_of(l, "target") == "librdkafka") {
        assert_eq!((str_of(line, "cluster"), str_of(line, "role")), ("ap-south", "metadata"), "{line:?}");
    }

    // A config error is JSON too when the flag asks for it.
    let (_dir, bad) = write_config("[clusters.a]\nbootstrap = \"h:1\"\n[log]\nformat = \"yaml\"\n");
    let out = strait_cmd(&["check", "--log-format", "json", "--config", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = parse_json_lines(&stderr(&out));
    assert!(str_of(&lines[0], "message").contains("log.format"), "{lines:?}");
}
