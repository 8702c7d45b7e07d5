//! `strait import-mm2` on realistic MirrorMaker 2 configs (tests/mm2/*.properties,
//! written from MM2's documented keys). For each file: the conversion succeeds, the
//! result passes `strait check --offline`, the settings land in the right keys, no
//! inline secret is copied, and every key of the file is either converted or named in a
//! warning: none is dropped silently. No cluster is needed.

mod common;

use std::collections::BTreeSet;

use common::*;

struct Imported {
    toml: String,
    warnings: String,
    /// Keys of the file that no warning names: the ones that were converted.
    converted: BTreeSet<String>,
}

fn import(file: &str) -> Imported {
    let path = repo_root().join("tests/mm2").join(file);
    let out = strait(&["import-mm2", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{file}: {}", stderr(&out));
    let warnings = stderr(&out);
    let keys: Vec<String> = java_properties::read(std::fs::File::open(&path).unwrap()).unwrap().into_keys().collect();
    let converted = keys.into_iter().filter(|k| !warnings.contains(&format!("warning: `{k}`"))).collect();
    let imported = Imported { toml: stdout(&out), warnings, converted };
    let (_dir, config) = write_config(&imported.toml);
    let check = strait(&["check", "--offline", "--config", config.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{file}: converted config is invalid: {}\n{}",
        stderr(&check),
        imported.toml
    );
    imported
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn assert_lines(toml: &str, lines: &[&str]) {
    for line in lines {
        assert!(toml.lines().any(|l| l.trim_start().starts_with(line)), "missing `{line}` in:\n{toml}");
    }
}

#[test]
fn active_active_sasl_with_inline_passwords() {
    let i = import("active-active-sasl.properties");
    for secret in ["east-Secret-1", "west-Secret-2", "changeit"] {
        assert!(!i.toml.contains(secret) && !i.warnings.contains(secret), "inline secret `{secret}` copied");
    }
    assert_lines(
        &i.toml,
        &[
            "[clusters.us-east.sasl]",
            "mechanism = 'SCRAM-SHA-512'",
            "username = 'mm2'",
            "password = '${STRAIT_US_EAST_SASL_PASSWORD}'",
            "password = '${STRAIT_EU_WEST_SASL_PASSWORD}'",
            "ca_file = '/etc/kafka/secrets/truststore.pem'",
            "'compression.type' = 'zstd'",
            "'fetch.min.bytes' = '65536'",
            "topics = ['orders', 'payments\\..*', 'inventory-.*']",
            "topics = ['orders', 'returns']",
            "groups = ['billing.*', 'shipping']",
            "replication_factor = 3",
            "refresh_interval_ms = 30000",
            "checkpoint_interval_ms = 10000",
            "heartbeat_interval_ms = 5000",
            "sync_group_offsets = true",
        ],
    );
    assert_eq!(i.toml.matches("[[flows]]").count(), 2, "both directions");
    assert!(i.warnings.contains("keytool -list -rfc -keystore /etc/kafka/secrets/truststore.jks"), "{}", i.warnings);
    assert!(i.warnings.contains("set environment variable STRAIT_US_EAST_SASL_PASSWORD"), "{}", i.warnings);
    assert_eq!(
        i.converted,
        set(&[
            "clusters",
            "us-east.bootstrap.servers",
            "eu-west.bootstrap.servers",
            "us-east->eu-west.enabled",
            "eu-west->us-east.enabled",
            "us-east->eu-west.topics",
            "eu-west->us-east.topics",
            "topics.exclude",
            "groups",
            "groups.exclude",
            "replication.factor",
            "refresh.topics.interval.seconds",
            "sync.topic.configs.enabled",
            "sync.topic.configs.interval.seconds",
            "emit.checkpoints.interval.seconds",
            "sync.group.offsets.enabled",
            "emit.heartbeats.interval.seconds",
            "security.protocol",
            "sasl.mechanism",
            "us-east.consumer.fetch.min.bytes",
            "eu-west.producer.linger.ms",
            "eu-west.producer.compression.type",
            "eu-west.producer.batch.size",
            "us-east.producer.linger.ms",
        ]),
        "warnings:\n{}",
        i.warnings
    );
}

#[test]
fn identity_policy_mutual_tls_and_config_providers() {
    let i = import("identity-mtls-providers.properties");
    assert_lines(
        &i.toml,
        &[
            "rename = \"identity\"",
            "ca_file = '/etc/mm2/tls/primary-ca.pem'",
            "keystore_file = '/etc/mm2/tls/mm2-client.p12'",
            "keystore_password = '${MM2_KEYSTORE_PASSWORD}'",
            "verify_hostname = false",
            "mechanism = 'PLAIN'",
            "username = '${DR_USER}'",
            "password_file = '/run/secrets/dr-password'",
            "'message.max.bytes' = '10485760'",
            "'fetch.wait.max.ms' = '200'",
            "'socket.receive.buffer.bytes' = '1048576'",
            "topics_exclude = ['test\\..*', 'scratch-.*']",
            "heartbeat_interval_ms = 0",
            "checkpoint_interval_ms = 30000",
            "sync_group_offsets = false",
        ],
    );
    assert_eq!(i.toml.matches("[[flows]]").count(), 1, "dr->primary is disabled");
    assert_eq!(
        i.converted,
        set(&[
            "clusters",
            "primary.bootstrap.servers",
            "dr.bootstrap.servers",
            "primary->dr.enabled",
            "dr->primary.enabled",
            "primary->dr.topics",
            "primary->dr.topics.exclude",
            "primary->dr.groups",
            "primary->dr.emit.heartbeats.enabled",
            "primary->dr.emit.checkpoints.interval.seconds",
            "replication.policy.class",
            "primary.security.protocol",
            "primary.ssl.truststore.type",
            "primary.ssl.truststore.location",
            "primary.ssl.keystore.type",
            "primary.ssl.keystore.location",
            "primary.ssl.keystore.password",
            "primary.ssl.endpoint.identification.algorithm",
            "dr.security.protocol",
            "dr.sasl.mechanism",
            "dr.sasl.jaas.config",
            "dr.ssl.truststore.type",
            "dr.producer.max.request.size",
            "primary.consumer.fetch.max.wait.ms",
            "primary.consumer.receive.buffer.bytes",
        ]),
        "warnings:\n{}",
        i.warnings
    );
    for key in ["dr.ssl.truststore.location", "primary.ssl.enabled.protocols", "config.providers", "key.converter"] {
        assert!(i.warnings.contains(&format!("warning: `{key}`")), "{key} not warned:\n{}", i.warnings);
    }
}

#[test]
fn three_clusters_legacy_keys_and_unsupported_settings() {
    let i = import("three-clusters-plaintext.properties");
    assert_lines(
        &i.toml,
        &[
            "[clusters.central]",
            "bootstrap = '10.0.0.10:9092,10.0.0.11:9092'",
            "'client.id' = 'mm2-edge-1'",
            "topics = ['sensors\\..*', 'alerts']",
            "topics_exclude = ['sensors\\.debug']",
            "groups_exclude = ['test-.*']",
            "refresh_interval_ms = 15000",
        ],
    );
    assert_eq!(i.toml.matches("[[flows]]").count(), 2);
    assert_eq!(i.toml.matches("refresh_interval_ms").count(), 1, "only edge-2->central sets it");
    for (key, why) in [
        ("replication.policy.separator", "separator is always `.`"),
        ("emit.checkpoints.enabled", "always writes checkpoints"),
        ("edge-1->central.topic.filter.class", "custom filters"),
        ("edge-1.consumer.isolation.level", "read_committed"),
        ("central.producer.enable.idempotence", "strait sets it itself"),
        ("listeners", "Connect runtime"),
    ] {
        assert!(i.warnings.contains(&format!("warning: `{key}`: ")), "{key} not warned:\n{}", i.warnings);
        let line = i.warnings.lines().find(|l| l.contains(&format!("`{key}`"))).unwrap();
        assert!(line.contains(why), "{line}");
    }
    assert_eq!(
        i.converted,
        set(&[
            "clusters",
            "edge-1.bootstrap.servers",
            "edge-2.bootstrap.servers",
            "central.bootstrap.servers",
            "edge-1->central.enabled",
            "edge-2->central.enabled",
            "central->edge-1.enabled",
            "topics",
            "topics.blacklist",
            "groups.blacklist",
            "edge-2->central.refresh.topics.interval.seconds",
            "edge-1.client.id",
            "sync.topic.acls.enabled",
        ]),
        "warnings:\n{}",
        i.warnings
    );
}

#[test]
fn unusable_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        ("a.bootstrap.servers = x:1\n", "`clusters` is missing"),
        ("clusters = a, b\na.bootstrap.servers = x:1\n", "`b.bootstrap.servers` is missing"),
        ("clusters = us.east\n", "alias `us.east` cannot be used"),
    ] {
        let path = dir.path().join("mm2.properties");
        std::fs::write(&path, text).unwrap();
        let out = strait(&["import-mm2", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
    let out = strait(&["import-mm2", "/nonexistent/mm2.properties"]);
    assert_eq!(out.status.code(), Some(2));
}
