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
use runtime::ServerDriver;
use runtime::daemon::{init_tracing, notify_ready, notify_stopping, shutdown_signal};
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    init_tracing("snaptd");
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("snaptd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = SnaptConfig::load(&args.config)?;
    if args.check {
        runtime::server_driver::build_tls(&cfg).context("TLS set-up")?;
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
    runtime::control::serve(&control_path, driver.control_handle())
        .with_context(|| format!("control socket {}", control_path.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    info!(control = %control_path.display(), "snaptd starting");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(driver.run(stop_rx, ready_tx));
    if ready_rx.await.is_ok() {
        notify_ready();
    }
    task.await.context("driver task")??;
    notify_stopping();
    let _ = std::fs::remove_file(&control_path);
    info!("snaptd stopped");
    Ok(())
}
