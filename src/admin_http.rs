//! The admin HTTP endpoint: `/metrics` for Prometheus, `/healthz` (the process is alive),
//! `/readyz` (every flow runs and every cluster answers), and `/status` (JSON lag per
//! flow and partition, read by `strait status`). Nothing here exposes configuration, so
//! no secret can leak through it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::lag::FlowStatus;

/// What the endpoint reads; the lag monitors keep each flow's status current.
pub struct AdminState {
    pub metrics: Option<PrometheusHandle>,
    pub flows: Vec<FlowView>,
}

pub struct FlowView {
    pub status: Arc<Mutex<FlowStatus>>,
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
