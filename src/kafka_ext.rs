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
            let code = sys::rd_kafka_AdminOptions_set_request_timeout(
                options,
                ms,
                errbuf.as_mut_ptr(),
                errbuf.len(),
            );
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
    let pairs = set
        .iter()
        .map(|(k, v)| Ok((cstring(k)?, cstring(v)?)))
        .collect::<Result<Vec<_>, AdminError>>()?;
    let request = Request::new(
        client,
        RDKafkaAdminOp::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        timeout,
    )?;
    // SAFETY: the resource is created here and destroyed below on every path; the
    // strings outlive the calls that read them (librdkafka copies them).
    unsafe {
        let mut resource = sys::rd_kafka_ConfigResource_new(
            RDKafkaResourceType::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
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
        sys::rd_kafka_IncrementalAlterConfigs(
            client.native_ptr(),
            &mut resource,
            1,
            request.options,
            request.queue,
        );
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
