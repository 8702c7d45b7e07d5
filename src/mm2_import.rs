//! `strait import-mm2`: converts a MirrorMaker 2 properties file (dedicated mode,
//! `connect-mirror-maker.sh mm2.properties`) into a strait config.
//!
//! What converts: `clusters`, `<alias>.bootstrap.servers`, every enabled `A->B` flow with
//! its `topics`/`groups` lists and excludes, the replication policy, intervals, per-cluster
//! TLS/SASL client settings (into the typed `tls`/`sasl` tables) and producer/consumer
//! overrides whose librdkafka name is known. Settings may be global (`topics=...`) or per
//! flow (`A->B.topics=...`); the flow's own wins, as in MM2.
//!
//! Secrets are never copied: a password written inline becomes a `${STRAIT_<ALIAS>_...}`
//! reference (with a warning saying which variable to set); MM2's config-provider
//! references become the equivalent strait reference (`${env:X}` → `${X}`,
//! `${directory:/d:f}` → `password_file = "/d/f"`).
//!
//! Every key that is not converted gets a warning naming it and saying why; nothing is
//! dropped silently.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use regex::Regex;

use crate::config::anchored;

/// The converted config and the warnings for keys that need a human.
pub struct Conversion {
    pub toml: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read: {0}")]
    Read(String),
    #[error("not a properties file: {0}")]
    Parse(String),
    #[error("`clusters` is missing or empty: MirrorMaker 2 configs list the cluster aliases there")]
    NoClusters,
    #[error("`clusters`: alias `{0}` cannot be used by strait (letters, digits, `-` and `_` only)")]
    BadAlias(String),
    #[error("`{0}.bootstrap.servers` is missing")]
    NoBootstrap(String),
}

pub fn convert_file(path: &Path) -> Result<Conversion, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read(e.to_string()))?;
    convert(&text)
}

/// Converts the text of an MM2 properties file.
pub fn convert(text: &str) -> Result<Conversion, ImportError> {
    let props: BTreeMap<String, String> =
        java_properties::read(text.as_bytes()).map_err(|e| ImportError::Parse(e.to_string()))?.into_iter().collect();
    let mut c = Converter { props, used: BTreeSet::new(), warnings: Vec::new(), out: String::new() };
    let aliases = c.aliases()?;
    let _ = writeln!(c.out, "# Converted from a MirrorMaker 2 config by `strait import-mm2`.");
    let _ = writeln!(c.out, "# Review the warnings it printed: each names a key that was not converted.");
    for alias in &aliases {
        c.cluster(alias)?;
    }
    for source in &aliases {
        for target in aliases.iter().filter(|t| *t != source) {
            c.flow(source, target);
        }
    }
    c.leftovers();
    // A global key (e.g. `ssl.truststore.location`) is looked at once per cluster.
    let mut seen = BTreeSet::new();
    let warnings = c.warnings.into_iter().filter(|w| seen.insert(w.clone())).collect();
    Ok(Conversion { toml: c.out, warnings })
}

struct Converter {
    props: BTreeMap<String, String>,
    used: BTreeSet<String>,
    warnings: Vec<String>,
    out: String,
}

/// One cluster's client settings, gathered from `<alias>.X` and global `X` keys.
#[derive(Default)]
struct ClientSettings {
    /// (key as written in the file, value) per Java client property name.
    common: BTreeMap<String, (String, String)>,
    producer: BTreeMap<String, (String, String)>,
    consumer: BTreeMap<String, (String, String)>,
}

impl Converter {
    fn get(&mut self, key: &str) -> Option<String> {
        let value = self.props.get(key)?.trim().to_string();
        self.used.insert(key.to_string());
        Some(value)
    }

    /// A flow setting: `A->B.key` first, then the global `key`.
    fn flow_get(&mut self, flow: &str, key: &str) -> Option<(String, String)> {
        let specific = format!("{flow}.{key}");
        if let Some(v) = self.get(&specific) {
            return Some((specific, v));
        }
        self.get(key).map(|v| (key.to_string(), v))
    }

    fn warn(&mut self, key: &str, why: impl std::fmt::Display) {
        self.used.insert(key.to_string());
        self.warnings.push(format!("`{key}`: {why}"));
    }

    fn aliases(&mut self) -> Result<Vec<String>, ImportError> {
        let list = self.get("clusters").unwrap_or_default();
        let aliases: Vec<String> = split_list(&list);
        if aliases.is_empty() {
            return Err(ImportError::NoClusters);
        }
        for a in &aliases {
            if !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ImportError::BadAlias(a.clone()));
            }
        }
        Ok(aliases)
    }

    fn cluster(&mut self, alias: &str) -> Result<(), ImportError> {
        let bootstrap = self
            .get(&format!("{alias}.bootstrap.servers"))
            .filter(|b| !b.is_empty())
            .ok_or_else(|| ImportError::NoBootstrap(alias.to_string()))?;
        let mut settings = self.client_settings(alias);
        let _ = writeln!(self.out, "\n[clusters.{alias}]\nbootstrap = {}", toml_str(&bootstrap));
        self.security(alias, &mut settings.common);
        for (table, props) in
            [("client", &settings.common), ("producer", &settings.producer), ("consumer", &settings.consumer)]
        {
            let mapped = self.map_client_props(table, props);
            if !mapped.is_empty() {
                let _ = writeln!(self.out, "\n[clusters.{alias}.{table}]");
                for (k, v) in mapped {
                    let _ = writeln!(self.out, "{} = {}", toml_str(&k), toml_str(&v));
                }
            }
        }
        Ok(())
    }

    /// Client properties of a cluster: `<alias>.X`, `<alias>.producer.X`,
    /// `<alias>.consumer.X`, with the global `X`, `producer.X` and `consumer.X` (client
    /// properties only) as defaults, the way MM2 layers them.
    fn client_settings(&mut self, alias: &str) -> ClientSettings {
        let mut s = ClientSettings::default();
        let prefix = format!("{alias}.");
        let keys: Vec<(String, String)> = self.props.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, value) in &keys {
            let (scoped, rest) = match key.strip_prefix(&prefix) {
                Some(rest) => (true, rest),
                None if is_global_client_key(key) => (false, key.as_str()),
                None => continue,
            };
            if rest == "bootstrap.servers" {
                continue;
            }
            let (table, name) = if let Some(n) = rest.strip_prefix("producer.") {
                (&mut s.producer, n)
            } else if let Some(n) = rest.strip_prefix("consumer.") {
                (&mut s.consumer, n)
            } else if let Some(n) = rest.strip_prefix("admin.") {
                if !is_security_key(n) {
                    self.warn(key, "admin client settings are not converted: strait's admin clients use the cluster's `client` table");
                }
                self.used.insert(key.clone());
                continue;
            } else if is_client_key(rest) {
                (&mut s.common, rest)
            } else {
                if scoped {
                    self.warn(key, runtime_key_reason(rest));
                }
                continue;
            };
            self.used.insert(key.clone());
            // The cluster's own setting wins over a global one.
            if scoped || !table.contains_key(name) {
                table.insert(name.to_string(), (key.clone(), value.trim().to_string()));
            }
        }
        s
    }

    fn map_client_props(
        &mut self,
        table: &str,
        props: &BTreeMap<String, (String, String)>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, (key, value)) in props {
            if is_security_key(name) {
                if table != "client" {
                    self.warn(key, "per-role security settings are not converted: strait secures every client of a cluster alike (see the cluster's tls/sasl tables)");
                }
                continue;
            }
            match java_to_librdkafka(name) {
                Ok(librdkafka) => {
                    out.insert(librdkafka.to_string(), value.clone());
                }
                Err(why) => self.warn(key, why),
            }
        }
        out
    }

    fn leftovers(&mut self) {
        let left: Vec<String> = self.props.keys().filter(|k| !self.used.contains(*k)).cloned().collect();
        for key in left {
            let why = if key.starts_with("config.providers") {
                "config providers are not needed: strait reads `${VAR}` and `*_file` references itself".to_string()
            } else if key.contains("->") {
                "not converted: this flow is not enabled, or strait has no such flow setting".to_string()
            } else {
                runtime_key_reason(&key)
            };
            self.warn(&key, why);
        }
    }
}

// ------------------------------------------------------------------ security

struct Jaas {
    module: String,
    options: BTreeMap<String, String>,
}

impl Converter {
    /// Writes the cluster's `tls` and `sasl` tables from `security.protocol`, `sasl.*`
    /// and `ssl.*`, removing what it consumed from `common`.
    fn security(&mut self, alias: &str, common: &mut BTreeMap<String, (String, String)>) {
        let protocol =
            common.remove("security.protocol").map(|(_, v)| v.to_ascii_uppercase()).unwrap_or("PLAINTEXT".into());
        let (tls, sasl) = match protocol.as_str() {
            "SSL" => (true, false),
            "SASL_SSL" => (true, true),
            "SASL_PLAINTEXT" => (false, true),
            _ => (false, false),
        };
        let ssl: BTreeMap<String, (String, String)> = {
            let names: Vec<String> = common.keys().filter(|k| k.starts_with("ssl.")).cloned().collect();
            names.into_iter().filter_map(|n| common.remove(&n).map(|v| (n, v))).collect()
        };
        let sasl_props: BTreeMap<String, (String, String)> = {
            let names: Vec<String> = common.keys().filter(|k| k.starts_with("sasl.")).cloned().collect();
            names.into_iter().filter_map(|n| common.remove(&n).map(|v| (n, v))).collect()
        };
        if tls {
            self.tls_table(alias, &ssl);
        } else {
            for (key, _) in ssl.values() {
                self.warn(key, format!("ignored: cluster `{alias}` does not use TLS (security.protocol {protocol})"));
            }
        }
        if sasl {
            self.sasl_table(alias, &sasl_props, tls);
        } else {
            for (key, _) in sasl_props.values() {
                self.warn(key, format!("ignored: cluster `{alias}` does not use SASL (security.protocol {protocol})"));
            }
        }
    }

    fn tls_table(&mut self, alias: &str, ssl: &BTreeMap<String, (String, String)>) {
        let mut lines = Vec::new();
        let get = |n: &str| ssl.get(n).cloned();
        if let Some((key, location)) = get("ssl.truststore.location") {
            let kind = get("ssl.truststore.type").map(|(_, t)| t.to_ascii_uppercase()).unwrap_or("JKS".into());
            if kind == "PEM" {
                lines.push(format!("ca_file = {}", toml_str(&location)));
            } else {
                let pem = pem_name(&location);
                lines.push(format!("ca_file = {}  # convert the {kind} truststore to PEM first", toml_str(&pem)));
                self.warn(
                    &key,
                    format!(
                        "librdkafka reads CA certificates as PEM, not {kind}: run `keytool -list -rfc -keystore \
                         {location} > {pem}` (ca_file points there)"
                    ),
                );
            }
        }
        if let Some((key, _)) = get("ssl.truststore.password") {
            self.warn(&key, "not needed: a PEM CA file has no password (not copied)");
        }
        if let Some((key, location)) = get("ssl.keystore.location") {
            let kind = get("ssl.keystore.type").map(|(_, t)| t.to_ascii_uppercase()).unwrap_or("JKS".into());
            match kind.as_str() {
                "PKCS12" => {
                    lines.push(format!("keystore_file = {}", toml_str(&location)));
                    if let Some((pw_key, pw)) = get("ssl.keystore.password") {
                        lines.push(self.secret_line(alias, "keystore_password", &pw_key, &pw, "TLS_KEYSTORE_PASSWORD"));
                    }
                }
                "PEM" => {
                    lines.push(format!("cert_file = {}\nkey_file = {}", toml_str(&location), toml_str(&location)));
                    if let Some((pw_key, pw)) = get("ssl.key.password") {
                        lines.push(self.secret_line(alias, "key_password", &pw_key, &pw, "TLS_KEY_PASSWORD"));
                    }
                }
                _ => self.warn(
                    &key,
                    format!(
                        "librdkafka cannot read {kind} keystores: convert it with `keytool -importkeystore \
                         -srckeystore {location} -destkeystore {} -deststoretype PKCS12` and set \
                         clusters.{alias}.tls.keystore_file and keystore_password",
                        pkcs12_name(&location)
                    ),
                ),
            }
        }
        for name in ["ssl.keystore.password", "ssl.key.password"] {
            if let Some((key, _)) = get(name) {
                if !self.used_in_lines(&lines, name) {
                    self.warn(&key, "not converted with this keystore type (not copied)");
                }
            }
        }
        if let Some((key, v)) = get("ssl.endpoint.identification.algorithm") {
            if v.is_empty() {
                lines.push("verify_hostname = false  # MM2 had ssl.endpoint.identification.algorithm empty".into());
            } else if !v.eq_ignore_ascii_case("https") {
                self.warn(&key, format!("`{v}` is unknown; hostname verification stays on"));
            }
        }
        for (name, (key, _)) in ssl {
            const DONE: &[&str] = &[
                "ssl.truststore.location",
                "ssl.truststore.type",
                "ssl.truststore.password",
                "ssl.keystore.location",
                "ssl.keystore.type",
                "ssl.keystore.password",
                "ssl.key.password",
                "ssl.endpoint.identification.algorithm",
            ];
            if !DONE.contains(&name.as_str()) {
                self.warn(key, "not converted: Java TLS option without a typed strait key (librdkafka uses OpenSSL's defaults; set `ssl.*` librdkafka properties in the cluster's `client` table if needed)");
            }
        }
        let _ = writeln!(self.out, "\n[clusters.{alias}.tls]");
        for line in lines {
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn used_in_lines(&self, lines: &[String], name: &str) -> bool {
        let field = if name == "ssl.key.password" { "key_password" } else { "keystore_password" };
        lines.iter().any(|l| l.starts_with(field))
    }

    fn sasl_table(&mut self, alias: &str, props: &BTreeMap<String, (String, String)>, tls: bool) {
        let jaas = props.get("sasl.jaas.config").map(|(k, v)| (k.clone(), parse_jaas(v)));
        let mechanism = match props.get("sasl.mechanism") {
            Some((_, m)) => m.to_ascii_uppercase(),
            None => {
                let guess = match jaas.as_ref().map(|(_, j)| j.module.as_str()) {
                    Some(m) if m.ends_with("PlainLoginModule") => "PLAIN",
                    Some(m) if m.ends_with("ScramLoginModule") => "SCRAM-SHA-512",
                    _ => "GSSAPI",
                };
                self.warnings.push(format!(
                    "`{alias}.sasl.mechanism` is not set (Kafka's default is GSSAPI); assumed {guess}: check it"
                ));
                guess.to_string()
            }
        };
        if !crate::security::MECHANISMS.contains(&mechanism.as_str()) {
            let key = props.get("sasl.mechanism").map(|(k, _)| k.clone()).unwrap_or(format!("{alias}.sasl.mechanism"));
            self.warn(&key, format!("{mechanism} is not supported by strait (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are); cluster `{alias}` gets no [sasl] table"));
            self.warn_sasl_rest(props, &[]);
            return;
        }
        if mechanism == "PLAIN" && !tls {
            self.warnings.push(format!(
                "`{alias}.security.protocol`: SASL_PLAINTEXT with PLAIN sends the password in clear; strait refuses it: \
                 add TLS on the brokers or use SCRAM"
            ));
        }
        let _ = writeln!(self.out, "\n[clusters.{alias}.sasl]\nmechanism = {}", toml_str(&mechanism));
        match jaas {
            Some((key, jaas)) => {
                let username = jaas.options.get("username").cloned().unwrap_or_default();
                let username = provider_to_env(&username).unwrap_or(username);
                let _ = writeln!(self.out, "username = {}", toml_str(&username));
                match jaas.options.get("password") {
                    Some(pw) => {
                        let line = self.secret_line(alias, "password", &key, pw, "SASL_PASSWORD");
                        let _ = writeln!(self.out, "{line}");
                    }
                    None => self.warn(&key, "has no password option; set clusters.<alias>.sasl.password"),
                }
            }
            None => {
                let key = format!("{alias}.sasl.jaas.config");
                self.warnings.push(format!("`{key}` is missing: set username and password in [clusters.{alias}.sasl]"));
            }
        }
        self.warn_sasl_rest(props, &["sasl.mechanism", "sasl.jaas.config"]);
    }

    fn warn_sasl_rest(&mut self, props: &BTreeMap<String, (String, String)>, done: &[&str]) {
        for (name, (key, _)) in props {
            if !done.contains(&name.as_str()) {
                self.warn(key, "not converted: no strait equivalent (login callbacks, Kerberos and OAuth settings are not supported)");
            }
        }
    }

    /// A `field = ...` line for a secret: never the value itself.
    fn secret_line(&mut self, alias: &str, field: &str, key: &str, value: &str, suffix: &str) -> String {
        if let Some(reference) = provider_to_env(value) {
            return format!("{field} = {}", toml_str(&reference));
        }
        if let Some(path) = provider_to_file(value) {
            return format!("{field}_file = {}", toml_str(&path));
        }
        let var = format!("STRAIT_{}_{suffix}", alias.to_ascii_uppercase().replace('-', "_"));
        if value.starts_with("${") {
            self.warnings.push(format!(
                "`{key}`: the config provider reference for {field} cannot be converted; set environment variable \
                 {var} (or use {field}_file)"
            ));
        } else {
            self.warnings.push(format!(
                "`{key}`: the {field} was written inline and is NOT copied; set environment variable {var} \
                 (or use {field}_file)"
            ));
        }
        format!("{field} = {}", toml_str(&format!("${{{var}}}")))
    }
}

fn parse_jaas(text: &str) -> Jaas {
    let module = text.split_whitespace().next().unwrap_or("").to_string();
    let option = Regex::new(r#"([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))"#).expect("valid");
    let options = option
        .captures_iter(text)
        .map(|c| {
            let value = c.get(2).or(c.get(3)).map_or("", |m| m.as_str());
            (c[1].to_string(), value.replace("\\\"", "\"").replace("\\\\", "\\"))
        })
        .collect();
    Jaas { module, options }
}

/// `${env:NAME}` (Kafka's EnvVarConfigProvider, also `${env::NAME}`) → `${NAME}`.
fn provider_to_env(value: &str) -> Option<String> {
    let inner = value.strip_prefix("${env:")?.strip_suffix('}')?;
    let name = inner.strip_prefix(':').unwrap_or(inner);
    Some(format!("${{{name}}}"))
}

/// `${directory:/dir:file}` (Kafka's DirectoryConfigProvider) → `/dir/file`.
fn provider_to_file(value: &str) -> Option<String> {
    let inner = value.strip_prefix("${directory:")?.strip_suffix('}')?;
    let (dir, file) = inner.rsplit_once(':')?;
    Some(format!("{}/{file}", dir.trim_end_matches('/')))
}

fn pem_name(location: &str) -> String {
    match location.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() && !stem.ends_with('/') => format!("{stem}.pem"),
        _ => format!("{location}.pem"),
    }
}

fn pkcs12_name(location: &str) -> String {
    match location.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => format!("{stem}.p12"),
        _ => format!("{location}.p12"),
    }
}

// ------------------------------------------------------------------ flows

impl Converter {
    fn flow(&mut self, source: &str, target: &str) {
        let name = format!("{source}->{target}");
        let Some(enabled) = self.get(&format!("{name}.enabled")) else { return };
        if !enabled.eq_ignore_ascii_case("true") {
            return;
        }
        let _ = writeln!(self.out, "\n[[flows]]\nsource = {}\ntarget = {}", toml_str(source), toml_str(target));
        self.patterns(&name, "topics", &["topics"], None);
        self.patterns(&name, "topics_exclude", &["topics.exclude", "topics.blacklist"], Some(&[r".*\.replica"]));
        self.patterns(&name, "groups", &["groups"], None);
        self.patterns(
            &name,
            "groups_exclude",
            &["groups.exclude", "groups.blacklist"],
            Some(&["console-consumer-.*", "connect-.*", "__.*"]),
        );
        self.policy(&name);
        self.intervals(&name);
        self.switches(&name);
        self.unsupported_flow_keys(&name);
    }

    /// A list of MM2 patterns (comma-separated Java regexes, matched whole, like strait's).
    fn patterns(&mut self, flow: &str, field: &str, keys: &[&str], mm2_default: Option<&[&str]>) {
        let found = keys.iter().find_map(|k| self.flow_get(flow, k));
        let (patterns, note) = match (&found, mm2_default) {
            (Some((_, v)), _) => (split_list(v), String::new()),
            (None, Some(default)) => {
                (default.iter().map(|s| s.to_string()).collect(), "  # MirrorMaker 2's default".to_string())
            }
            (None, None) => (vec![".*".to_string()], "  # MirrorMaker 2's default".to_string()),
        };
        let mut kept = Vec::new();
        for p in patterns {
            match anchored(&p) {
                Ok(_) => kept.push(toml_str(&p)),
                Err(e) => {
                    let key = found.as_ref().map_or(keys[0].to_string(), |(k, _)| k.clone());
                    self.warnings
                        .push(format!("`{key}`: pattern `{p}` is not valid for strait's regex engine ({e}); left out"));
                }
            }
        }
        let _ = writeln!(self.out, "{field} = [{}]{note}", kept.join(", "));
    }

    fn policy(&mut self, flow: &str) {
        if let Some((key, class)) = self.flow_get(flow, "replication.policy.class") {
            match class.rsplit('.').next().unwrap_or("") {
                "IdentityReplicationPolicy" => {
                    let _ = writeln!(self.out, "rename = \"identity\"");
                }
                "DefaultReplicationPolicy" => {
                    let _ = writeln!(self.out, "rename = \"prefix\"");
                }
                _ => {
                    self.warn(&key, format!("custom policy `{class}` is not supported; strait uses rename = \"prefix\" (<source>.<topic>) or \"identity\""));
                    let _ = writeln!(self.out, "rename = \"prefix\"");
                }
            }
        }
        if let Some((key, sep)) = self.flow_get(flow, "replication.policy.separator") {
            if sep != "." {
                self.warn(&key, format!("strait's prefix separator is always `.`; with `{sep}` remote topics would be named differently than under MM2 (not converted)"));
            }
        }
        if let Some((key, rf)) = self.flow_get(flow, "replication.factor") {
            match rf.parse::<i32>() {
                Ok(n) if n >= 1 => {
                    let _ = writeln!(self.out, "replication_factor = {n}");
                }
                _ => self.warn(&key, format!("`{rf}` is not a replication factor (not converted)")),
            }
        }
    }

    fn intervals(&mut self, flow: &str) {
        let refresh: Vec<(String, u64)> = ["refresh.topics.interval.seconds", "sync.topic.configs.interval.seconds"]
            .iter()
            .filter_map(|k| self.seconds(flow, k))
            .collect();
        if let Some(min) = refresh.iter().map(|(_, s)| *s).min() {
            let from = refresh.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
            let _ = writeln!(self.out, "refresh_interval_ms = {}  # from {from}", (min * 1000).max(100));
        }
        if let Some((key, s)) = self.seconds(flow, "emit.checkpoints.interval.seconds") {
            let _ = writeln!(self.out, "checkpoint_interval_ms = {}  # from {key}", (s * 1000).max(100));
        }
        if let Some((key, _)) = self.seconds(flow, "sync.group.offsets.interval.seconds") {
            self.warnings.push(format!(
                "`{key}`: strait syncs group offsets with every checkpoint (checkpoint_interval_ms); not converted"
            ));
        }
        if let Some((key, _)) = self.seconds(flow, "refresh.groups.interval.seconds") {
            self.warnings.push(format!(
                "`{key}`: strait reads groups with every checkpoint (checkpoint_interval_ms); not converted"
            ));
        }
        let heartbeats_on = self.flow_get(flow, "emit.heartbeats.enabled").map(|(_, v)| v != "false");
        let heartbeat = self.seconds(flow, "emit.heartbeats.interval.seconds");
        match (heartbeats_on, heartbeat) {
            (Some(false), _) => {
                let _ = writeln!(self.out, "heartbeat_interval_ms = 0  # emit.heartbeats.enabled = false");
            }
            (_, Some((key, s))) => {
                let _ = writeln!(self.out, "heartbeat_interval_ms = {}  # from {key}", s * 1000);
            }
            _ => {}
        }
    }

    fn seconds(&mut self, flow: &str, key: &str) -> Option<(String, u64)> {
        let (k, v) = self.flow_get(flow, key)?;
        match v.parse::<u64>() {
            Ok(s) => Some((k, s)),
            Err(_) => {
                self.warn(&k, format!("`{v}` is not a number of seconds (not converted)"));
                None
            }
        }
    }

    fn switches(&mut self, flow: &str) {
        if let Some((_, v)) = self.flow_get(flow, "sync.topic.configs.enabled") {
            let _ = writeln!(self.out, "sync_topic_configs = {}", v.eq_ignore_ascii_case("true"));
        }
        match self.flow_get(flow, "sync.group.offsets.enabled") {
            Some((_, v)) => {
                let _ = writeln!(self.out, "sync_group_offsets = {}", v.eq_ignore_ascii_case("true"));
            }
            None => {
                let _ = writeln!(self.out, "sync_group_offsets = false  # MirrorMaker 2's default (strait's is true)");
            }
        }
        // MM2 syncs topic ACLs by default and skips the sync when the source has no
        // authorizer; strait's default (sync_acls unset) does the same.
        if let Some((key, v)) = self.flow_get(flow, "sync.topic.acls.enabled") {
            if v.eq_ignore_ascii_case("false") {
                let _ = writeln!(self.out, "sync_acls = false  # from {key}");
            } else {
                let _ = writeln!(self.out, "# sync_acls unset: on when the source has an authorizer ({key} = {v})");
            }
        }
        if let Some((key, v)) = self.flow_get(flow, "emit.checkpoints.enabled") {
            if v.eq_ignore_ascii_case("false") {
                self.warn(&key, "strait always writes checkpoints (they cost one small record per group and partition); not converted");
            }
        }
        if let Some((key, v)) = self.flow_get(flow, "refresh.topics.enabled") {
            if v.eq_ignore_ascii_case("false") {
                self.warn(&key, "strait always picks up new topics (refresh_interval_ms); not converted");
            }
        }
    }

    fn unsupported_flow_keys(&mut self, flow: &str) {
        const NOT_NEEDED: &[(&str, &str)] = &[
            (
                "tasks.max",
                "strait scales by running more instances with the same config (they share the flow's consumer group)",
            ),
            ("offset.lag.max", "not needed: strait translates offsets exactly through its offset map"),
            ("emit.offset-syncs.enabled", "not needed: strait keeps its own offset map"),
            ("offset-syncs.topic.location", "not needed: strait keeps its offset map on the target"),
            (
                "offset-syncs.topic.replication.factor",
                "strait's internal topics use the target's default replication factor",
            ),
            (
                "checkpoints.topic.replication.factor",
                "strait's internal topics use the target's default replication factor",
            ),
            (
                "heartbeats.topic.replication.factor",
                "strait's internal topics use the target's default replication factor",
            ),
            (
                "sync.topic.acls.interval.seconds",
                "strait syncs ACLs with topics, every refresh_interval_ms; not converted",
            ),
            (
                "config.properties.exclude",
                "strait syncs a fixed set of topic configs (see docs/configuration.md); not converted",
            ),
            (
                "config.properties.blacklist",
                "strait syncs a fixed set of topic configs (see docs/configuration.md); not converted",
            ),
            ("topic.filter.class", "custom filters are not supported; use topics/topics_exclude patterns"),
            ("group.filter.class", "custom filters are not supported; use groups/groups_exclude patterns"),
            ("config.property.filter.class", "custom filters are not supported"),
            ("exactly.once.support", "strait is at-least-once with exact offset translation; not converted"),
        ];
        for (name, why) in NOT_NEEDED {
            if let Some((key, _)) = self.flow_get(flow, name) {
                self.warn(&key, why);
            }
        }
    }
}

// ------------------------------------------------------------------ key tables

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn is_security_key(name: &str) -> bool {
    name == "security.protocol" || name.starts_with("ssl.") || name.starts_with("sasl.")
}

/// Java client properties MM2 applies to every cluster when written without an alias.
fn is_global_client_key(key: &str) -> bool {
    is_security_key(key) || key.starts_with("producer.") || key.starts_with("consumer.")
}

/// Java client property names import-mm2 knows (security and general client settings).
fn is_client_key(name: &str) -> bool {
    is_security_key(name) || java_to_librdkafka(name).is_ok() || java_client_reason(name).is_some()
}

/// The librdkafka name of a Java client property with the same meaning.
fn java_to_librdkafka(name: &str) -> Result<&str, String> {
    const SAME: &[&str] = &[
        "client.id",
        "client.rack",
        "linger.ms",
        "batch.size",
        "compression.type",
        "fetch.min.bytes",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "request.timeout.ms",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "metadata.max.age.ms",
        "reconnect.backoff.ms",
        "reconnect.backoff.max.ms",
        "retry.backoff.ms",
        "retry.backoff.max.ms",
        "socket.connection.setup.timeout.ms",
        "connections.max.idle.ms",
        "check.crcs",
    ];
    const RENAMED: &[(&str, &str)] = &[
        ("receive.buffer.bytes", "socket.receive.buffer.bytes"),
        ("send.buffer.bytes", "socket.send.buffer.bytes"),
        ("fetch.max.wait.ms", "fetch.wait.max.ms"),
        ("max.request.size", "message.max.bytes"),
    ];
    if let Some(same) = SAME.iter().find(|s| **s == name) {
        return Ok(same);
    }
    if let Some((_, to)) = RENAMED.iter().find(|(from, _)| *from == name) {
        return Ok(to);
    }
    Err(java_client_reason(name).unwrap_or_else(|| {
        "no librdkafka equivalent known to import-mm2 (not converted; set the librdkafka property by hand if needed)"
            .into()
    }))
}

fn java_client_reason(name: &str) -> Option<String> {
    let why = match name {
        "acks" | "enable.idempotence" | "max.in.flight.requests.per.connection" | "delivery.timeout.ms" | "retries" => {
            "strait sets it itself for zero loss and order (idempotent producer, acks=all)"
        }
        "isolation.level" => "strait always reads read_committed",
        "enable.auto.commit" | "auto.commit.interval.ms" => "strait commits only acknowledged progress",
        "group.id" => "set the flow's consumer_group instead",
        "partition.assignment.strategy" => "strait uses cooperative-sticky",
        "key.serializer" | "value.serializer" | "key.deserializer" | "value.deserializer" => {
            "not needed: strait copies keys and values as bytes"
        }
        "buffer.memory" => "use the flow's max_in_flight_bytes",
        "max.poll.records" | "max.block.ms" | "interceptor.classes" | "metric.reporters" => {
            "Java client setting without a librdkafka equivalent"
        }
        _ => return None,
    };
    Some(format!("{why} (not converted)"))
}

/// Why a non-client key (MM2 or Kafka Connect runtime) is not converted.
fn runtime_key_reason(key: &str) -> String {
    let connect = [
        "key.converter",
        "value.converter",
        "header.converter",
        "config.storage",
        "offset.storage",
        "status.storage",
        "offset.flush",
        "listeners",
        "rest.",
        "dedicated.mode",
        "plugin.path",
        "worker.",
    ];
    if connect.iter().any(|c| key.contains(c)) {
        "MirrorMaker 2 / Kafka Connect runtime setting: strait has no Connect runtime (not converted)".into()
    } else {
        "no strait equivalent (not converted)".into()
    }
}

/// A TOML string: a literal string when possible (regexes stay readable), else escaped.
fn toml_str(s: &str) -> String {
    if !s.contains('\'') && !s.chars().any(char::is_control) {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_options_are_parsed() {
        let j = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="mm2" password="p\"w";"#,
        );
        assert!(j.module.ends_with("ScramLoginModule"));
        assert_eq!(j.options["username"], "mm2");
        assert_eq!(j.options["password"], "p\"w");
    }

    #[test]
    fn provider_references_become_strait_references() {
        assert_eq!(provider_to_env("${env:KAFKA_PW}").as_deref(), Some("${KAFKA_PW}"));
        assert_eq!(provider_to_env("${env::KAFKA_PW}").as_deref(), Some("${KAFKA_PW}"));
        assert_eq!(provider_to_file("${directory:/run/secrets:kafka-pw}").as_deref(), Some("/run/secrets/kafka-pw"));
        assert_eq!(provider_to_env("plain"), None);
    }

    #[test]
    fn toml_strings_round_trip() {
        for s in ["a.b", r"video\..*", "it's", "q\"uote", "tab\there"] {
            let text = format!("v = {}", toml_str(s));
            let parsed: BTreeMap<String, String> = config::Config::builder()
                .add_source(config::File::from_str(&text, config::FileFormat::Toml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap();
            assert_eq!(parsed["v"], s, "{text}");
        }
    }
}
