//! The MQTT client task: one rumqttc connection, polled here; the box read
//! and commanded through its control calls.

use std::sync::Arc;
use std::time::Duration;

use control::{Call, Request};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::command::{Command, CommandReply};
use crate::command_gate::{Admitted, CommandGate};
use crate::outbox::Outbox;
use crate::topics::{TopicError, Topics};
use daemon::backoff::{Backoff, random};

/// Where and how to report.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (8883 for MQTT over TLS).
    pub port: u16,
    /// Topic prefix (`cbox`).
    pub prefix: String,
    /// The box's id: client id and topic level.
    pub box_id: String,
    /// TLS to the broker (the box's certificate as client certificate).
    pub tls: Arc<rustls::ClientConfig>,
    /// The status is published at least this often.
    pub status_period: Duration,
    /// How often the box's snapshot is read.
    pub poll_period: Duration,
    /// Events held while the broker is away.
    pub queue_limit: usize,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnection wait (doubling, with jitter, up to a minute).
    pub backoff_base: Duration,
    /// Connect over the interface of the uplink the box's sessions use
    /// (SO_BINDTODEVICE), not wherever the main routing table points.
    pub follow_active_uplink: bool,
}

/// How long a command may take (a planned switch waits for its tunnel).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(45);

async fn ask(calls: &mpsc::UnboundedSender<Call>, req: Request, limit: Duration) -> control::Reply {
    let (tx, rx) = oneshot::channel();
    if calls.send((req, tx)).is_err() {
        return control::Reply::err("cnaptd is stopping");
    }
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => control::Reply::err("cnaptd is stopping"),
        Err(_) => control::Reply::err(format!("no answer within {limit:?}")),
    }
}

/// The box's clock, Unix seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Carries out one command message the gate let through (or answers its
/// refusal) and publishes the reply.
async fn command(
    client: AsyncClient,
    calls: mpsc::UnboundedSender<Call>,
    reply_topic: String,
    admitted: Result<Admitted, CommandReply>,
) {
    let reply = match admitted {
        Err(r) => {
            warn!(id = %r.id, error = ?r.error, "MQTT command refused");
            r
        }
        Ok(Admitted {
            id,
            cmd,
            age_unchecked,
        }) => {
            if age_unchecked {
                warn!(%id, "MQTT command taken without an age check: the box's clock is not set");
            }
            info!(%id, command = ?cmd, "MQTT command");
            let req = match cmd {
                Command::Switch(uplink) => Request::Switch { uplink },
                Command::Mode(mode) => Request::Mode { mode },
                Command::Approve => Request::Approve,
                Command::Decline => Request::Decline,
                Command::Pair(seconds) => Request::PanPair {
                    seconds: Some(seconds),
                },
            };
            let r = ask(&calls, req, COMMAND_TIMEOUT).await;
            CommandReply {
                id,
                ok: r.ok,
                error: r.error,
                data: r.data,
            }
        }
    };
    let bytes = serde_json::to_vec(&reply).unwrap_or_default();
    if let Err(e) = client
        .publish(reply_topic, QoS::AtLeastOnce, false, bytes)
        .await
    {
        warn!(error = %e, "MQTT reply not sent");
    }
}

/// Hands the due status and the waiting events to rumqttc.
fn flush(client: &AsyncClient, topics: &Topics, outbox: &mut Outbox) {
    if let Some(st) = outbox.status(std::time::Instant::now()) {
        let bytes = serde_json::to_vec(&st).unwrap_or_default();
        if client
            .try_publish(&topics.status, QoS::AtLeastOnce, true, bytes)
            .is_err()
        {
            outbox.status_again();
        }
    }
    while let Some(e) = outbox.next_event() {
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        if client
            .try_publish(&topics.events, QoS::AtLeastOnce, false, bytes)
            .is_err()
        {
            outbox.put_back(e);
            break;
        }
    }
}

/// Runs the link until `calls` closes (cnaptd stopping).
pub async fn run(cfg: MqttConfig, calls: mpsc::UnboundedSender<Call>) -> Result<(), TopicError> {
    let topics = Topics::new(&cfg.prefix, &cfg.box_id)?;
    let mut opts = MqttOptions::new(cfg.box_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(cfg.keep_alive);
    // The broker keeps the subscription and rumqttc resends what was not
    // acknowledged when the connection comes back.
    opts.set_clean_session(false);
    opts.set_last_will(LastWill::new(
        &topics.online,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(cfg.tls.clone())));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let mut outbox = Outbox::new(cfg.status_period, cfg.queue_limit);
    let mut gate = CommandGate::default();
    let mut backoff = Backoff::new(cfg.backoff_base, Duration::from_secs(60));
    let mut connected = false;
    let mut retry_at: Option<Instant> = None;
    // Whether the box's sessions are up, and over which uplink.
    let mut box_way_out: (bool, Option<String>) = (false, None);
    // The interface the next connection is bound to.
    let mut bound: Option<String> = None;
    let mut tick = tokio::time::interval(cfg.poll_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(broker = %format!("{}:{}", cfg.host, cfg.port), status = %topics.status, "MQTT link starting");
    loop {
        tokio::select! {
            r = events.poll(), if retry_at.is_none() => match r {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(broker = %cfg.host, "MQTT connected");
                    connected = true;
                    backoff.reset();
                    let _ = client.try_subscribe(&topics.cmd, QoS::AtLeastOnce);
                    let _ = client.try_publish(&topics.online, QoS::AtLeastOnce, true, "online");
                    outbox.status_again();
                    flush(&client, &topics, &mut outbox);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == topics.cmd {
                        let admitted = gate.admit(p.retain, &p.payload, unix_now());
                        tokio::spawn(command(client.clone(), calls.clone(), topics.reply.clone(), admitted));
                    } else {
                        debug!(topic = %p.topic, "MQTT message on a topic not ours; ignored");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        warn!(error = %e, queued = outbox.waiting(), "MQTT broker lost");
                    } else {
                        debug!(error = %e, "MQTT broker unreachable");
                    }
                    connected = false;
                    let wait = backoff.next(random());
                    retry_at = Some(Instant::now() + wait);
                }
            },
            _ = async { match retry_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                retry_at = None;
            }
            _ = tick.tick() => {
                if calls.is_closed() {
                    let _ = client.try_disconnect();
                    return Ok(());
                }
                let r = ask(&calls, Request::Status, Duration::from_secs(5)).await;
                match serde_json::from_value::<status::Snapshot>(if r.ok { r.data } else { Value::Null }) {
                    Ok(s) => {
                        // The box has a way out again (its sessions are
                        // back, or over another uplink): retry the broker
                        // now rather than at the end of a long back-off.
                        let way_out = (s.connected(), s.active_uplink().map(|u| u.name.clone()));
                        if !connected && retry_at.is_some() && way_out.0 && way_out != box_way_out {
                            debug!("the box's uplink is back: retrying the broker now");
                            backoff.reset();
                            retry_at = None;
                        }
                        box_way_out = way_out;
                        // The next connection leaves over the active uplink.
                        let iface = s.active_uplink().and_then(|u| u.interface.clone());
                        if cfg.follow_active_uplink && !connected && iface.is_some() && iface != bound {
                            let mut no = events.network_options();
                            if let Some(i) = &iface {
                                no.set_bind_device(i);
                            }
                            events.set_network_options(no);
                            debug!(iface = ?iface, "MQTT connects over the active uplink");
                            bound = iface;
                        }
                        outbox.observe(s, std::time::Instant::now());
                    }
                    Err(e) => debug!(error = %e, "no snapshot this time"),
                }
                if connected {
                    flush(&client, &topics, &mut outbox);
                }
            }
        }
    }
}
