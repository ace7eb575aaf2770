#![allow(clippy::print_stdout)] // a command-line program prints
//! snaptd — the server-side relay (SNAPT). Reads `snapt.toml`, accepts
//! tunnels from boxes whose certificates the CA issued and the CRL does not
//! revoke, relays their streams to the real servers and their client
//! services back to them, and answers `cboxctl snapt …`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use config::SnaptConfig;
use daemon::init_tracing;
use server_driver::ServerDriver;
use tracing::{error, info};

/// The cbox server-side relay.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (see docs/config/snapt.toml).
    #[arg(short, long, default_value = "/etc/cbox/snapt.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    init_tracing("snaptd");
    match start(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("snaptd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The configuration first: it says how many runtime threads to start.
fn start(args: Args) -> anyhow::Result<()> {
    let cfg = SnaptConfig::load(&args.config)?;
    let runtime = if cfg.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    runtime.block_on(run(args, cfg))
}

async fn run(args: Args, cfg: SnaptConfig) -> anyhow::Result<()> {
    if let Some(why) = daemon::control_socket::unusable(&cfg.control_socket) {
        anyhow::bail!("control_socket: {why}");
    }
    if cfg.policy_loopback {
        tracing::warn!(
            "policy_loopback = true: policy rules may reach this host's loopback addresses (a test bench setting)"
        );
    }
    if args.check {
        server_driver::build_tls(&cfg).context("TLS set-up")?;
        println!(
            "{}: ok ({} services, {} client services)",
            args.config.display(),
            cfg.services.len(),
            cfg.client_services.len()
        );
        return Ok(());
    }
    let control_path = cfg.control_socket.clone();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        ^ u64::from(std::process::id());
    let driver = ServerDriver::new(cfg, seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(control = %control_path.display(), "snaptd starting");
    let calls = driver.control_handle();
    daemon::supervise(&control_path, calls, move |life| driver.run(life))
        .await
        .with_context(|| format!("control socket {}", control_path.display()))?;
    info!("snaptd stopped");
    Ok(())
}
