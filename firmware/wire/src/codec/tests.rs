use proptest::prelude::*;

use super::*;
use crate::DEFAULT_MAX_FRAME_LEN;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn sid() -> impl Strategy<Value = StreamId> {
    any::<u32>().prop_map(StreamId)
}

fn text() -> impl Strategy<Value = String> {
    // Encoding cuts reasons at 255 bytes; keep generated ones shorter.
    "\\PC{0,60}"
}

fn addr() -> impl Strategy<Value = Option<SocketAddr>> {
    prop_oneof![
        Just(None),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| Some(SocketAddr::from((ip, p)))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| Some(SocketAddr::from((Ipv6Addr::from(ip), p)))),
    ]
}

fn sync() -> impl Strategy<Value = SyncState> {
    (
        any::<u32>(),
        prop::collection::vec(
            (sid(), any::<u64>(), any::<bool>()).prop_map(|(stream, received, fin_received)| {
                StreamSync {
                    stream,
                    received,
                    fin_received,
                }
            }),
            0..20,
        ),
    )
        .prop_map(|(peer_opened_seen, streams)| SyncState {
            peer_opened_seen,
            streams,
        })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

/// Every frame type, with arbitrary field values.
pub(crate) fn any_frame() -> impl Strategy<Value = Frame> {
    let bid = || token().prop_map(|s| BoxId::new(&s).unwrap());
    let svc = token().prop_map(|s| ServiceName::new(&s).unwrap());
    prop_oneof![
        (
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            bid()
        )
            .prop_map(|(version, window, keepalive_ms, incarnation, box_id)| {
                Frame::Connect {
                    version,
                    window,
                    keepalive_ms,
                    incarnation,
                    box_id,
                }
            }),
        (any::<u16>(), any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(version, session_id, window, keepalive_ms)| Frame::ConnectAck {
                version,
                session_id,
                window,
                keepalive_ms
            }
        ),
        (any::<u8>(), text(), any::<u32>()).prop_map(|(c, reason, retry_after_ms)| {
            Frame::Refused {
                code: RefuseCode::from_u8(c),
                reason,
                retry_after_ms,
            }
        }),
        (any::<u8>(), text()).prop_map(|(c, reason)| Frame::Disconnect {
            code: DisconnectCode::from_u8(c),
            reason
        }),
        any::<u64>().prop_map(|nonce| Frame::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Frame::Pong { nonce }),
        (sid(), any::<bool>(), svc, addr(), 0u8..5).prop_map(|(stream, d, service, dest, c)| {
            Frame::Open {
                stream,
                kind: if d {
                    StreamKind::Datagram
                } else {
                    StreamKind::Stream
                },
                service,
                dest,
                // Every codec, known or not (0 = none: no byte on the wire).
                codec: crate::Codec::from_u8(c),
            }
        }),
        (sid(), 0..u64::MAX / 2, payload()).prop_map(|(stream, offset, payload)| Frame::Data {
            stream,
            offset,
            payload
        }),
        (sid(), any::<u64>(), any::<bool>()).prop_map(|(stream, offset, fin)| Frame::Ack {
            stream,
            offset,
            fin
        }),
        (sid(), any::<u64>()).prop_map(|(stream, limit)| Frame::Window { stream, limit }),
        (sid(), any::<u64>()).prop_map(|(stream, offset)| Frame::Fin { stream, offset }),
        (sid(), any::<u8>(), text()).prop_map(|(stream, c, reason)| Frame::Reset {
            stream,
            code: ResetCode::from_u8(c),
            reason
        }),
        (sid(), payload()).prop_map(|(flow, payload)| Frame::Datagram { flow, payload }),
        any::<u32>().prop_map(|switch| Frame::SwitchStep1 { switch }),
        any::<u32>().prop_map(|switch| Frame::SwitchAck { switch }),
        any::<u32>().prop_map(|switch| Frame::LastMessageBeforeRedirection { switch }),
        any::<u32>().prop_map(|switch| Frame::OkToRedirection { switch }),
        any::<u32>().prop_map(|switch| Frame::ClientServicesReadyForRedirection { switch }),
        any::<u32>().prop_map(|switch| Frame::ServerServicesReadyForRedirection { switch }),
        (any::<u16>(), any::<u64>(), any::<u32>(), bid()).prop_map(
            |(version, session_id, switch, box_id)| Frame::SwitchStep2 {
                version,
                session_id,
                switch,
                box_id
            }
        ),
        (any::<u32>(), sync()).prop_map(|(switch, sync)| Frame::AllRedirected { switch, sync }),
        sync().prop_map(|sync| Frame::SyncPart {
            streams: sync.streams
        }),
        (any::<u16>(), any::<u64>(), bid(), any::<u32>()).prop_map(
            |(version, session_id, box_id, keepalive_ms)| Frame::Standby {
                version,
                session_id,
                box_id,
                keepalive_ms
            }
        ),
        (any::<u16>(), any::<u64>(), any::<u32>(), bid(), sync()).prop_map(
            |(version, session_id, switch, box_id, sync)| Frame::SwitchUnexpected {
                version,
                session_id,
                switch,
                box_id,
                sync
            }
        ),
        (
            (any::<u32>(), any::<u8>(), any::<u32>(), "[a-z0-9-]{0,32}"),
            (
                any::<u8>(),
                any::<u32>(),
                any::<u16>(),
                any::<u32>(),
                any::<bool>()
            )
        )
            .prop_map(
                |(
                    (switches, h, stall_ms, uplink),
                    (k, rtt_ms, loss_permille, send_kbps, app_limited),
                )| {
                    Frame::PathReport(PathReport {
                        switches,
                        handover: HandoverKind::from_u8(h),
                        stall_ms,
                        uplink,
                        kind: UplinkKind::from_u8(k),
                        rtt_ms,
                        loss_permille,
                        send_kbps,
                        app_limited,
                    })
                }
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_frame_round_trips(frame in any_frame()) {
        let mut buf = Vec::new();
        encode(&frame, &mut buf);
        let (back, used) = decode(&buf, DEFAULT_MAX_FRAME_LEN).unwrap();
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(back, frame);
    }

    #[test]
    fn any_prefix_of_a_frame_is_incomplete(frame in any_frame(), cut in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        encode(&frame, &mut buf);
        let cut = cut.index(buf.len());
        match decode(&buf[..cut], DEFAULT_MAX_FRAME_LEN) {
            Err(DecodeError::Incomplete { needed }) => prop_assert!(needed > cut && needed <= buf.len()),
            other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut rest = &bytes[..];
        // Decode as a stream would: frame after frame until an error.
        while let Ok((_, used)) = decode(rest, 1024) {
            prop_assert!(used > 0 && used <= rest.len());
            rest = &rest[used..];
        }
    }

    #[test]
    fn back_to_back_frames_decode_in_order(frames in prop::collection::vec(any_frame(), 1..8)) {
        let mut buf = Vec::new();
        for f in &frames { encode(f, &mut buf); }
        let mut rest = &buf[..];
        for f in &frames {
            let (back, used) = decode(rest, DEFAULT_MAX_FRAME_LEN).unwrap();
            prop_assert_eq!(&back, f);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
    }
}

#[test]
fn oversized_length_is_rejected_from_the_header_alone() {
    let buf = [0x00, 0x10, 0x00, 0x01, 0x11];
    assert_eq!(
        decode(&buf, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::TooLong {
            len: 0x0010_0001,
            max: DEFAULT_MAX_FRAME_LEN
        }))
    );
}

#[test]
fn unknown_type_is_rejected_before_the_body_arrives() {
    assert_eq!(
        decode(&[0, 0, 0, 9, 0x7f], DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::UnknownType(0x7f)))
    );
}

#[test]
fn zero_length_and_trailing_bytes_are_invalid() {
    assert_eq!(
        decode(&[0, 0, 0, 0, 1], DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::ZeroLength))
    );
    // PING with 9 body bytes instead of 8.
    let buf = [0, 0, 0, 10, 0x05, 0, 0, 0, 0, 0, 0, 0, 1, 2];
    assert_eq!(
        decode(&buf, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::Trailing("PING", 1)))
    );
}

#[test]
fn sync_count_larger_than_the_body_is_truncated_not_allocated() {
    // ALL_REDIRECTED claiming 65535 entries in a 10-byte body.
    let buf = [0, 0, 0, 11, 0x27, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff];
    assert_eq!(
        decode(&buf, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::Truncated(
            "ALL_REDIRECTED"
        )))
    );
}

#[test]
fn bad_box_id_in_connect_is_invalid() {
    let mut buf = Vec::new();
    encode(
        &Frame::Connect {
            version: 1,
            window: 1,
            keepalive_ms: 1,
            incarnation: 1,
            box_id: BoxId::new("ok").unwrap(),
        },
        &mut buf,
    );
    let n = buf.len();
    buf[n - 1] = b' ';
    assert!(matches!(
        decode(&buf, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::BadField {
            field: "box_id",
            ..
        }))
    ));
}

#[test]
fn long_reasons_are_cut_at_a_character_boundary() {
    let reason = "é".repeat(200); // 400 bytes
    let mut buf = Vec::new();
    encode(
        &Frame::Refused {
            code: RefuseCode::OverCapacity,
            reason,
            retry_after_ms: 0,
        },
        &mut buf,
    );
    let (back, _) = decode(&buf, DEFAULT_MAX_FRAME_LEN).unwrap();
    let Frame::Refused { reason, .. } = back else {
        panic!("not REFUSED")
    };
    assert_eq!(reason, "é".repeat(127));
}

#[test]
fn a_refusal_carries_its_wait_only_when_there_is_one() {
    let refused = |retry_after_ms| Frame::Refused {
        code: RefuseCode::Busy,
        reason: "busy".into(),
        retry_after_ms,
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    encode(&refused(0), &mut without);
    encode(&refused(1500), &mut with);
    assert_eq!(with.len(), without.len() + 4);
    assert_eq!(
        decode(&with, DEFAULT_MAX_FRAME_LEN).unwrap().0,
        refused(1500)
    );
    assert_eq!(
        decode(&without, DEFAULT_MAX_FRAME_LEN).unwrap().0,
        refused(0)
    );
    // A wait of 0 on the wire is malformed (absent means none), and so is
    // a cut one.
    let mut zero = without.clone();
    zero.extend_from_slice(&[0, 0, 0, 0]);
    zero[3] += 4;
    assert!(matches!(
        decode(&zero, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(_))
    ));
    let mut cut = without.clone();
    cut.extend_from_slice(&[0, 5]);
    cut[3] += 2;
    assert!(matches!(
        decode(&cut, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(_))
    ));
}

proptest! {
    #[test]
    fn data_from_two_halves_encodes_as_the_joined_frame(
        stream in any::<u32>(),
        offset in any::<u64>(),
        head in prop::collection::vec(any::<u8>(), 0..300),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let stream = crate::StreamId(stream);
        let mut joined = head.clone();
        joined.extend_from_slice(&tail);
        let mut want = Vec::new();
        encode(&Frame::Data { stream, offset, payload: joined }, &mut want);
        let mut got = vec![9];
        crate::encode_data(stream, offset, &head, &tail, &mut got);
        prop_assert_eq!(&got[1..], &want[..]);
    }
}

#[test]
fn path_report_layout_and_bad_flags() {
    let frame = Frame::PathReport(PathReport {
        switches: 3,
        handover: HandoverKind::Sudden,
        stall_ms: 250,
        uplink: "lte".into(),
        kind: UplinkKind::Lte,
        rtt_ms: 81,
        loss_permille: 12,
        send_kbps: 4_800,
        app_limited: true,
    });
    let mut out = Vec::new();
    encode(&frame, &mut out);
    let body: &[u8] = &[
        0x30, 0, 0, 0, 3, 2, 0, 0, 0, 250, 3, b'l', b't', b'e', 2, 0, 0, 0, 81, 0, 12, 0, 0, 0x12,
        0xc0, 1,
    ];
    assert_eq!(&out[4..], body);
    assert_eq!(decode(&out, DEFAULT_MAX_FRAME_LEN).unwrap().0, frame);
    let n = out.len();
    out[n - 1] = 2;
    assert!(matches!(
        decode(&out, DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::Invalid(InvalidFrame::BadField {
            field: "flags",
            ..
        }))
    ));
}
