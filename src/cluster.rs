//! Clients for one Kafka cluster: how strait configures librdkafka for each role, and the
//! reachability probe behind `strait check`.
//!
//! Property precedence, lowest first: strait's performance defaults, the cluster's
//! `client` overrides, the role's `consumer`/`producer` overrides, and last the properties
//! strait's guarantees and the cluster's security depend on (config validation refuses
//! overrides of those, and they are set after the overrides all the same).
//!
//! A `ClientConfig` holds the cluster's secrets in clear text: never log or print one.
//!
//! The `*_logged` constructors give each client a [`ClientLog`] context, so librdkafka's
//! lines name the cluster and the client role and are classified by [`crate::logging`].
//! `admin`, `metadata_client` and `group_client` still hand out rdkafka's default
//! context for the modules whose types name it (checkpoint, offset map, failover, lag);
//! their lines go through the same classification, with the cluster unknown.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use crate::config::ClusterConfig;
use crate::logging::ClientLog;
use crate::security;

/// The largest record strait mirrors (the producer's `message.max.bytes`).
pub const MAX_RECORD_BYTES: u64 = 100 << 20;

/// The producer's `batch.size` unless overridden. The broker checks a whole batch
/// against the topic's `max.message.bytes`, so topic sync keeps target topics at or
/// above it (see `topic_sync`).
pub const DEFAULT_BATCH_BYTES: u64 = 1_000_000;

/// How long an exactly-once flow's target transaction may stay open before the target
/// aborts it (`transaction.timeout.ms`; brokers allow up to `transaction.max.timeout.ms`,
/// 15 minutes by default). A crashed instance's open transaction holds back what
/// `read_committed` consumers see until the next owner fences it, or this passes.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors talking to a cluster. Each names the cluster alias.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster `{alias}` ({bootstrap}) is unreachable: {reason}")]
    Unreachable { alias: String, bootstrap: String, reason: String },
    #[error("cluster `{alias}`: cannot create a Kafka client: {reason}")]
    Client { alias: String, reason: String },
    #[error("cluster `{alias}`: {operation} failed: {reason}")]
    Request { alias: String, operation: String, reason: String },
    /// The broker answered but TLS or SASL failed: wrong password, untrusted certificate,
    /// or a listener that expects another security protocol.
    #[error("cluster `{alias}` ({bootstrap}) refused the connection: {cause} ({hint})")]
    Security { alias: String, bootstrap: String, cause: String, hint: String },
}

/// A cluster alias with its settings; cheap to clone into tasks and threads.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub alias: String,
    pub settings: ClusterConfig,
}

impl Cluster {
    pub fn new(alias: &str, settings: &ClusterConfig) -> Cluster {
        Cluster { alias: alias.to_string(), settings: settings.clone() }
    }

    fn base_config(&self, role: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.settings.bootstrap);
        cfg.set("client.id", format!("strait-{role}-{}", self.alias));
        // Noisy "all brokers down" logs are reported by strait itself, once, with context.
        cfg.set("log.connection.close", "false");
        for (k, v) in &self.settings.client {
            cfg.set(k, v);
        }
        self.apply_security(&mut cfg);
        cfg
    }

    /// TLS and SASL last, so that nothing set before can weaken them.
    fn apply_security(&self, cfg: &mut ClientConfig) {
        security::apply(cfg, self.settings.tls.as_ref(), self.settings.sasl.as_ref());
    }

    /// A consumer for reading mirrored topics: no automatic commits or offset stores,
    /// read_committed so aborted transactions never reach the target.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut cfg = self.base_config("consumer");
        // How long the broker holds a fetch when there is nothing to read. Records are
        // returned as soon as there are any (fetch.min.bytes = 1), so this costs no
        // latency; it only sets how often an idle consumer asks again, and each request
        // lists every assigned partition: at 10 ms per 100 partitions of broker and
        // client time, 100 ms made an idle strait with 800 partitions cost 5 % of a core.
        // Kafka's default, 500 ms.
        cfg.set("fetch.wait.max.ms", "500");
        cfg.set("fetch.min.bytes", "1");
        cfg.set("queued.max.messages.kbytes", "32768");
        cfg.set("topic.metadata.refresh.interval.ms", "5000");
        cfg.set("statistics.interval.ms", "5000");
        for (k, v) in &self.settings.consumer {
            cfg.set(k, v);
        }
        self.apply_security(&mut cfg);
        cfg.set("group.id", group_id);
        cfg.set("enable.auto.commit", "false");
        cfg.set("enable.auto.offset.store", "false");
        cfg.set("isolation.level", "read_committed");
        cfg.set("partition.assignment.strategy", "cooperative-sticky");
        cfg.set("enable.partition.eof", "false");
        // strait assigns every partition at an explicit position; a position that falls
        // out of range (retention removed unmirrored records) must surface as an error
        // strait counts and names, never as a silent jump.
        cfg.set("auto.offset.reset", "error");
        cfg
    }

    /// The largest batch the target producer builds (`batch.size`).
    pub fn producer_batch_bytes(&self) -> u64 {
        self.settings.producer.get("batch.size").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_BATCH_BYTES)
    }

    /// The source group's session timeout: how long a member may be silent before the
    /// group gives its partitions to another.
    pub fn session_timeout(&self) -> Duration {
        let ms = self
            .settings
            .consumer
            .get("session.timeout.ms")
            .or_else(|| self.settings.client.get("session.timeout.ms"))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(45_000);
        Duration::from_millis(ms)
    }

    /// How long a record may wait for the target before it is re-sent, for flows reading
    /// from this cluster: below the source group's session timeout, so that an instance
    /// frozen long enough to lose its partitions finds every record it had not sent
    /// expired when it wakes, and sends none of them after the new owner's copies.
    pub fn message_timeout(&self) -> Duration {
        let session = self.session_timeout();
        let margin = (session / 10).max(Duration::from_secs(1));
        session.saturating_sub(margin).max(Duration::from_secs(1))
    }

    /// A producer for writing mirrored records: idempotent with acks=all, so per-partition
    /// order holds and retries never duplicate; gapless, so that after a refused record
    /// nothing later of its partition lands. strait bounds in-flight bytes itself (see
    /// `mirror::budget`), so librdkafka's queue limit only needs to admit one record of the
    /// largest size on top of the budget.
    pub fn producer_config(&self, max_in_flight_bytes: u64, message_timeout: Duration) -> ClientConfig {
        let mut cfg = self.base_config("producer");
        cfg.set("linger.ms", "5");
        cfg.set("batch.size", DEFAULT_BATCH_BYTES.to_string());
        cfg.set("compression.type", "lz4");
        cfg.set("message.max.bytes", MAX_RECORD_BYTES.to_string());
        cfg.set("queue.buffering.max.kbytes", ((max_in_flight_bytes + MAX_RECORD_BYTES) / 1024).to_string());
        cfg.set("queue.buffering.max.messages", "1000000");
        cfg.set("statistics.interval.ms", "5000");
        for (k, v) in &self.settings.producer {
            cfg.set(k, v);
        }
        self.apply_security(&mut cfg);
        cfg.set("enable.idempotence", "true");
        cfg.set("enable.gapless.guarantee", "true");
        cfg.set("acks", "all");
        cfg.set("message.timeout.ms", message_timeout.as_millis().to_string());
        cfg
    }

    /// A producer for exactly-once flows: the data producer's settings, transactional.
    /// Not gapless: inside a transaction a record that fails makes the transaction abort,
    /// so nothing after it becomes visible (what gapless gives at-least-once flows), and
    /// gapless would turn that abortable error into a fatal one. Records may wait as long
    /// as the transaction may stay open: the transaction, not a message timeout, decides
    /// what a zombie can still write (it is fenced; see `mirror::transaction`).
    pub fn transactional_producer_config(&self, max_in_flight_bytes: u64, transactional_id: &str) -> ClientConfig {
        let mut cfg = self.producer_config(max_in_flight_bytes, TRANSACTION_TIMEOUT);
        cfg.remove("enable.gapless.guarantee");
        cfg.set("transactional.id", transactional_id);
        cfg.set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string());
        cfg
    }

    /// A producer for strait's own small records (`role`: the offset map, checkpoints and
    /// heartbeats): a queue of its own, so a full data queue never delays progress
    /// records, and a fatal data-producer error still lets the final progress be stored.
    pub fn small_producer_config(&self, role: &str, message_timeout: Duration) -> ClientConfig {
        let mut cfg = self.base_config(role);
        cfg.set("linger.ms", "5");
        cfg.set("queue.buffering.max.kbytes", "16384");
        for (k, v) in &self.settings.producer {
            cfg.set(k, v);
        }
        self.apply_security(&mut cfg);
        cfg.set("client.id", format!("strait-{role}-{}", self.alias));
        cfg.set("enable.idempotence", "true");
        cfg.set("acks", "all");
        cfg.set("message.timeout.ms", message_timeout.as_millis().to_string());
        cfg
    }

    /// The logging context for a client of this cluster in `role` (as in its client.id).
    pub fn client_log(&self, role: &'static str) -> ClientLog {
        ClientLog::new(&self.alias, role)
    }

    /// An admin client on rdkafka's default context; prefer [`Cluster::admin_logged`].
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, ClusterError> {
        self.admin_config().create().map_err(|e| self.client_error(e))
    }

    /// An admin client whose librdkafka lines name this cluster.
    pub fn admin_logged(&self) -> Result<AdminClient<ClientLog>, ClusterError> {
        self.admin_config().create_with_context(self.client_log("admin")).map_err(|e| self.client_error(e))
    }

    fn admin_config(&self) -> ClientConfig {
        self.base_config("admin")
    }

    /// A metadata client on rdkafka's default context; prefer [`Cluster::metadata_client_logged`].
    pub fn metadata_client(&self) -> Result<BaseConsumer, ClusterError> {
        self.metadata_config().create().map_err(|e| self.client_error(e))
    }

    /// A plain consumer with no group, for metadata and watermark queries, whose
    /// librdkafka lines name this cluster.
    pub fn metadata_client_logged(&self) -> Result<BaseConsumer<ClientLog>, ClusterError> {
        self.metadata_config().create_with_context(self.client_log("metadata")).map_err(|e| self.client_error(e))
    }

    /// A metadata client whose offset queries see past open transactions (the high
    /// watermark rather than the last stable offset).
    pub fn uncommitted_metadata_client(&self) -> Result<BaseConsumer, ClusterError> {
        let mut cfg = self.metadata_config();
        cfg.set("isolation.level", "read_uncommitted");
        cfg.create().map_err(|e| self.client_error(e))
    }

    fn metadata_config(&self) -> ClientConfig {
        let mut cfg = self.base_config("metadata");
        cfg.set("enable.auto.commit", "false");
        // librdkafka wants a group id even for assign-only reading; this one is never
        // joined or committed to, and `strait.` groups are never checkpointed.
        cfg.set("group.id", "strait.reader");
        cfg
    }

    /// A group client on rdkafka's default context; prefer [`Cluster::group_client_logged`].
    pub fn group_client(&self, group: &str) -> Result<BaseConsumer, ClusterError> {
        self.group_config(group).create().map_err(|e| self.client_error(e))
    }

    /// A consumer that carries `group`'s id without ever joining it, to read and commit
    /// the group's offsets through the consumer-group protocol (OffsetFetch and
    /// OffsetCommit), which copes with coordinator loss the way every consumer does.
    /// Its librdkafka lines name this cluster.
    pub fn group_client_logged(&self, group: &str) -> Result<BaseConsumer<ClientLog>, ClusterError> {
        self.group_config(group).create_with_context(self.client_log("groups")).map_err(|e| self.client_error(e))
    }

    fn group_config(&self, group: &str) -> ClientConfig {
        let mut cfg = self.base_config("groups");
        cfg.set("group.id", group);
        cfg.set("enable.auto.commit", "false");
        cfg.set("enable.auto.offset.store", "false");
        cfg
    }

    fn client_error(&self, e: rdkafka::error::KafkaError) -> ClusterError {
        ClusterError::Client { alias: self.alias.clone(), reason: e.to_string() }
    }

    /// Lists topics with their partition counts.
    pub fn topics<C: ConsumerContext>(
        &self,
        client: &BaseConsumer<C>,
        timeout: Duration,
    ) -> Result<Vec<(String, usize)>, ClusterError> {
        let md = client.fetch_metadata(None, timeout).map_err(|e| self.unreachable(e.to_string()))?;
        if md.brokers().is_empty() {
            return Err(self.unreachable("no brokers in metadata".into()));
        }
        Ok(md.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect())
    }

    pub fn unreachable(&self, reason: String) -> ClusterError {
        ClusterError::Unreachable { alias: self.alias.clone(), bootstrap: self.settings.bootstrap.clone(), reason }
    }

    pub fn request_error(&self, operation: impl Into<String>, reason: impl ToString) -> ClusterError {
        ClusterError::Request { alias: self.alias.clone(), operation: operation.into(), reason: reason.to_string() }
    }

    /// Connects and describes the cluster for `strait check`. A TLS or SASL failure ends
    /// the wait at once with its cause, instead of after `timeout` as "unreachable".
    pub fn probe(&self, timeout: Duration) -> Result<ClusterInfo, ClusterError> {
        let mut cfg = self.base_config("check");
        cfg.set("enable.auto.commit", "false");
        cfg.set("group.id", "strait.reader");
        let client: BaseConsumer<ProbeContext> = cfg
            .create_with_context(ProbeContext::default())
            .map_err(|e| ClusterError::Client { alias: self.alias.clone(), reason: e.to_string() })?;
        let deadline = Instant::now() + timeout;
        let md = loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
            let result = client.fetch_metadata(None, slice);
            // librdkafka queues its error and log events; polling hands them to the
            // context (the consumer has no assignment, so no message can arrive).
            let _ = client.poll(Duration::from_millis(100));
            if let Some(cause) = client.context().failure() {
                return Err(self.security_error(cause));
            }
            match result {
                Ok(md) if !md.brokers().is_empty() => break md,
                Ok(_) if Instant::now() >= deadline => {
                    return Err(self.unreachable("metadata lists no brokers".into()));
                }
                Err(e) if Instant::now() >= deadline => return Err(self.unreachable(e.to_string())),
                _ => {}
            }
        };
        let topics = md.topics().iter().map(|t| t.name().to_string()).collect();
        // ApiVersions is spoken over a plain socket; a TLS or SASL listener would not
        // answer it, so it is only tried where the cluster is plaintext.
        let api = if self.settings.tls.is_none() && self.settings.sasl.is_none() {
            md.brokers().iter().find_map(|b| api_versions(b.host(), b.port() as u16, timeout).ok())
        } else {
            None
        };
        Ok(ClusterInfo { brokers: md.brokers().len(), topics, api })
    }

    fn security_error(&self, cause: String) -> ClusterError {
        let alias = &self.alias;
        let hint = if cause.contains("SASL") || cause.contains("uthenticat") {
            format!("check clusters.{alias}.sasl: mechanism, username and password")
        } else if cause.contains("certificate") {
            format!("check clusters.{alias}.tls.ca_file: it must hold the CA that signed the brokers' certificates")
        } else {
            format!("check that clusters.{alias}.tls and .sasl match the listener's security protocol")
        };
        ClusterError::Security { alias: alias.clone(), bootstrap: self.settings.bootstrap.clone(), cause, hint }
    }
}

/// Remembers the first TLS or SASL failure librdkafka reports (as an error or a log
/// event, served by `poll`).
#[derive(Default)]
struct ProbeContext {
    failure: Mutex<Option<String>>,
}

impl ProbeContext {
    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    fn note(&self, message: &str) {
        if let Some(cause) = security_failure(message) {
            self.failure.lock().unwrap().get_or_insert(cause);
        }
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.note(message);
        tracing::debug!(target: "librdkafka", "{level:?} {fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note(reason);
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for ProbeContext {}

/// The cause, if a librdkafka message reports a TLS or SASL failure (these never include
/// a password). The broker address prefix (`sasl_ssl://127.0.0.1:9093/1: `) is dropped.
fn security_failure(message: &str) -> Option<String> {
    const MARKERS: &[&str] = &[
        "SASL authentication error",
        "Authentication failed",
        "SSL handshake failed",
        "incorrect security.protocol",
        "SASL handshake failed",
        "Unsupported SASL mechanism",
        "not supported by broker",
    ];
    let at = MARKERS.iter().filter_map(|m| message.find(m)).min()?;
    Some(message[at..].trim().to_string())
}

/// What `strait check` reports about a reachable cluster.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub brokers: usize,
    pub topics: Vec<String>,
    pub api: Option<ApiSummary>,
}

/// The supported range of a few request types, from the broker's ApiVersions answer.
#[derive(Debug, Clone)]
pub struct ApiSummary {
    pub api_count: usize,
    pub produce: (i16, i16),
    pub fetch: (i16, i16),
}

impl std::fmt::Display for ApiSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Kafka 4.0 removed Fetch v0-v3 (KIP-896), which tells the major line apart.
        let line = if self.fetch.0 >= 4 { "Kafka 4.0 or newer" } else { "Kafka 3.x or older" };
        write!(
            f,
            "{line} ({} APIs; Produce v{}-v{}, Fetch v{}-v{})",
            self.api_count, self.produce.0, self.produce.1, self.fetch.0, self.fetch.1
        )
    }
}

/// Sends an ApiVersions v0 request on a plain connection. librdkafka negotiates versions
/// internally but does not expose them, and this one request is simple enough to speak
/// directly. On TLS or SASL listeners it fails, and `check` simply omits the line.
fn api_versions(host: &str, port: u16, timeout: Duration) -> std::io::Result<ApiSummary> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let client_id = b"strait-check";
    let mut request = Vec::new();
    request.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    request.extend_from_slice(&0i16.to_be_bytes()); // version 0
    request.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut body)?;
    parse_api_versions_v0(&body).ok_or_else(|| std::io::Error::other("malformed ApiVersions response"))
}

fn parse_api_versions_v0(body: &[u8]) -> Option<ApiSummary> {
    let i16_at = |at: usize| Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let error = i16_at(4)?;
    if error != 0 {
        return None;
    }
    let count = i32::from_be_bytes(body.get(6..10)?.try_into().ok()?).max(0) as usize;
    let (mut produce, mut fetch) = ((0, 0), (0, 0));
    for n in 0..count {
        let at = 10 + n * 6;
        let (key, min, max) = (i16_at(at)?, i16_at(at + 2)?, i16_at(at + 4)?);
        match key {
            0 => produce = (min, max),
            1 => fetch = (min, max),
            _ => {}
        }
    }
    Some(ApiSummary { api_count: count, produce, fetch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_versions() {
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
        body.extend_from_slice(&[0, 0, 0, 0, 0, 12, 0, 1, 0, 4, 0, 17]);
        let s = parse_api_versions_v0(&body).unwrap();
        assert_eq!((s.api_count, s.produce, s.fetch), (2, (0, 12), (4, 17)));
        assert!(s.to_string().starts_with("Kafka 4.0 or newer"));
    }

    #[test]
    fn recognises_security_failures() {
        let auth = "sasl_ssl://127.0.0.1:21112/1: SASL authentication error: Authentication failed during \
                    authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 3ms)";
        assert!(security_failure(auth).unwrap().starts_with("SASL authentication error: Authentication failed"));
        let tls = "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate \
                   verify failed: broker certificate could not be verified";
        assert!(security_failure(tls).unwrap().starts_with("SSL handshake failed"));
        assert!(security_failure("Connect to ipv4#127.0.0.1:1 failed: Connection refused").is_none());
    }

    #[test]
    fn security_is_applied_last_for_every_role() {
        let mut settings: ClusterConfig = serde_json::from_str(
            r#"{"bootstrap":"h:1","tls":{"ca_file":"/ca.pem"},
                "sasl":{"mechanism":"SCRAM-SHA-512","username":"u","password":"${PW}"}}"#,
        )
        .unwrap();
        let env = [("PW".to_string(), "pw".to_string())].into_iter().collect();
        security::resolve(settings.tls.as_mut(), settings.sasl.as_mut(), &env).unwrap_err(); // /ca.pem is missing
        settings.tls.as_mut().unwrap().ca_file = None;
        security::resolve(settings.tls.as_mut(), settings.sasl.as_mut(), &env).unwrap();
        // Validation refuses these; even if one slipped through, the typed settings win.
        settings.producer.insert("security.protocol".into(), "PLAINTEXT".into());
        settings.consumer.insert("sasl.password".into(), "other".into());
        let c = Cluster::new("a", &settings);
        for cfg in [c.producer_config(1 << 20, Duration::from_secs(30)), c.consumer_config("g"), c.base_config("admin")]
        {
            assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
            assert_eq!(cfg.get("sasl.password"), Some("pw"));
            assert_eq!(cfg.get("ssl.endpoint.identification.algorithm"), Some("https"));
        }
        assert!(!format!("{c:?}").contains("\"pw\""), "{c:?}");
    }

    #[test]
    fn guarantees_cannot_be_overridden_by_role_settings() {
        let mut settings: ClusterConfig = serde_json::from_str(r#"{"bootstrap":"h:1"}"#).unwrap();
        settings.producer.insert("linger.ms".into(), "50".into());
        let c = Cluster::new("a", &settings);
        let p = c.producer_config(64 << 20, c.message_timeout());
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("enable.gapless.guarantee"), Some("true"));
        assert_eq!(p.get("message.timeout.ms"), Some("40500"), "below the 45 s session timeout");
        let k = c.consumer_config("g");
        assert_eq!(k.get("isolation.level"), Some("read_committed"));
        assert_eq!(k.get("enable.auto.commit"), Some("false"));
        assert_eq!(k.get("auto.offset.reset"), Some("error"));
    }
}
