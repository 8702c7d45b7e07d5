//! TLS and SASL settings per cluster, and where their secrets come from.
//!
//! A cluster gets TLS with a `[clusters.<alias>.tls]` table and SASL with a
//! `[clusters.<alias>.sasl]` table; together they mean `SASL_SSL`. They are typed keys
//! rather than raw librdkafka properties so that config validation can name what is wrong
//! and so that no role-specific table can quietly switch security off (the raw security
//! properties are refused, see [`raw_property_problem`]).
//!
//! Secrets (passwords) are never meant to sit in the config file: a value may reference
//! an environment variable, `password = "${KAFKA_PASSWORD}"`, or the config may name a
//! file, `password_file = "/run/secrets/kafka-password"`. They are read once by
//! [`Config::load`](crate::config::Config::load) and kept in [`Secret`], whose `Debug`
//! prints `<redacted>` and which has no `Display`, so neither a log line, `/status`, an
//! error message nor a `{:?}` of the config can show them. librdkafka's `ClientConfig`
//! holds them in clear text: never log one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use serde::Deserialize;

/// A secret value read from the environment or a file. Deliberately without `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The clear text, for handing to librdkafka and nothing else.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret as written in the config: `${ENV_VAR}` references or (discouraged) the value
/// itself. `Debug` shows references but never an inline value.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if env_references(&self.0).is_empty() {
            f.write_str("<inline secret>")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `ca_file`: PEM file with the CA certificate(s) that signed the brokers'
    /// certificates. Default: the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: PEM client certificate, for brokers that require mutual TLS
    /// (`ssl.client.auth=required`). Needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// `key_file`: PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `key_password`: password of an encrypted `key_file`, as `${ENV_VAR}`.
    #[serde(default)]
    pub key_password: Option<SecretText>,
    /// `key_password_file`: file holding the password of `key_file`.
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    /// `keystore_file`: PKCS#12 file with client certificate and key, instead of
    /// `cert_file`/`key_file` (Java keystores in PKCS#12 format work as they are).
    #[serde(default)]
    pub keystore_file: Option<PathBuf>,
    /// `keystore_password`: password of `keystore_file`, as `${ENV_VAR}`.
    #[serde(default)]
    pub keystore_password: Option<SecretText>,
    /// `keystore_password_file`: file holding the password of `keystore_file`.
    #[serde(default)]
    pub keystore_password_file: Option<PathBuf>,
    /// `verify_hostname`: check that the broker's certificate names the host strait
    /// connects to. Default true. The certificate chain is always verified.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
    /// Resolved by [`resolve`]; not a config key.
    #[serde(skip)]
    pub(crate) resolved_key_password: Option<Secret>,
    #[serde(skip)]
    pub(crate) resolved_keystore_password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `mechanism`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. Required.
    pub mechanism: String,
    /// `username`: may reference environment variables, `"${KAFKA_USER}"`. Required.
    pub username: String,
    /// `password`: `"${ENV_VAR}"` (an inline value works but puts the secret in the
    /// file). Exactly one of `password` and `password_file` is required.
    #[serde(default)]
    pub password: Option<SecretText>,
    /// `password_file`: file whose content (one trailing newline removed) is the password,
    /// e.g. a mounted Kubernetes Secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(skip)]
    pub(crate) resolved_username: Option<String>,
    #[serde(skip)]
    pub(crate) resolved_password: Option<Secret>,
}

fn default_true() -> bool {
    true
}

/// SASL mechanisms librdkafka is built with here. GSSAPI (Kerberos) is compiled out;
/// OAUTHBEARER is compiled in but fetching tokens (OIDC) needs libcurl, which is not.
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A cluster's `tls` and `sasl` tables, validated and resolved as one.
pub struct ClusterSecurity<'a> {
    pub tls: Option<&'a TlsConfig>,
    pub sasl: Option<&'a SaslConfig>,
}

/// What went wrong, with the key (relative to the cluster) it concerns.
pub type Problem = (String, String);

impl ClusterSecurity<'_> {
    /// librdkafka's `security.protocol` for these settings.
    pub fn protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    /// One line for `check`: the protocol and mechanism, never a secret.
    pub fn describe(&self) -> String {
        match self.sasl {
            Some(sasl) => format!("{} {}", self.protocol(), sasl.mechanism),
            None => self.protocol().to_string(),
        }
    }

    /// Checks the shape of the settings without reading files or the environment.
    pub fn validate(&self) -> Result<(), Problem> {
        if let Some(sasl) = self.sasl {
            if sasl.mechanism == "OAUTHBEARER" {
                return Err(problem(
                    "sasl.mechanism",
                    "OAUTHBEARER is not supported: this build of librdkafka cannot fetch tokens from an \
                     identity provider (OIDC needs libcurl); use SCRAM-SHA-512 or PLAIN over TLS",
                ));
            }
            if !MECHANISMS.contains(&sasl.mechanism.as_str()) {
                return Err(problem(
                    "sasl.mechanism",
                    format!("`{}` is not supported; use one of {}", sasl.mechanism, MECHANISMS.join(", ")),
                ));
            }
            if sasl.mechanism == "PLAIN" && self.tls.is_none() {
                return Err(problem(
                    "sasl.mechanism",
                    "PLAIN sends the password in clear text; add a [tls] table for this cluster (SASL_SSL) \
                     or use SCRAM",
                ));
            }
            if sasl.username.trim().is_empty() {
                return Err(problem("sasl.username", "must not be empty"));
            }
            one_of("sasl.password", sasl.password.is_some(), "sasl.password_file", sasl.password_file.is_some(), true)?;
        }
        if let Some(tls) = self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                let missing = if tls.cert_file.is_some() { "tls.key_file" } else { "tls.cert_file" };
                return Err(problem(missing, "cert_file and key_file go together (mutual TLS needs both)"));
            }
            if tls.keystore_file.is_some() && tls.cert_file.is_some() {
                return Err(problem("tls.keystore_file", "give either keystore_file or cert_file/key_file, not both"));
            }
            one_of(
                "tls.key_password",
                tls.key_password.is_some(),
                "tls.key_password_file",
                tls.key_password_file.is_some(),
                false,
            )?;
            one_of(
                "tls.keystore_password",
                tls.keystore_password.is_some(),
                "tls.keystore_password_file",
                tls.keystore_password_file.is_some(),
                false,
            )?;
            if (tls.key_password.is_some() || tls.key_password_file.is_some()) && tls.key_file.is_none() {
                return Err(problem("tls.key_password", "is only used with key_file"));
            }
            if (tls.keystore_password.is_some() || tls.keystore_password_file.is_some()) && tls.keystore_file.is_none()
            {
                return Err(problem("tls.keystore_password", "is only used with keystore_file"));
            }
        }
        Ok(())
    }

    /// Where each secret and file of these settings comes from, for `check --offline`:
    /// `(key, source)` with sources like `env KAFKA_PASSWORD` or `file /run/secrets/pw`.
    pub fn sources(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut text = |key: &str, value: Option<&SecretText>| {
            if let Some(v) = value {
                let refs = env_references(&v.0);
                let source = if refs.is_empty() {
                    "inline in the config file".to_string()
                } else {
                    refs.iter().map(|r| format!("env {r}")).collect::<Vec<_>>().join(", ")
                };
                out.push((key.to_string(), source));
            }
        };
        if let Some(sasl) = self.sasl {
            text("sasl.password", sasl.password.as_ref());
        }
        if let Some(tls) = self.tls {
            text("tls.key_password", tls.key_password.as_ref());
            text("tls.keystore_password", tls.keystore_password.as_ref());
        }
        for (key, path) in self.files() {
            out.push((key.to_string(), format!("file {}", path.display())));
        }
        if let Some(sasl) = self.sasl {
            let refs = env_references(&sasl.username);
            if !refs.is_empty() {
                out.push((
                    "sasl.username".into(),
                    refs.iter().map(|r| format!("env {r}")).collect::<Vec<_>>().join(", "),
                ));
            }
        }
        out
    }

    fn files(&self) -> Vec<(&'static str, &Path)> {
        let mut out: Vec<(&'static str, Option<&PathBuf>)> = Vec::new();
        if let Some(tls) = self.tls {
            out.extend([
                ("tls.ca_file", tls.ca_file.as_ref()),
                ("tls.cert_file", tls.cert_file.as_ref()),
                ("tls.key_file", tls.key_file.as_ref()),
                ("tls.key_password_file", tls.key_password_file.as_ref()),
                ("tls.keystore_file", tls.keystore_file.as_ref()),
                ("tls.keystore_password_file", tls.keystore_password_file.as_ref()),
            ]);
        }
        if let Some(sasl) = self.sasl {
            out.push(("sasl.password_file", sasl.password_file.as_ref()));
        }
        out.into_iter().filter_map(|(k, p)| Some((k, p?.as_path()))).collect()
    }
}

/// Reads every secret from the environment (`env`) or its file and checks that every
/// named file is readable. Errors name the key and the variable or path, never a value.
pub fn resolve(
    tls: Option<&mut TlsConfig>,
    sasl: Option<&mut SaslConfig>,
    env: &BTreeMap<String, String>,
) -> Result<(), Problem> {
    if let Some(tls) = tls {
        for (key, path) in [
            ("tls.ca_file", &tls.ca_file),
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
            ("tls.keystore_file", &tls.keystore_file),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path)
                    .map_err(|e| problem(key, format!("cannot read `{}`: {e}", path.display())))?;
            }
        }
        tls.resolved_key_password = secret(
            "tls.key_password",
            tls.key_password.as_ref(),
            "tls.key_password_file",
            tls.key_password_file.as_deref(),
            env,
        )?;
        tls.resolved_keystore_password = secret(
            "tls.keystore_password",
            tls.keystore_password.as_ref(),
            "tls.keystore_password_file",
            tls.keystore_password_file.as_deref(),
            env,
        )?;
    }
    if let Some(sasl) = sasl {
        sasl.resolved_username = Some(expand("sasl.username", &sasl.username, env)?);
        sasl.resolved_password =
            secret("sasl.password", sasl.password.as_ref(), "sasl.password_file", sasl.password_file.as_deref(), env)?;
    }
    Ok(())
}

/// Sets librdkafka's security properties. Called last for every client role, so no
/// other table can change them (validation also refuses them there).
pub fn apply(cfg: &mut ClientConfig, tls: Option<&TlsConfig>, sasl: Option<&SaslConfig>) {
    let security = ClusterSecurity { tls, sasl };
    cfg.set("security.protocol", security.protocol());
    if let Some(tls) = tls {
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(ca) = &tls.ca_file {
            cfg.set("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            cfg.set("ssl.certificate.location", path(cert));
            cfg.set("ssl.key.location", path(key));
        }
        if let Some(pw) = &tls.resolved_key_password {
            cfg.set("ssl.key.password", pw.expose());
        }
        if let Some(ks) = &tls.keystore_file {
            cfg.set("ssl.keystore.location", path(ks));
        }
        if let Some(pw) = &tls.resolved_keystore_password {
            cfg.set("ssl.keystore.password", pw.expose());
        }
        cfg.set("enable.ssl.certificate.verification", "true");
        cfg.set("ssl.endpoint.identification.algorithm", if tls.verify_hostname { "https" } else { "none" });
    }
    if let Some(sasl) = sasl {
        cfg.set("sasl.mechanism", &sasl.mechanism);
        cfg.set("sasl.username", sasl.resolved_username.as_deref().unwrap_or(&sasl.username));
        if let Some(pw) = &sasl.resolved_password {
            cfg.set("sasl.password", pw.expose());
        }
    }
}

/// Raw librdkafka properties that the typed keys own, refused in `client`,
/// `consumer` and `producer` so that security cannot be changed (or a secret written
/// inline) behind the typed settings' back.
const TYPED: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    "ssl_key",
    "ssl_certificate",
];

/// Why a raw librdkafka property may not appear in the given table (`client`,
/// `consumer` or `producer`), if it may not.
pub fn raw_property_problem(section: &str, name: &str) -> Option<String> {
    if TYPED.contains(&name) || name.starts_with("sasl.") {
        return Some("security settings are typed keys: use this cluster's [tls] and [sasl] tables".into());
    }
    if name.starts_with("ssl.") && section != "client" {
        return Some("TLS settings apply to every client of a cluster: put it in `client`".into());
    }
    None
}

fn problem(key: impl Into<String>, text: impl Into<String>) -> Problem {
    (key.into(), text.into())
}

fn one_of(a: &str, has_a: bool, b: &str, has_b: bool, required: bool) -> Result<(), Problem> {
    match (has_a, has_b) {
        (true, true) => Err(problem(a, format!("give either {a} or {b}, not both"))),
        (false, false) if required => Err(problem(a, format!("is required (or {b})"))),
        _ => Ok(()),
    }
}

fn secret(
    key: &str,
    text: Option<&SecretText>,
    file_key: &str,
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Option<Secret>, Problem> {
    let value = match (text, file) {
        (Some(text), _) => expand(key, &text.0, env)?,
        (None, Some(path)) => {
            let mut content = std::fs::read_to_string(path)
                .map_err(|e| problem(file_key, format!("cannot read `{}`: {e}", path.display())))?;
            if content.ends_with('\n') {
                content.pop();
                if content.ends_with('\r') {
                    content.pop();
                }
            }
            if content.is_empty() {
                return Err(problem(file_key, format!("`{}` is empty", path.display())));
            }
            content
        }
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(problem(key, "is empty"));
    }
    Ok(Some(Secret(value)))
}

/// Replaces every `${NAME}` with the variable's value; an unset variable is an error.
fn expand(key: &str, text: &str, env: &BTreeMap<String, String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        let name = &rest[start + 2..start + 2 + len];
        if !is_env_name(name) {
            return Err(problem(key, format!("`${{{name}}}` is not a valid environment variable reference")));
        }
        let value = env.get(name).ok_or_else(|| problem(key, format!("environment variable `{name}` is not set")))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `${NAME}` references in a value.
pub fn env_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push(rest[start + 2..start + 2 + len].to_string());
        rest = &rest[start + 3 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expands_env_references_and_names_missing_ones() {
        let e = env(&[("PW", "s3cret"), ("USER", "strait")]);
        assert_eq!(expand("k", "${PW}", &e).unwrap(), "s3cret");
        assert_eq!(expand("k", "a-${USER}-${PW}", &e).unwrap(), "a-strait-s3cret");
        assert_eq!(expand("k", "plain", &e).unwrap(), "plain");
        let (key, text) = expand("sasl.password", "${NOPE}", &e).unwrap_err();
        assert_eq!(key, "sasl.password");
        assert!(text.contains("`NOPE` is not set"), "{text}");
        assert!(expand("k", "${not valid}", &e).is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        let inline = SecretText("hunter2".into());
        assert!(!format!("{inline:?}").contains("hunter2"));
        assert_eq!(format!("{:?}", SecretText("${PW}".into())), "\"${PW}\"");
        let mut sasl: SaslConfig =
            serde_json::from_str(r#"{"mechanism":"SCRAM-SHA-512","username":"u","password":"hunter2"}"#).unwrap();
        resolve(None, Some(&mut sasl), &BTreeMap::new()).unwrap();
        assert!(!format!("{sasl:?}").contains("hunter2"), "{sasl:?}");
        let mut cfg = ClientConfig::new();
        apply(&mut cfg, None, Some(&sasl));
        assert_eq!(cfg.get("sasl.password"), Some("hunter2"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_PLAINTEXT"));
    }

    #[test]
    fn password_file_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "pa ss\n").unwrap();
        let got = secret("p", None, "pf", Some(&path), &BTreeMap::new()).unwrap().unwrap();
        assert_eq!(got.expose(), "pa ss");
        std::fs::write(&path, "\n").unwrap();
        assert!(secret("p", None, "pf", Some(&path), &BTreeMap::new()).unwrap_err().1.contains("is empty"));
        let missing = dir.path().join("missing");
        let (key, text) = secret("p", None, "pf", Some(&missing), &BTreeMap::new()).unwrap_err();
        assert_eq!(key, "pf");
        assert!(text.contains("cannot read"), "{text}");
    }

    #[test]
    fn raw_security_properties_are_refused_where_they_could_override() {
        assert!(raw_property_problem("client", "sasl.password").is_some());
        assert!(raw_property_problem("producer", "security.protocol").is_some());
        assert!(raw_property_problem("consumer", "ssl.cipher.suites").is_some());
        assert!(raw_property_problem("client", "ssl.cipher.suites").is_none());
        assert!(raw_property_problem("client", "linger.ms").is_none());
    }
}
