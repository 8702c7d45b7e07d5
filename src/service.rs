//! `strait run`: starts every flow's topic sync and data path, serves the admin endpoint,
//! and shuts all of it down in order.
//!
//! Shutdown, spelled out: a signal (or a flow that stopped on an error) flips the shared
//! `shutdown` watch to true. Topic sync tasks stop at their next wait; each data-path
//! thread stops fetching, flushes what is in flight to the target, commits the
//! acknowledged progress and leaves its consumer group; the admin endpoint stops last.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::acl_sync;
use crate::admin_http::{self, AdminState};
use crate::cluster::Cluster;
use crate::config::{Config, FlowConfig};
use crate::lag::{self, FlowStatus, Published};
use crate::metrics;
use crate::mirror::{self, MirrorError};
use crate::topic_sync::{self, Routes};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("admin endpoint: cannot listen on {addr}: {reason} (set [admin] listen to a free address)")]
    AdminListen { addr: String, reason: String },
    #[error(transparent)]
    Flow(#[from] MirrorError),
}

/// Runs until `shutdown` turns true or a flow fails; returns the first flow error.
pub async fn run(config: Config, shutdown_tx: watch::Sender<bool>) -> Result<(), ServiceError> {
    let prometheus = match metrics::install() {
        Ok(handle) => Some(handle),
        Err(e) => {
            // Only possible when a recorder is already installed (tests running several
            // services in one process); metrics then go to that recorder.
            tracing::debug!("metrics recorder not installed: {e}");
            None
        }
    };
    let listen = config.admin_listen();
    let listener = admin_http::bind(listen)
        .await
        .map_err(|e| ServiceError::AdminListen { addr: listen.to_string(), reason: e.to_string() })?;
    tracing::info!("admin endpoint on http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());

    let mut flows = Vec::new();
    let mut views = Vec::new();
    let mut sync_tasks = Vec::new();
    let mut checkpointers = Vec::new();
    let mut monitors = Vec::new();
    for flow in &config.flows {
        let source = Cluster::new(&flow.source, config.cluster(&flow.source));
        let target = Cluster::new(&flow.target, config.cluster(&flow.target));
        let (routes_tx, routes_rx) = watch::channel(Routes::default());
        let routes_for_checkpoints = routes_rx.clone();
        sync_tasks.push(tokio::spawn(sync_topics(
            flow.clone(),
            source.clone(),
            target.clone(),
            routes_tx,
            shutdown_tx.subscribe(),
        )));
        let handle = match mirror::start(flow, &source, &target, routes_rx, shutdown_tx.subscribe()) {
            Ok(h) => h,
            Err(e) => {
                let _ = shutdown_tx.send(true);
                return Err(e.into());
            }
        };
        checkpointers.push(crate::checkpoint::start(
            flow.clone(),
            source.clone(),
            target.clone(),
            handle.shared.clone(),
            routes_for_checkpoints,
            shutdown_tx.subscribe(),
        ));
        let up = Arc::new(AtomicBool::new(true));
        metrics::flow_started(&flow.name());
        let published = Published {
            status: Arc::new(std::sync::Mutex::new(FlowStatus {
                flow: flow.name(),
                state: "starting".into(),
                ..Default::default()
            })),
            history: Arc::default(),
        };
        let watched = lag::Watched {
            shared: handle.shared.clone(),
            source: source.clone(),
            target: target.clone(),
            map_topic: crate::offset_map::map_topic(&flow.source),
            up: up.clone(),
        };
        monitors.push(lag::start(watched, published.clone(), config.metrics.clone(), shutdown_tx.subscribe()));
        views.push(published);
        flows.push((flow.name(), handle, up));
    }

    let upkeep = prometheus.clone();
    let state = Arc::new(AdminState { metrics: prometheus, flows: views });
    let admin = tokio::spawn(admin_http::serve(listener, state, shutdown_tx.subscribe()));
    let process_metrics = tokio::spawn({
        let mut shutdown = shutdown_tx.subscribe();
        async move {
            loop {
                metrics::process();
                // Histogram samples are kept until drained; without a scrape nothing
                // drains them, so drain them here (memory stays bounded).
                if let Some(handle) = &upkeep {
                    handle.run_upkeep();
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    });

    // Watch the flows: one that ends on its own has failed; stop everything then.
    let mut shutdown_rx = shutdown_tx.subscribe();
    loop {
        if *shutdown_rx.borrow() {
            break;
        }
        if flows.iter().any(|(_, h, _)| h.is_finished()) {
            let _ = shutdown_tx.send(true);
            break;
        }
        tokio::select! {
            _ = shutdown_rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }

    let mut first_error = None;
    for (name, handle, up) in flows {
        let result = tokio::task::spawn_blocking(move || handle.join()).await.expect("join task panicked");
        up.store(false, Ordering::SeqCst);
        metrics::flow_up(&name, false);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for task in sync_tasks {
        let _ = task.await;
    }
    for thread in monitors {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    // A checkpointer may be waiting for a cluster that is down (its group requests do
    // not time out, see checkpoint.rs); checkpoints are idempotent, so shutdown gives
    // it a few seconds and then leaves it to end with the process.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while checkpointers.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = process_metrics.await;
    let _ = admin.await;
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Topic sync for one flow: compare, apply, publish the ready routes, sync ACLs, wait,
/// repeat.
/// Errors are reported and retried at the next refresh; they never stop the data path.
async fn sync_topics(
    flow: FlowConfig,
    source: Cluster,
    target: Cluster,
    routes: watch::Sender<Routes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = flow.name();
    // The data path needs the offset-map topic before it may carry records.
    loop {
        match topic_sync::ensure_internal_topics(&flow, &source, &target).await {
            Ok(()) => break,
            Err(e) => {
                metrics::error(&name, "topic_sync");
                tracing::warn!(flow = %name, "creating strait's internal topics: {e} (retrying)");
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(flow.refresh_interval()) => {}
        }
    }
    loop {
        match topic_sync::plan(&flow, &source, &target).await {
            Ok(plan) => {
                if !plan.is_empty() {
                    tracing::info!(flow = %name, "topic sync:\n{plan}");
                }
                let (ready, errors) = topic_sync::apply(&plan, &target).await;
                metrics::topic_sync_change(&name, "create", plan.create.len());
                metrics::topic_sync_change(&name, "partitions", plan.add_partitions.len());
                metrics::topic_sync_change(&name, "config", plan.config_changes.len());
                for e in errors {
                    metrics::error(&name, "topic_sync");
                    tracing::warn!(flow = %name, "topic sync: {e}");
                }
                sync_acls(&flow, &plan.routes, &source, &target).await;
                routes.send_if_modified(|current| {
                    if **current != ready {
                        *current = Arc::new(ready);
                        true
                    } else {
                        false
                    }
                });
            }
            Err(e) => {
                metrics::error(&name, "topic_sync");
                tracing::warn!(flow = %name, "topic sync: {e} (retrying in {:?})", flow.refresh_interval());
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(flow.refresh_interval()) => {}
        }
    }
}

/// ACL sync for one flow, on the topic sync's refresh. Errors are counted and logged and
/// retried at the next refresh; they never stop the flow.
async fn sync_acls(
    flow: &FlowConfig,
    routes: &std::collections::BTreeMap<String, topic_sync::Route>,
    source: &Cluster,
    target: &Cluster,
) {
    let name = flow.name();
    match acl_sync::plan(flow, routes, source, target).await {
        Ok(plan) => {
            if let Some(why) = &plan.disabled {
                tracing::debug!(flow = %name, "ACL sync skipped: {why}");
                return;
            }
            if !plan.is_empty() {
                tracing::info!(flow = %name, "ACL sync:\n{plan}");
            }
            let (created, deleted, errors) = acl_sync::apply(&plan, flow, target).await;
            metrics::acl_sync_change(&name, "create", created);
            metrics::acl_sync_change(&name, "delete", deleted);
            for e in errors {
                metrics::error(&name, "acl_sync");
                tracing::warn!(flow = %name, "ACL sync: {e}");
            }
        }
        Err(e) => {
            metrics::error(&name, "acl_sync");
            tracing::warn!(flow = %name, "ACL sync: {e} (retrying in {:?})", flow.refresh_interval());
        }
    }
}
