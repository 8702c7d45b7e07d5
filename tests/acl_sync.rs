//! ACL sync on real Kafka with Kafka's own authorizer: two test bed clusters with
//! SASL_SSL listeners and KRaft's StandardAuthorizer (`testbed up NAME --port P
//! --sasl-ssl --authorizer --user alice --user bob`; admin and strait are super users,
//! alice and bob are not). One strait run copies the source's ACLs; the test checks each
//! rule (literal, prefixed, group, WRITE skipped, ALL downgraded, DENY copied, excluded
//! principal, unmirrored topic), the removal of an ACL strait created, that operators'
//! ACLs on the target are never touched, and that after `strait failover` alice — allowed
//! on the source — may read on the target while bob may not.
//!
//! The clusters are started once per run (about 20 s the first time) and left running
//! like the default ones; `testbed down` stops them with the rest.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strait::kafka_ext::{self, AclBinding, AclOperation, AclPattern, AclPermission, AclResource};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A SASL_SSL test bed cluster with an authorizer, and its users' passwords.
struct AclCluster {
    name: &'static str,
    bootstrap: String,
    ca_file: PathBuf,
    strait_password_file: PathBuf,
    passwords: BTreeMap<String, String>,
}

fn acl_cluster(name: &'static str, port: u16) -> AclCluster {
    let port_arg = port.to_string();
    let args = ["up", name, "--port", &port_arg, "--sasl-ssl", "--authorizer", "--user", "alice", "--user", "bob"];
    let out = testbed_cmd(&args);
    assert!(out.status.success(), "testbed {args:?} failed:\n{}\n{}", stdout(&out), stderr(&out));
    let out = testbed_cmd(&["security", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: BTreeMap<String, String> =
        stdout(&out).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(info.get("authorizer").map(String::as_str), Some("StandardAuthorizer"));
    let read = |key: &str| std::fs::read_to_string(&info[key]).unwrap().trim().to_string();
    let passwords = [("strait", "password_file"), ("alice", "password_file_alice"), ("bob", "password_file_bob")]
        .into_iter()
        .map(|(user, key)| (user.to_string(), read(key)))
        .collect();
    AclCluster {
        name,
        bootstrap: format!("127.0.0.1:{port}"),
        ca_file: PathBuf::from(&info["ca_file"]),
        strait_password_file: PathBuf::from(&info["password_file"]),
        passwords,
    }
}

/// Both clusters, started once per test binary, on ports 38600 and 38610 shifted by
/// STRAIT_TESTBED_PORT_OFFSET (clear of the default clusters and of tests/security.rs).
fn clusters() -> &'static (AclCluster, AclCluster) {
    static CLUSTERS: OnceLock<(AclCluster, AclCluster)> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        let base = 38600 + port_offset();
        (acl_cluster("acl-east", base), acl_cluster("acl-west", base + 10))
    })
}

impl AclCluster {
    fn client(&self, user: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("ssl.ca.location", self.ca_file.to_str().unwrap())
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", user)
            .set("sasl.password", &self.passwords[user]);
        c
    }

    /// An admin client as strait's user (a super user of the test bed).
    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client("strait").create().unwrap()
    }

    fn create_topic(&self, topic: &str, partitions: i32) {
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for r in block(self.admin().create_topics([&t], &AdminOptions::new())).unwrap() {
            r.unwrap_or_else(|(name, e)| panic!("create topic {name} on {}: {e}", self.name));
        }
    }

    fn create_acls(&self, acls: &[AclBinding]) {
        let results = kafka_ext::create_acls(self.admin().inner(), acls, TIMEOUT).unwrap();
        for (acl, r) in acls.iter().zip(results) {
            r.unwrap_or_else(|e| panic!("create {acl:?} on {}: {e}", self.name));
        }
    }

    fn delete_acls(&self, acls: &[AclBinding]) {
        for (acl, r) in acls.iter().zip(kafka_ext::delete_acls(self.admin().inner(), acls, TIMEOUT).unwrap()) {
            assert_eq!(r.unwrap(), 1, "delete {acl:?} on {}", self.name);
        }
    }

    /// The cluster's ACLs on the named resources.
    fn acls_on(&self, names: &[&str]) -> BTreeSet<AclBinding> {
        let all = kafka_ext::describe_acls(self.admin().inner(), TIMEOUT).unwrap();
        all.into_iter().filter(|a| names.contains(&a.name.as_str())).collect()
    }

    fn produce(&self, topic: &str, values: &[String], partitions: i32) {
        let p: BaseProducer = self.client("strait").set("enable.idempotence", "true").create().unwrap();
        for (i, v) in values.iter().enumerate() {
            p.send::<String, String>(BaseRecord::to(topic).partition(i as i32 % partitions).key(v).payload(v)).unwrap();
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60)).unwrap();
    }

    /// Reads `want` records of `topic` as `user` in consumer group `group` and commits
    /// what it read; Err with the broker's answer when the user is not authorized.
    fn consume_as(&self, user: &str, topic: &str, group: &str, want: usize) -> Result<Vec<String>, String> {
        let c: BaseConsumer = self
            .client(user)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let mut got = Vec::new();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < want && Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
                    positions.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) if e.to_string().to_lowercase().contains("authoriz") => return Err(e.to_string()),
                Some(Err(e)) => panic!("{user} consuming {topic} on {}: {e}", self.name),
                None => {}
            }
        }
        assert_eq!(got.len(), want, "{user} read {} of {want} records of {topic} on {}", got.len(), self.name);
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).map_err(|e| e.to_string())?;
        Ok(got)
    }

    fn end_offsets_sum(&self, topic: &str) -> i64 {
        let c: BaseConsumer = self.client("strait").create().unwrap();
        let Ok(md) = c.fetch_metadata(Some(topic), TIMEOUT) else { return 0 };
        let partitions = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
        (0..partitions as i32).map(|p| c.fetch_watermarks(topic, p, TIMEOUT).map(|w| w.1).unwrap_or(0)).sum()
    }
}

fn acl(resource: AclResource, pattern: AclPattern, name: &str, user: &str, op: AclOperation) -> AclBinding {
    AclBinding {
        resource,
        pattern,
        name: name.to_string(),
        principal: format!("User:{user}"),
        host: "*".to_string(),
        operation: op,
        permission: AclPermission::Allow,
    }
}

fn deny(a: AclBinding) -> AclBinding {
    AclBinding { permission: AclPermission::Deny, ..a }
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == '_' { vec![c] } else { vec!['\\', '\\', c] }).collect()
}

fn config(topics: &[&str], group: &str, admin: &str) -> String {
    let (east, west) = clusters();
    let cluster = |c: &AclCluster| {
        format!(
            "[clusters.{}]\nbootstrap = \"{}\"\n[clusters.{}.tls]\nca_file = \"{}\"\n[clusters.{}.sasl]\n\
             mechanism = \"SCRAM-SHA-512\"\nusername = \"strait\"\npassword_file = \"{}\"\n\n",
            c.name,
            c.bootstrap,
            c.name,
            c.ca_file.display(),
            c.name,
            c.strait_password_file.display()
        )
    };
    let topics: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "{}{}[admin]\nlisten = \"{admin}\"\n\n[[flows]]\nsource = \"acl-east\"\ntarget = \"acl-west\"\n\
         topics = [{}]\ngroups = [\"{}\"]\nconsumer_group = \"{}\"\nacls_exclude_principals = [\"User:svc-.*\"]\n\
         refresh_interval_ms = 1000\ncommit_interval_ms = 200\ncheckpoint_interval_ms = 1000\n",
        cluster(east),
        cluster(west),
        topics.join(", "),
        regex_escape(group),
        unique("strait-acl"),
    )
}

/// Every ACL rule, removal, operators' ACLs, and a failover on real Kafka with one
/// strait run (sync_acls left unset: the source's authorizer turns it on).
#[test]
fn acls_follow_the_source_safely_and_a_failed_over_consumer_is_allowed() {
    use AclOperation::*;
    use AclPattern::*;
    use AclResource::*;
    let (east, west) = clusters();
    let topic = unique("acl-orders");
    let prefix = unique("acl-pre");
    let prefixed_topic = format!("{prefix}-a");
    let unmirrored = unique("acl-other");
    let group = unique("acl-app");
    for t in [&topic, &prefixed_topic, &unmirrored] {
        east.create_topic(t, 2);
    }
    let (t_topic, t_prefix) = (format!("acl-east.{topic}"), format!("acl-east.{prefix}"));

    let frank = acl(Topic, Literal, &topic, "frank", Read);
    let henry = acl(Topic, Literal, &topic, "henry", Read);
    east.create_acls(&[
        acl(Topic, Literal, &topic, "alice", Read),
        acl(Group, Literal, &group, "alice", Read),
        acl(Topic, Prefixed, &prefix, "bob", Describe),
        acl(Topic, Literal, &topic, "carol", Write),
        acl(Topic, Literal, &topic, "dave", All),
        deny(acl(Topic, Literal, &topic, "eve", Read)),
        acl(Topic, Literal, &topic, "svc-etl", Read),
        acl(Topic, Literal, &unmirrored, "alice", Read),
        frank.clone(),
        henry.clone(),
    ]);
    // The operator's own ACLs on the target: one strait would never create, and one that
    // is identical to what strait would copy (so strait must not take it over).
    let grace = acl(Topic, Literal, &t_topic, "grace", Read);
    let henry_by_operator = acl(Topic, Literal, &t_topic, "henry", Read);
    west.create_acls(&[grace.clone(), henry_by_operator.clone()]);

    let values: Vec<String> = (0..100).map(|i| format!("{topic}-v{i}")).collect();
    east.produce(&topic, &values, 2);
    let first = east.consume_as("alice", &topic, &group, 40).expect("alice may read on the source");
    assert!(east.consume_as("bob", &topic, &unique("acl-bob"), 1).is_err(), "bob may not read on the source");

    let admin = format!("127.0.0.1:{}", free_port());
    let patterns = [regex_escape(&topic), format!("{}.*", regex_escape(&prefix))];
    let (_dir, path) = write_config(&config(&[&patterns[0], &patterns[1]], &group, &admin));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    let plan = stdout(&out);
    assert!(out.status.success(), "plan: {plan}\n{}", stderr(&out));
    for line in [
        format!("+ create ACL on acl-west: ALLOW User:alice READ topic {t_topic} (literal, host *)"),
        format!("+ create ACL on acl-west: ALLOW User:alice READ group {group} (literal, host *)"),
        format!("+ create ACL on acl-west: ALLOW User:bob DESCRIBE topic {t_prefix} (prefixed, host *)"),
        format!("+ create ACL on acl-west: ALLOW User:dave READ topic {t_topic} (literal, host *)"),
        format!("+ create ACL on acl-west: ALLOW User:dave DESCRIBE topic {t_topic} (literal, host *)"),
        format!("+ create ACL on acl-west: DENY User:eve READ topic {t_topic} (literal, host *)"),
    ] {
        assert!(plan.contains(&line), "plan lacks `{line}`:\n{plan}");
    }
    for absent in ["User:carol", "User:dave ALL", "User:svc-etl", "User:henry", "User:grace", &unmirrored] {
        assert!(!plan.contains(absent), "plan mentions `{absent}`:\n{plan}");
    }

    let run = Strait::start(&path);
    let names = [t_topic.as_str(), t_prefix.as_str(), group.as_str(), &format!("acl-east.{unmirrored}")];
    let expected: BTreeSet<AclBinding> = [
        acl(Topic, Literal, &t_topic, "alice", Read),
        acl(Group, Literal, &group, "alice", Read),
        acl(Topic, Prefixed, &t_prefix, "bob", Describe),
        acl(Topic, Literal, &t_topic, "dave", Read),
        acl(Topic, Literal, &t_topic, "dave", Describe),
        deny(acl(Topic, Literal, &t_topic, "eve", Read)),
        acl(Topic, Literal, &t_topic, "frank", Read),
        henry_by_operator.clone(),
        grace.clone(),
    ]
    .into();
    wait_for("the source's ACLs on acl-west", Duration::from_secs(60), || {
        (west.acls_on(&names) == expected).then_some(())
    });
    let counter = |kind: &str| {
        let name = format!("strait_acl_sync_changes_total{{flow=\"acl-east->acl-west\",kind=\"{kind}\"}}");
        metric(&admin, &name).unwrap_or(0.0)
    };
    // The counter moves once CreateAcls has answered, just after the ACLs show up.
    let created = wait_for("the create counter", TIMEOUT, || Some(counter("create")).filter(|c| *c >= 7.0));
    assert_eq!(created, 7.0, "alice x2, bob, dave x2, eve, frank");

    // Removed on the source: frank's goes from the target (strait made it), henry's stays
    // (the operator made it), and so does grace's.
    east.delete_acls(&[frank.clone(), henry.clone()]);
    let target_frank = acl(Topic, Literal, &t_topic, "frank", Read);
    wait_for("frank's copied ACL removed from acl-west", Duration::from_secs(60), || {
        (!west.acls_on(&names).contains(&target_frank)).then_some(())
    });
    let mut remaining = expected.clone();
    remaining.remove(&target_frank);
    assert_eq!(west.acls_on(&names), remaining, "only the ACL strait created was removed");
    let deleted = wait_for("the delete counter", TIMEOUT, || Some(counter("delete")).filter(|c| *c >= 1.0));
    assert_eq!(deleted, 1.0);
    let errors = metric(&admin, "strait_errors_total{flow=\"acl-east->acl-west\",kind=\"acl_sync\"}");
    assert_eq!(errors, Some(0.0));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    assert!(stdout(&out).contains("ACLs in sync on acl-west (6 copied from the source)"), "{}", stdout(&out));

    // Failover: alice's group continues on acl-west, as alice, where it stopped.
    wait_for("all 100 records on acl-west", Duration::from_secs(60), || {
        (west.end_offsets_sum(&t_topic) >= 100).then_some(())
    });
    let flow = "acl-east->acl-west";
    let p = path.to_str().unwrap();
    let args =
        ["failover", "--config", p, "--flow", flow, "--group", &group, "--wait-for-zero-lag", "--timeout", "60s"];
    let out = strait(&args);
    assert!(out.status.success(), "failover: {}\n{}", stdout(&out), stderr(&out));
    let rest = west.consume_as("alice", &t_topic, &group, 60).expect("alice may read on the target after failover");
    let mut all: Vec<String> = first.into_iter().chain(rest).collect();
    all.sort();
    let mut want = values.clone();
    want.sort();
    assert_eq!(all, want, "failover: nothing read twice, nothing skipped");
    let denied = west.consume_as("bob", &t_topic, &unique("acl-bob"), 1);
    assert!(denied.is_err(), "bob, never allowed on the source, may not read the copy either");
    drop(run);
}

/// Without an authorizer on the source, ACL sync stays off by default (plan shows
/// nothing about ACLs) and `sync_acls = true` is an error naming the cluster;
/// `sync_acls = false` says so in plan; a bad principal pattern names its key.
#[test]
fn without_an_authorizer_acl_sync_is_off_unless_asked_for() {
    testbed();
    let topic = unique("acl-plain");
    create_topic(us_east(), &topic, 1, &[]);
    // Unique names hold only letters, digits and `-`: no regex escaping needed.
    let flow = flow("us-east", "eu-west", &topic, "prefix", &unique("strait"));
    let (_dir, path) = write_config(&config_with_flows(&flow));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("ACL"), "{}", stdout(&out));

    let (_dir, path) = write_config(&config_with_flows(&format!("{flow}sync_acls = true\n")));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("us-east") && err.contains("no authorizer"), "{err}");

    let (_dir, path) = write_config(&config_with_flows(&format!("{flow}sync_acls = false\n")));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ACLs not synced (sync_acls = false)"), "{}", stdout(&out));

    let bad = format!("{flow}acls_exclude_principals = [\"User:(\"]\n");
    let (_dir, path) = write_config(&config_with_flows(&bad));
    let out = strait(&["plan", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("flows[0].acls_exclude_principals[0]"), "{}", stderr(&out));
}
