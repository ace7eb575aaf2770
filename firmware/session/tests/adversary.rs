//! A second, validly authenticated box throws arbitrary frames and bytes at
//! the server — including the first box's session id — on several tunnels.
//! Nothing panics, only the attacker's tunnels close, and the first box's
//! stream keeps every byte exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use session::{BoxSession, Event, Server, ServerConfig, SessionConfig, TunnelId};
use wire::{BoxId, Frame, ServiceName, StreamId, StreamKind, StreamSync, SyncState, VERSION};

#[derive(Debug, Clone)]
enum Attack {
    Raw(Vec<u8>),
    Frame(Frame),
    /// SWITCH_UNEXPECTED / SWITCH_STEP2 naming the victim's session.
    Hijack {
        unexpected: bool,
        claim_victim: bool,
        received: u64,
    },
    NewTunnel,
}

fn attack() -> impl Strategy<Value = Attack> {
    let sid = any::<u32>().prop_map(StreamId);
    let frame = prop_oneof![
        (any::<u16>(), "[a-z0-9-]{1,12}").prop_map(|(version, b)| Frame::Connect {
            version,
            window: 4096,
            keepalive_ms: 100,
            incarnation: u64::from(version),
            box_id: BoxId::new(&b).unwrap(),
        }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        (
            sid.clone(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(stream, offset, payload)| Frame::Data {
                stream,
                offset: offset >> 8,
                payload
            }),
        (sid.clone(), any::<u64>(), any::<bool>()).prop_map(|(stream, offset, fin)| Frame::Ack {
            stream,
            offset,
            fin
        }),
        (sid.clone(), any::<u64>()).prop_map(|(stream, limit)| Frame::Window { stream, limit }),
        (sid.clone(), any::<u64>()).prop_map(|(stream, offset)| Frame::Fin { stream, offset }),
        sid.clone().prop_map(|stream| Frame::Open {
            stream,
            kind: StreamKind::Stream,
            service: ServiceName::new("x").unwrap(),
            dest: None,
            codec: wire::Codec::None
        }),
        any::<u32>().prop_map(|switch| Frame::SwitchStep1 { switch }),
        any::<u32>().prop_map(|switch| Frame::LastMessageBeforeRedirection { switch }),
        any::<u32>().prop_map(|switch| Frame::ClientServicesReadyForRedirection { switch }),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Attack::Raw),
        frame.prop_map(Attack::Frame),
        (any::<bool>(), any::<bool>(), 0u64..100_000).prop_map(
            |(unexpected, claim_victim, received)| Attack::Hijack {
                unexpected,
                claim_victim,
                received
            }
        ),
        Just(Attack::NewTunnel),
    ]
}

fn enc(f: &Frame) -> Vec<u8> {
    let mut b = Vec::new();
    wire::encode(f, &mut b);
    b
}

struct Net {
    now: Instant,
    server: Server,
    victim: BoxSession,
    open: BTreeSet<TunnelId>,
    received: Vec<u8>,
}

impl Net {
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(tx) = self.victim.poll_transmit() {
                moved = true;
                if self.open.contains(&tx.tunnel) {
                    self.server.handle_input(tx.tunnel, &tx.bytes, self.now);
                }
            }
            while let Some(tx) = self.server.poll_transmit() {
                moved = true;
                if self.open.contains(&tx.tunnel) && tx.tunnel.0 < 100 {
                    self.victim.handle_input(tx.tunnel, &tx.bytes, self.now);
                }
            }
            while let Some(e) = self.victim.poll_event() {
                moved = true;
                assert!(
                    !matches!(e, Event::CloseTunnel { .. } | Event::SessionClosed { .. }),
                    "victim disturbed: {e:?}"
                );
            }
            while let Some(e) = self.server.poll_event() {
                moved = true;
                match e.event {
                    Event::CloseTunnel { tunnel, .. } => {
                        assert!(tunnel.0 >= 100, "the victim's tunnel was closed: {e:?}");
                        self.open.remove(&tunnel);
                        self.server.handle_tunnel_lost(tunnel, self.now);
                    }
                    Event::Data { bytes, .. } => {
                        assert_eq!(e.box_id, Some(BoxId::new("victim").unwrap()));
                        self.received.extend(bytes);
                    }
                    Event::StreamOpened { .. } => {
                        assert_eq!(e.box_id, Some(BoxId::new("victim").unwrap()));
                    }
                    Event::SessionClosed { .. }
                    | Event::StreamReset { .. }
                    | Event::SwitchStarted { .. } => {
                        assert_ne!(
                            e.box_id,
                            Some(BoxId::new("victim").unwrap()),
                            "victim disturbed: {e:?}"
                        );
                    }
                    _ => {}
                }
            }
            if !moved {
                return;
            }
        }
        panic!("did not settle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn an_attacking_box_cannot_disturb_another_boxs_session(attacks in prop::collection::vec(attack(), 1..30)) {
        let cfg = SessionConfig { keepalive: Duration::from_secs(60), inactivity_timeout: Duration::from_secs(120), ..SessionConfig::default() };
        let server = Server::new(ServerConfig { session: cfg.clone(), max_sessions: 8, ..ServerConfig::default() }, 1).unwrap();
        let victim = BoxSession::new(cfg, BoxId::new("victim").unwrap(), 1).unwrap();
        let mut net = Net { now: Instant::now(), server, victim, open: BTreeSet::new(), received: Vec::new() };
        net.open.insert(TunnelId(1));
        net.server.handle_tunnel_up(TunnelId(1), BoxId::new("victim").unwrap(), net.now);
        net.victim.switch_to(TunnelId(1), net.now).unwrap();
        net.pump();
        let victim_session = net.victim.session_id();
        let stream = net.victim.streams().open(StreamKind::Stream, ServiceName::new("svc").unwrap(), None).unwrap();
        let mut expected = Vec::new();
        let mut attacker = TunnelId(100);
        net.open.insert(attacker);
        net.server.handle_tunnel_up(attacker, BoxId::new("evil").unwrap(), net.now);
        for (i, a) in attacks.iter().enumerate() {
            let chunk = format!("[{i}]").into_bytes();
            net.victim.streams().send(stream, &chunk).unwrap();
            expected.extend(chunk);
            let bytes = match a {
                Attack::Raw(b) => b.clone(),
                Attack::Frame(f) => enc(f),
                Attack::Hijack { unexpected, claim_victim, received } => {
                    let box_id = BoxId::new(if *claim_victim { "victim" } else { "evil" }).unwrap();
                    if *unexpected {
                        let sync = SyncState { peer_opened_seen: 0, streams: vec![StreamSync { stream, received: *received, fin_received: false }] };
                        enc(&Frame::SwitchUnexpected { version: VERSION, session_id: victim_session, switch: 9, box_id, sync })
                    } else {
                        enc(&Frame::SwitchStep2 { version: VERSION, session_id: victim_session, switch: 1, box_id })
                    }
                }
                Attack::NewTunnel => {
                    attacker = TunnelId(attacker.0 + 1);
                    net.open.insert(attacker);
                    net.server.handle_tunnel_up(attacker, BoxId::new("evil").unwrap(), net.now);
                    Vec::new()
                }
            };
            if net.open.contains(&attacker) {
                net.server.handle_input(attacker, &bytes, net.now);
            }
            net.pump();
        }
        net.pump();
        prop_assert_eq!(&net.received, &expected);
    }
}
