//! The Bluetooth network access point: one task that brings bluetoothd's
//! adapter up (powered, alias, discoverable and pairable only while the
//! pairing window is open, with BlueZ's own timeouts as a backstop),
//! registers the pairing agent and the NAP, keeps the trusted devices, and
//! does it all again when bluetoothd restarts or the adapter reappears.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bluer::agent::AgentHandle;
use bluer::{Adapter, Session, SessionEvent};
use futures_util::{Stream, StreamExt};
use pairing::{BdAddr, Policy, Trusted, TrustedDevice, Window};
use serde_json::json;
use status::{BluetoothView, TrustedView};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::agent::{AgentEvent, agent};
use super::nap::{self, Registration};
use super::shared::Shared;
use control::{Call, Reply, Request};
use daemon::backoff::{Backoff, random};

/// What the task needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub adapter: String,
    pub alias: String,
    pub bridge: String,
    pub policy: Policy,
    pub default_secs: u32,
    pub max_secs: u32,
    pub trusted_file: PathBuf,
}

/// bluetoothd as set up for the box.
struct Up {
    _session: Session,
    adapter: Adapter,
    _agent: AgentHandle,
    nap: Registration,
    adapters: Pin<Box<dyn Stream<Item = SessionEvent> + Send>>,
    /// The window as last applied to the adapter.
    applied_open: bool,
}

impl Up {
    async fn lost(&mut self, name: &str) -> String {
        loop {
            tokio::select! {
                why = self.nap.lost() => return why,
                ev = self.adapters.next() => match ev {
                    Some(SessionEvent::AdapterRemoved(a)) if a == name => {
                        return format!("adapter {a} disappeared");
                    }
                    Some(_) => {}
                    None => return "bluetoothd's event stream ended".into(),
                },
            }
        }
    }
}

/// The pairing state of a box with a Bluetooth NAP: its policy's window
/// and the trusted devices from their file.
pub(crate) fn shared_state(s: &Settings) -> Arc<Shared> {
    let trusted = match std::fs::read_to_string(&s.trusted_file) {
        Ok(text) => Trusted::from_json(&text).unwrap_or_else(|e| {
            warn!(file = %s.trusted_file.display(), "trusted devices not read, starting with none: {e}");
            Trusted::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Trusted::default(),
        Err(e) => {
            warn!(file = %s.trusted_file.display(), "trusted devices not read, starting with none: {e}");
            Trusted::default()
        }
    };
    info!(adapter = %s.adapter, trusted = trusted.len(), policy = s.policy.as_str(), "Bluetooth NAP");
    Arc::new(Shared::new(Window::new(s.policy, s.max_secs), trusted))
}

/// Starts the task on `shared` (the pairing window the access point
/// follows too); control calls (`Pan*` requests) go in, the view comes out.
pub(crate) fn spawn(
    s: Settings,
    shared: Arc<Shared>,
) -> (mpsc::UnboundedSender<Call>, watch::Receiver<BluetoothView>) {
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (view_tx, view_rx) = watch::channel(BluetoothView {
        adapter: s.adapter.clone(),
        alias: s.alias.clone(),
        bridge: s.bridge.clone(),
        problem: Some("starting".into()),
        ..Default::default()
    });
    let task = Task {
        s,
        shared,
        view: view_tx,
        problem: Some("starting".into()),
        connected: Vec::new(),
    };
    tokio::spawn(task.run(calls));
    (calls_tx, view_rx)
}

struct Task {
    s: Settings,
    shared: Arc<Shared>,
    view: watch::Sender<BluetoothView>,
    problem: Option<String>,
    /// Trusted devices BlueZ says are connected.
    connected: Vec<BdAddr>,
}

const HEALTH_EVERY: Duration = Duration::from_secs(2);
const PAIRING_WATCH: Duration = Duration::from_secs(60);

impl Task {
    async fn run(mut self, mut calls: mpsc::UnboundedReceiver<Call>) {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let mut changes = self.shared.subscribe();
        let mut up: Option<Up> = None;
        let mut retry_at = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        let mut pairing: Vec<(BdAddr, Instant)> = Vec::new();
        let mut health_at = Instant::now() + HEALTH_EVERY;
        loop {
            if up.is_none() && Instant::now() >= retry_at {
                match self.bring_up(ev_tx.clone()).await {
                    Ok(u) => {
                        info!(adapter = %self.s.adapter, bridge = %self.s.bridge, bluetoothd = u.nap.owner(), "Bluetooth NAP registered");
                        up = Some(u);
                        self.problem = None;
                        backoff.reset();
                    }
                    Err(e) => {
                        if self.problem.as_deref() != Some(e.as_str()) {
                            warn!(adapter = %self.s.adapter, "Bluetooth NAP not up: {e}");
                        }
                        self.problem = Some(e);
                        retry_at = Instant::now() + backoff.next(random());
                    }
                }
                self.publish(up.is_some());
            }
            if let Some(u) = up.as_mut() {
                self.apply_window(u).await;
            }
            let window_end = self.shared.with(|w, now| {
                w.deadline_ms()
                    .map(|d| Instant::now() + Duration::from_millis(d.saturating_sub(now)))
            });
            let mut wake = health_at;
            if up.is_none() {
                wake = wake.min(retry_at);
            }
            if let Some(t) = window_end {
                wake = wake.min(t);
            }
            let adapter = self.s.adapter.clone();
            tokio::select! {
                call = calls.recv() => match call {
                    Some((req, reply)) => self.call(req, reply, up.as_ref().map(|u| &u.adapter)).await,
                    None => break,
                },
                ev = ev_rx.recv() => match ev {
                    Some(AgentEvent::Accepted(d)) => pairing.push((d, Instant::now() + PAIRING_WATCH)),
                    Some(AgentEvent::Changed) | None => {}
                },
                _ = changes.changed() => self.publish(up.is_some()),
                why = async { match up.as_mut() { Some(u) => u.lost(&adapter).await, None => std::future::pending().await } } => {
                    warn!(adapter = %self.s.adapter, "Bluetooth NAP lost: {why}; setting it up again");
                    up = None;
                    self.problem = Some(why);
                    retry_at = Instant::now() + Duration::from_millis(200);
                    self.publish(false);
                }
                _ = tokio::time::sleep_until(wake) => {
                    if self.shared.with(|w, now| w.tick(now)) {
                        info!("pairing window closed (time up)");
                        self.shared.changed();
                    }
                    if Instant::now() >= health_at {
                        health_at = Instant::now() + HEALTH_EVERY;
                        if let Some(u) = up.as_ref() {
                            self.health(&u.adapter).await;
                        }
                    }
                }
            }
            if !pairing.is_empty()
                && let Some(u) = up.as_ref()
            {
                self.watch_pairings(&u.adapter, &mut pairing).await;
            }
        }
    }

    async fn bring_up(&self, events: mpsc::UnboundedSender<AgentEvent>) -> Result<Up, String> {
        let session = Session::new()
            .await
            .map_err(|e| format!("system bus: {e}"))?;
        let adapters = session
            .events()
            .await
            .map_err(|e| format!("bluetoothd events: {e}"))?;
        let adapter = session
            .adapter(&self.s.adapter)
            .map_err(|e| format!("adapter {}: {e}", self.s.adapter))?;
        if !adapter
            .is_powered()
            .await
            .map_err(|e| format!("adapter {}: {e}", self.s.adapter))?
        {
            adapter
                .set_powered(true)
                .await
                .map_err(|e| format!("powering {} on: {e}", self.s.adapter))?;
        }
        adapter
            .set_alias(self.s.alias.clone())
            .await
            .map_err(|e| format!("alias: {e}"))?;
        // Hidden and not pairable until somebody opens the window.
        let _ = adapter.set_discoverable(false).await;
        let _ = adapter.set_pairable(false).await;
        if let Ok(class) = adapter.class().await
            && class & (1 << 17) == 0
        {
            info!(
                class = format!("{class:#08x}"),
                "adapter class lacks the Networking service bit until the NAP is registered (bluetoothd's main.conf sets Class on the image)"
            );
        }
        let handle = session
            .register_agent(agent(&self.s.adapter, self.shared.clone(), events))
            .await
            .map_err(|e| format!("registering the pairing agent: {e}"))?;
        let nap = nap::register(&self.s.adapter, &self.s.bridge).await?;
        // BlueZ keeps its own trust flags; ours rule.
        let trusted: Vec<BdAddr> = self
            .shared
            .with_trusted(|_, t| t.iter().map(|d| d.address).collect());
        for a in trusted {
            if let Ok(d) = adapter.device(bluer::Address(a.0))
                && let Ok(false) = d.is_trusted().await
            {
                let _ = d.set_trusted(true).await;
            }
        }
        Ok(Up {
            _session: session,
            adapter,
            _agent: handle,
            nap,
            adapters: Box::pin(adapters),
            applied_open: false,
        })
    }

    /// Discoverable and pairable exactly while the window is open.
    async fn apply_window(&self, u: &mut Up) {
        let (open, left) = self
            .shared
            .with(|w, now| (w.is_open(now), w.view(now).seconds_left));
        if open == u.applied_open {
            return;
        }
        let a = &u.adapter;
        let r = async {
            if open {
                let secs = left.unwrap_or(1).max(1);
                a.set_pairable_timeout(secs).await?;
                a.set_discoverable_timeout(secs).await?;
                a.set_pairable(true).await?;
                a.set_discoverable(true).await
            } else {
                a.set_discoverable(false).await?;
                a.set_pairable(false).await
            }
        }
        .await;
        match r {
            Ok(()) => {
                info!(adapter = %self.s.adapter, discoverable = open, "pairing window applied");
                u.applied_open = open;
            }
            Err(e) => warn!(adapter = %self.s.adapter, "pairing window not applied: {e}"),
        }
    }

    async fn health(&mut self, adapter: &Adapter) {
        match adapter.is_powered().await {
            Ok(false) => {
                warn!(adapter = %self.s.adapter, "adapter was powered off; powering it on");
                let _ = adapter.set_powered(true).await;
            }
            Ok(true) => {}
            Err(e) => warn!(adapter = %self.s.adapter, "adapter not answering: {e}"),
        }
        let trusted: Vec<BdAddr> = self
            .shared
            .with_trusted(|_, t| t.iter().map(|d| d.address).collect());
        let mut connected = Vec::new();
        for a in trusted {
            let Ok(d) = adapter.device(bluer::Address(a.0)) else {
                continue;
            };
            // bluetoothd may learn of a device after we set up: trust it.
            if let Ok(false) = d.is_trusted().await {
                let _ = d.set_trusted(true).await;
            }
            if let Ok(true) = d.is_connected().await {
                connected.push(a);
            }
        }
        if connected != self.connected {
            self.connected = connected;
            self.publish(true);
        }
    }

    /// Trusts the devices whose accepted pairing has completed.
    async fn watch_pairings(&mut self, adapter: &Adapter, pairing: &mut Vec<(BdAddr, Instant)>) {
        let now = Instant::now();
        let mut keep = Vec::new();
        for (a, until) in pairing.drain(..) {
            let dev = adapter.device(bluer::Address(a.0));
            let paired = match &dev {
                Ok(d) => d.is_paired().await.unwrap_or(false),
                Err(_) => false,
            };
            if !paired {
                if now < until {
                    keep.push((a, until));
                } else {
                    warn!(device = %a, "accepted pairing never completed");
                }
                continue;
            }
            let name = match &dev {
                Ok(d) => d.alias().await.unwrap_or_else(|_| a.to_string()),
                Err(_) => a.to_string(),
            };
            if let Ok(d) = &dev {
                let _ = d.set_trusted(true).await;
            }
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
                .unwrap_or(0);
            self.shared.with(|w, now| w.paired(now));
            self.trust(TrustedDevice {
                address: a,
                name: name.clone(),
                paired_unix_ms: unix_ms,
            });
            info!(device = %a, %name, "paired and trusted");
        }
        *pairing = keep;
        if !pairing.is_empty() {
            // Poll again shortly (bounded by PAIRING_WATCH).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn trust(&self, d: TrustedDevice) {
        let text = {
            let mut g = self.shared.lock();
            g.1.add(d);
            g.1.to_json()
        };
        self.save(&text);
        self.shared.changed();
    }

    fn save(&self, text: &str) {
        let f = &self.s.trusted_file;
        let tmp = f.with_extension("tmp");
        let r = (|| {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, f)
        })();
        if let Err(e) = r {
            warn!(file = %f.display(), "trusted devices not saved: {e}");
        }
    }

    fn publish(&self, up: bool) {
        let (pairing, trusted) = self.shared.with_trusted(|w, t| {
            (
                w.view(self.shared.now_ms()),
                t.iter()
                    .map(|d| TrustedView {
                        address: d.address.to_string(),
                        name: d.name.clone(),
                        connected: self.connected.contains(&d.address),
                    })
                    .collect(),
            )
        });
        let v = BluetoothView {
            adapter: self.s.adapter.clone(),
            powered: up,
            alias: self.s.alias.clone(),
            nap_registered: up,
            bridge: self.s.bridge.clone(),
            problem: self.problem.clone(),
            pairing,
            trusted,
        };
        self.view.send_if_modified(|old| {
            let changed = *old != v;
            *old = v;
            changed
        });
    }

    async fn call(&mut self, req: Request, reply: oneshot::Sender<Reply>, up: Option<&Adapter>) {
        let r = match req {
            Request::PanPair { seconds } => {
                let secs = seconds.unwrap_or(self.s.default_secs);
                match self.shared.with(|w, now| w.open(now, secs)) {
                    Ok(secs) => {
                        info!(seconds = secs, "pairing window open");
                        self.shared.changed();
                        let note = if up.is_some() {
                            None
                        } else {
                            self.problem.clone()
                        };
                        Reply::ok(
                            json!({"seconds": secs, "policy": self.s.policy.as_str(), "warning": note}),
                        )
                    }
                    Err(e) => Reply::err(e),
                }
            }
            Request::PanClose => {
                let was = self.shared.with(|w, now| w.close(now));
                info!("pairing window closed");
                self.shared.changed();
                Reply::ok(json!({"was_open": was}))
            }
            Request::PanConfirm { yes } => match self.shared.with(|w, _| w.confirm_passkey(yes)) {
                Ok(()) => {
                    self.shared.changed();
                    Reply::ok(json!({"confirmed": yes}))
                }
                Err(e) => Reply::err(e),
            },
            Request::PanDevices => {
                self.publish(up.is_some());
                Reply::ok(json!(self.view.borrow().trusted))
            }
            Request::PanForget { address } => self.forget(&address, up).await,
            other => Reply::err(format!("not a PAN request: {other:?}")),
        };
        let _ = reply.send(r);
    }

    async fn forget(&mut self, address: &str, up: Option<&Adapter>) -> Reply {
        let a: BdAddr = match address.parse() {
            Ok(a) => a,
            Err(e) => return Reply::err(e),
        };
        let (was, text) = {
            let mut g = self.shared.lock();
            let was = g.1.remove(a);
            (was, g.1.to_json())
        };
        if was {
            self.save(&text);
        }
        let bluez = match up {
            Some(adapter) => match adapter.remove_device(bluer::Address(a.0)).await {
                Ok(()) => "removed",
                Err(e)
                    if e.kind == bluer::ErrorKind::DoesNotExist
                        || e.kind == bluer::ErrorKind::NotFound =>
                {
                    "unknown"
                }
                Err(e) => {
                    warn!(device = %a, "BlueZ kept the device: {e}");
                    "kept (error)"
                }
            },
            None => "not reachable",
        };
        self.shared.changed();
        if !was && bluez != "removed" {
            return Reply::err(format!("{a} is not a trusted device"));
        }
        info!(device = %a, bluez, "device forgotten");
        Reply::ok(json!({"address": a.to_string(), "was_trusted": was, "bluez": bluez}))
    }
}
