//! deploy/: the Kubernetes manifests of both regions, the PrometheusRule, the systemd
//! unit and the container recipe. Docker and a Kubernetes API are not available where
//! the suite runs, so the files are parsed (YAML with yaml-rust2) and checked for what a
//! deployment depends on; the config embedded in each ConfigMap must pass
//! `strait check --offline`, and every secret it references must be wired to the pod.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;

use common::*;
use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

/// The value at a dotted path (`spec.template.spec`); panics naming the missing field.
fn at<'a>(doc: &'a Yaml, what: &str, path: &str) -> &'a Yaml {
    let mut y = doc;
    for part in path.split('.') {
        y = match part.parse::<usize>() {
            Ok(i) => &y[i],
            Err(_) => &y[part],
        };
        assert!(!y.is_badvalue(), "{what}: `{path}` is missing (at `{part}`)");
    }
    y
}

fn text<'a>(doc: &'a Yaml, what: &str, path: &str) -> &'a str {
    at(doc, what, path).as_str().unwrap_or_else(|| panic!("{what}: `{path}` is not a string"))
}

fn list<'a>(doc: &'a Yaml, what: &str, path: &str) -> &'a Vec<Yaml> {
    at(doc, what, path).as_vec().unwrap_or_else(|| panic!("{what}: `{path}` is not a list"))
}

fn kind<'a>(docs: &'a [Yaml], file: &str, kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "{file}: expected exactly one {kind}");
    found[0]
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    selector.as_hash().is_some_and(|h| !h.is_empty() && h.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v))
}

#[test]
fn kubernetes_manifests_of_both_regions_are_complete_and_their_configs_check_offline() {
    for region in ["us-east", "eu-west"] {
        let file = format!("deploy/kubernetes/{region}/strait.yaml");
        let docs = load(&file);
        for d in &docs {
            text(d, &file, "apiVersion");
            if d["kind"].as_str() != Some("Namespace") {
                assert_eq!(text(d, &file, "metadata.namespace"), "strait", "{file}: {:?}", d["kind"]);
            }
        }
        let deployment = kind(&docs, &file, "Deployment");
        let what = format!("{file} Deployment");
        let replicas = at(deployment, &what, "spec.replicas").as_i64().unwrap();
        assert!(replicas >= 2, "{what}: several replicas share the work, got {replicas}");
        let pod_labels = at(deployment, &what, "spec.template.metadata.labels");
        assert!(selects(at(deployment, &what, "spec.selector.matchLabels"), pod_labels), "{what}: selector");
        let grace = at(deployment, &what, "spec.template.spec.terminationGracePeriodSeconds").as_i64().unwrap();
        assert!(grace >= 45, "{what}: the drain takes up to 30 s plus the commit; grace period {grace} s");
        assert_eq!(at(deployment, &what, "spec.template.spec.securityContext.runAsNonRoot").as_bool(), Some(true));
        let containers = list(deployment, &what, "spec.template.spec.containers");
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert!(text(c, &what, "image").contains("strait"));
        assert_eq!(at(c, &what, "securityContext.allowPrivilegeEscalation").as_bool(), Some(false));
        assert_eq!(at(c, &what, "securityContext.readOnlyRootFilesystem").as_bool(), Some(true));
        for path in ["resources.requests.cpu", "resources.requests.memory", "resources.limits.memory"] {
            text(c, &what, path);
        }
        let port = list(c, &what, "ports").iter().find(|p| p["name"].as_str() == Some("admin")).expect("admin port");
        let admin_port = at(port, &what, "containerPort").as_i64().unwrap();
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(text(c, &what, &format!("{probe}.httpGet.path")), path, "{what}: {probe}");
            assert_eq!(text(c, &what, &format!("{probe}.httpGet.port")), "admin", "{what}: {probe} port");
        }

        // The config file: args name it, a volume mounts the ConfigMap holding it.
        let args: Vec<&str> = list(c, &what, "args").iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "run");
        let config_path = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
        let mounts = list(c, &what, "volumeMounts");
        let volumes = list(deployment, &what, "spec.template.spec.volumes");
        let configmap = kind(&docs, &file, "ConfigMap");
        let secret = kind(&docs, &file, "Secret");
        let resolve = |path: &Path| -> (String, String) {
            // (kind of the volume's source, key) for a file path inside the pod.
            let mount = mounts
                .iter()
                .find(|m| path.parent() == Some(Path::new(m["mountPath"].as_str().unwrap())))
                .unwrap_or_else(|| panic!("{what}: no volume is mounted at {}", path.parent().unwrap().display()));
            let volume =
                volumes.iter().find(|v| v["name"] == mount["name"]).unwrap_or_else(|| panic!("{what}: volume missing"));
            let file_name = path.file_name().unwrap().to_str().unwrap().to_string();
            let key = volume
                .as_hash()
                .unwrap()
                .values()
                .filter_map(|src| src["items"].as_vec())
                .flatten()
                .find(|item| item["path"].as_str() == Some(&file_name))
                .map_or(file_name.clone(), |item| item["key"].as_str().unwrap().to_string());
            if !volume["configMap"].is_badvalue() {
                assert_eq!(text(volume, &what, "configMap.name"), text(configmap, &file, "metadata.name"));
                ("ConfigMap".into(), key)
            } else {
                assert_eq!(text(volume, &what, "secret.secretName"), text(secret, &file, "metadata.name"));
                ("Secret".into(), key)
            }
        };
        let (source, key) = resolve(config_path);
        assert_eq!(source, "ConfigMap", "{what}: the config comes from the ConfigMap");
        let toml = configmap["data"][key.as_str()].as_str().unwrap_or_else(|| panic!("{file}: ConfigMap lacks {key}"));
        let secret_keys: BTreeSet<&str> =
            at(secret, &file, "stringData").as_hash().unwrap().keys().map(|k| k.as_str().unwrap()).collect();

        // The embedded config validates offline, names this region as every flow's
        // target, listens where the probes look, and every secret it reads is wired.
        let (_dir, cfg_file) = write_config(toml);
        let out = strait(&["check", "--offline", "--config", cfg_file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{file}: embedded config: {}", stderr(&out));
        let report = stdout(&out);
        assert!(report.contains(&format!("admin endpoint: 0.0.0.0:{admin_port}")), "{report}");
        let flows: Vec<&str> = report.lines().filter(|l| l.starts_with("flow ")).collect();
        assert!(!flows.is_empty());
        for flow in flows {
            assert!(flow.contains(&format!("->{region}:")), "{file}: runs near its target: {flow}");
        }
        let env = list(c, &what, "env");
        for line in report.lines().filter_map(|l| l.trim().strip_prefix("clusters.")) {
            let (_, source) = line.split_once(" from ").unwrap();
            if let Some(var) = source.strip_prefix("env ") {
                let e = env.iter().find(|e| e["name"].as_str() == Some(var)).unwrap_or_else(|| {
                    panic!("{what}: the config reads ${{{var}}} but the container has no such variable")
                });
                assert_eq!(text(e, &what, "valueFrom.secretKeyRef.name"), text(secret, &file, "metadata.name"));
                let key = text(e, &what, "valueFrom.secretKeyRef.key");
                assert!(secret_keys.contains(key), "{file}: Secret lacks key {key}");
            } else if let Some(path) = source.strip_prefix("file ") {
                let (source, key) = resolve(Path::new(path));
                assert_eq!(source, "Secret", "{what}: {path} should come from the Secret");
                assert!(secret_keys.contains(key.as_str()), "{file}: Secret lacks key {key} for {path}");
            } else {
                panic!("{file}: a secret is inline in the config: {line}");
            }
        }

        let service = kind(&docs, &file, "Service");
        assert_eq!(text(service, &file, "metadata.name"), "strait", "job label for StraitInstanceDown");
        assert!(selects(at(service, &file, "spec.selector"), pod_labels), "{file}: Service selects the pods");
        let service_port = &list(service, &file, "spec.ports")[0];
        assert_eq!(text(service_port, &file, "targetPort"), "admin");
        let monitor = kind(&docs, &file, "ServiceMonitor");
        assert!(selects(at(monitor, &file, "spec.selector.matchLabels"), at(service, &file, "metadata.labels")));
        let endpoint = &list(monitor, &file, "spec.endpoints")[0];
        assert_eq!(text(endpoint, &file, "port"), text(service_port, &file, "name"));
        assert_eq!(text(endpoint, &file, "path"), "/metrics");
        let pdb = kind(&docs, &file, "PodDisruptionBudget");
        assert!(selects(at(pdb, &file, "spec.selector.matchLabels"), pod_labels), "{file}: PDB selects the pods");
        assert!(!pdb["spec"]["maxUnavailable"].is_badvalue() || !pdb["spec"]["minAvailable"].is_badvalue());
    }
}

#[test]
fn prometheus_rule_carries_exactly_the_alerts_of_alerts_yml() {
    let rule = load("deploy/kubernetes/common/prometheusrule.yaml");
    assert_eq!(rule.len(), 1);
    let what = "PrometheusRule";
    assert_eq!(text(&rule[0], what, "kind"), "PrometheusRule");
    assert_eq!(text(&rule[0], what, "apiVersion"), "monitoring.coreos.com/v1");
    let alerts = load("deploy/prometheus/alerts.yml");
    assert_eq!(
        at(&rule[0], what, "spec.groups"),
        at(&alerts[0], "alerts.yml", "groups"),
        "common/prometheusrule.yaml is stale: run deploy/kubernetes/gen-prometheusrule"
    );
    assert!(list(&alerts[0], "alerts.yml", "groups.0.rules").len() >= 5);
}

#[test]
fn systemd_unit_is_hardened_and_drains_on_stop() {
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/strait.service")).unwrap();
    let value = |key: &str| -> String {
        unit.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
            .next_back()
            .unwrap_or_else(|| panic!("strait.service: {key}= is missing"))
    };
    assert!(value("ExecStart").ends_with("strait run --config /etc/strait/strait.toml"));
    assert!(value("DynamicUser") == "yes" || !value("User").is_empty());
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestartPreventExitStatus", "2"),
    ] {
        assert_eq!(value(key), want, "strait.service: {key}");
    }
    let stop: u64 = value("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(stop >= 45, "the drain takes up to 30 s; TimeoutStopSec={stop}");
    assert_eq!(value("CapabilityBoundingSet"), "");
}

#[test]
fn container_recipe_is_multi_stage_non_root_with_a_healthcheck() {
    let recipe = std::fs::read_to_string(repo_root().join("deploy/container/Dockerfile")).unwrap();
    // Join continuation lines, drop comments: one instruction per entry.
    let joined = recipe.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let instructions: Vec<String> =
        joined.replace("\\\n", " ").lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    let froms: Vec<&String> = instructions.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage build: {froms:?}");
    let last_stage = instructions.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    let runtime = &instructions[last_stage..];
    assert!(runtime[0].contains("slim") || runtime[0].contains("distroless"), "small runtime base: {}", runtime[0]);
    assert!(runtime.iter().any(|i| i.starts_with("COPY --from=")), "the binary comes from the build stage");
    let user = runtime.iter().rfind(|i| i.starts_with("USER ")).expect("USER in the runtime stage");
    let uid = user["USER ".len()..].split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root: {user}");
    let health = runtime.iter().find(|i| i.starts_with("HEALTHCHECK ")).expect("HEALTHCHECK");
    assert!(health.contains("healthz"), "{health}");
    let entry = runtime.iter().find(|i| i.starts_with("ENTRYPOINT ")).expect("ENTRYPOINT");
    assert!(entry.contains("/usr/local/bin/strait"), "{entry}");
    assert!(runtime.iter().any(|i| i == "STOPSIGNAL SIGTERM"));
}

/// The container's HEALTHCHECK runs `strait healthz`: exit 0 when /healthz answers 200.
#[test]
fn healthz_command_asks_the_admin_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        for answer in ["200 OK", "503 Service Unavailable"] {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&request).starts_with("GET /healthz HTTP/1.1\r\n"));
            write!(s, "HTTP/1.1 {answer}\r\ncontent-length: 3\r\n\r\nok\n").unwrap();
        }
    });
    assert_eq!(strait(&["healthz", &addr]).status.code(), Some(0));
    let out = strait(&["healthz", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    server.join().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    assert_eq!(strait(&["healthz", &free]).status.code(), Some(1), "nothing listening");
}
