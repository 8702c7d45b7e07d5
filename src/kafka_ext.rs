//! Admin requests that rdkafka 0.39's safe `AdminClient` does not offer, wrapped around
//! the `rdkafka-sys` functions. This is the only module in strait with `unsafe` code.
//!
//! Every call follows librdkafka's admin pattern: build the request objects, send them
//! with a private result queue, block on that queue for the one result event, copy the
//! answer into Rust values, and free everything on every path (the small RAII guards
//! below do the freeing). The calls block, so async callers use `spawn_blocking`.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka_sys as sys;
use rdkafka_sys::types::*;

/// An admin request failed: the request as a whole, or for one resource.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(pub String);

fn cstring(s: &str) -> Result<CString, AdminError> {
    CString::new(s).map_err(|_| AdminError(format!("name `{s}` contains a NUL byte")))
}

unsafe fn text(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn err_text(code: RDKafkaRespErr) -> String {
    // SAFETY: rd_kafka_err2str returns a static string for every code.
    unsafe { text(sys::rd_kafka_err2str(code)) }
}

/// Owns a queue and admin options; frees both when dropped.
struct Request {
    queue: *mut RDKafkaQueue,
    options: *mut RDKafkaAdminOptions,
}

impl Request {
    fn new<C: ClientContext>(client: &Client<C>, op: RDKafkaAdminOp, timeout: Duration) -> Result<Request, AdminError> {
        let rk = client.native_ptr();
        // SAFETY: rk is a live client for the duration of the borrow; both objects are
        // owned by the returned guard.
        unsafe {
            let queue = sys::rd_kafka_queue_new(rk);
            let options = sys::rd_kafka_AdminOptions_new(rk, op);
            let request = Request { queue, options };
            let mut errbuf = [0 as std::os::raw::c_char; 256];
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            let code = sys::rd_kafka_AdminOptions_set_request_timeout(options, ms, errbuf.as_mut_ptr(), errbuf.len());
            if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(AdminError(text(errbuf.as_ptr())));
            }
            Ok(request)
        }
    }

    /// Waits for the result event; the caller must destroy it via [`Event`].
    fn wait(&self, timeout: Duration) -> Result<Event, AdminError> {
        // Allow librdkafka's own request timeout to fire first and report a precise error.
        let ms = (timeout + Duration::from_secs(5)).as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the queue is live until self drops.
        let ev = unsafe { sys::rd_kafka_queue_poll(self.queue, ms) };
        if ev.is_null() {
            return Err(AdminError(format!("no answer within {timeout:?}")));
        }
        let event = Event(ev);
        // SAFETY: ev is a live event.
        let code = unsafe { sys::rd_kafka_event_error(ev) };
        if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            let msg = unsafe { text(sys::rd_kafka_event_error_string(ev)) };
            return Err(AdminError(if msg.is_empty() { err_text(code) } else { msg }));
        }
        Ok(event)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: both were created in Request::new and are freed exactly once.
        unsafe {
            sys::rd_kafka_AdminOptions_destroy(self.options);
            sys::rd_kafka_queue_destroy(self.queue);
        }
    }
}

struct Event(*mut RDKafkaEvent);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event came from rd_kafka_queue_poll and is destroyed once.
        unsafe { sys::rd_kafka_event_destroy(self.0) }
    }
}

/// Sets topic configs with IncrementalAlterConfigs: only the named keys change; every
/// other config of the topic keeps its value (plain AlterConfigs would reset them).
pub fn incremental_set_topic_configs<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    set: &[(String, String)],
    timeout: Duration,
) -> Result<(), AdminError> {
    if set.is_empty() {
        return Ok(());
    }
    let name = cstring(topic)?;
    let pairs = set.iter().map(|(k, v)| Ok((cstring(k)?, cstring(v)?))).collect::<Result<Vec<_>, AdminError>>()?;
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS, timeout)?;
    // SAFETY: the resource is created here and destroyed below on every path; the
    // strings outlive the calls that read them (librdkafka copies them).
    unsafe {
        let mut resource =
            sys::rd_kafka_ConfigResource_new(RDKafkaResourceType::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr());
        for (k, v) in &pairs {
            let error = sys::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                k.as_ptr(),
                sys::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                v.as_ptr(),
            );
            if !error.is_null() {
                let msg = text(sys::rd_kafka_error_string(error));
                sys::rd_kafka_error_destroy(error);
                sys::rd_kafka_ConfigResource_destroy(resource);
                return Err(AdminError(msg));
            }
        }
        sys::rd_kafka_IncrementalAlterConfigs(client.native_ptr(), &mut resource, 1, request.options, request.queue);
        sys::rd_kafka_ConfigResource_destroy(resource);
    }
    let event = request.wait(timeout)?;
    // SAFETY: the event is an IncrementalAlterConfigs result; the resource array it
    // returns is owned by the event, which outlives this block.
    unsafe {
        let result = sys::rd_kafka_event_IncrementalAlterConfigs_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let resources = sys::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *resources.add(i);
            let code = sys::rd_kafka_ConfigResource_error(r);
            if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                let msg = text(sys::rd_kafka_ConfigResource_error_string(r));
                return Err(AdminError(if msg.is_empty() { err_text(code) } else { msg }));
            }
        }
    }
    Ok(())
}

/// One committed offset of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Reads the partitions of a topic-partition list owned by librdkafka.
///
/// SAFETY: `list` must be null or a live list for the duration of the call.
unsafe fn read_partition_list(list: *const RDKafkaTopicPartitionList) -> Result<Vec<GroupOffset>, AdminError> {
    let mut out = Vec::new();
    if list.is_null() {
        return Ok(out);
    }
    for i in 0..(*list).cnt as usize {
        let elem = &*(*list).elems.add(i);
        let topic = text(elem.topic);
        if elem.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(AdminError(format!("{topic}[{}]: {}", elem.partition, err_text(elem.err))));
        }
        out.push(GroupOffset { topic, partition: elem.partition, offset: elem.offset });
    }
    Ok(out)
}

/// SAFETY: `groups` points to `count` live group results owned by an event.
unsafe fn group_results(
    groups: *mut *const sys::rd_kafka_group_result_t,
    count: usize,
) -> Result<Vec<GroupOffset>, AdminError> {
    let mut out = Vec::new();
    for i in 0..count {
        let g = *groups.add(i);
        let error = sys::rd_kafka_group_result_error(g);
        if !error.is_null() {
            return Err(AdminError(format!(
                "group `{}`: {}",
                text(sys::rd_kafka_group_result_name(g)),
                text(sys::rd_kafka_error_string(error))
            )));
        }
        out.extend(read_partition_list(sys::rd_kafka_group_result_partitions(g))?);
    }
    Ok(out)
}

/// Every committed offset of `group` (OffsetFetch for all partitions). Partitions without
/// a committed offset are left out.
pub fn list_group_offsets<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
) -> Result<Vec<GroupOffset>, AdminError> {
    let name = cstring(group)?;
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout)?;
    // SAFETY: the request object is destroyed right after librdkafka copied it.
    unsafe {
        let mut list = sys::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), std::ptr::null());
        sys::rd_kafka_ListConsumerGroupOffsets(client.native_ptr(), &mut list, 1, request.options, request.queue);
        sys::rd_kafka_ListConsumerGroupOffsets_destroy(list);
    }
    let event = request.wait(timeout)?;
    // SAFETY: the result and its groups are owned by the event, alive in this block.
    let offsets = unsafe {
        let result = sys::rd_kafka_event_ListConsumerGroupOffsets_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let groups = sys::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
        group_results(groups, count)?
    };
    Ok(offsets.into_iter().filter(|o| o.offset >= 0).collect())
}

/// Commits `offsets` for `group` (OffsetCommit from outside the group). The broker
/// refuses it while the group has active members, which is what failover wants.
pub fn alter_group_offsets<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    offsets: &[GroupOffset],
    timeout: Duration,
) -> Result<(), AdminError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let name = cstring(group)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for o in offsets {
        tpl.add_partition_offset(&o.topic, o.partition, rdkafka::Offset::Offset(o.offset))
            .map_err(|e| AdminError(e.to_string()))?;
    }
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, timeout)?;
    // SAFETY: librdkafka copies the partition list; the request object is destroyed
    // right after it was sent.
    unsafe {
        let mut alter = sys::rd_kafka_AlterConsumerGroupOffsets_new(name.as_ptr(), tpl.ptr());
        sys::rd_kafka_AlterConsumerGroupOffsets(client.native_ptr(), &mut alter, 1, request.options, request.queue);
        sys::rd_kafka_AlterConsumerGroupOffsets_destroy(alter);
    }
    let event = request.wait(timeout)?;
    // SAFETY: as in list_group_offsets.
    unsafe {
        let result = sys::rd_kafka_event_AlterConsumerGroupOffsets_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let groups = sys::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count);
        group_results(groups, count)?;
    }
    Ok(())
}

/// Whether the consumer's last revocation was a *lost* assignment: the group evicted
/// this member (its session timed out, e.g. after a long pause or a network partition
/// from the source), so another member may already own the partitions. rdkafka 0.39
/// does not expose `rd_kafka_assignment_lost`.
pub fn assignment_lost<C: ClientContext>(client: &Client<C>) -> bool {
    // SAFETY: the client is live for the duration of the borrow.
    unsafe { sys::rd_kafka_assignment_lost(client.native_ptr()) != 0 }
}

/// The low and high watermarks librdkafka last saw for a partition (from fetch
/// responses), without a request. None until a fetch has returned them.
pub fn cached_watermarks<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let name = cstring(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client is live; the out-parameters are valid for the call.
    let code = unsafe {
        sys::rd_kafka_get_watermark_offsets(client.native_ptr(), name.as_ptr(), partition, &mut low, &mut high)
    };
    (code == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

/// A topic's id (Kafka's topic UUID, 16 bytes). Deleting and recreating a topic under
/// the same name gives it a new id, which is how strait tells a recreated target topic
/// from the one it mirrored into.
pub type TopicId = [u8; 16];

/// Describes `topics` (DescribeTopics) and returns the id of each that exists.
pub fn topic_ids<C: ClientContext>(
    client: &Client<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<std::collections::HashMap<String, TopicId>, AdminError> {
    let mut out = std::collections::HashMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let names = topics.iter().map(|t| cstring(t)).collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS, timeout)?;
    // SAFETY: the collection copies the names and is destroyed right after the call,
    // which copies it in turn.
    unsafe {
        let collection = sys::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len());
        sys::rd_kafka_DescribeTopics(client.native_ptr(), collection, request.options, request.queue);
        sys::rd_kafka_TopicCollection_destroy(collection);
    }
    let event = request.wait(timeout)?;
    // SAFETY: the result and its descriptions are owned by the event, alive in this block.
    unsafe {
        let result = sys::rd_kafka_event_DescribeTopics_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let descriptions = sys::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        for i in 0..count {
            let d = *descriptions.add(i);
            if !sys::rd_kafka_TopicDescription_error(d).is_null() {
                continue; // unknown topic: no id
            }
            let id = sys::rd_kafka_TopicDescription_topic_id(d);
            if id.is_null() {
                continue;
            }
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&sys::rd_kafka_Uuid_most_significant_bits(id).to_be_bytes());
            bytes[8..].copy_from_slice(&sys::rd_kafka_Uuid_least_significant_bits(id).to_be_bytes());
            out.insert(text(sys::rd_kafka_TopicDescription_name(d)), bytes);
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------ ACLs

/// The kind of resource an ACL is about (Kafka's `ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclResource {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How an ACL's resource name matches: the exact name, or every name it starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclPattern {
    Literal,
    Prefixed,
}

/// What an ACL allows or denies (Kafka's `AclOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclPermission {
    Allow,
    Deny,
}

/// One ACL: `principal` from `host` may (or may not) do `operation` on the resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct AclBinding {
    pub resource: AclResource,
    pub pattern: AclPattern,
    pub name: String,
    /// `User:alice`; `User:*` is every principal.
    pub principal: String,
    /// `*` is every host.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclResource {
    fn to_sys(self) -> RDKafkaResourceType {
        match self {
            AclResource::Topic => RDKafkaResourceType::RD_KAFKA_RESOURCE_TOPIC,
            AclResource::Group => RDKafkaResourceType::RD_KAFKA_RESOURCE_GROUP,
            AclResource::Cluster => RDKafkaResourceType::RD_KAFKA_RESOURCE_BROKER,
            AclResource::TransactionalId => RDKafkaResourceType::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
        }
    }

    fn from_sys(t: RDKafkaResourceType) -> Option<AclResource> {
        Some(match t {
            RDKafkaResourceType::RD_KAFKA_RESOURCE_TOPIC => AclResource::Topic,
            RDKafkaResourceType::RD_KAFKA_RESOURCE_GROUP => AclResource::Group,
            RDKafkaResourceType::RD_KAFKA_RESOURCE_BROKER => AclResource::Cluster,
            RDKafkaResourceType::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => AclResource::TransactionalId,
            _ => return None,
        })
    }
}

impl AclPattern {
    fn to_sys(self) -> sys::rd_kafka_ResourcePatternType_t {
        match self {
            AclPattern::Literal => sys::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            AclPattern::Prefixed => sys::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
        }
    }

    fn from_sys(t: sys::rd_kafka_ResourcePatternType_t) -> Option<AclPattern> {
        match t {
            sys::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL => Some(AclPattern::Literal),
            sys::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => Some(AclPattern::Prefixed),
            _ => None,
        }
    }
}

impl AclOperation {
    const SYS: [(AclOperation, sys::rd_kafka_AclOperation_t); 11] = {
        use sys::rd_kafka_AclOperation_t as O;
        [
            (AclOperation::All, O::RD_KAFKA_ACL_OPERATION_ALL),
            (AclOperation::Read, O::RD_KAFKA_ACL_OPERATION_READ),
            (AclOperation::Write, O::RD_KAFKA_ACL_OPERATION_WRITE),
            (AclOperation::Create, O::RD_KAFKA_ACL_OPERATION_CREATE),
            (AclOperation::Delete, O::RD_KAFKA_ACL_OPERATION_DELETE),
            (AclOperation::Alter, O::RD_KAFKA_ACL_OPERATION_ALTER),
            (AclOperation::Describe, O::RD_KAFKA_ACL_OPERATION_DESCRIBE),
            (AclOperation::ClusterAction, O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION),
            (AclOperation::DescribeConfigs, O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS),
            (AclOperation::AlterConfigs, O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS),
            (AclOperation::IdempotentWrite, O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE),
        ]
    };

    fn to_sys(self) -> sys::rd_kafka_AclOperation_t {
        Self::SYS.iter().find(|(o, _)| *o == self).map(|(_, s)| *s).expect("every operation is listed")
    }

    fn from_sys(t: sys::rd_kafka_AclOperation_t) -> Option<AclOperation> {
        Self::SYS.iter().find(|(_, s)| *s == t).map(|(o, _)| *o)
    }
}

impl AclPermission {
    fn to_sys(self) -> sys::rd_kafka_AclPermissionType_t {
        match self {
            AclPermission::Allow => sys::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
            AclPermission::Deny => sys::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
        }
    }

    fn from_sys(t: sys::rd_kafka_AclPermissionType_t) -> Option<AclPermission> {
        match t {
            sys::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => Some(AclPermission::Allow),
            sys::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => Some(AclPermission::Deny),
            _ => None,
        }
    }
}

/// An owned `rd_kafka_AclBinding_t` (also used as an exact-match filter); freed on drop.
struct NativeAcl(*mut sys::rd_kafka_AclBinding_t);

impl Drop for NativeAcl {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AclBinding(Filter)_new, destroyed once.
        unsafe { sys::rd_kafka_AclBinding_destroy(self.0) }
    }
}

impl NativeAcl {
    /// A binding to create, or (`filter`) a filter matching exactly this binding.
    fn new(acl: &AclBinding, filter: bool) -> Result<NativeAcl, AdminError> {
        let (name, principal, host) = (cstring(&acl.name)?, cstring(&acl.principal)?, cstring(&acl.host)?);
        let mut errbuf = [0 as std::os::raw::c_char; 256];
        let make = if filter { sys::rd_kafka_AclBindingFilter_new } else { sys::rd_kafka_AclBinding_new };
        // SAFETY: the strings outlive the call (librdkafka copies them); errbuf is as long
        // as stated.
        let ptr = unsafe {
            make(
                acl.resource.to_sys(),
                name.as_ptr(),
                acl.pattern.to_sys(),
                principal.as_ptr(),
                host.as_ptr(),
                acl.operation.to_sys(),
                acl.permission.to_sys(),
                errbuf.as_mut_ptr(),
                errbuf.len(),
            )
        };
        if ptr.is_null() {
            // SAFETY: librdkafka wrote a NUL-terminated message into errbuf.
            return Err(AdminError(format!("invalid ACL {acl:?}: {}", unsafe { text(errbuf.as_ptr()) })));
        }
        Ok(NativeAcl(ptr))
    }
}

/// Reads a binding owned by librdkafka; None for kinds strait does not model (e.g. a
/// delegation-token resource).
///
/// SAFETY: `acl` must be a live binding for the duration of the call.
unsafe fn read_acl(acl: *const sys::rd_kafka_AclBinding_t) -> Option<AclBinding> {
    Some(AclBinding {
        resource: AclResource::from_sys(sys::rd_kafka_AclBinding_restype(acl))?,
        pattern: AclPattern::from_sys(sys::rd_kafka_AclBinding_resource_pattern_type(acl))?,
        name: text(sys::rd_kafka_AclBinding_name(acl)),
        principal: text(sys::rd_kafka_AclBinding_principal(acl)),
        host: text(sys::rd_kafka_AclBinding_host(acl)),
        operation: AclOperation::from_sys(sys::rd_kafka_AclBinding_operation(acl))?,
        permission: AclPermission::from_sys(sys::rd_kafka_AclBinding_permission_type(acl))?,
    })
}

/// SAFETY: `error` must be null or a live error owned by someone else.
unsafe fn error_of(error: *const sys::rd_kafka_error_t) -> Result<(), AdminError> {
    if error.is_null() {
        Ok(())
    } else {
        Err(AdminError(text(sys::rd_kafka_error_string(error))))
    }
}

/// Every ACL of the cluster (DescribeAcls with a filter matching all).
///
/// On a cluster without an authorizer the broker answers SECURITY_DISABLED, but
/// librdkafka 2.12 drops that top-level error code while parsing the response and
/// reports an empty list: an empty answer does not prove that ACLs are enforced (see
/// `acl_sync::has_authorizer` for how strait tells).
pub fn describe_acls<C: ClientContext>(client: &Client<C>, timeout: Duration) -> Result<Vec<AclBinding>, AdminError> {
    let mut errbuf = [0 as std::os::raw::c_char; 256];
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_DESCRIBEACLS, timeout)?;
    // SAFETY: null strings mean "any" in a filter; the filter is destroyed right after
    // librdkafka copied it.
    unsafe {
        let filter = sys::rd_kafka_AclBindingFilter_new(
            RDKafkaResourceType::RD_KAFKA_RESOURCE_ANY,
            std::ptr::null(),
            sys::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
            std::ptr::null(),
            std::ptr::null(),
            sys::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            sys::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errbuf.as_mut_ptr(),
            errbuf.len(),
        );
        if filter.is_null() {
            return Err(AdminError(text(errbuf.as_ptr())));
        }
        let filter = NativeAcl(filter);
        sys::rd_kafka_DescribeAcls(client.native_ptr(), filter.0, request.options, request.queue);
    }
    let event = request.wait(timeout)?;
    // SAFETY: the result and its bindings are owned by the event, alive in this block.
    unsafe {
        let result = sys::rd_kafka_event_DescribeAcls_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let acls = sys::rd_kafka_DescribeAcls_result_acls(result, &mut count);
        Ok((0..count).filter_map(|i| read_acl(*acls.add(i))).collect())
    }
}

/// Creates `acls` (CreateAcls). The answer has one entry per binding, in order; creating
/// a binding that exists already succeeds.
pub fn create_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[AclBinding],
    timeout: Duration,
) -> Result<Vec<Result<(), AdminError>>, AdminError> {
    if acls.is_empty() {
        return Ok(Vec::new());
    }
    let natives = acls.iter().map(|a| NativeAcl::new(a, false)).collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<*mut sys::rd_kafka_AclBinding_t> = natives.iter().map(|n| n.0).collect();
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_CREATEACLS, timeout)?;
    // SAFETY: librdkafka copies the bindings; `natives` frees them after the call.
    unsafe {
        sys::rd_kafka_CreateAcls(
            client.native_ptr(),
            pointers.as_mut_ptr(),
            pointers.len(),
            request.options,
            request.queue,
        );
    }
    drop(natives);
    let event = request.wait(timeout)?;
    // SAFETY: the result and its entries are owned by the event, alive in this block.
    unsafe {
        let result = sys::rd_kafka_event_CreateAcls_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let results = sys::rd_kafka_CreateAcls_result_acls(result, &mut count);
        Ok((0..count).map(|i| error_of(sys::rd_kafka_acl_result_error(*results.add(i)))).collect())
    }
}

/// Deletes exactly `acls` (DeleteAcls, one exact-match filter per binding, so nothing
/// else can match). The answer has one entry per binding, in order: how many ACLs the
/// broker deleted for it (0 when it did not exist).
pub fn delete_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[AclBinding],
    timeout: Duration,
) -> Result<Vec<Result<usize, AdminError>>, AdminError> {
    if acls.is_empty() {
        return Ok(Vec::new());
    }
    let natives = acls.iter().map(|a| NativeAcl::new(a, true)).collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<*mut sys::rd_kafka_AclBinding_t> = natives.iter().map(|n| n.0).collect();
    let request = Request::new(client, RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_DELETEACLS, timeout)?;
    // SAFETY: librdkafka copies the filters; `natives` frees them after the call.
    unsafe {
        sys::rd_kafka_DeleteAcls(
            client.native_ptr(),
            pointers.as_mut_ptr(),
            pointers.len(),
            request.options,
            request.queue,
        );
    }
    drop(natives);
    let event = request.wait(timeout)?;
    // SAFETY: the result, its responses and their bindings are owned by the event.
    unsafe {
        let result = sys::rd_kafka_event_DeleteAcls_result(event.0);
        if result.is_null() {
            return Err(AdminError("unexpected admin result type".into()));
        }
        let mut count = 0usize;
        let responses = sys::rd_kafka_DeleteAcls_result_responses(result, &mut count);
        Ok((0..count)
            .map(|i| {
                let response = *responses.add(i);
                error_of(sys::rd_kafka_DeleteAcls_result_response_error(response))?;
                let mut matched = 0usize;
                sys::rd_kafka_DeleteAcls_result_response_matching_acls(response, &mut matched);
                Ok(matched)
            })
            .collect())
    }
}
