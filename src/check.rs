//! `strait check`: is the config valid, is every cluster reachable, and what would each
//! flow mirror right now. Probes run in parallel so that an unreachable cluster costs
//! one timeout, not one per cluster.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterInfo};
use crate::config::Config;
use crate::naming::TopicSelector;

/// The outcome of a check: the report to print and whether every cluster answered.
pub struct CheckReport {
    pub text: String,
    pub unreachable: Vec<String>,
}

pub fn check(config: &Config, timeout: Duration) -> CheckReport {
    let mut text = String::new();
    let _ = writeln!(text, "config: valid ({} cluster(s), {} flow(s))", config.clusters.len(), config.flows.len());
    let probes: Vec<(String, Result<ClusterInfo, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = config
            .clusters
            .iter()
            .map(|(alias, settings)| {
                let cluster = Cluster::new(alias, settings);
                scope.spawn(move || (cluster.alias.clone(), cluster.probe(timeout).map_err(|e| e.to_string())))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("probe thread panicked")).collect()
    });

    let mut unreachable = Vec::new();
    for (alias, result) in &probes {
        let bootstrap = &config.clusters[alias].bootstrap;
        match result {
            Ok(info) => {
                let api = info.api.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "API versions unknown".into());
                let _ = writeln!(text, "cluster {alias} ({bootstrap}): reachable, {} broker(s), {api}", info.brokers);
            }
            Err(reason) => {
                let _ = writeln!(text, "cluster {alias} ({bootstrap}): UNREACHABLE: {reason}");
                unreachable.push(alias.clone());
            }
        }
    }

    for flow in &config.flows {
        let Some((_, Ok(info))) = probes.iter().find(|(a, _)| *a == flow.source) else {
            let _ = writeln!(text, "flow {}: source {} unreachable, topics unknown", flow.name(), flow.source);
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
    CheckReport { text, unreachable }
}
