//! The admin HTTP endpoint: `/metrics` for Prometheus, `/healthz` (the process is alive),
//! `/readyz` (every flow's data path runs), and `/status` (JSON progress per flow).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::sync::watch;

use crate::mirror::FlowShared;

/// What the endpoint reads; the service fills it as flows start.
pub struct AdminState {
    pub metrics: Option<PrometheusHandle>,
    pub flows: Vec<FlowView>,
}

pub struct FlowView {
    pub shared: Arc<FlowShared>,
    pub up: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Serialize)]
struct FlowStatus {
    flow: String,
    up: bool,
    partitions: Vec<PartitionStatus>,
}

#[derive(Serialize)]
struct PartitionStatus {
    topic: String,
    partition: i32,
    /// Source offset up to which every record is on the target.
    mirrored_position: i64,
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

async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let down: Vec<String> = state
        .flows
        .iter()
        .filter(|f| !f.up.load(std::sync::atomic::Ordering::SeqCst))
        .map(|f| f.shared.name.clone())
        .collect();
    if down.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("flows not running: {}\n", down.join(", ")))
    }
}

async fn status(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let flows: Vec<FlowStatus> = state
        .flows
        .iter()
        .map(|f| FlowStatus {
            flow: f.shared.name.clone(),
            up: f.up.load(std::sync::atomic::Ordering::SeqCst),
            partitions: f
                .shared
                .acknowledged()
                .into_iter()
                .map(|(topic, partition, mirrored_position)| PartitionStatus { topic, partition, mirrored_position })
                .collect(),
        })
        .collect();
    Json(serde_json::json!({ "flows": flows }))
}
