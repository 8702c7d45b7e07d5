//! Where strait's logs go, in which format, and what librdkafka's log lines mean.
//!
//! Logs go to stderr, as text (colours only when stderr is a terminal and `NO_COLOR` is
//! unset) or as JSON lines for log shippers (Loki, Elasticsearch, Cloud Logging): one
//! object per line with `timestamp`, `level`, `target`, `message`, the event's fields and
//! the fields of the spans it happened in (`flow`, `topic`, `partition` where known).
//!
//! librdkafka reports everything it sees, and much of it heals itself within
//! milliseconds: a freshly started broker answers "Coordinator load in progress" until
//! it has loaded its transaction state, a broker connection drops and is re-established.
//! Logged at librdkafka's own level (WARN) these look like faults and train operators to
//! ignore warnings. [`librdkafka`] and [`librdkafka_error`] therefore classify each line:
//! transient conditions go to DEBUG or INFO, at most once a minute per cluster, client
//! role and kind, and turn into WARN only when they persist for a minute; real faults stay
//! WARN or ERROR. Every line names the cluster (alias) and the client role.
//!
//! Clients with a context of their own call those two functions from their
//! `ClientContext::log` and `ClientContext::error`; clients without one use [`ClientLog`].
//! Clients still on rdkafka's default context log through the `log` crate; the bridge
//! installed by [`init`] classifies their lines the same way, as cluster `unknown`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The filter when `STRAIT_LOG` is unset. rdkafka's own crate logs client statistics at
/// INFO for clients on its default context, hence WARN there; librdkafka's lines are
/// classified by this module and kept at INFO.
const DEFAULT_FILTER: &str = "info,rdkafka=warn";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The format to use: the command-line flag wins, then the config (`[log] format`,
    /// which includes `STRAIT__LOG__FORMAT`). When the config could not be read, the
    /// environment variable is still honoured so that the error itself is in the format
    /// the log shipper expects.
    pub fn choose(flag: Option<LogFormat>, config: Option<LogFormat>, env: Option<&str>) -> LogFormat {
        flag.or(config)
            .or_else(|| match env.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                Some("json") => Some(LogFormat::Json),
                _ => None,
            })
            .unwrap_or_default()
    }
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Installs the global subscriber writing to stderr in `format`, filtered by the
/// `STRAIT_LOG` environment variable (`EnvFilter` syntax, default `info`), and the bridge
/// that brings `log` records (rdkafka's default contexts) into it. Call once, early.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STRAIT_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(use_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
            .boxed(),
        LogFormat::Json => {
            let mut json = json_subscriber::JsonLayer::stderr();
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_flattened_event()
                .with_top_level_flattened_span_list();
            json.boxed()
        }
    };
    let subscriber = Registry::default().with(layer.with_filter(filter));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return; // already initialised (tests): keep the first
    }
    let _ = FORMAT.set(format);
    if log::set_boxed_logger(Box::new(LogBridge)).is_ok() {
        log::set_max_level(tracing_log::AsLog::as_log(&tracing::level_filters::LevelFilter::current()));
    }
}

/// Colours are escape codes: they help on a terminal and garble files, journald and log
/// shippers. <https://no-color.org>: a non-empty `NO_COLOR` turns them off everywhere.
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    let disabled = match no_color {
        Some(value) => !value.is_empty(),
        None => false,
    };
    stderr_is_terminal && !disabled
}

/// Reports a command's final error: `error: …` on stderr in text mode, an ERROR event in
/// JSON mode (so that every line a log shipper reads is JSON).
pub fn report_error(message: impl std::fmt::Display) {
    match FORMAT.get() {
        Some(LogFormat::Json) => tracing::error!(target: "strait", "{message}"),
        _ => eprintln!("error: {message}"),
    }
}

/// A librdkafka client context for clients that need nothing but logging: it names the
/// cluster and the client role in every librdkafka line (see [`librdkafka`]).
#[derive(Debug, Clone)]
pub struct ClientLog {
    cluster: String,
    role: &'static str,
}

impl ClientLog {
    /// `role` is the kind of client, as in its `client.id` (`admin`, `metadata`,
    /// `groups`, `producer`, `consumer`).
    pub fn new(cluster: &str, role: &'static str) -> ClientLog {
        ClientLog { cluster: cluster.to_string(), role }
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        librdkafka(&self.cluster, self.role, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        librdkafka_error(&self.cluster, self.role, &error, reason);
    }

    /// Statistics are for contexts that export them (the data path's); here they are
    /// dropped instead of being logged as rdkafka's default does.
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ConsumerContext for ClientLog {}

/// Logs one librdkafka log line (`ClientContext::log`) of the client `role` on
/// `cluster` at the level it deserves; see the module docs and docs/logging.md.
pub fn librdkafka(cluster: &str, role: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    let message = strip_thread(message);
    emit(cluster, role, facility, classify(level, facility, message), message);
}

/// Logs an error librdkafka reports through `ClientContext::error` (a broker connection
/// failed, all brokers are down, authentication failed, …) of the client `role` on
/// `cluster`, at the level it deserves.
pub fn librdkafka_error(cluster: &str, role: &str, error: &KafkaError, reason: &str) {
    let code = error.rdkafka_error_code();
    let facility = code.map(|c| format!("{c:?}")).unwrap_or_else(|| "ERROR".into());
    let message = match code {
        Some(code) => format!("{code}: {reason}"),
        None => format!("{error}: {reason}"),
    };
    emit(cluster, role, &facility, classify_error(code), &message);
}

/// librdkafka prefixes lines with the thread that logged them (`[thrd:main]: `); the
/// broker is named again in the text itself.
fn strip_thread(message: &str) -> &str {
    match message.strip_prefix("[thrd:").and_then(|rest| rest.split_once("]: ")) {
        Some((_, text)) => text,
        None => message,
    }
}

/// What to do with a librdkafka line: its level, and for lines that repeat while a
/// condition lasts, the kind under which repeats are rate-limited. A rate-limited line
/// below WARN is transient: it becomes WARN when the condition persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub level: Level,
    pub kind: Option<&'static str>,
}

impl Verdict {
    fn at(level: Level) -> Verdict {
        Verdict { level, kind: None }
    }
    fn limited(level: Level, kind: &'static str) -> Verdict {
        Verdict { level, kind: Some(kind) }
    }
}

/// Classifies a log line by librdkafka's level, facility and text.
pub(crate) fn classify(level: RDKafkaLogLevel, facility: &str, message: &str) -> Verdict {
    let own = match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            Level::ERROR
        }
        RDKafkaLogLevel::Warning => Level::WARN,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::INFO,
        RDKafkaLogLevel::Debug => Level::DEBUG,
    };
    if own == Level::DEBUG {
        return Verdict::at(own);
    }
    match facility {
        // The idempotent producer asks for a producer id at start and after a broker
        // change; "Coordinator load in progress", "not coordinator" or a dropped
        // connection are answered by a retry 500 ms later.
        "GETPID" if message.ends_with(": retrying") => Verdict::limited(Level::DEBUG, "producer-id"),
        // A broker connection failed or dropped; librdkafka reconnects with backoff.
        // Security failures are configuration faults, not transient.
        "FAIL" if !is_security_failure(message) => Verdict::limited(Level::INFO, "broker-connection"),
        // Requests timed out on one connection, which librdkafka then re-establishes.
        "REQTMOUT" => Verdict::limited(Level::INFO, "request-timeout"),
        _ => Verdict::at(own),
    }
}

fn is_security_failure(message: &str) -> bool {
    ["SSL", "SASL", "uthenticat", "certificate"].iter().any(|needle| message.contains(needle))
}

/// Classifies an error from librdkafka's error callback by its code.
pub(crate) fn classify_error(code: Option<RDKafkaErrorCode>) -> Verdict {
    match code {
        // One broker connection (the same event as the FAIL log line, hence its kind).
        Some(RDKafkaErrorCode::BrokerTransportFailure) => Verdict::limited(Level::INFO, "broker-connection"),
        Some(RDKafkaErrorCode::OperationTimedOut) => Verdict::limited(Level::INFO, "request-timeout"),
        // Nothing of the cluster answers: the cluster is down or unreachable from here.
        Some(RDKafkaErrorCode::AllBrokersDown) => Verdict::limited(Level::WARN, "all-brokers-down"),
        Some(RDKafkaErrorCode::Resolve) => Verdict::limited(Level::WARN, "resolve"),
        Some(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Fatal,
        ) => Verdict::at(Level::ERROR),
        _ => Verdict::at(Level::WARN),
    }
}

/// How often a rate-limited kind is logged at most, per cluster and role.
const WINDOW: Duration = Duration::from_secs(60);
/// A transient condition still reported after this long is no longer transient.
const ESCALATE_AFTER: Duration = Duration::from_secs(60);
/// Occurrences further apart than this start a new episode. librdkafka itself repeats
/// an identical connection failure at most every 30 s (plus reconnect backoff).
const EPISODE_GAP: Duration = Duration::from_secs(60);

/// What the rate limiter decided for one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admit {
    /// Occurrences dropped since the last one logged.
    pub suppressed: u64,
    /// How long the condition has lasted (this episode).
    pub lasting: Duration,
}

#[derive(Debug)]
struct Episode {
    started: Instant,
    last_seen: Instant,
    last_logged: Instant,
    suppressed: u64,
}

/// Per (cluster, role, kind): at most one line per [`WINDOW`], counting the rest.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    episodes: HashMap<(String, String, &'static str), Episode>,
}

impl RateLimiter {
    /// `Some` when this occurrence is to be logged.
    pub(crate) fn admit(&mut self, cluster: &str, role: &str, kind: &'static str, now: Instant) -> Option<Admit> {
        let key = (cluster.to_string(), role.to_string(), kind);
        let Some(episode) = self.episodes.get_mut(&key) else {
            let episode = Episode { started: now, last_seen: now, last_logged: now, suppressed: 0 };
            self.episodes.insert(key, episode);
            return Some(Admit { suppressed: 0, lasting: Duration::ZERO });
        };
        if now.duration_since(episode.last_seen) > EPISODE_GAP {
            *episode = Episode { started: now, last_seen: now, last_logged: now, suppressed: 0 };
            return Some(Admit { suppressed: 0, lasting: Duration::ZERO });
        }
        episode.last_seen = now;
        if now.duration_since(episode.last_logged) < WINDOW {
            episode.suppressed += 1;
            return None;
        }
        let admit = Admit { suppressed: episode.suppressed, lasting: now.duration_since(episode.started) };
        episode.last_logged = now;
        episode.suppressed = 0;
        Some(admit)
    }
}

fn limiter() -> &'static Mutex<RateLimiter> {
    static LIMITER: OnceLock<Mutex<RateLimiter>> = OnceLock::new();
    LIMITER.get_or_init(Default::default)
}

fn emit(cluster: &str, role: &str, facility: &str, verdict: Verdict, message: &str) {
    let mut level = verdict.level;
    let (mut suppressed, mut lasting_s) = (None, None);
    if let Some(kind) = verdict.kind {
        let admitted = limiter().lock().unwrap_or_else(|e| e.into_inner()).admit(cluster, role, kind, Instant::now());
        let Some(admit) = admitted else { return };
        suppressed = (admit.suppressed > 0).then_some(admit.suppressed);
        if admit.lasting > Duration::ZERO {
            lasting_s = Some(admit.lasting.as_secs());
        }
        if level > Level::WARN && admit.lasting >= ESCALATE_AFTER {
            level = Level::WARN; // `>` on tracing levels means "more verbose"
        }
    }
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: "librdkafka",
                $level,
                cluster = %cluster,
                role = %role,
                facility = %facility,
                suppressed,
                lasting_s,
                "{message}"
            )
        };
    }
    match level {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        Level::DEBUG => at!(Level::DEBUG),
        _ => at!(Level::TRACE),
    }
}

/// Brings `log` records into tracing. rdkafka logs through `log` for clients on its
/// default context (`librdkafka: FACILITY text` under target `librdkafka`, and errors as
/// `librdkafka: <error>: <reason>`); those are classified like any other librdkafka line,
/// with the cluster unknown. Everything else is forwarded unchanged.
struct LogBridge;

impl log::Log for LogBridge {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        match (record.target(), text.strip_prefix("librdkafka: ")) {
            ("librdkafka", Some(line)) => {
                let (facility, message) = line.split_once(' ').unwrap_or(("", line));
                let level = match record.level() {
                    log::Level::Error => RDKafkaLogLevel::Error,
                    log::Level::Warn => RDKafkaLogLevel::Warning,
                    log::Level::Info => RDKafkaLogLevel::Info,
                    log::Level::Debug | log::Level::Trace => RDKafkaLogLevel::Debug,
                };
                librdkafka(UNKNOWN, UNKNOWN, level, facility, message);
            }
            ("rdkafka::client", Some(error)) => {
                let code = error_code_in(error);
                let facility = code.map(|c| format!("{c:?}")).unwrap_or_else(|| "ERROR".into());
                let message = error.strip_prefix("Global error: ").unwrap_or(error);
                emit(UNKNOWN, UNKNOWN, &facility, classify_error(code), message);
            }
            _ => {
                let _ = tracing_log::format_trace(record);
            }
        }
    }

    fn flush(&self) {}
}

const UNKNOWN: &str = "unknown";

/// The error code that starts an error text from rdkafka's default context
/// (`Global error: AllBrokersDown (Local: All broker connections are down): …`).
fn error_code_in(text: &str) -> Option<RDKafkaErrorCode> {
    let text = text.strip_prefix("Global error: ").unwrap_or(text);
    [
        RDKafkaErrorCode::BrokerTransportFailure,
        RDKafkaErrorCode::AllBrokersDown,
        RDKafkaErrorCode::Resolve,
        RDKafkaErrorCode::OperationTimedOut,
        RDKafkaErrorCode::Authentication,
        RDKafkaErrorCode::SSL,
        RDKafkaErrorCode::SaslAuthenticationFailed,
        RDKafkaErrorCode::Fatal,
    ]
    .into_iter()
    .find(|code| text.starts_with(&code.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Texts as librdkafka 2.12 writes them (seen on the test bed, or from its sources).
    const COORDINATOR_LOADING: &str = "[thrd:main]: Failed to acquire idempotence PID from broker \
        127.0.0.1:33092/1: Broker: Coordinator load in progress: retrying";
    const PID_BROKER_DOWN: &str = "[thrd:main]: Failed to acquire idempotence PID from broker \
        127.0.0.1:33092/1: Local: Broker transport failure: retrying";
    const CONNECT_REFUSED: &str = "[thrd:127.0.0.1:33092/1]: 127.0.0.1:33092/1: Connect to \
        ipv4#127.0.0.1:33092 failed: Connection refused (after 0ms in state CONNECT)";
    const DISCONNECTED: &str = "[thrd:127.0.0.1:33092/1]: 127.0.0.1:33092/1: Disconnected \
        (after 5012ms in state UP)";
    const SASL_FAILED: &str = "[thrd:sasl_ssl://k:9093/1]: sasl_ssl://k:9093/1: SASL authentication \
        error: Authentication failed during authentication due to invalid credentials with SASL \
        mechanism SCRAM-SHA-512 (after 302ms in state AUTH_REQ)";
    const MAX_POLL: &str = "[thrd:main]: Application maximum poll interval (300000ms) exceeded by \
        88ms (adjust max.poll.interval.ms for long-running message processing): leaving group";

    #[test]
    fn coordinator_load_in_progress_is_not_a_warning() {
        let v = classify(RDKafkaLogLevel::Warning, "GETPID", strip_thread(COORDINATOR_LOADING));
        assert_eq!(v, Verdict::limited(Level::DEBUG, "producer-id"));
        let v = classify(RDKafkaLogLevel::Warning, "GETPID", strip_thread(PID_BROKER_DOWN));
        assert!(v.level > Level::WARN, "{v:?}");
    }

    #[test]
    fn a_dropped_broker_connection_is_info_and_rate_limited() {
        for text in [CONNECT_REFUSED, DISCONNECTED] {
            let v = classify(RDKafkaLogLevel::Error, "FAIL", strip_thread(text));
            assert_eq!(v, Verdict::limited(Level::INFO, "broker-connection"), "{text}");
        }
        assert_eq!(classify_error(Some(RDKafkaErrorCode::BrokerTransportFailure)).kind, Some("broker-connection"));
    }

    #[test]
    fn real_faults_stay_warnings_or_errors() {
        assert_eq!(classify(RDKafkaLogLevel::Error, "FAIL", strip_thread(SASL_FAILED)).level, Level::ERROR);
        assert_eq!(classify(RDKafkaLogLevel::Warning, "MAXPOLL", strip_thread(MAX_POLL)).level, Level::WARN);
        assert_eq!(classify_error(Some(RDKafkaErrorCode::AllBrokersDown)).level, Level::WARN);
        assert_eq!(classify_error(Some(RDKafkaErrorCode::Authentication)).level, Level::ERROR);
        assert_eq!(classify_error(None).level, Level::WARN);
    }

    #[test]
    fn thread_prefix_is_dropped() {
        assert_eq!(strip_thread(DISCONNECTED), "127.0.0.1:33092/1: Disconnected (after 5012ms in state UP)");
        assert_eq!(strip_thread("no prefix"), "no prefix");
    }

    #[test]
    fn repeats_are_counted_and_a_lasting_condition_is_reported_again() {
        let mut limiter = RateLimiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(limiter.admit("eu-west", "producer", "broker-connection", at(0)).unwrap().suppressed, 0);
        for s in 1..60 {
            assert_eq!(limiter.admit("eu-west", "producer", "broker-connection", at(s)), None);
        }
        // Another cluster or role is counted on its own.
        assert!(limiter.admit("us-east", "producer", "broker-connection", at(30)).is_some());
        let again = limiter.admit("eu-west", "producer", "broker-connection", at(60)).unwrap();
        assert_eq!(again, Admit { suppressed: 59, lasting: Duration::from_secs(60) });
        assert!(again.lasting >= ESCALATE_AFTER);
        // After a quiet spell a new episode starts, logged at once and not lasting.
        let fresh = limiter.admit("eu-west", "producer", "broker-connection", at(200)).unwrap();
        assert_eq!(fresh, Admit { suppressed: 0, lasting: Duration::ZERO });
    }

    #[test]
    fn default_context_errors_are_recognised() {
        // `librdkafka: {KafkaError}: {reason}` as rdkafka's default context logs it.
        let text = format!("Global error: {}: 1/1 brokers are down", RDKafkaErrorCode::AllBrokersDown);
        assert!(text.starts_with("Global error: AllBrokersDown (Local: All broker connections are down)"));
        assert_eq!(error_code_in(&text), Some(RDKafkaErrorCode::AllBrokersDown));
        let code = error_code_in(
            "Global error: BrokerTransportFailure (Local: Broker transport failure): 127.0.0.1:1/1: Connect failed",
        );
        assert_eq!(code, Some(RDKafkaErrorCode::BrokerTransportFailure));
        assert_eq!(error_code_in("something else"), None);
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".into())));
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn the_flag_wins_over_the_config_and_the_environment() {
        assert_eq!(LogFormat::choose(Some(LogFormat::Text), Some(LogFormat::Json), None), LogFormat::Text);
        assert_eq!(LogFormat::choose(None, Some(LogFormat::Json), None), LogFormat::Json);
        assert_eq!(LogFormat::choose(None, None, Some("JSON")), LogFormat::Json);
        assert_eq!(LogFormat::choose(None, None, None), LogFormat::Text);
    }
}
