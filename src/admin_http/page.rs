//! The status page at `/`: one HTML file, a style sheet and a script, compiled into the
//! binary. The script polls `/status` and `/status/history` every 2 s and draws its
//! charts as SVG itself, so the page needs nothing but this instance: no CDN, no web
//! fonts, nothing to build. A Content-Security-Policy holds the browser to that (it may
//! load and fetch from this origin only) and forbids framing the page.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("page/index.html");
const STYLE_CSS: &str = include_str!("page/status.css");
const SCRIPT_JS: &str = include_str!("page/status.js");

/// Everything the page loads comes from this origin; scripts and styles from files only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes; they read no state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/ui/status.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/ui/status.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT_JS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary may serve a new page: never keep an old one.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
