//! What every daemon does the same way: logging (journald under systemd,
//! stderr otherwise), readiness, the watchdog fed by the work loop
//! ([`watchdog`]), shutdown on SIGTERM/SIGINT with a bounded drain, accept
//! loops that survive their errors ([`accept`]) and the control socket's
//! server ([`control_socket`]). The binaries call [`init_tracing`] and
//! [`supervise`]; libraries never install a subscriber themselves.
#![warn(missing_docs)]

use std::time::Duration;

pub use crate::watchdog::Heartbeat;

pub mod accept;
pub mod backoff;
pub mod control_socket;
pub mod handoff;
pub mod log_throttle;
pub mod memory;
pub mod watchdog;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the tracing subscriber: journald when the process runs under
/// systemd with a journal (JOURNAL_STREAM set and the socket reachable),
/// stderr otherwise — a missing journal never stops the daemon. The level
/// comes from `RUST_LOG` (default `info`).
pub fn init_tracing(name: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|l| l.with_syslog_identifier(name.to_owned()));
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}

/// Tells systemd the daemon is ready (Type=notify) and starts the
/// watchdog pings, fed by `hb`, if the unit asks for them. Harmless outside
/// systemd.
pub fn notify_ready(hb: Heartbeat) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    crate::watchdog::start_systemd(hb);
}

/// Tells systemd this process is now the service's main process (a
/// successor that took over from its predecessor; the unit needs
/// `NotifyAccess=all`). Harmless outside systemd.
pub fn notify_main_pid() {
    let _ = sd_notify::notify(
        false,
        &[sd_notify::NotifyState::MainPid(std::process::id())],
    );
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What a driver's `run` is given by [`supervise`].
#[derive(Debug)]
pub struct Lifecycle {
    /// Fires on SIGTERM/SIGINT: drain, then return.
    pub stop: tokio::sync::oneshot::Receiver<()>,
    /// Send once the listeners are bound (systemd learns READY=1).
    pub ready: tokio::sync::oneshot::Sender<()>,
    /// Beat each time the loop turns (the systemd watchdog's food).
    pub heartbeat: Heartbeat,
}

/// Runs a daemon's driver the same way for every binary: the control socket
/// at `control` feeds `calls`; `run(life)` is the driver (it signals
/// `life.ready` once its listeners are bound, beats `life.heartbeat` as it
/// turns, and returns after `life.stop` fires and it has drained);
/// readiness, the watchdog and stopping are told to systemd; SIGTERM or
/// SIGINT fire `stop`; the control socket is removed at the end.
pub async fn supervise<F, Fut>(
    control: &std::path::Path,
    calls: tokio::sync::mpsc::UnboundedSender<control::Call>,
    run: F,
) -> std::io::Result<()>
where
    F: FnOnce(Lifecycle) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let heartbeat = Heartbeat::new();
    let _trimmer = crate::memory::spawn_trimmer();
    let control_loop = crate::control_socket::serve(control, calls)?;
    heartbeat.watch_task("control socket", control_loop);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(Lifecycle {
        stop: stop_rx,
        ready: ready_tx,
        heartbeat: heartbeat.clone(),
    }));
    if ready_rx.await.is_ok() {
        notify_ready(heartbeat);
    }
    let result = task.await.map_err(std::io::Error::other)?;
    notify_stopping();
    let _ = std::fs::remove_file(control);
    result
}

/// The bounded drain of a shutdown: once started, the driver stops when its
/// connections are gone or the grace period is over.
#[derive(Debug, Default)]
pub struct Drain {
    until: Option<tokio::time::Instant>,
}

impl Drain {
    /// Starts draining for `grace`.
    pub fn start(&mut self, grace: Duration) {
        self.until = Some(tokio::time::Instant::now() + grace);
    }

    /// Whether draining has started.
    pub fn started(&self) -> bool {
        self.until.is_some()
    }

    /// Whether the driver should stop now.
    pub fn finished(&self, connections_left: usize) -> bool {
        self.until
            .is_some_and(|u| connections_left == 0 || tokio::time::Instant::now() >= u)
    }

    /// The next wake-up: the driver's own deadline or the end of the drain.
    pub fn deadline(&self, driver: Option<tokio::time::Instant>) -> Option<tokio::time::Instant> {
        match (driver, self.until) {
            (Some(d), Some(u)) => Some(d.min(u)),
            (d, u) => d.or(u),
        }
    }
}
