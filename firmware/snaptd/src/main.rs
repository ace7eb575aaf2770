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
    /// Ask the snaptd running with this configuration to hand everything to
    /// the binary now installed (what `systemctl reload snaptd` runs); waits
    /// for the outcome and fails if the upgrade did.
    #[arg(long, conflicts_with = "check")]
    upgrade: bool,
    /// Take over from a running snaptd through this inherited descriptor
    /// (set by `cboxctl snapt upgrade`, never by hand).
    #[arg(long, value_name = "FD", hide = true)]
    take_over_fd: Option<i32>,
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
    if args.upgrade {
        return ask_upgrade(&cfg);
    }
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

/// `--upgrade`: the running snaptd's answer, printed.
fn ask_upgrade(cfg: &SnaptConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let reply = runtime
        .block_on(control::call(
            &cfg.control_socket,
            &control::Request::Upgrade,
        ))
        .with_context(|| format!("asking the snaptd at {}", cfg.control_socket.display()))?;
    if !reply.ok {
        anyhow::bail!(
            "upgrade failed: {}",
            reply.error.unwrap_or_else(|| "no reason given".into())
        );
    }
    println!("upgraded: {}", reply.data);
    Ok(())
}

/// This program's path: where an upgrade finds the binary now installed
/// (after a package upgrade, `/proc/self/exe` names the replaced file
/// "… (deleted)").
fn program_path() -> PathBuf {
    match std::env::current_exe() {
        Ok(p) => {
            let s = p.to_string_lossy();
            match s.strip_suffix(" (deleted)") {
                Some(orig) => PathBuf::from(orig),
                None => p,
            }
        }
        Err(_) => PathBuf::from("/usr/bin/snaptd"),
    }
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
    let mut driver = ServerDriver::new(cfg, seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(fd) = args.take_over_fd {
        let channel = daemon::handoff::Channel::inherited(fd).context("--take-over-fd")?;
        let (channel, inh) =
            tokio::task::spawn_blocking(move || server_driver::upgrade::receive(channel))
                .await
                .context("taking over")?
                .context("taking over from the running snaptd")?;
        // A test's way to make a successor die half-way (after everything
        // was handed over, before TAKEN): the predecessor must take it all
        // back (relay-tests/tests/upgrade.rs).
        if std::env::var("SNAPTD_FAILPOINT").as_deref() == Ok("upgrade-exit-after-receive") {
            error!("SNAPTD_FAILPOINT: exiting after receiving the handover");
            std::process::exit(3);
        }
        let (sessions, connections, flows) = inh.counts();
        info!(
            sessions,
            connections, flows, "received the running snaptd's sessions"
        );
        driver.inherit(inh, channel);
    }
    driver.upgrade_command(
        program_path(),
        vec!["-c".into(), args.config.clone().into_os_string()],
    );
    info!(control = %control_path.display(), "snaptd starting");
    let calls = driver.control_handle();
    daemon::supervise(&control_path, calls, move |life| driver.run(life))
        .await
        .with_context(|| format!("control socket {}", control_path.display()))?;
    info!("snaptd stopped");
    Ok(())
}
