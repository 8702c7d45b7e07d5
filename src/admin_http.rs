//! The admin HTTP endpoint: `/metrics` for Prometheus, `/healthz` (the process is alive),
//! `/readyz` (every flow runs and every cluster answers), `/status` (JSON lag per flow,
//! partition and consumer group, read by `strait status`), `/status/history` (the last
//! 15 minutes of throughput and lag per flow), and at `/` a read-only status page built
//! on those two (see [`page`]). Nothing here exposes configuration, so no secret can
//! leak through it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::lag::{FlowStatus, Published};

mod page;

/// What the endpoint reads; the lag monitors keep each flow's status and history
/// current.
pub struct AdminState {
    pub metrics: Option<PrometheusHandle>,
    pub flows: Vec<Published>,
}

impl AdminState {
    fn statuses(&self) -> Vec<FlowStatus> {
        self.flows.iter().map(|f| f.status.lock().unwrap().clone()).collect()
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .route("/status/history", get(history))
        .merge(page::routes())
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n".to_string()),
    }
}

/// Ready when every flow's data path runs and both of its clusters answered the last
/// lag round; otherwise 503 with the reasons.
async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    for s in state.statuses() {
        match s.state.as_str() {
            "running" | "paused" => {}
            other => problems.push(format!("flow {} is {other}", s.flow)),
        }
        if s.state != "starting" {
            if !s.source_reachable {
                problems.push(format!("flow {}: source cluster unreachable", s.flow));
            }
            if !s.target_reachable {
                problems.push(format!("flow {}: target cluster unreachable", s.flow));
            }
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", problems.join("; ")))
    }
}

async fn status(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    Json(serde_json::json!({ "flows": state.statuses() }))
}

/// Per flow, the samples of the last 15 minutes (one per lag round), oldest first.
async fn history(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let flows: Vec<serde_json::Value> = state
        .flows
        .iter()
        .map(|f| {
            let flow = f.status.lock().unwrap().flow.clone();
            serde_json::json!({ "flow": flow, "samples": f.history.lock().unwrap().samples() })
        })
        .collect();
    Json(serde_json::json!({
        "interval_seconds": crate::lag::INTERVAL.as_secs(),
        "capacity": crate::lag::HISTORY_SAMPLES,
        "flows": flows,
    }))
}
