//! The configuration file: typed, documented, and validated before anything starts.
//!
//! A config is read from a TOML file, then environment variables prefixed `STRAIT__`
//! override single keys (`STRAIT__ADMIN__LISTEN=0.0.0.0:9644`; `__` separates levels).
//! Every key is documented on its field below and listed in docs/configuration.md.
//!
//! Validation happens in one place, [`Config::load`], so that `check`, `plan` and `run`
//! all refuse the same bad files with the same message, naming the offending key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::logging::LogFormat;
use crate::security::{self, ClusterSecurity, SaslConfig, TlsConfig};

/// Everything that can be wrong with a config file. Each variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), problem: problem.into() }
    }
}

/// Raw librdkafka properties (`"socket.keepalive.enable" = "true"`), passed through as is.
pub type ClientOverrides = BTreeMap<String, String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[clusters.<alias>]`: the Kafka clusters strait connects to, by alias. The alias is
    /// the region name used in flows, metrics and (with `rename = "prefix"`) topic names.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// `[[flows]]`: what to mirror from which cluster to which.
    #[serde(default)]
    pub flows: Vec<FlowConfig>,
    /// `[admin]`: the admin HTTP endpoint (metrics, health, status).
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[log]`: how strait writes its logs.
    #[serde(default)]
    pub log: LogConfig,
    /// `[metrics]`: how much detail `/metrics` exports.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `bootstrap`: comma-separated `host:port` list of brokers to bootstrap from. Required.
    pub bootstrap: String,
    /// `client`: librdkafka properties for every client strait opens on this cluster
    /// (consumer, producer and admin), e.g. `{ "socket.keepalive.enable" = "true" }`.
    #[serde(default)]
    pub client: ClientOverrides,
    /// `consumer`: librdkafka properties for consumers reading from this cluster; they
    /// win over `client`.
    #[serde(default)]
    pub consumer: ClientOverrides,
    /// `producer`: librdkafka properties for producers writing to this cluster; they win
    /// over `client`.
    #[serde(default)]
    pub producer: ClientOverrides,
    /// `[clusters.<alias>.tls]`: connect over TLS (see [`TlsConfig`]). Absent: plaintext.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `[clusters.<alias>.sasl]`: authenticate with SASL (see [`SaslConfig`]).
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
}

impl ClusterConfig {
    /// The cluster's TLS and SASL settings as one.
    pub fn security(&self) -> ClusterSecurity<'_> {
        ClusterSecurity { tls: self.tls.as_ref(), sasl: self.sasl.as_ref() }
    }
}

/// See [`FlowConfig::group_offsets_source`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupOffsetsSource {
    #[default]
    ConsumerOffsets,
    Admin,
}

/// How a source topic is named on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenamePolicy {
    /// `<source-alias>.<topic>`, MirrorMaker 2's default. Safe for active/active.
    Prefix,
    /// Same name on both sides. Loops are prevented by a provenance header.
    Identity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// `source`: alias of the cluster to read from. Required.
    pub source: String,
    /// `target`: alias of the cluster to write to. Required.
    pub target: String,
    /// `topics`: anchored regular expressions selecting source topics. Required, non-empty.
    pub topics: Vec<String>,
    /// `topics_exclude`: anchored regular expressions; a topic matching any is not mirrored.
    #[serde(default)]
    pub topics_exclude: Vec<String>,
    /// `groups`: anchored regular expressions selecting the consumer groups whose offsets
    /// are translated and checkpointed. Default `[".*"]`.
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    /// `groups_exclude`: anchored regular expressions of groups never checkpointed.
    #[serde(default)]
    pub groups_exclude: Vec<String>,
    /// `rename`: `"prefix"` (default) or `"identity"`.
    #[serde(default = "default_rename")]
    pub rename: RenamePolicy,
    /// `replication_factor`: replication factor of topics strait creates on the target.
    /// Default: the target cluster's `default.replication.factor`.
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// `refresh_interval_ms`: how often new topics, partition counts and topic configs are
    /// compared and synced. Default 5000 (MirrorMaker 2: 600 s).
    #[serde(default = "default_refresh_interval_ms")]
    pub refresh_interval_ms: u64,
    /// `sync_topic_configs`: copy topic configs to the target and keep them in sync.
    /// Default true.
    #[serde(default = "default_true")]
    pub sync_topic_configs: bool,
    /// `sync_acls`: copy the source's topic ACLs (literal and prefixed) and the ACLs of
    /// the groups this flow translates to the target, with target topic names; ALLOW WRITE
    /// is not copied, ALLOW ALL becomes READ + DESCRIBE, DENY is copied (see
    /// docs/configuration.md#acl-sync). Default: true when the source cluster has an
    /// authorizer, detected at every refresh from a source broker's
    /// `authorizer.class.name` (DescribeConfigs; empty means none, and ACL sync is then
    /// skipped quietly). `true` makes a source without an authorizer an error.
    #[serde(default)]
    pub sync_acls: Option<bool>,
    /// `acls_exclude_principals`: anchored regular expressions of principals
    /// (`User:svc-.*`) whose ACLs are never copied. Default none.
    #[serde(default)]
    pub acls_exclude_principals: Vec<String>,
    /// `consumer_group`: the consumer group strait itself uses on the source. Instances
    /// with the same group share the flow's partitions. Default
    /// `strait.<source>.<target>`.
    #[serde(default)]
    pub consumer_group: Option<String>,
    /// `provenance_header`: with `rename = "identity"`, the header that records the cluster
    /// a record was first produced on. Default `strait.origin`.
    #[serde(default = "default_provenance_header")]
    pub provenance_header: String,
    /// `commit_interval_ms`: how often the acknowledged progress is committed to the
    /// source. A crash re-sends at most this much plus the in-flight window. With
    /// `exactly_once`, also the length of a target transaction: records become visible
    /// to `read_committed` consumers when it commits. Default 1000.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// `exactly_once`: write records, their offset-map entries and the flow's progress in
    /// one target transaction per `commit_interval_ms`, so that a `read_committed`
    /// consumer on the target sees every source record exactly once, also after a crash
    /// (see docs/architecture.md#exactly-once). Default false.
    #[serde(default)]
    pub exactly_once: bool,
    /// `max_in_flight_bytes`: bound on record bytes buffered for the target. When reached,
    /// fetching pauses until the target acknowledges. Default 64 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// `checkpoint_interval_ms`: how often source group offsets are translated and
    /// written as checkpoints (and synced into target groups). Default 5000 (MM2: 60 s).
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// `sync_group_offsets`: commit translated offsets into same-named groups on the
    /// target while they have no active members there; never backwards. Default true.
    #[serde(default = "default_true")]
    pub sync_group_offsets: bool,
    /// `group_offsets_source`: where the committed offsets of source groups are read:
    /// `"consumer_offsets"` (default) follows the source's `__consumer_offsets` topic
    /// with one consumer for all groups (needs READ and DESCRIBE on that topic when the
    /// source has an authorizer); `"admin"` sends one OffsetFetch admin request per group
    /// and round (needs DESCRIBE on each group; slow with hundreds of groups).
    #[serde(default)]
    pub group_offsets_source: GroupOffsetsSource,
    /// `heartbeat_interval_ms`: how often a heartbeat is written to the source's
    /// `heartbeats` topic (MM2 format). 0 disables. Default 1000.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `listen`: address of the admin HTTP endpoint (the status page at `/`, metrics,
    /// health, `/status`). Default `127.0.0.1:9644`: loopback only.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `format`: `"text"` (default; colours only when stderr is a terminal and `NO_COLOR`
    /// is unset) or `"json"` (one object per line with `timestamp`, `level`, `target`,
    /// `message` and the event's and spans' fields, for Loki, Elasticsearch or Cloud
    /// Logging). The `--log-format` flag wins over it. Which lines are logged is chosen
    /// by the `STRAIT_LOG` environment variable (default `info`), see docs/logging.md.
    #[serde(default)]
    pub format: LogFormat,
}

/// How much per-partition detail the lag metrics carry. Each partition costs three
/// series (`strait_source_end_offset`, `strait_replication_lag_records`,
/// `strait_replication_lag_seconds`): 30,000 at 10,000 partitions, which a Prometheus
/// scrape every 15 s handles but dashboards and alerts that list partitions do not.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `lag_granularity`: `"partition"` (default; series labelled flow, topic and
    /// partition) or `"topic"` (series labelled flow and topic only: end offsets and lag
    /// in records summed over the topic's partitions, lag in seconds the worst of them).
    /// `/status` and `strait status` always show every partition.
    #[serde(default)]
    pub lag_granularity: LagGranularity,
    /// `partition_lag_min_records`: with `lag_granularity = "partition"`, export a
    /// partition's lag series only while it lags at least this many records; a series
    /// not updated disappears from `/metrics` after 60 s. Default 0 (every partition).
    #[serde(default)]
    pub partition_lag_min_records: i64,
}

/// See [`MetricsConfig::lag_granularity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LagGranularity {
    #[default]
    Partition,
    Topic,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: default_admin_listen() }
    }
}

fn default_groups() -> Vec<String> {
    vec![".*".to_string()]
}
fn default_rename() -> RenamePolicy {
    RenamePolicy::Prefix
}
fn default_refresh_interval_ms() -> u64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_provenance_header() -> String {
    "strait.origin".to_string()
}
fn default_commit_interval_ms() -> u64 {
    1_000
}
fn default_max_in_flight_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_checkpoint_interval_ms() -> u64 {
    5_000
}
fn default_heartbeat_interval_ms() -> u64 {
    1_000
}
fn default_admin_listen() -> String {
    "127.0.0.1:9644".to_string()
}

/// librdkafka properties strait sets itself because its guarantees depend on them.
/// Overriding one would silently weaken zero-loss or ordering, so it is refused.
const PROTECTED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "set `bootstrap` instead"),
    ("group.id", "set the flow's `consumer_group` instead"),
    ("enable.auto.commit", "strait commits only acknowledged progress"),
    ("enable.auto.offset.store", "strait stores only acknowledged progress"),
    ("isolation.level", "strait reads read_committed so aborted records are never mirrored"),
    ("enable.idempotence", "strait needs the idempotent producer for ordering without duplicates"),
    ("acks", "strait needs acks=all for zero loss"),
    ("request.required.acks", "strait needs acks=all for zero loss"),
    ("max.in.flight.requests.per.connection", "the idempotent producer bounds it already"),
    ("message.timeout.ms", "strait retries until the target accepts; records never expire"),
    ("delivery.timeout.ms", "strait retries until the target accepts; records never expire"),
    ("partition.assignment.strategy", "strait uses cooperative-sticky to drain on revoke"),
    ("auto.offset.reset", "strait assigns explicit positions and counts records lost to retention instead of jumping"),
    ("enable.gapless.guarantee", "strait needs it so that nothing after a refused record reaches the target"),
];

impl Config {
    /// Reads `path`, applies `STRAIT__` environment overrides, validates, and reads the
    /// secrets (environment variables and files) the config references.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not mutate the
    /// process environment.
    pub fn load_with_env(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        Self::parse(&read(path)?, env)
    }

    /// Like [`Config::load`] but without reading secrets or checking that named files
    /// exist: for validating a config meant for another machine (`check --offline`).
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        Self::parse_offline(&read(path)?, std::env::vars())
    }

    /// Parses TOML text plus environment overrides, validates, and resolves secrets
    /// (`${NAME}` references are looked up in `env`).
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let mut config = Self::parse_offline(text, env.clone())?;
        for (alias, cluster) in &mut config.clusters {
            security::resolve(cluster.tls.as_mut(), cluster.sasl.as_mut(), &env)
                .map_err(|(key, problem)| ConfigError::invalid(format!("clusters.{alias}.{key}"), problem))?;
        }
        Ok(config)
    }

    /// Parses TOML text plus environment overrides and validates; secrets stay unread.
    pub fn parse_offline(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(text, config::FileFormat::Toml));
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("STRAIT__") else { continue };
            let key = rest.split("__").map(|part| part.to_ascii_lowercase()).collect::<Vec<_>>();
            let key = key.join(".");
            builder = builder
                .set_override(key.as_str(), value)
                .map_err(|e| ConfigError::invalid(format!("env {name}"), e.to_string()))?;
        }
        let raw = builder.build().map_err(translate_config_error)?;
        let config: Config = raw.try_deserialize().map_err(translate_config_error)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.clusters.is_empty() {
            return Err(ConfigError::invalid("clusters", "at least one cluster is required"));
        }
        for (alias, cluster) in &self.clusters {
            let key = format!("clusters.{alias}");
            validate_alias(alias).map_err(|p| ConfigError::invalid(&key, p))?;
            validate_bootstrap(&cluster.bootstrap).map_err(|p| ConfigError::invalid(format!("{key}.bootstrap"), p))?;
            for (section, props) in
                [("client", &cluster.client), ("consumer", &cluster.consumer), ("producer", &cluster.producer)]
            {
                for name in props.keys() {
                    let why = PROTECTED_PROPERTIES
                        .iter()
                        .find(|(p, _)| p == name)
                        .map(|(_, why)| why.to_string())
                        .or_else(|| security::raw_property_problem(section, name));
                    if let Some(why) = why {
                        return Err(ConfigError::invalid(
                            format!("{key}.{section}.\"{name}\""),
                            format!("cannot be overridden: {why}"),
                        ));
                    }
                }
            }
            cluster.security().validate().map_err(|(k, p)| ConfigError::invalid(format!("{key}.{k}"), p))?;
        }
        if self.flows.is_empty() {
            return Err(ConfigError::invalid("flows", "at least one [[flows]] entry is required"));
        }
        if self.metrics.partition_lag_min_records < 0 {
            return Err(ConfigError::invalid("metrics.partition_lag_min_records", "must be 0 or more"));
        }
        let known = self.clusters.keys().cloned().collect::<Vec<_>>().join(", ");
        let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, flow) in self.flows.iter().enumerate() {
            let key = format!("flows[{i}]");
            for (field, alias) in [("source", &flow.source), ("target", &flow.target)] {
                if !self.clusters.contains_key(alias) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{field}"),
                        format!("unknown cluster alias `{alias}` (known: {known})"),
                    ));
                }
            }
            if flow.source == flow.target {
                return Err(ConfigError::invalid(
                    format!("{key}.target"),
                    format!("a flow cannot mirror `{}` onto itself", flow.source),
                ));
            }
            if let Some(first) = seen.insert((&flow.source, &flow.target), i) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "duplicate flow {} -> {} (already defined by flows[{first}]); \
                         merge their topic lists",
                        flow.source, flow.target
                    ),
                ));
            }
            if flow.topics.is_empty() {
                return Err(ConfigError::invalid(format!("{key}.topics"), "must list at least one topic pattern"));
            }
            for (field, patterns) in [
                ("topics", &flow.topics),
                ("topics_exclude", &flow.topics_exclude),
                ("groups", &flow.groups),
                ("groups_exclude", &flow.groups_exclude),
                ("acls_exclude_principals", &flow.acls_exclude_principals),
            ] {
                for (j, pattern) in patterns.iter().enumerate() {
                    anchored(pattern).map_err(|e| {
                        ConfigError::invalid(
                            format!("{key}.{field}[{j}]"),
                            format!("invalid regular expression `{pattern}`: {e}"),
                        )
                    })?;
                }
            }
            if let Some(rf) = flow.replication_factor {
                if rf < 1 {
                    return Err(ConfigError::invalid(
                        format!("{key}.replication_factor"),
                        format!("must be at least 1, got {rf}"),
                    ));
                }
            }
            for (field, value, min) in [
                ("refresh_interval_ms", flow.refresh_interval_ms, 100),
                ("commit_interval_ms", flow.commit_interval_ms, 10),
                ("max_in_flight_bytes", flow.max_in_flight_bytes, 1024 * 1024),
                ("checkpoint_interval_ms", flow.checkpoint_interval_ms, 100),
            ] {
                if value < min {
                    return Err(ConfigError::invalid(
                        format!("{key}.{field}"),
                        format!("must be at least {min}, got {value}"),
                    ));
                }
            }
            // A transaction stays open for a commit interval plus the acknowledgement
            // wait; the broker aborts one older than the transaction timeout.
            let longest = crate::cluster::TRANSACTION_TIMEOUT.as_millis() as u64 / 2;
            if flow.exactly_once && flow.commit_interval_ms > longest {
                return Err(ConfigError::invalid(
                    format!("{key}.commit_interval_ms"),
                    format!(
                        "must be at most {longest} with exactly_once (half the {} s transaction timeout), got {}",
                        crate::cluster::TRANSACTION_TIMEOUT.as_secs(),
                        flow.commit_interval_ms
                    ),
                ));
            }
            if flow.provenance_header.is_empty() {
                return Err(ConfigError::invalid(format!("{key}.provenance_header"), "must not be empty"));
            }
            if let Some(group) = &flow.consumer_group {
                if group.is_empty() {
                    return Err(ConfigError::invalid(format!("{key}.consumer_group"), "must not be empty"));
                }
            }
        }
        self.admin
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("admin.listen", format!("`{}`: {e}", self.admin.listen)))?;
        Ok(())
    }

    /// The admin endpoint address (validated by [`Config::load`]).
    pub fn admin_listen(&self) -> SocketAddr {
        self.admin.listen.parse().expect("validated in Config::validate")
    }

    pub fn cluster(&self, alias: &str) -> &ClusterConfig {
        &self.clusters[alias]
    }
}

impl FlowConfig {
    /// The flow's name in logs, metrics and commands: `us-east->eu-west`.
    pub fn name(&self) -> String {
        format!("{}->{}", self.source, self.target)
    }

    pub fn consumer_group(&self) -> String {
        self.consumer_group.clone().unwrap_or_else(|| format!("strait.{}.{}", self.source, self.target))
    }

    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms)
    }

    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }

    /// Whether a consumer group's offsets are translated by this flow. strait's own
    /// groups never are.
    /// Whether the flow translates `group`'s offsets. Compiles the patterns on every
    /// call: use [`crate::naming::GroupSelector`] to test many groups.
    pub fn selects_group(&self, group: &str) -> bool {
        crate::naming::GroupSelector::new(self).selects(group)
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }
}

/// Compiles a pattern so that it must match the whole name, as in MirrorMaker 2.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })
}

fn validate_alias(alias: &str) -> Result<(), String> {
    let ok = !alias.is_empty() && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        // A dot would make `<alias>.<topic>` ambiguous when following prefix chains.
        Err(format!("cluster alias `{alias}` may contain only letters, digits, `-` and `_`"))
    }
}

fn validate_bootstrap(bootstrap: &str) -> Result<(), String> {
    if bootstrap.trim().is_empty() {
        return Err("must not be empty; give host:port of at least one broker".into());
    }
    for server in bootstrap.split(',') {
        let server = server.trim();
        let server = server.split_once("://").map(|(_, rest)| rest).unwrap_or(server);
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(format!("`{server}` is not host:port"));
        };
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("`{server}` is not host:port"));
        }
    }
    Ok(())
}

/// Rewrites the `config` crate's errors so that they always start with the key.
fn translate_config_error(err: config::ConfigError) -> ConfigError {
    let text = err.to_string();
    // The config crate phrases errors as "<problem> for key `<key>`" or
    // "missing field `x` for key `flows[0]`"; put the key first so users see it at once.
    if let Some((problem, key)) = text.rsplit_once(" for key `") {
        let key = key.trim_end_matches('`');
        let key = normalize_key(key.trim_start_matches('.'));
        let (key, problem) = refine_key(&key, problem);
        return ConfigError::invalid(&key, hide_secret_value(&key, problem));
    }
    if let Some((key, problem)) = refine_toplevel(&text) {
        return ConfigError::invalid(key, problem);
    }
    ConfigError::invalid("config", text)
}

/// The config crate quotes the offending value in type errors (`invalid type: integer
/// \`1234\``); for a key that holds a secret, that value must not reach the terminal.
fn hide_secret_value(key: &str, problem: String) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    if last.contains("password") && problem.contains('`') {
        let expected = problem.split_once(", expected ").map(|(_, e)| e).unwrap_or("a string");
        format!("invalid value (not shown, it may be a secret); expected {expected}")
    } else {
        problem
    }
}

/// The config crate writes array paths as `flows[0]topics`; users read `flows[0].topics`.
fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut after_bracket = false;
    for c in key.chars() {
        if after_bracket && c != '.' && c != '[' {
            out.push('.');
        }
        after_bracket = c == ']';
        out.push(c);
    }
    out
}

/// `missing field \`bootstrap\`` under key `clusters.us-east` becomes
/// key `clusters.us-east.bootstrap`, problem `is required`.
fn refine_key(key: &str, problem: &str) -> (String, String) {
    if let Some(field) = backticked_after(problem, "missing field `") {
        let full = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        return (full, "is required".to_string());
    }
    if let Some(field) = backticked_after(problem, "unknown field `") {
        let full = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
        let expected = problem.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return (full, format!("unknown key; expected {expected}"));
    }
    if let Some((_, value)) = problem.split_once(" does not have variant constructor ") {
        let field = key.rsplit('.').next().unwrap_or(key);
        let allowed = ENUM_VALUES.iter().find(|(k, _)| *k == field).map_or("", |(_, v)| v);
        return (key.to_string(), format!("unknown value `{value}`; expected {allowed}"));
    }
    (key.to_string(), problem.to_string())
}

/// The values of keys that take one of a few words, for error messages (the config
/// crate names the Rust enum instead).
const ENUM_VALUES: &[(&str, &str)] = &[
    ("rename", "\"prefix\" or \"identity\""),
    ("group_offsets_source", "\"consumer_offsets\" or \"admin\""),
    ("lag_granularity", "\"partition\" or \"topic\""),
    ("format", "\"text\" or \"json\""),
];

fn refine_toplevel(text: &str) -> Option<(String, String)> {
    if let Some(rest) = text.split_once("missing configuration field \"").map(|(_, r)| r) {
        let key = rest.split('"').next().unwrap_or(rest);
        return Some((normalize_key(key), "is required".to_string()));
    }
    if let Some(field) = backticked_after(text, "missing field `") {
        return Some((field.to_string(), "is required".to_string()));
    }
    if let Some(field) = backticked_after(text, "unknown field `") {
        let expected = text.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return Some((field.to_string(), format!("unknown key; expected {expected}")));
    }
    None
}

fn backticked_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let end = text[start..].find('`')?;
    Some(&text[start..start + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[clusters.a]\nbootstrap = \"h:1\"\n[clusters.b]\nbootstrap = \"h:2\"\n\
                           [[flows]]\nsource = \"a\"\ntarget = \"b\"\ntopics = [\"t\"]\n";

    #[test]
    fn log_format_from_file_and_environment() {
        assert_eq!(Config::parse(MINIMAL, []).unwrap().log.format, LogFormat::Text);
        let file = format!("{MINIMAL}[log]\nformat = \"json\"\n");
        assert_eq!(Config::parse(&file, []).unwrap().log.format, LogFormat::Json);
        let env = [("STRAIT__LOG__FORMAT".to_string(), "json".to_string())];
        assert_eq!(Config::parse(MINIMAL, env).unwrap().log.format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_log_format_names_the_key() {
        let err = Config::parse(&format!("{MINIMAL}[log]\nformat = \"yaml\"\n"), []).unwrap_err().to_string();
        assert!(err.starts_with("log.format"), "{err}");
        assert!(err.contains("yaml"), "{err}");
    }
}
