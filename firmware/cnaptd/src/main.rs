#![allow(clippy::print_stdout)] // a command-line program prints
//! cnaptd — the box daemon (CNAPT). Reads `cnapt.toml`, relays the phones'
//! connections to the configured services through one mutually
//! authenticated tunnel per SNAPT, moves the tunnels between uplinks without
//! losing a byte, and answers `cboxctl` on its control socket.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use std::sync::Arc;

use box_driver::{BoxDriver, TlsNet};
use box_os::adapters::Adapters;
use clap::Parser;
use config::CnaptConfig;
use daemon::init_tracing;
use tls::{CipherPreference, client_config};
use tracing::{error, info};

/// The cbox box daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (see docs/config/cnapt.toml).
    #[arg(short, long, default_value = "/etc/cbox/cnapt.toml")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

// One thread: the box has one tunnel per SNAPT and every byte passes the
// one driver task; a second thread only adds hand-offs between cores
// (measured: docs/performance.md, the data path).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    init_tracing("cnaptd");
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("cnaptd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = CnaptConfig::load(&args.config)?;
    let pref = match cfg.tls.prefer {
        config::CipherChoice::Auto => CipherPreference::Auto,
        config::CipherChoice::Chacha20 => CipherPreference::Chacha20,
        config::CipherChoice::Aes => CipherPreference::Aes,
    };
    let tls =
        client_config(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key, pref).context("TLS set-up")?;
    if let Some(why) = daemon::control_socket::unusable(&cfg.control_socket) {
        anyhow::bail!("control_socket: {why}");
    }
    if args.check {
        println!(
            "{}: ok ({} SNAPT, {} uplinks, {} services)",
            args.config.display(),
            cfg.snapts.len(),
            cfg.uplinks.len(),
            cfg.services.len()
        );
        return Ok(());
    }
    // Grows across restarts, so a late CONNECT of a previous run can never
    // replace this run's session.
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let pinmap = match &cfg.pinmap {
        Some(p) => {
            let map = config::PinMap::load(p)?;
            info!(pinmap = %p.display(), chip = %map.chip.display(), leds = map.leds.len(), "pin map loaded");
            Some(map)
        }
        None => None,
    };
    let control_path = cfg.control_socket.clone();
    let cfg_mqtt = cfg.mqtt.clone();
    let cfg_web = cfg.web.clone();
    let cfg_qos_services: Vec<String> = cfg
        .qos_services()
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let tls_paths = (
        cfg.tls.ca.clone(),
        cfg.tls.cert.clone(),
        cfg.tls.key.clone(),
    );
    let box_id = cfg.box_id.clone();
    let mut driver = BoxDriver::new(cfg.clone(), Arc::new(TlsNet::new(tls)), incarnation)?;
    info!(%box_id, control = %control_path.display(), "cnaptd starting");
    // The OS adapters (link monitor, routing, radios, PAN, transparent
    // mode) report to the driver and take its commands.
    let mut adapters = Adapters::start(&cfg, driver.os_sink(), driver.accept_stats()).await;
    driver.attach_os(adapters.take_commands(), adapters.listeners());
    let calls = driver.control_handle();
    if let Some(map) = pinmap {
        match front_panel(&map) {
            Ok((leds, button)) => {
                tokio::spawn(box_os::front_panel::run(
                    leds,
                    button,
                    driver.control_handle(),
                ));
            }
            Err(e) => error!("front panel not driven: {e:#}"),
        }
    }
    let qos_services = cfg_qos_services;
    if let Some(w) = cfg_web {
        let calls = driver.control_handle();
        let page = web::WebConfig {
            listen: w.listen,
            pin: w.pin,
            session_ttl: w.session_ttl,
            qos: driver.qos_hub().map(|hub| web::QosPage {
                hub,
                box_id: box_id.as_str().to_owned(),
                services: qos_services.clone(),
            }),
        };
        let stats = driver.accept_stats();
        tokio::spawn(async move {
            if let Err(e) = web::serve_with(page, calls, web::Limits::default(), stats).await {
                error!("status page not served: {e}");
            }
        });
    }
    if let Some(m) = &cfg_mqtt {
        let ca = m.ca.clone().unwrap_or_else(|| tls_paths.0.clone());
        let mqtt_tls = client_config(&ca, &tls_paths.1, &tls_paths.2, pref)
            .context("TLS set-up for the MQTT broker")?;
        let link = telemetry::MqttConfig {
            host: m.host.clone(),
            port: m.port,
            prefix: m.prefix.clone(),
            box_id: box_id.as_str().to_string(),
            tls: mqtt_tls,
            status_period: m.status_interval,
            poll_period: std::time::Duration::from_secs(1),
            queue_limit: m.queue_limit,
            keep_alive: m.keepalive,
            backoff_base: std::time::Duration::from_secs(1),
            follow_active_uplink: m.follow_active_uplink,
        };
        let calls = driver.control_handle();
        tokio::spawn(async move {
            if let Err(e) = telemetry::run(link, calls).await {
                error!("MQTT link not started: {e}");
            }
        });
    }
    let ran = daemon::supervise(&control_path, calls, move |life| driver.run(life)).await;
    // Routes and transparent mode's rules go whatever the driver's end.
    adapters.stop().await;
    ran.with_context(|| format!("control socket {}", control_path.display()))?;
    info!("cnaptd stopped");
    Ok(())
}

type Line<P> = panel::Polarity<P>;
type PanelPins = (
    panel::Leds<
        Line<gpiocdev_embedded_hal::OutputPin>,
        Line<gpiocdev_embedded_hal::OutputPin>,
        Line<gpiocdev_embedded_hal::OutputPin>,
    >,
    panel::Button<Line<gpiocdev_embedded_hal::InputPin>>,
);

/// The LEDs and the pairing button on the GPIO character device of the pin
/// map, each line with its polarity; the LEDs start dark.
fn front_panel(map: &config::PinMap) -> anyhow::Result<PanelPins> {
    use embedded_hal::digital::PinState;
    let led = |name: &str| -> anyhow::Result<Line<gpiocdev_embedded_hal::OutputPin>> {
        let l = map
            .leds
            .get(name)
            .with_context(|| format!("the pin map has no {name} LED"))?;
        let dark = if l.active_low {
            PinState::High
        } else {
            PinState::Low
        };
        let pin = gpiocdev_embedded_hal::OutputPin::new(&map.chip, l.line, dark)
            .with_context(|| format!("{} line {} ({name} LED)", map.chip.display(), l.line))?;
        Ok(panel::Polarity::new(pin, l.active_low))
    };
    let b = map
        .button
        .get("pair")
        .context("the pin map has no pairing button")?;
    let button = gpiocdev_embedded_hal::InputPin::new(&map.chip, b.line)
        .with_context(|| format!("{} line {} (pairing button)", map.chip.display(), b.line))?;
    let leds = panel::Leds::new(led("green")?, led("amber")?, led("blue")?);
    // The panel's clock starts when it runs: time 0.
    Ok((
        leds,
        panel::Button::new(panel::Polarity::new(button, b.active_low), 0),
    ))
}
