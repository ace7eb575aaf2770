//! Feeds arbitrary input to a SNAPT server with one honest, connected box:
//! the input is a script of (tunnel, identity, bytes, time step) records on
//! up to four attacker tunnels. The server must never panic, and the honest
//! box's session must survive.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use session::{BoxSession, BoxState, Server, ServerConfig, SessionConfig, TunnelId};
use wire::BoxId;

fuzz_target!(|data: &[u8]| {
    let cfg = SessionConfig {
        keepalive: Duration::from_secs(3600),
        inactivity_timeout: Duration::from_secs(7200),
        ..SessionConfig::default()
    };
    let mut now = Instant::now();
    let Ok(mut server) = Server::new(ServerConfig { session: cfg.clone(), max_sessions: 3, ..ServerConfig::default() }, 9) else { return };
    let Ok(honest_id) = BoxId::new("honest") else { return };
    let Ok(mut honest) = BoxSession::new(cfg, honest_id.clone(), 1) else { return };
    let home = TunnelId(1);
    server.handle_tunnel_up(home, honest_id, now);
    if honest.switch_to(home, now).is_err() {
        return;
    }
    let ids = ["evil", "evil-2", "x", "y"];
    let mut up = [false; 4];
    let mut rest = data;
    let mut exchange = |server: &mut Server, honest: &mut BoxSession, now: Instant| {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(tx) = honest.poll_transmit() {
                moved = true;
                server.handle_input(tx.tunnel, &tx.bytes, now);
            }
            while let Some(tx) = server.poll_transmit() {
                moved = true;
                if tx.tunnel == home {
                    honest.handle_input(tx.tunnel, &tx.bytes, now);
                }
            }
            while let Some(e) = server.poll_event() {
                moved = true;
                if let session::Event::CloseTunnel { tunnel, .. } = e.event {
                    server.handle_tunnel_lost(tunnel, now);
                }
            }
            while honest.poll_event().is_some() {
                moved = true;
            }
            if !moved {
                break;
            }
        }
    };
    exchange(&mut server, &mut honest, now);
    while rest.len() >= 3 {
        let slot = (rest[0] & 3) as usize;
        let len = rest[1] as usize;
        let step = u64::from(rest[2]);
        rest = &rest[3..];
        let chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        let t = TunnelId(100 + slot as u64);
        if !up[slot] {
            if let Ok(id) = BoxId::new(ids[slot]) {
                server.handle_tunnel_up(t, id, now);
            }
            up[slot] = true;
        }
        server.handle_input(t, chunk, now);
        now += Duration::from_millis(step);
        server.handle_timeout(now);
        exchange(&mut server, &mut honest, now);
    }
    assert_eq!(honest.state(), BoxState::Established, "the honest box lost its session");
});
