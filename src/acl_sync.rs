//! ACL sync: the target's permissions on mirrored topics and translated groups follow the
//! source's, so that after a failover consumers may do on the target what they did on
//! the source. `strait plan` prints the same [`AclPlan`] that `strait run` applies, on
//! the flow's refresh interval (with topic sync).
//!
//! What is copied (the rules of [`target_bindings`]): ACLs on topics the flow mirrors
//! (literal, or prefixed when a mirrored topic starts with the prefix), renamed as the
//! topics are (`prefix`: a prefixed ACL on `orders` becomes one on `us-east.orders`),
//! and ACLs on the consumer groups the flow translates ([`FlowConfig::selects_group`]),
//! under the same group name. Safe semantics as in MirrorMaker 2: ALLOW WRITE is not
//! copied (only strait may write a mirrored topic; another producer would fork the
//! copy), ALLOW ALL becomes READ + DESCRIBE, DENY is copied as it is.
//!
//! ACLs removed on the source are removed from the target only if strait created them.
//! Kafka ACLs carry no owner or label, so strait records each ACL it creates in a small
//! compacted topic on the target ([`tracking_topic`]) *before* creating it: a crash in
//! between leaves a record of an ACL that may not exist (deleting it later is harmless),
//! never an ACL strait made but forgot. The record lives on the target because that is
//! where the ACLs live: it survives restarts and host moves, every instance of the flow
//! reads the same one, and no local state is needed. An ACL that already existed on the
//! target (an operator's) is never recorded, so it is never deleted or changed. Only
//! ACLs on resources the flow still covers are removed: when a topic stops being
//! mirrored (the flow's patterns changed), its copy and its copied ACLs stay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use regex::Regex;

use crate::cluster::{Cluster, ClusterError};
use crate::config::{anchored, FlowConfig, RenamePolicy};
use crate::kafka_ext::{self, AclBinding, AclOperation, AclPattern, AclPermission, AclResource};
use crate::naming::{TopicSelector, SEPARATOR};
use crate::topic_sync::Route;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The compacted topic on the target that lists the ACLs this flow created there (key:
/// the binding as JSON; value: the flow, or a tombstone once strait deleted the ACL).
pub fn tracking_topic(source: &str) -> String {
    format!("{source}.acls{}", crate::naming::STRAIT_INTERNAL_SUFFIX)
}

/// What ACL sync would change on a flow's target.
#[derive(Debug, Clone, Default)]
pub struct AclPlan {
    pub flow: String,
    pub target: String,
    /// Why ACLs are not synced for this flow; None when they are.
    pub disabled: Option<String>,
    /// Wanted on the target and missing there.
    pub create: Vec<AclBinding>,
    /// Created by strait, no longer wanted, and still on the target.
    pub delete: Vec<AclBinding>,
    /// Created by strait, no longer wanted, and already gone: only the record goes.
    pub forget: Vec<AclBinding>,
    /// Wanted ACLs that are on the target already.
    pub in_sync: usize,
}

impl AclPlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty() && self.forget.is_empty()
    }
}

/// A flow's compiled ACL rules.
struct Rules<'a> {
    flow: &'a FlowConfig,
    selector: TopicSelector,
    /// Source topics the flow mirrors.
    topics: Vec<&'a str>,
    excluded: Vec<Regex>,
}

impl<'a> Rules<'a> {
    fn new(flow: &'a FlowConfig, routes: &'a BTreeMap<String, Route>) -> Rules<'a> {
        Rules {
            flow,
            selector: TopicSelector::new(flow),
            topics: routes.keys().map(String::as_str).collect(),
            excluded: flow.acls_exclude_principals.iter().map(|p| anchored(p).expect("validated in config")).collect(),
        }
    }

    /// The target name of the resource of a source ACL, if this flow copies it.
    fn target_name(&self, acl: &AclBinding) -> Option<String> {
        // `*` is every topic or group of the source cluster, not the ones this flow
        // mirrors; on the target it would cover foreign topics too.
        if acl.name == "*" && acl.pattern == AclPattern::Literal {
            return None;
        }
        match acl.resource {
            AclResource::Topic => {
                let covered = match acl.pattern {
                    AclPattern::Literal => self.topics.contains(&acl.name.as_str()),
                    AclPattern::Prefixed => self.topics.iter().any(|t| t.starts_with(&acl.name)),
                };
                covered.then(|| self.selector.target_topic(&acl.name))
            }
            // A prefixed group ACL is copied when the prefix itself is a group name the
            // flow translates (group patterns are regexes; a prefix cannot be checked
            // against every name it covers).
            AclResource::Group => self.flow.selects_group(&acl.name).then(|| acl.name.clone()),
            AclResource::Cluster | AclResource::TransactionalId => None,
        }
    }
}

impl Rules<'_> {
    /// Whether a target ACL is on a resource this flow copies ACLs for: a mirrored topic
    /// (or a prefix of one) under its target name, or a translated group.
    fn in_scope(&self, target_acl: &AclBinding) -> bool {
        let source_name = match (target_acl.resource, self.selector.rename()) {
            (AclResource::Topic, RenamePolicy::Prefix) => {
                let Some(name) = target_acl.name.strip_prefix(&format!("{}{SEPARATOR}", self.flow.source)) else {
                    return false;
                };
                name.to_string()
            }
            _ => target_acl.name.clone(),
        };
        let source_acl = AclBinding { name: source_name, ..target_acl.clone() };
        self.target_name(&source_acl).as_deref() == Some(target_acl.name.as_str())
    }
}

/// The ACLs the target gets for one source ACL: none, the same ACL renamed, or (ALLOW
/// ALL) a READ and a DESCRIBE.
fn target_bindings(acl: &AclBinding, rules: &Rules<'_>) -> Vec<AclBinding> {
    if rules.excluded.iter().any(|re| re.is_match(&acl.principal)) {
        return Vec::new();
    }
    let Some(name) = rules.target_name(acl) else { return Vec::new() };
    let operations = match (acl.permission, acl.operation) {
        (AclPermission::Allow, AclOperation::Write) => vec![],
        (AclPermission::Allow, AclOperation::All) => vec![AclOperation::Read, AclOperation::Describe],
        (_, op) => vec![op],
    };
    operations.into_iter().map(|operation| AclBinding { name: name.clone(), operation, ..acl.clone() }).collect()
}

/// Compares the source's ACLs (as the target should have them), the target's, and the
/// ones strait created there. Reads only. `routes` are the flow's selected topics, from
/// the topic plan of the same refresh.
pub async fn plan(
    flow: &FlowConfig,
    routes: &BTreeMap<String, Route>,
    source: &Cluster,
    target: &Cluster,
) -> Result<AclPlan, ClusterError> {
    let mut plan = AclPlan { flow: flow.name(), target: flow.target.clone(), ..Default::default() };
    if flow.sync_acls == Some(false) {
        plan.disabled = Some("sync_acls = false".into());
        return Ok(plan);
    }
    let source_admin = source.admin_logged()?;
    if !has_authorizer(source, &source_admin).await? {
        if flow.sync_acls == Some(true) {
            return Err(source.request_error(
                "checking for an authorizer (sync_acls = true)",
                "the cluster has no authorizer (authorizer.class.name is empty): there are no ACLs to copy; \
                 set sync_acls = false or leave it unset",
            ));
        }
        plan.disabled = Some(format!("source `{}` has no authorizer", flow.source));
        return Ok(plan);
    }
    let target_admin = target.admin_logged()?;
    if !has_authorizer(target, &target_admin).await? {
        return Err(target.request_error(
            "checking for an authorizer",
            "the cluster has no authorizer (authorizer.class.name is empty), so the source's ACLs cannot be \
             copied to it; set sync_acls = false for this flow or enable an authorizer",
        ));
    }
    let rules = Rules::new(flow, routes);
    let wanted: BTreeSet<AclBinding> =
        describe(source, &source_admin)?.iter().flat_map(|a| target_bindings(a, &rules)).collect();
    let target_acls = describe(target, &target_admin)?;
    let present: BTreeSet<AclBinding> = target_acls.into_iter().collect();
    let owned = {
        let (target, flow) = (target.clone(), flow.source.clone());
        tokio::task::spawn_blocking(move || read_owned(&target, &flow)).await.expect("ACL tracking task panicked")?
    };
    for acl in &wanted {
        if present.contains(acl) {
            plan.in_sync += 1;
        } else {
            plan.create.push(acl.clone());
        }
    }
    // Only ACLs on resources the flow still covers: one strait copied for a topic the
    // flow no longer mirrors (its patterns changed) stays, as the topic copy does.
    for acl in owned.difference(&wanted).filter(|a| rules.in_scope(a)) {
        if present.contains(acl) {
            plan.delete.push(acl.clone());
        } else {
            plan.forget.push(acl.clone());
        }
    }
    Ok(plan)
}

/// Carries out a plan on the target: record, then create; delete, then drop the record.
/// Returns how many ACLs were created and deleted, and the errors (each naming the ACL).
pub async fn apply(plan: &AclPlan, flow: &FlowConfig, target: &Cluster) -> (usize, usize, Vec<ClusterError>) {
    if plan.disabled.is_some() || plan.is_empty() {
        return (0, 0, Vec::new());
    }
    if !plan.create.is_empty() {
        let topic = tracking_topic(&flow.source);
        if let Err(e) = crate::topic_sync::create_compacted(target, &[topic], flow.replication_factor).await {
            return (0, 0, vec![e]);
        }
    }
    let (plan, target, source) = (plan.clone(), target.clone(), flow.source.clone());
    tokio::task::spawn_blocking(move || apply_blocking(&plan, &target, &source)).await.expect("ACL sync task panicked")
}

fn apply_blocking(plan: &AclPlan, target: &Cluster, source: &str) -> (usize, usize, Vec<ClusterError>) {
    let mut errors = Vec::new();
    let (mut created, mut deleted) = (0, 0);
    let admin = match target.admin_logged() {
        Ok(a) => a,
        Err(e) => return (0, 0, vec![e]),
    };
    let describe = |acl: &AclBinding| format!("ACL {}", Shown(acl));
    if !plan.create.is_empty() {
        match record(target, source, &plan.create, Some(&plan.flow)) {
            Err(e) => errors.push(e),
            Ok(()) => match kafka_ext::create_acls(admin.inner(), &plan.create, ADMIN_TIMEOUT) {
                Ok(results) => {
                    for (acl, result) in plan.create.iter().zip(results) {
                        match result {
                            Ok(()) => created += 1,
                            Err(e) => errors.push(target.request_error(format!("creating {}", describe(acl)), e)),
                        }
                    }
                }
                Err(e) => errors.push(target.request_error("creating ACLs", e)),
            },
        }
    }
    let mut gone: Vec<AclBinding> = plan.forget.clone();
    if !plan.delete.is_empty() {
        match kafka_ext::delete_acls(admin.inner(), &plan.delete, ADMIN_TIMEOUT) {
            Ok(results) => {
                for (acl, result) in plan.delete.iter().zip(results) {
                    match result {
                        Ok(n) => {
                            deleted += n.min(1);
                            gone.push(acl.clone());
                        }
                        Err(e) => errors.push(target.request_error(format!("deleting {}", describe(acl)), e)),
                    }
                }
            }
            Err(e) => errors.push(target.request_error("deleting ACLs", e)),
        }
    }
    if let Err(e) = record(target, source, &gone, None) {
        errors.push(e);
    }
    (created, deleted, errors)
}

/// An admin client of the cluster, for the ACL requests of one refresh (the blocking
/// calls use `block_in_place`: strait runs on the multi-threaded runtime).
type Admin = rdkafka::admin::AdminClient<crate::logging::ClientLog>;

/// Every ACL of the cluster.
fn describe(cluster: &Cluster, admin: &Admin) -> Result<Vec<AclBinding>, ClusterError> {
    tokio::task::block_in_place(|| kafka_ext::describe_acls(admin.inner(), ADMIN_TIMEOUT))
        .map_err(|e| cluster.request_error("describing ACLs", e))
}

/// Whether the cluster enforces ACLs: its brokers' `authorizer.class.name` is set
/// (read from one broker with DescribeConfigs; every broker of a cluster must use the
/// same authorizer). DescribeAcls cannot tell: the broker answers SECURITY_DISABLED
/// without an authorizer, but librdkafka drops that error and returns no ACLs.
pub async fn has_authorizer(cluster: &Cluster, admin: &Admin) -> Result<bool, ClusterError> {
    let md = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, ADMIN_TIMEOUT))
        .map_err(|e| cluster.unreachable(e.to_string()))?;
    let broker =
        md.brokers().first().map(|b| b.id()).ok_or_else(|| cluster.unreachable("no brokers in metadata".into()))?;
    let opts = rdkafka::admin::AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let what = || format!("reading authorizer.class.name of broker {broker}");
    let results = admin
        .describe_configs([&rdkafka::admin::ResourceSpecifier::Broker(broker)], &opts)
        .await
        .map_err(|e| cluster.request_error(what(), e))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| cluster.request_error(what(), "no answer"))?
        .map_err(|e| cluster.request_error(what(), e))?;
    Ok(resource.get("authorizer.class.name").and_then(|e| e.value.as_deref()).is_some_and(|v| !v.trim().is_empty()))
}

/// Remembers the first failed delivery of the tracking producer.
#[derive(Default)]
struct Deliveries(std::sync::Mutex<Option<String>>);

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.lock().expect("delivery lock").get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes tracking records: `flow` Some marks the ACLs as created by strait, None
/// (tombstones) forgets them. Returns once the target acknowledged every record.
fn record(target: &Cluster, source: &str, acls: &[AclBinding], flow: Option<&str>) -> Result<(), ClusterError> {
    if acls.is_empty() {
        return Ok(());
    }
    let topic = tracking_topic(source);
    let what = || format!("writing `{topic}`");
    let producer: rdkafka::producer::BaseProducer<Deliveries> = target
        .small_producer_config("acls", ADMIN_TIMEOUT)
        .create_with_context(Deliveries::default())
        .map_err(|e| target.request_error(what(), e))?;
    let value = flow.map(|f| serde_json::json!({ "created_by": "strait", "flow": f }).to_string());
    for acl in acls {
        let key = serde_json::to_vec(acl).expect("ACLs serialize");
        let mut rec = BaseRecord::<Vec<u8>, String>::to(&topic).key(&key);
        if let Some(v) = &value {
            rec = rec.payload(v);
        }
        producer.send(rec).map_err(|(e, _)| target.request_error(what(), e))?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(ADMIN_TIMEOUT + Duration::from_secs(5)).map_err(|e| target.request_error(what(), e))?;
    let failed = producer.context().0.lock().expect("delivery lock").take();
    match failed {
        Some(e) => Err(target.request_error(what(), e)),
        None => Ok(()),
    }
}

/// The ACLs this flow created on the target and has not deleted (empty when the
/// tracking topic does not exist yet).
fn read_owned(target: &Cluster, source: &str) -> Result<BTreeSet<AclBinding>, ClusterError> {
    let topic = tracking_topic(source);
    let what = || format!("reading `{topic}`");
    let consumer = target.metadata_client_logged()?;
    let md = consumer.fetch_metadata(Some(&topic), ADMIN_TIMEOUT).map_err(|e| target.request_error(what(), e))?;
    if md.topics().first().is_none_or(|t| t.error().is_some() || t.partitions().is_empty()) {
        return Ok(BTreeSet::new());
    }
    let (_, end) = consumer.fetch_watermarks(&topic, 0, ADMIN_TIMEOUT).map_err(|e| target.request_error(what(), e))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning).map_err(|e| target.request_error(what(), e))?;
    consumer.assign(&tpl).map_err(|e| target.request_error(what(), e))?;
    let mut owned = BTreeSet::new();
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    let mut next = 0;
    while next < end {
        if std::time::Instant::now() > deadline {
            return Err(target.request_error(what(), "timed out"));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next = m.offset() + 1;
                let Some(acl) = m.key().and_then(|k| serde_json::from_slice::<AclBinding>(k).ok()) else { continue };
                if m.payload().is_some() {
                    owned.insert(acl);
                } else {
                    owned.remove(&acl);
                }
            }
            Some(Err(e)) => return Err(target.request_error(what(), e)),
            None => {}
        }
    }
    Ok(owned)
}

/// An ACL in one line: `ALLOW User:alice READ topic us-east.orders (literal, host *)`.
pub struct Shown<'a>(pub &'a AclBinding);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = self.0;
        write!(
            f,
            "{} {} {} {} {} ({}, host {})",
            kafka_name(&a.permission),
            a.principal,
            kafka_name(&a.operation),
            kafka_name(&a.resource).to_lowercase(),
            a.name,
            kafka_name(&a.pattern).to_lowercase(),
            a.host
        )
    }
}

/// The Kafka spelling of an ACL enum value (`READ`, `TRANSACTIONAL_ID`): its serde name.
fn kafka_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl std::fmt::Display for AclPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.disabled {
            // Quiet when the default found no authorizer; say so when the user chose.
            if why.starts_with("sync_acls") {
                writeln!(f, "  ACLs not synced ({why})")?;
            }
            return Ok(());
        }
        for a in &self.create {
            writeln!(f, "  + create ACL on {}: {}", self.target, Shown(a))?;
        }
        for a in &self.delete {
            writeln!(f, "  - delete ACL on {} (created by strait, gone from the source): {}", self.target, Shown(a))?;
        }
        for a in &self.forget {
            writeln!(f, "  - forget ACL strait created on {} (already deleted there): {}", self.target, Shown(a))?;
        }
        if self.is_empty() {
            writeln!(f, "  ACLs in sync on {} ({} copied from the source)", self.target, self.in_sync)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(rename: &str, extra: &str) -> FlowConfig {
        let toml = format!(
            "[clusters.us-east]\nbootstrap='h:1'\n[clusters.eu-west]\nbootstrap='h:2'\n[[flows]]\nsource='us-east'\n\
             target='eu-west'\nrename='{rename}'\ntopics=['orders.*']\ngroups=['app-.*']\n{extra}"
        );
        crate::config::Config::parse(&toml, std::iter::empty()).unwrap().flows.remove(0)
    }

    fn routes(topics: &[&str]) -> BTreeMap<String, Route> {
        topics
            .iter()
            .map(|t| {
                let route = Route {
                    source_topic: t.to_string(),
                    target_topic: format!("us-east.{t}"),
                    source_partitions: 1,
                    target_partitions: 1,
                };
                (t.to_string(), route)
            })
            .collect()
    }

    fn acl(
        resource: AclResource,
        pattern: AclPattern,
        name: &str,
        op: AclOperation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource,
            pattern,
            name: name.into(),
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    use AclOperation::*;
    use AclPattern::*;
    use AclPermission::*;
    use AclResource::*;

    #[test]
    fn topics_are_renamed_and_only_mirrored_ones_copied() {
        let f = flow("prefix", "");
        let r = routes(&["orders", "orders-eu"]);
        let rules = Rules::new(&f, &r);
        let copied = target_bindings(&acl(Topic, Literal, "orders", Read, Allow), &rules);
        assert_eq!(copied, vec![acl(Topic, Literal, "us-east.orders", Read, Allow)]);
        let copied = target_bindings(&acl(Topic, Prefixed, "orders", Describe, Allow), &rules);
        assert_eq!(copied, vec![acl(Topic, Prefixed, "us-east.orders", Describe, Allow)]);
        assert!(target_bindings(&acl(Topic, Literal, "payments", Read, Allow), &rules).is_empty());
        assert!(target_bindings(&acl(Topic, Prefixed, "pay", Read, Allow), &rules).is_empty());
        assert!(target_bindings(&acl(Topic, Literal, "*", Read, Allow), &rules).is_empty(), "wildcard");
        assert!(target_bindings(&acl(Cluster, Literal, "kafka-cluster", Alter, Allow), &rules).is_empty());
        let f = flow("identity", "");
        let rules = Rules::new(&f, &r);
        let copied = target_bindings(&acl(Topic, Literal, "orders", Read, Allow), &rules);
        assert_eq!(copied, vec![acl(Topic, Literal, "orders", Read, Allow)]);
    }

    #[test]
    fn write_is_skipped_all_downgraded_deny_copied() {
        let f = flow("prefix", "");
        let r = routes(&["orders"]);
        let rules = Rules::new(&f, &r);
        assert!(target_bindings(&acl(Topic, Literal, "orders", Write, Allow), &rules).is_empty());
        assert_eq!(
            target_bindings(&acl(Topic, Literal, "orders", All, Allow), &rules),
            vec![
                acl(Topic, Literal, "us-east.orders", Read, Allow),
                acl(Topic, Literal, "us-east.orders", Describe, Allow)
            ]
        );
        assert_eq!(
            target_bindings(&acl(Topic, Literal, "orders", Write, Deny), &rules),
            vec![acl(Topic, Literal, "us-east.orders", Write, Deny)]
        );
        assert_eq!(
            target_bindings(&acl(Topic, Literal, "orders", All, Deny), &rules),
            vec![acl(Topic, Literal, "us-east.orders", All, Deny)]
        );
    }

    #[test]
    fn groups_follow_the_flows_group_selection_and_principals_can_be_excluded() {
        let f = flow("prefix", "acls_exclude_principals=['User:svc-.*']\n");
        let r = routes(&["orders"]);
        let rules = Rules::new(&f, &r);
        assert_eq!(
            target_bindings(&acl(Group, Literal, "app-billing", Read, Allow), &rules),
            vec![acl(Group, Literal, "app-billing", Read, Allow)]
        );
        assert!(target_bindings(&acl(Group, Literal, "other", Read, Allow), &rules).is_empty());
        assert!(target_bindings(&acl(Group, Literal, "strait.us-east.eu-west", Read, Allow), &rules).is_empty());
        let mut svc = acl(Topic, Literal, "orders", Read, Allow);
        svc.principal = "User:svc-etl".into();
        assert!(target_bindings(&svc, &rules).is_empty());
    }

    #[test]
    fn only_acls_on_resources_the_flow_still_covers_are_in_scope_for_removal() {
        let f = flow("prefix", "");
        let r = routes(&["orders"]);
        let rules = Rules::new(&f, &r);
        assert!(rules.in_scope(&acl(Topic, Literal, "us-east.orders", Read, Allow)));
        assert!(rules.in_scope(&acl(Topic, Prefixed, "us-east.ord", Read, Allow)));
        assert!(!rules.in_scope(&acl(Topic, Literal, "us-east.payments", Read, Allow)), "not mirrored (any more)");
        assert!(!rules.in_scope(&acl(Topic, Literal, "orders", Read, Allow)), "not a target name");
        assert!(rules.in_scope(&acl(Group, Literal, "app-billing", Read, Allow)));
        assert!(!rules.in_scope(&acl(Group, Literal, "other", Read, Allow)));
    }

    #[test]
    fn acls_round_trip_through_the_tracking_key_and_print_in_kafka_terms() {
        let a = acl(Topic, Prefixed, "us-east.orders", DescribeConfigs, Deny);
        let key = serde_json::to_vec(&a).unwrap();
        assert_eq!(serde_json::from_slice::<AclBinding>(&key).unwrap(), a);
        assert_eq!(Shown(&a).to_string(), "DENY User:alice DESCRIBE_CONFIGS topic us-east.orders (prefixed, host *)");
    }
}
