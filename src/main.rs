//! The `strait` command line. Exit codes: 0 success, 1 a cluster is unreachable or a
//! flow failed, 2 the config is invalid (nothing was started). `verify` has its own
//! meaning for 1 and 3 (see [`strait::verify`]).
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strait::config::Config;
use strait::logging::{self, LogFormat};

#[derive(Parser)]
#[command(name = "strait", version, about = "Replicates Kafka topics between clusters in different regions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: text (coloured only on a terminal, NO_COLOR respected) or
    /// json (one object per line). Default: `[log] format` of the config, else text.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, connect to every cluster, and show what each flow would mirror.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// How long to wait for each cluster to answer, in seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Only validate the config (keys, patterns, security settings); connect to
        /// nothing and read no secret, e.g. for a config meant for another machine.
        #[arg(long)]
        offline: bool,
    },
    /// Print what `run` would change on the target clusters (topics, partitions, configs, ACLs); change nothing.
    Plan {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mirror the configured flows until SIGTERM or SIGINT.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show flows and their worst partitions: lag in records and seconds, throughput, state.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Compute lag from the clusters instead of asking a running instance.
        #[arg(long)]
        direct: bool,
        /// Admin address of the instance to ask (default: [admin] listen).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Consumer-group offsets across regions.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
    /// Move a consumer group to the flow's target cluster at its exact position.
    Failover {
        #[command(flatten)]
        group: GroupArgs,
        /// First wait until every record of the group's topics is on the target.
        #[arg(long)]
        wait_for_zero_lag: bool,
        /// How long to wait for zero lag (90s, 5m, 1h).
        #[arg(long, default_value = "5m", value_parser = strait::failover::parse_duration)]
        timeout: Duration,
    },
    /// Move a consumer group back from the flow's target to its source cluster.
    Failback {
        #[command(flatten)]
        group: GroupArgs,
    },
    /// Copy a topic again from the source's log start (after its target copy lost records).
    /// Deletes the target topic and the topic's offset map; stop strait first.
    Recopy {
        #[arg(long, short)]
        config: PathBuf,
        /// The flow, as `source->target` (e.g. us-east->eu-west).
        #[arg(long)]
        flow: String,
        /// The source topic.
        #[arg(long)]
        topic: String,
    },
    /// Compare every source record with its copy on the target, through the offset map.
    ///
    /// Exit 0: the copy is complete and identical up to the mirrored position (extra
    /// target records only warn); 1: records are missing, corrupted or out of order (or
    /// extra, with --strict); 2: bad config or argument; 3: the clusters could not be read.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// The flow, as `source->target` (e.g. us-east->eu-west).
        #[arg(long)]
        flow: String,
        /// Only the flow's source topics matching this regular expression (anchored).
        #[arg(long)]
        topic: Option<String>,
        /// Only records from this time on: RFC 3339 (2025-01-31T12:00:00Z), Unix
        /// milliseconds, or a duration before now (90s, 5m, 1h).
        #[arg(long, value_parser = strait::verify::parse_since)]
        since: Option<i64>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Fail (exit 1) on extra records on the target too (duplicates, foreign records).
        #[arg(long)]
        strict: bool,
    },
    /// Convert a MirrorMaker 2 properties file into a strait config (TOML on stdout,
    /// a warning on stderr for every key that could not be converted).
    #[command(name = "import-mm2")]
    ImportMm2 {
        /// The MirrorMaker 2 properties file (e.g. mm2.properties).
        file: PathBuf,
    },
    /// Exit 0 if a running instance's /healthz answers (for container health checks).
    Healthz {
        /// Admin address of the instance.
        #[arg(default_value = "127.0.0.1:9644")]
        admin: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum OffsetsCommand {
    /// Show, per partition, a group's committed source offset and its exact target offset.
    Translate {
        #[command(flatten)]
        group: GroupArgs,
    },
}

#[derive(clap::Args)]
struct GroupArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// The flow, as `source->target` (e.g. us-east->eu-west).
    #[arg(long)]
    flow: String,
    /// The consumer group.
    #[arg(long)]
    group: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ImportMm2 { file } = &cli.command {
        return import_mm2(file);
    }
    if let Command::Healthz { admin } = &cli.command {
        return match strait::status::healthz(*admin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::Check { config, offline: true, .. } = &cli.command {
        return match Config::load_offline(config) {
            Ok(c) => {
                print!("{}", strait::check::offline(&c));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: invalid config {}: {e}", config.display());
                ExitCode::from(2)
            }
        };
    }
    let config_path = match &cli.command {
        Command::Check { config, .. }
        | Command::Plan { config }
        | Command::Run { config }
        | Command::Status { config, .. }
        | Command::Recopy { config, .. }
        | Command::Verify { config, .. } => config.clone(),
        Command::Offsets { command: OffsetsCommand::Translate { group } }
        | Command::Failover { group, .. }
        | Command::Failback { group } => group.config.clone(),
        Command::ImportMm2 { .. } | Command::Healthz { .. } => unreachable!("handled above"),
    };
    let loaded = Config::load(&config_path);
    let env_format = std::env::var("STRAIT__LOG__FORMAT").ok();
    logging::init(LogFormat::choose(cli.log_format, loaded.as_ref().ok().map(|c| c.log.format), env_format.as_deref()));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            logging::report_error(format_args!("invalid config {}: {e}", config_path.display()));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Check { timeout, .. } => {
            let report = strait::check::check(&config, Duration::from_secs(timeout));
            print!("{}", report.text);
            if !report.unreachable.is_empty() {
                logging::report_error(format_args!("unreachable cluster(s): {}", report.unreachable.join(", ")));
            }
            if !report.refused.is_empty() {
                logging::report_error(format_args!("cluster(s) refused TLS or SASL: {}", report.refused.join(", ")));
            }
            if report.unreachable.is_empty() && report.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Plan { .. } => runtime().block_on(plan(config)),
        Command::Run { .. } => runtime().block_on(run(config)),
        Command::Status { direct, admin, .. } => {
            let flows = if direct {
                Ok(strait::status::direct(&config))
            } else {
                strait::status::fetch(admin.unwrap_or_else(|| config.admin_listen()))
            };
            match flows {
                Ok(flows) => {
                    print!("{}", strait::status::render(&flows));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    logging::report_error(e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Offsets { command: OffsetsCommand::Translate { group } } => with_flow(&config, &group, |ctx, out| {
            let rows = ctx.translate(&group.group)?;
            strait::failover::print_table(out, &rows);
            Ok(())
        }),
        Command::Failover { group, wait_for_zero_lag, timeout } => with_flow(&config, &group, |ctx, out| {
            ctx.failover(&group.group, wait_for_zero_lag.then_some(timeout), out).map(|_| ())
        }),
        Command::Failback { group } => {
            with_flow(&config, &group, |ctx, out| ctx.failback(&group.group, out).map(|_| ()))
        }
        Command::Recopy { flow, topic, .. } => {
            let result = strait::failover::FlowContext::find(&config, &flow)
                .map_err(strait::recopy::RecopyError::from)
                .and_then(|ctx| strait::recopy::recopy(&ctx, &topic, &mut std::io::stdout()));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    logging::report_error(e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Verify { flow, topic, since, json, strict, .. } => {
            let options = strait::verify::VerifyOptions { flow, topic, since_ms: since, strict };
            ExitCode::from(strait::verify::run(&config, &options, json))
        }
        Command::ImportMm2 { .. } | Command::Healthz { .. } => unreachable!("handled above"),
    }
}

/// Exit 0 with the converted config (warnings do not fail it: each names a key to look
/// at by hand); 2 when the file cannot be read or describes no usable cluster.
fn import_mm2(file: &std::path::Path) -> ExitCode {
    match strait::mm2_import::convert_file(file) {
        Ok(conversion) => {
            for warning in &conversion.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", conversion.toml);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn with_flow(
    config: &Config,
    args: &GroupArgs,
    f: impl FnOnce(&strait::failover::FlowContext, &mut dyn std::io::Write) -> Result<(), strait::failover::FailoverError>,
) -> ExitCode {
    let result =
        strait::failover::FlowContext::find(config, &args.flow).and_then(|ctx| f(&ctx, &mut std::io::stdout()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::report_error(e);
            ExitCode::from(1)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

async fn plan(config: Config) -> ExitCode {
    let mut failed = false;
    for flow in &config.flows {
        let source = strait::cluster::Cluster::new(&flow.source, config.cluster(&flow.source));
        let target = strait::cluster::Cluster::new(&flow.target, config.cluster(&flow.target));
        match strait::topic_sync::plan(flow, &source, &target).await {
            Ok(plan) => {
                print!("{plan}");
                match strait::acl_sync::plan(flow, &plan.routes, &source, &target).await {
                    Ok(acls) => print!("{acls}"),
                    Err(e) => {
                        logging::report_error(format_args!("flow {}: ACLs: {e}", flow.name()));
                        failed = true;
                    }
                }
            }
            Err(e) => {
                logging::report_error(format_args!("flow {}: {e}", flow.name()));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(config: Config) -> ExitCode {
    let (shutdown_tx, _) = tokio::sync::watch::channel(false);
    let signals = shutdown_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: draining in-flight records and committing progress");
        let _ = signals.send(true);
    });
    match strait::service::run(config, shutdown_tx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::report_error(e);
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
