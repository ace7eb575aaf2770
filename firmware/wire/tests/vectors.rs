//! The hex test vectors in `docs/protocol.md` are the encodings of the frames
//! below: every frame type has one, and encoding and decoding agree with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use wire::{
    BoxId, DisconnectCode, Frame, FrameType, RefuseCode, ResetCode, ServiceName, StreamId,
    StreamKind, StreamSync, SyncState,
};

fn vectors() -> Vec<(&'static str, Frame)> {
    let bid = BoxId::new("box-7").unwrap();
    let sync = SyncState {
        peer_opened_seen: 2,
        streams: vec![
            StreamSync {
                stream: StreamId(4),
                received: 4096,
                fin_received: false,
            },
            StreamSync {
                stream: StreamId(1),
                received: 17,
                fin_received: true,
            },
        ],
    };
    vec![
        (
            "CONNECT",
            Frame::Connect {
                version: 1,
                window: 262_144,
                keepalive_ms: 1000,
                incarnation: 0x1234,
                box_id: bid.clone(),
            },
        ),
        (
            "CONNECT_ACK",
            Frame::ConnectAck {
                version: 1,
                session_id: 0x0123_4567_89ab_cdef,
                window: 262_144,
                keepalive_ms: 1000,
            },
        ),
        (
            "REFUSED",
            Frame::Refused {
                code: RefuseCode::OverCapacity,
                reason: "full".into(),
                retry_after_ms: 0,
            },
        ),
        (
            "REFUSED with a wait",
            Frame::Refused {
                code: RefuseCode::Busy,
                reason: "busy".into(),
                retry_after_ms: 1500,
            },
        ),
        (
            "DISCONNECT",
            Frame::Disconnect {
                code: DisconnectCode::Shutdown,
                reason: "bye".into(),
            },
        ),
        (
            "PING",
            Frame::Ping {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        (
            "PONG",
            Frame::Pong {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        (
            "OPEN",
            Frame::Open {
                stream: StreamId(4),
                kind: StreamKind::Stream,
                service: ServiceName::new("ssh").unwrap(),
                dest: Some("198.18.0.10:22".parse::<SocketAddr>().unwrap()),
                codec: wire::Codec::None,
            },
        ),
        (
            "OPEN (compressed)",
            Frame::Open {
                stream: StreamId(6),
                kind: StreamKind::Stream,
                service: ServiceName::new("web").unwrap(),
                dest: None,
                codec: wire::Codec::Zstd,
            },
        ),
        (
            "PATH_REPORT",
            Frame::PathReport(wire::PathReport {
                switches: 2,
                handover: wire::HandoverKind::Planned,
                stall_ms: 180,
                uplink: "lte".into(),
                kind: wire::UplinkKind::Lte,
                rtt_ms: 80,
                loss_permille: 5,
                send_kbps: 4_800,
                app_limited: false,
            }),
        ),
        (
            "DATA",
            Frame::Data {
                stream: StreamId(4),
                offset: 4096,
                payload: b"hi".to_vec(),
            },
        ),
        (
            "ACK",
            Frame::Ack {
                stream: StreamId(4),
                offset: 4098,
                fin: false,
            },
        ),
        (
            "WINDOW",
            Frame::Window {
                stream: StreamId(4),
                limit: 266_242,
            },
        ),
        (
            "FIN",
            Frame::Fin {
                stream: StreamId(4),
                offset: 4098,
            },
        ),
        (
            "RESET",
            Frame::Reset {
                stream: StreamId(5),
                code: ResetCode::PolicyDenied,
                reason: "no".into(),
            },
        ),
        (
            "DATAGRAM",
            Frame::Datagram {
                flow: StreamId(6),
                payload: vec![0xca, 0xfe],
            },
        ),
        ("SWITCH_STEP1", Frame::SwitchStep1 { switch: 3 }),
        ("SWITCH_ACK", Frame::SwitchAck { switch: 3 }),
        (
            "LAST_MESSAGE_BEFORE_REDIRECTION",
            Frame::LastMessageBeforeRedirection { switch: 3 },
        ),
        ("OK_TO_REDIRECTION", Frame::OkToRedirection { switch: 3 }),
        (
            "CLIENT_SERVICES_READY_FOR_REDIRECTION",
            Frame::ClientServicesReadyForRedirection { switch: 3 },
        ),
        (
            "SERVER_SERVICES_READY_FOR_REDIRECTION",
            Frame::ServerServicesReadyForRedirection { switch: 3 },
        ),
        (
            "SWITCH_STEP2",
            Frame::SwitchStep2 {
                version: 1,
                session_id: 0x0123_4567_89ab_cdef,
                switch: 3,
                box_id: bid.clone(),
            },
        ),
        (
            "STANDBY",
            Frame::Standby {
                version: 1,
                session_id: 0x0123_4567_89ab_cdef,
                box_id: bid.clone(),
                keepalive_ms: 25_000,
            },
        ),
        (
            "SYNC_PART",
            Frame::SyncPart {
                streams: sync.streams.clone(),
            },
        ),
        (
            "ALL_REDIRECTED",
            Frame::AllRedirected {
                switch: 3,
                sync: sync.clone(),
            },
        ),
        (
            "SWITCH_UNEXPECTED",
            Frame::SwitchUnexpected {
                version: 1,
                session_id: 0x0123_4567_89ab_cdef,
                switch: 4,
                box_id: bid,
                sync,
            },
        ),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `#### Vector: NAME` headings followed by a ```hex block.
fn doc_vectors() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("#### Vector: ") else {
            continue;
        };
        let block: Vec<&str> = lines
            .by_ref()
            .skip_while(|l| l.trim() != "```hex")
            .skip(1)
            .take_while(|l| l.trim() != "```")
            .collect();
        out.insert(
            name.trim().to_owned(),
            block
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    out
}

#[test]
fn every_frame_type_has_a_vector() {
    let names: Vec<&str> = vectors().iter().map(|(n, _)| *n).collect();
    for t in FrameType::ALL {
        assert!(names.contains(&t.name()), "no vector for {}", t.name());
    }
}

#[test]
fn docs_vectors_match_the_codec() {
    let doc = doc_vectors();
    let mut report = String::new();
    for (name, frame) in vectors() {
        let mut b = Vec::new();
        wire::encode(&frame, &mut b);
        let want = hex(&b);
        match doc.get(name) {
            Some(got) if *got == want => {
                let (back, used) = wire::decode(&b, wire::DEFAULT_MAX_FRAME_LEN).unwrap();
                assert_eq!((back, used), (frame, b.len()));
            }
            Some(got) => report.push_str(&format!(
                "{name}: docs say\n  {got}\ncodec gives\n  {want}\n"
            )),
            None => report.push_str(&format!(
                "{name}: missing in docs/protocol.md; codec gives\n  {want}\n"
            )),
        }
    }
    assert!(
        report.is_empty(),
        "docs/protocol.md test vectors disagree:\n{report}"
    );
}
