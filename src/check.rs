//! `strait check`: is the config valid, is every cluster reachable, and what would each
//! flow mirror right now. Probes run in parallel so that an unreachable cluster costs
//! one timeout, not one per cluster.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, ClusterInfo};
use crate::config::Config;
use crate::naming::TopicSelector;

/// The outcome of a check: the report to print and whether every cluster answered.
pub struct CheckReport {
    pub text: String,
    /// Clusters that did not answer in time.
    pub unreachable: Vec<String>,
    /// Clusters that answered but refused TLS or SASL (credentials, certificate).
    pub refused: Vec<String>,
}

pub fn check(config: &Config, timeout: Duration) -> CheckReport {
    let mut text = String::new();
    let _ = writeln!(text, "config: valid ({} cluster(s), {} flow(s))", config.clusters.len(), config.flows.len());
    let probes: Vec<(String, Result<ClusterInfo, ClusterError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .clusters
            .iter()
            .map(|(alias, settings)| {
                let cluster = Cluster::new(alias, settings);
                scope.spawn(move || (cluster.alias.clone(), cluster.probe(timeout)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("probe thread panicked")).collect()
    });

    let (mut unreachable, mut refused) = (Vec::new(), Vec::new());
    for (alias, result) in &probes {
        let settings = &config.clusters[alias];
        let bootstrap = &settings.bootstrap;
        match result {
            Ok(info) => {
                let details = match (&info.api, settings.security().protocol()) {
                    (Some(api), _) => api.to_string(),
                    (None, "PLAINTEXT") => "API versions unknown".into(),
                    (None, _) => format!("{}, authenticated", settings.security().describe()),
                };
                let _ =
                    writeln!(text, "cluster {alias} ({bootstrap}): reachable, {} broker(s), {details}", info.brokers);
            }
            Err(e @ ClusterError::Security { .. }) => {
                let _ = writeln!(text, "cluster {alias} ({bootstrap}): REFUSED: {e}");
                refused.push(alias.clone());
            }
            Err(e) => {
                let _ = writeln!(text, "cluster {alias} ({bootstrap}): UNREACHABLE: {e}");
                unreachable.push(alias.clone());
            }
        }
    }

    for flow in &config.flows {
        let Some((_, Ok(info))) = probes.iter().find(|(a, _)| *a == flow.source) else {
            let _ = writeln!(text, "flow {}: source {} failed the check, topics unknown", flow.name(), flow.source);
            continue;
        };
        let selector = TopicSelector::new(flow);
        let mut matched: Vec<&String> = info.topics.iter().filter(|t| selector.select(t).is_ok()).collect();
        matched.sort();
        let _ = writeln!(text, "flow {}: {} source topic(s) match", flow.name(), matched.len());
        for topic in matched {
            let _ = writeln!(text, "  {topic} -> {}", selector.target_topic(topic));
        }
    }
    CheckReport { text, unreachable, refused }
}

/// `strait check --offline`: the config is valid (it was loaded), and where its secrets
/// and files would come from. Connects to nothing and reads no secret.
pub fn offline(config: &Config) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "config: valid ({} cluster(s), {} flow(s))", config.clusters.len(), config.flows.len());
    for (alias, settings) in &config.clusters {
        let security = settings.security();
        let _ = writeln!(text, "cluster {alias} ({}): {}", settings.bootstrap, security.describe());
        for (key, source) in security.sources() {
            let _ = writeln!(text, "  clusters.{alias}.{key} from {source}");
        }
    }
    for flow in &config.flows {
        let _ = writeln!(
            text,
            "flow {}: topics {:?}, excluding {:?}; groups {:?}, excluding {:?}",
            flow.name(),
            flow.topics,
            flow.topics_exclude,
            flow.groups,
            flow.groups_exclude
        );
    }
    let _ = writeln!(text, "admin endpoint: {}", config.admin.listen);
    let _ = writeln!(text, "not checked offline: reachability, credentials, certificates, secret files and variables");
    text
}
