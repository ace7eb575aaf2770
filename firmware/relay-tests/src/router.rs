//! A relay fleet on loopback: three snaptd, each with the server
//! certificate of its own name, behind Debian's HAProxy routing on the TLS
//! SNI without terminating TLS (the configuration of docs/operations.md:
//! health checks every 0.5 s, `timeout connect 500ms`, `retries 0`: a dead relay's connection is refused at once, not after HAProxy's turn-around wait).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::bed::{Bed, free_port, wait_until};

/// The relays' names (SNI and certificate SAN).
pub const RELAYS: [&str; 3] = ["relay-1.test", "relay-2.test", "relay-3.test"];

/// HAProxy's configuration: `front` routes each SNI of [`RELAYS`] to its
/// backend port.
pub fn haproxy_config(front: u16, backends: &[u16]) -> String {
    let mut c = format!(
        "global\n    maxconn 8000\n\
         defaults\n    mode tcp\n    timeout connect 500ms\n    timeout client 60s\n    timeout server 60s\n    retries 0\n    default-server check inter 500ms fall 2 rise 2\n\
         frontend relays\n    bind 127.0.0.1:{front}\n    tcp-request inspect-delay 5s\n    tcp-request content accept if {{ req_ssl_hello_type 1 }}\n"
    );
    for (i, name) in RELAYS.iter().enumerate() {
        c.push_str(&format!(
            "    use_backend r{i} if {{ req.ssl_sni -i {name} }}\n"
        ));
    }
    for (i, port) in backends.iter().enumerate() {
        c.push_str(&format!("backend r{i}\n    server s{i} 127.0.0.1:{port}\n"));
    }
    c
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Each relay's control socket, in [`RELAYS`]' order.
    pub controls: Vec<PathBuf>,
    /// Each relay's index in the bed's daemons.
    pub daemons: Vec<usize>,
    /// HAProxy's index in the bed's daemons.
    pub router_daemon: usize,
    /// Where the boxes connect.
    pub router: SocketAddr,
}

/// Starts the three relays (`top` and `extra` as for [`Bed::snaptd`]) and
/// HAProxy in front of them; panics with HAProxy's complaint if it refuses
/// the configuration.
pub fn start_fleet(bed: &mut Bed, top: &str, extra: &str) -> Fleet {
    if Command::new("haproxy").arg("-v").output().is_err() {
        panic!("haproxy is not installed (apt-get install haproxy; the test command installs it)");
    }
    let mut controls = Vec::new();
    let mut daemons = Vec::new();
    let mut ports = Vec::new();
    for (i, name) in RELAYS.iter().enumerate() {
        let cert = format!("relay-{}", i + 1);
        if !bed.path(&format!("pki/servers/{cert}.pem")).exists() {
            bed.pki(&["server", &cert, "--san", name]);
        }
        let port = free_port();
        controls.push(bed.snaptd_as(&format!("snaptd-{}", i + 1), &cert, port, top, extra));
        daemons.push(bed.daemons.len() - 1);
        ports.push(port);
    }
    let front = free_port();
    let cfg = bed.path("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, &ports)).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let router_daemon = bed.spawn(
        "haproxy",
        Command::new("haproxy").arg("-db").arg("-f").arg(&cfg),
    );
    let router: SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    wait_until(Duration::from_secs(5), "haproxy to listen", || {
        std::net::TcpStream::connect(router).is_ok()
    });
    Fleet {
        controls,
        daemons,
        router_daemon,
        router,
    }
}
