//! The MQTT link against a real Mosquitto broker (Debian's, started here on
//! loopback with TLS and client certificates from the cbox PKI, and an ACL
//! that lets a box touch only its own topics): retained status and
//! `online`, events, command round trips and refusals, a broker restart
//! with the events of the outage delivered afterwards, and the last will.
//! A stand-in for cnaptd answers the link's control calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{Call, Reply, Request};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use telemetry::MqttConfig;
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A broker on a port of its own, killed (by pid) when dropped.
struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(dir: &Path, port: u16) -> Self {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "mosquitto is missing: apt-get install mosquitto (scripts/test.sh does)"
        );
        let conf = dir.join("mosquitto.conf");
        let mut b = Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        let pki = Pki(dir.join("pki"));
        std::fs::write(
            dir.join("acl"),
            "user box-7\ntopic readwrite cbox/box-7/#\n\nuser operator\ntopic readwrite cbox/#\n",
        )
        .unwrap();
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n\
                 acl_file {}\npersistence true\npersistence_location {}/\nlog_dest stderr\n\
                 # The test runs as root and its PKI folder is private (0700):\n\
                 # no dropping to the mosquitto user.\nuser root\n",
                pki.ca().display(),
                pki.0.join("servers/mqtt.pem").display(),
                pki.0.join("servers/mqtt.key").display(),
                dir.join("acl").display(),
                dir.display(),
            ),
        )
        .unwrap();
        b.restart();
        b
    }

    fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {}", self.port);
    }

    /// A clean stop (SIGTERM: it saves its sessions), waited for.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kept (with mosquitto.log) when the test failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Pki(PathBuf);

impl Pki {
    fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }

    fn issue(dir: &Path) -> Self {
        let p = tls::Pki::new(dir.join("pki"));
        p.init("test CA", 1).unwrap();
        p.issue_server("mqtt", &["127.0.0.1".to_string()], 30)
            .unwrap();
        for id in ["box-7", "operator"] {
            p.issue_box(&wire::BoxId::new(id).unwrap(), 30).unwrap();
        }
        Self(dir.join("pki"))
    }

    fn client(&self, id: &str) -> Arc<rustls::ClientConfig> {
        tls::client_config(
            &self.ca(),
            &self.0.join(format!("boxes/{id}.pem")),
            &self.0.join(format!("boxes/{id}.key")),
            tls::CipherPreference::default(),
        )
        .unwrap()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn snapshot(seqs: &[u64], active: &str) -> Value {
    let uplink = |name: &str| {
        json!({"name": name, "kind": name, "interface": null, "active": name == active,
               "health": "good", "why": "ok", "link": true, "address": null, "signal_dbm": -60,
               "rtt_ms": 10.0, "loss": 0.0, "priority": 0, "cost": 0, "auto_connect": true,
               "changed_s_ago": 1.0, "modem": null, "wifi": null})
    };
    let hs: Vec<Value> = seqs
        .iter()
        .map(|s| {
            json!({"seq": s, "at_unix_ms": 1000 * s, "site": 0, "kind": "sudden",
                   "from_uplink": "wifi", "to_uplink": "lte", "reason": "wifi: link down",
                   "stall_ms": 41.5, "bytes_buffered": 100, "bytes_replayed": 10,
                   "outcome": {"result": "completed"}})
        })
        .collect();
    json!({"box_id": "box-7", "mode": "automatic", "suggestion": null,
           "uplinks": [uplink("wifi"), uplink("lte")],
           "sites": [{"snapt": "main", "state": "Established", "session_id": 1, "uplink": active,
                      "streams": 2, "bytes_sent": 1, "bytes_received": 2, "bytes_replayed": 0,
                      "bytes_buffered": 0, "datagrams_dropped": 0, "switches": seqs.len(),
                      "rtt_ms": 10.0, "pings_sent": 1, "pings_lost": 0, "last_error": null}],
           "handovers": hs, "handovers_total": seqs.len()})
}

/// A stand-in for cnaptd: answers Status with `state`, records the rest.
fn fake_box(
    state: Arc<Mutex<Value>>,
    seen: Arc<Mutex<Vec<Request>>>,
) -> mpsc::UnboundedSender<Call> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Call>();
    tokio::spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            let r = match &req {
                Request::Status => Reply::ok(state.lock().unwrap().clone()),
                Request::Switch { uplink } if uplink == "lte" || uplink == "wifi" => {
                    Reply::ok(json!({"uplink": uplink, "ms": 12.5}))
                }
                Request::Switch { uplink } => Reply::err(format!("no uplink {uplink:?}")),
                _ => Reply::ok(Value::Null),
            };
            seen.lock().unwrap().push(req);
            let _ = reply.send(r);
        }
    });
    tx
}

/// The operator's side: everything under `cbox/#`, in order.
struct Operator {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Value, bool)>,
    backlog: Vec<(String, Value)>,
}

impl Operator {
    fn start(port: u16, pki: &Pki) -> Self {
        let mut o = MqttOptions::new("operator", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_clean_session(false);
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(
            pki.client("operator"),
        )));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let c = client.clone();
        tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe("cbox/#", QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&p.payload).into())
                        });
                        if tx.send((p.topic, v, p.retain)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            client,
            rx,
            backlog: Vec::new(),
        }
    }

    /// The first message on `topic` that satisfies `want` (among those
    /// received and not yet taken, then new ones), within 20 s.
    async fn expect(&mut self, topic: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(|(t, v)| t == topic && want(v)) {
            return self.backlog.remove(i).1;
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some((t, v, _))) if t == topic && want(&v) => return v,
                Ok(Some((t, v, _))) => self.backlog.push((t, v)),
                Ok(None) => panic!("{what}: the operator's client ended"),
                Err(_) => panic!("{what}: nothing on {topic} within 20 s"),
            }
        }
    }

    /// Publishes a command; one with an id gets `"at"` = now unless it
    /// has one.
    async fn command(&self, payload: &str) {
        let payload = if payload.starts_with(r#"{"id""#) && !payload.contains(r#""at""#) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            payload.replacen('{', &format!(r#"{{"at":{now},"#), 1)
        } else {
            payload.to_string()
        };
        self.client
            .publish(
                "cbox/box-7/cmd",
                QoS::AtLeastOnce,
                false,
                payload.as_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
}

fn config(port: u16, pki: &Pki, id: &str) -> MqttConfig {
    MqttConfig {
        host: "127.0.0.1".into(),
        port,
        prefix: "cbox".into(),
        box_id: id.into(),
        tls: pki.client(id),
        status_period: Duration::from_secs(30),
        poll_period: Duration::from_millis(100),
        queue_limit: 16,
        keep_alive: Duration::from_secs(5),
        backoff_base: Duration::from_millis(200),
        follow_active_uplink: false,
    }
}

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cbx-mqtt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_and_commands_go_through_a_real_broker() {
    let dir = workdir("cmds");
    let pki = Pki::issue(&dir);
    let port = free_port();
    let _broker = Broker::start(&dir, port);
    let mut op = Operator::start(port, &pki);
    let state = Arc::new(Mutex::new(snapshot(&[], "wifi")));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = fake_box(state.clone(), seen.clone());
    let link = tokio::spawn(telemetry::run(config(port, &pki, "box-7"), calls));

    op.expect("cbox/box-7/online", "online", |v| v == "online")
        .await;
    let st = op
        .expect("cbox/box-7/status", "status", |v| v["box_id"] == "box-7")
        .await;
    assert_eq!(st["uplinks"][0]["name"], "wifi");
    // A handover on the box: an event with its record, and a new status.
    *state.lock().unwrap() = snapshot(&[1], "lte");
    let ev = op
        .expect("cbox/box-7/events", "handover event", |v| {
            v["type"] == "handover"
        })
        .await;
    assert_eq!(ev["handover"]["seq"], 1);
    assert_eq!(ev["handover"]["stall_ms"], 41.5);
    op.expect("cbox/box-7/events", "uplink event", |v| {
        v["type"] == "uplink" && v["to"] == "lte"
    })
    .await;
    op.expect("cbox/box-7/status", "status after handover", |v| {
        v["handovers_total"] == 1
    })
    .await;
    // Commands: a switch carried out, refusals with their reason.
    op.command(r#"{"id":"c1","cmd":"switch","uplink":"wifi"}"#)
        .await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply c1", |v| v["id"] == "c1")
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"]["ms"], 12.5);
    op.command(r#"{"id":"c2","cmd":"switch","uplink":"moon"}"#)
        .await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply c2", |v| v["id"] == "c2")
        .await;
    assert_eq!(
        (r["ok"].clone(), r["error"].clone()),
        (json!(false), json!("no uplink \"moon\""))
    );
    op.command("{not json").await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply to garbage", |v| {
            v["ok"] == false && v["id"] == ""
        })
        .await;
    assert!(r["error"].as_str().unwrap().starts_with("not JSON"), "{r}");
    op.command(r#"{"id":"c3","cmd":"reboot"}"#).await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply c3", |v| v["id"] == "c3")
        .await;
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("no command \"reboot\""),
        "{r}"
    );
    op.command(r#"{"id":"c4","cmd":"mode","mode":"manual"}"#)
        .await;
    op.expect("cbox/box-7/cmd/reply", "reply c4", |v| {
        v["id"] == "c4" && v["ok"] == true
    })
    .await;
    // The same command again (a QoS 1 redelivery, an operator's retry):
    // not carried out twice. One sent an hour ago: refused as late.
    op.command(r#"{"id":"c4","cmd":"mode","mode":"automatic"}"#)
        .await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply to c4 again", |v| {
            v["id"] == "c4" && v["ok"] == false
        })
        .await;
    assert!(r["error"].as_str().unwrap().contains("already ran"), "{r}");
    op.command(r#"{"id":"c5","at":1000,"cmd":"approve"}"#).await;
    let r = op
        .expect("cbox/box-7/cmd/reply", "reply c5", |v| v["id"] == "c5")
        .await;
    assert!(r["error"].as_str().unwrap().contains("s ago"), "{r}");
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.contains(&Request::Switch {
        uplink: "wifi".into()
    }));
    assert!(reqs.contains(&Request::Mode {
        mode: "manual".into()
    }));
    assert!(!reqs.contains(&Request::Mode {
        mode: "automatic".into()
    }));
    assert!(!reqs.contains(&Request::Approve));
    link.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_broker_outage_arrive_afterwards_and_the_last_will_marks_the_box_offline() {
    let dir = workdir("restart");
    let pki = Pki::issue(&dir);
    let port = free_port();
    let mut broker = Broker::start(&dir, port);
    let mut op = Operator::start(port, &pki);
    let state = Arc::new(Mutex::new(snapshot(&[1], "wifi")));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = fake_box(state.clone(), seen.clone());
    let link = tokio::spawn(telemetry::run(config(port, &pki, "box-7"), calls.clone()));
    op.expect("cbox/box-7/status", "status", |v| v["handovers_total"] == 1)
        .await;

    // The broker goes away; three handovers happen meanwhile.
    broker.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    *state.lock().unwrap() = snapshot(&[1, 2, 3, 4], "lte");
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart();
    // They arrive, in order, once the box is back (reconnection with
    // back-off), and the status is current again.
    for seq in 2..=4 {
        let e = op
            .expect("cbox/box-7/events", "queued handover", |v| {
                v["type"] == "handover"
            })
            .await;
        assert_eq!(e["handover"]["seq"], seq, "{e}");
    }
    op.expect("cbox/box-7/status", "status after restart", |v| {
        v["handovers_total"] == 4
    })
    .await;
    op.expect("cbox/box-7/online", "online again", |v| v == "online")
        .await;

    // The box dies without a goodbye: the broker publishes its last will.
    link.abort();
    op.expect("cbox/box-7/online", "last will", |v| v == "offline")
        .await;
}
