//! The dashboard and alerts on real Prometheus (Debian's package, installed by
//! deploy/prometheus/install), scraping a strait that mirrors live traffic. One test in
//! its own binary, because it stops the eu-west region.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::ClientConfig;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(scrape_target: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\n\
                 scrape_configs:\n  - job_name: strait\n    static_configs:\n      - targets: ['{scrape_target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port, _dir: dir }
    }

    /// Runs an instant query; returns the result series as JSON values.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--get",
                "--data-urlencode",
                &format!("query={expr}"),
                &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn scalar(&self, expr: &str) -> Option<f64> {
        self.query(expr).first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct RestoreEuWest;

impl Drop for RestoreEuWest {
    fn drop(&mut self) {
        let _ = testbed_cmd(&["up", "eu-west"]);
    }
}

fn http_status(url: &str) -> String {
    let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `expr` of the dashboard, with Grafana's variables filled in as "All".
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/strait.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$flow", ".*")
                .replace("$instance", ".*")
                .replace("$__rate_interval", "30s");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

#[test]
fn dashboard_alerts_and_readiness_on_real_prometheus() {
    testbed();
    let install = Command::new(repo_root().join("deploy/prometheus/install")).output().unwrap();
    assert!(install.status.success(), "installing prometheus: {}", stderr(&install));
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo_root().join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool check rules: {}{}", stdout(&check), stderr(&check));

    // strait mirroring live traffic, with a consumer group on the source.
    let topic = unique("obs");
    create_topic(us_east(), &topic, 3, &[]);
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = config_with_flows(&format!(
        "{}checkpoint_interval_ms = 1000\n",
        flow("us-east", "eu-west", &topic, "prefix", &unique("strait"))
    ))
    .replace("127.0.0.1:0", &admin);
    let (_dir, path) = write_config(&cfg);
    let mut strait = Strait::start(&path);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (topic, stop) = (topic.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Rec> =
                    (0..50).map(|j| Rec::keyed((i + j) % 3, &format!("k{}", i + j), "live", now())).collect();
                produce(us_east(), &topic, &batch);
                i += 50;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let group = unique("app");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", us_east())
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    wait_for("the app group to consume", Duration::from_secs(60), || match consumer.poll(Duration::from_millis(500)) {
        Some(Ok(_)) => consumer.commit_consumer_state(CommitMode::Sync).ok(),
        _ => None,
    });
    drop(consumer);

    // Rules as shipped, with shorter waits so the outage fits in a test.
    let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml"))
        .unwrap()
        .replace("for: 2m", "for: 5s")
        .replace("for: 1m", "for: 5s")
        .replace("(strait_replication_lag_seconds) > 60", "(strait_replication_lag_seconds) > 10");
    let prom = Prometheus::start(&admin, &rules);

    for (title, expr) in dashboard_queries() {
        wait_for(&format!("dashboard panel `{title}` to return data: {expr}"), Duration::from_secs(90), || {
            (!prom.query(&expr).is_empty()).then_some(())
        });
    }
    assert_eq!(http_status(&format!("http://{admin}/readyz")), "200");
    let lag = format!("max(strait_replication_lag_seconds{{topic=\"{topic}\"}})");
    wait_for("lag to be 0 while healthy", Duration::from_secs(60), || (prom.scalar(&lag) == Some(0.0)).then_some(()));

    // The target region goes down: time lag grows, the alert fires, /readyz turns 503.
    let _restore = RestoreEuWest;
    assert!(testbed_cmd(&["down", "eu-west"]).status.success());
    let first = wait_for("lag to grow", Duration::from_secs(60), || prom.scalar(&lag).filter(|v| *v > 3.0));
    wait_for("lag to keep growing", Duration::from_secs(30), || prom.scalar(&lag).filter(|v| *v > first + 3.0));
    wait_for("/readyz to turn unready", Duration::from_secs(30), || {
        (http_status(&format!("http://{admin}/readyz")) == "503").then_some(())
    });
    wait_for("the lag alert to fire", Duration::from_secs(90), || {
        let firing = prom.query("ALERTS{alertname=\"StraitReplicationLagHigh\",alertstate=\"firing\"}");
        firing.iter().any(|s| s["metric"]["topic"] == topic.as_str()).then_some(())
    });
    assert!(strait.is_running(), "strait must ride out the outage:\n{}", strait.log_text());

    // The region returns: lag back to 0, ready again.
    assert!(testbed_cmd(&["up", "eu-west"]).status.success());
    wait_for("lag back to 0", Duration::from_secs(180), || (prom.scalar(&lag) == Some(0.0)).then_some(()));
    wait_for("/readyz ready again", Duration::from_secs(60), || {
        (http_status(&format!("http://{admin}/readyz")) == "200").then_some(())
    });

    // strait status reads the running instance.
    let out = common::strait(&["status", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("us-east->eu-west"), "{}", stdout(&out));
    assert!(stdout(&out).lines().all(|l| l.chars().count() <= 100));

    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
    let (status, _) = strait.terminate();
    assert!(status.success());
}
