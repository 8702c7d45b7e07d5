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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::{Sample, HISTORY_SAMPLES};

    /// The page and its assets are served from the binary, and `/status/history` holds
    /// each flow's samples, oldest first, at most [`HISTORY_SAMPLES`] of them.
    #[test]
    fn serves_the_page_its_assets_and_the_history() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let flow = Published::default();
        flow.status.lock().unwrap().flow = "us-east->eu-west".into();
        for at_ms in 0..HISTORY_SAMPLES as i64 + 5 {
            let sample =
                Sample { at_ms, records_per_second: 10.0, bytes_per_second: 20.0, lag_seconds: 0.0, lag_records: 0 };
            flow.history.lock().unwrap().push(sample);
        }
        let state = Arc::new(AdminState { metrics: None, flows: vec![flow] });
        let listener = runtime.block_on(bind(SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = runtime.spawn(serve(listener, state, stopped));

        let (code, page) = crate::status::get(addr, "/").unwrap();
        assert_eq!(code, 200);
        assert!(page.contains(r#"src="ui/status.js""#) && page.contains(r#"href="ui/status.css""#), "{page}");
        for asset in ["/ui/status.js", "/ui/status.css"] {
            let (code, body) = crate::status::get(addr, asset).unwrap();
            assert!(code == 200 && !body.is_empty(), "{asset}: {code}");
        }
        let (code, body) = crate::status::get(addr, "/status/history").unwrap();
        assert_eq!(code, 200);
        let history: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(history["interval_seconds"], 2);
        assert_eq!(history["flows"][0]["flow"], "us-east->eu-west");
        let samples = history["flows"][0]["samples"].as_array().unwrap();
        assert_eq!(samples.len(), HISTORY_SAMPLES);
        assert_eq!(samples[0]["at_ms"], 5);
        assert_eq!(samples[0]["bytes_per_second"], 20.0);

        stop.send(true).unwrap();
        runtime.block_on(server).unwrap().unwrap();
    }
}
