//! strait replicates Kafka topics between clusters in different regions.
//!
//! The modules follow the concepts of the product; a record's way from source to target
//! is in [`mirror`].
//!
//! - [`config`]: the config file, typed and validated.
//! - [`security`]: TLS and SASL per cluster, secrets from the environment or files.
//! - [`cluster`]: librdkafka clients for one cluster, and the reachability probe.
//! - [`kafka_ext`]: admin requests rdkafka's safe API lacks (the only `unsafe` code).
//! - [`naming`]: which topics a flow mirrors and their names on the target.
//! - [`topic_sync`]: creating target topics and keeping partitions and configs in sync.
//! - [`acl_sync`]: copying topic and group ACLs to the target, safely.
//! - [`mirror`]: the data path.
//! - [`service`]: `strait run`: flows, topic sync, admin endpoint, graceful shutdown.
//! - [`check`]: `strait check`.
//! - [`status`]: `strait status`.
//! - [`offset_map`]: where each mirrored record's copy is; exact translation.
//! - [`checkpoint`]: group checkpoints (MM2 format), group offset sync, heartbeats.
//! - [`failover`]: `offsets translate`, `failover`, `failback`.
//! - [`recopy`]: `strait recopy`, copying a topic again after its target copy was lost.
//! - [`verify`]: `strait verify`: every source record against its copy, through the map.
//! - [`mm2_import`]: `strait import-mm2`, MirrorMaker 2 properties to a strait config.
//! - [`lag`]: lag in records and seconds per partition, on an interval, and its history.
//! - [`metrics`]: every exported metric.
//! - [`logging`]: log format (text or JSON) and what librdkafka's log lines mean.
//! - [`admin_http`]: `/metrics`, `/healthz`, `/readyz`, `/status`, `/status/history`, and
//!   the status page at `/`.

// All unsafe code stays in kafka_ext (FFI to librdkafka calls rdkafka lacks).
#![deny(unsafe_code)]

pub mod acl_sync;
pub mod admin_http;
pub mod check;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod failover;
pub mod group_offsets;
pub mod group_sync;
#[allow(unsafe_code)]
pub mod kafka_ext;
pub mod lag;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod mm2_import;
pub mod naming;
pub mod offset_map;
pub mod recopy;
pub mod security;
pub mod service;
pub mod status;
pub mod topic_sync;
pub mod verify;
