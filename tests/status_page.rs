//! The status page at `/` in a real browser: Debian's headless Chromium (installed by
//! `scripts/setup chromium` when missing) loads it from a strait that mirrors live
//! traffic on the test bed, with host-name resolution switched off so that nothing but
//! the instance can be reached. The DOM after a few refreshes must show the flow row,
//! the partition table with data, the consumer group's translated position, and both
//! charts with several data points; no page, asset or endpoint the page reads may
//! contain the password configured for the source cluster.
//!
//! The screenshot goes to `target/tmp/status-page.png`. With `STRAIT_UPDATE_DOCS=1` the
//! test lets two minutes of history accumulate first and also writes the screenshot to
//! `docs/status-page.png`, which README.md and docs/metrics.md show.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::ClientConfig;
use regex::Regex;

const PARTITIONS: i32 = 3;

/// The Chromium binary, installed through `scripts/setup chromium` if none is on PATH.
fn chromium() -> String {
    let find = || {
        ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|name| {
            Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success())
        })
    };
    if let Some(name) = find() {
        return name.to_string();
    }
    let setup = Command::new(repo_root().join("scripts/setup")).arg("chromium").output().unwrap();
    assert!(setup.status.success(), "scripts/setup chromium:\n{}{}", stdout(&setup), stderr(&setup));
    find().expect("scripts/setup installed chromium, yet it is not on PATH").to_string()
}

/// Runs headless Chromium on `url` with `args`, in a fresh profile, with every host name
/// unresolvable (only the instance's loopback address works) and background traffic off.
fn run_chromium(browser: &str, url: &str, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            // Enough virtual time for the first fetch and two refreshes (2 s apart).
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Only a guard against a browser that never exits; the checks are on content.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The end of Chromium's stderr (it logs much about the missing D-Bus of a container).
fn tail(out: &Output) -> String {
    let text = stderr(out);
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn http_get(url: &str) -> String {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    assert!(out.status.success(), "GET {url} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON at `url`, or None while the instance does not answer yet.
fn json(url: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("an endpoint answered with bad JSON"))
}

/// Live traffic on `topic` until `stop`: a batch every 200 ms, of 20 to 86 records of
/// 0.2 to 2 KiB (so that the charts have a shape, and records/s and bytes/s differ).
fn traffic(topic: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut round, mut i) = (0usize, 0i32);
        while !stop.load(Ordering::SeqCst) {
            let value = "v".repeat(200 + (round * 397) % 1850);
            let count = 20 + (round % 12) as i32 * 6;
            let batch: Vec<Rec> =
                (0..count).map(|j| Rec::keyed((i + j) % PARTITIONS, &format!("k{}", i + j), &value, now())).collect();
            produce(us_east(), &topic, &batch);
            (round, i) = (round + 1, i + count);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// A consumer group on the source that read part of `topic` and committed.
fn commit_some_as_group(topic: &str, group: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", us_east())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    wait_for("the app group to consume and commit", Duration::from_secs(60), || {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => consumer.commit_consumer_state(CommitMode::Sync).ok(),
            _ => None,
        }
    });
}

/// The text between `start` (inclusive) and the next `end` after it.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom.find(start).unwrap_or_else(|| panic!("`{start}` not in the page:\n{dom}"));
    let to = dom[from..].find(end).map_or(dom.len(), |i| from + i + end.len());
    &dom[from..to]
}

fn attr(tag: &str, name: &str) -> Option<String> {
    Regex::new(&format!(r#"\s{name}="([^"]*)""#)).unwrap().captures(tag).map(|c| c[1].to_string())
}

/// A chart's SVG and series paths: each series must have `min_points` points or more,
/// and as many coordinates in its path. Returns the y coordinates per series.
fn chart_series(dom: &str, kind: &str, series: &[&str], min_points: usize) -> Vec<Vec<f64>> {
    let figure = section(dom, &format!(r#"<figure class="chart chart-{kind}">"#), "</figure>");
    let svg = Regex::new(r"<svg[^>]*>").unwrap().find(figure).expect("chart has an svg").as_str();
    let points: usize = attr(svg, "data-points").expect("svg data-points").parse().unwrap();
    assert!(points >= min_points, "{kind} chart has {points} points, want {min_points}+:\n{figure}");
    series
        .iter()
        .map(|key| {
            let path = Regex::new(&format!(r#"<path class="series series-{key}"[^>]*>"#))
                .unwrap()
                .find(figure)
                .unwrap_or_else(|| panic!("{kind} chart has no {key} line:\n{figure}"))
                .as_str();
            let d = attr(path, "d").unwrap();
            let coords: Vec<f64> = Regex::new(r"[ML]([\d.]+) ([\d.]+)")
                .unwrap()
                .captures_iter(&d)
                .map(|c| c[2].parse().unwrap())
                .collect();
            assert_eq!(coords.len(), points, "{kind}/{key}: one coordinate per sample: {d}");
            coords
        })
        .collect()
}

fn check_dom(dom: &str, flow: &str, topic: &str, group: &str) {
    // The overview row of the flow, running, both clusters up.
    let row = section(dom, r#"<tr class="flow-row""#, "</tr>");
    assert_eq!(attr(row, "data-flow").unwrap().replace("&gt;", ">"), flow, "{row}");
    assert_eq!(attr(row, "data-state").as_deref(), Some("running"), "{row}");
    assert_eq!(row.matches(r#"<span class="badge up">up</span>"#).count(), 2, "both clusters up: {row}");
    assert!(dom.contains(r#"<div id="banner" class="banner" role="alert" hidden="">"#), "no error banner");

    // The partition table: every partition of the topic with data (the flow also
    // mirrors the heartbeats topic), worst time lag first.
    let rows: Vec<&str> =
        Regex::new(r#"<tr class="partition-row[^"]*"[^>]*>"#).unwrap().find_iter(dom).map(|m| m.as_str()).collect();
    let lags: Vec<f64> = rows.iter().map(|row| attr(row, "data-lag-seconds").unwrap().parse().unwrap()).collect();
    assert!(lags.windows(2).all(|w| w[0] >= w[1]), "sorted by time lag, worst first: {lags:?}");
    let mut seen: Vec<i32> = Vec::new();
    for row in rows.iter().filter(|row| attr(row, "data-topic").as_deref() == Some(topic)) {
        let number = |name| attr(row, name).unwrap().parse::<f64>().unwrap();
        assert!(number("data-end") > 0.0 && number("data-mirrored") > 0.0, "a partition without data: {row}");
        assert!(number("data-mirrored") <= number("data-end"), "{row}");
        seen.push(number("data-partition") as i32);
    }
    seen.sort();
    assert_eq!(seen, (0..PARTITIONS).collect::<Vec<_>>(), "partition rows of {topic}:\n{dom}");

    // The source group with its translated position on the target.
    let group_row = section(dom, &format!(r#"<tr class="group-row" data-group="{group}""#), "</tr>");
    let translated = attr(group_row, "data-translated").unwrap_or_default();
    assert!(translated.parse::<i64>().is_ok_and(|t| t > 0), "translated position: {group_row}");
    assert!(group_row.contains("exact"), "{group_row}");

    // Both charts, with several samples; throughput above the baseline somewhere.
    let throughput = chart_series(dom, "throughput", &["records_per_second", "bytes_per_second"], 3);
    for line in &throughput {
        let baseline = line.iter().copied().fold(f64::MIN, f64::max);
        assert!(line.iter().any(|y| *y < baseline), "a flat throughput line under live traffic: {line:?}");
    }
    chart_series(dom, "lag", &["lag_seconds"], 3);
}

/// The page, its assets and every endpoint its script reads; none may hold `secret`.
fn assert_page_free_of(base: &str, secret: &str, dom: &str) {
    let index = http_get(&format!("{base}/"));
    let mut seen = vec![("/ (rendered)".to_string(), dom.to_string()), ("/".to_string(), index.clone())];
    let assets: Vec<String> =
        Regex::new(r#"(?:src|href)="(ui/[^"]+)""#).unwrap().captures_iter(&index).map(|c| c[1].to_string()).collect();
    assert_eq!(assets.len(), 2, "a style sheet and a script: {assets:?}");
    let fetched = Regex::new(r#"getJSON\("([^"]+)"\)"#).unwrap();
    let mut endpoints = Vec::new();
    for asset in &assets {
        let text = http_get(&format!("{base}/{asset}"));
        endpoints.extend(fetched.captures_iter(&text).map(|c| c[1].to_string()));
        seen.push((asset.clone(), text));
    }
    endpoints.sort();
    assert_eq!(endpoints, ["status", "status/history"], "what the page reads");
    for path in endpoints.iter().chain(&["metrics".to_string()]) {
        seen.push((path.clone(), http_get(&format!("{base}/{path}"))));
    }
    for (what, text) in seen {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(secret), "the configured password appears in {what}:\n{text}");
    }
}

/// The screenshot: a PNG of the requested size, not blank.
fn check_screenshot(path: &Path) {
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    assert!(png.len() > 20_000, "a {}-byte screenshot is blank", png.len());
}

#[test]
fn status_page_in_chromium_shows_live_flow_partitions_groups_and_charts() {
    let browser = chromium();
    testbed();
    let topic = unique("page");
    create_topic(us_east(), &topic, PARTITIONS, &[]);
    let admin = format!("127.0.0.1:{}", free_port());
    // A SASL password in the config (of a cluster no flow uses, since the test bed's
    // clusters are plaintext): strait reads it at start, and the page must never show it.
    let secret = unique("Pw-status-page-secret");
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("vault.password");
    std::fs::write(&password_file, &secret).unwrap();
    let cfg = format!(
        "{}\n[clusters.vault]\nbootstrap = \"127.0.0.1:9\"\n[clusters.vault.sasl]\nmechanism = \"SCRAM-SHA-512\"\n\
         username = \"strait\"\npassword_file = \"{}\"\n",
        config_with_flows(&format!(
            "{}checkpoint_interval_ms = 1000\n",
            flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
        ))
        .replace("127.0.0.1:0", &admin),
        password_file.display()
    );
    let (_dir, path) = write_config(&cfg);
    let mut strait = Strait::start(&path);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = traffic(topic.clone(), stop.clone());
    let group = unique("app");
    commit_some_as_group(&topic, &group);

    let base = format!("http://{admin}");
    let flow = "us-east->eu-west";
    wait_for("the flow to run with every partition and the group translated", Duration::from_secs(120), || {
        let status = json(&format!("{base}/status"))?;
        let f = status["flows"].as_array()?.first()?.clone();
        let translated =
            f["groups"].as_array()?.iter().any(|g| g["group"] == group.as_str() && g["translated"].is_i64());
        let ours = f["partitions"].as_array()?.iter().filter(|p| p["topic"] == topic.as_str()).count();
        (f["state"] == "running" && ours == PARTITIONS as usize && translated).then_some(())
    });
    // The docs' screenshot shows two minutes of history; the checks need a few samples.
    let update_docs = std::env::var("STRAIT_UPDATE_DOCS").is_ok_and(|v| v == "1");
    let wanted = if update_docs { 60 } else { 6 };
    wait_for("history samples with traffic", Duration::from_secs(300), || {
        let history = json(&format!("{base}/status/history"))?;
        let samples = history["flows"][0]["samples"].as_array()?.clone();
        let moving = samples.iter().filter(|s| s["records_per_second"].as_f64() > Some(0.0)).count();
        (samples.len() >= wanted && moving >= 3).then_some(())
    });

    let dump = run_chromium(&browser, &format!("{base}/"), &["--dump-dom"]);
    let dom = stdout(&dump);
    assert!(dump.status.success() && !dom.is_empty(), "chromium --dump-dom:\n{}", tail(&dump));
    check_dom(&dom, flow, &topic, &group);
    let head = Command::new("curl").args(["-sfI", &format!("{base}/")]).output().unwrap();
    assert!(
        stdout(&head).to_lowercase().contains("content-security-policy: default-src 'none'"),
        "the page limits the browser to this origin:\n{}",
        stdout(&head)
    );
    assert_page_free_of(&base, &secret, &dom);

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        &browser,
        &format!("{base}/"),
        &[&format!("--screenshot={}", shot.display()), "--window-size=1280,900", "--hide-scrollbars"],
    );
    assert!(out.status.success(), "chromium --screenshot:\n{}", tail(&out));
    check_screenshot(&shot);
    if update_docs {
        std::fs::copy(&shot, repo_root().join("docs/status-page.png")).unwrap();
    }

    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();
    assert!(strait.is_running(), "{}", strait.log_text());
    let (status, _) = strait.terminate();
    assert!(!strait.log_text().contains(&secret), "the password appears in strait's log");
    assert!(status.success(), "{}", strait.log_text());
}
