use proptest::prelude::*;

use super::*;

fn stream_image() -> impl Strategy<Value = StreamImage> {
    (
        (0u32..1000, any::<bool>(), any::<bool>(), any::<bool>()),
        (
            0u64..1 << 40,
            prop::collection::vec(any::<u8>(), 0..300),
            0u64..4096,
        ),
        (
            any::<bool>(),
            any::<bool>(),
            0u64..1 << 40,
            0u64..4096,
            any::<bool>(),
        ),
        prop::option::of((any::<[u8; 4]>(), any::<u16>())),
    )
        .prop_map(
            |(
                (id, datagram, open_pending, zstd),
                (acked, unacked, credit),
                (fin, fin_acked, delivered, extra, peer_fin),
                dest,
            )| {
                let written = acked + unacked.len() as u64;
                let fin = fin.then_some(written);
                StreamImage {
                    id: StreamId(id),
                    kind: if datagram {
                        StreamKind::Datagram
                    } else {
                        StreamKind::Stream
                    },
                    service: ServiceName::new("svc").unwrap(),
                    dest: dest.map(|(ip, port)| SocketAddr::from((ip, port))),
                    codec: if zstd { Codec::Zstd } else { Codec::None },
                    open_pending,
                    acked,
                    max_sent: acked + unacked.len() as u64 / 2,
                    peer_limit: acked + credit,
                    unacked,
                    fin,
                    fin_acked: fin_acked && fin.is_some(),
                    delivered,
                    limit: delivered + extra,
                    peer_fin: peer_fin.then_some(delivered),
                    peer_fin_emitted: peer_fin,
                }
            },
        )
}

fn session_image() -> impl Strategy<Value = SessionImage> {
    (
        "[a-z][a-z0-9-]{0,20}",
        any::<(u64, u64, u32, u32, u32)>(),
        prop::collection::vec(stream_image(), 0..6),
    )
        .prop_map(
            |(owner, (session_id, incarnation, last_switch, next, seen), streams)| SessionImage {
                owner: BoxId::new(&owner).unwrap(),
                session_id,
                incarnation,
                last_switch,
                peer_window: 256 * 1024,
                next_index: next,
                peer_opened_seen: seen,
                streams,
            },
        )
}

proptest! {
    #[test]
    fn an_image_reads_back_as_written(images in prop::collection::vec(session_image(), 0..4)) {
        let bytes = encode(&images);
        prop_assert_eq!(decode(&bytes), Ok(images));
    }

    /// Any cut or any flipped byte is an error or another valid image,
    /// never a panic.
    #[test]
    fn a_damaged_image_is_an_error_not_a_panic(
        images in prop::collection::vec(session_image(), 1..3),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
    ) {
        let bytes = encode(&images);
        let at = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..at]).is_err());
        let mut damaged = bytes.clone();
        let i = flip.0.index(damaged.len());
        damaged[i] ^= flip.1 | 1;
        let _ = decode(&damaged);
    }
}

#[test]
fn contradicting_offsets_are_named() {
    let mut img = SessionImage {
        owner: BoxId::new("box-a").unwrap(),
        session_id: 1,
        incarnation: 1,
        last_switch: 0,
        peer_window: 1024,
        next_index: 0,
        peer_opened_seen: 1,
        streams: vec![StreamImage {
            id: StreamId::new(wire::Role::Box, 0).unwrap(),
            kind: StreamKind::Stream,
            service: ServiceName::new("web").unwrap(),
            dest: None,
            codec: Codec::None,
            open_pending: false,
            acked: 10,
            max_sent: 12,
            peer_limit: 100,
            unacked: vec![1, 2, 3],
            fin: Some(13),
            fin_acked: false,
            delivered: 5,
            limit: 50,
            peer_fin: None,
            peer_fin_emitted: false,
        }],
    };
    assert_eq!(
        decode(&encode(std::slice::from_ref(&img))),
        Ok(vec![img.clone()])
    );
    img.streams[0].fin = Some(12);
    let e = decode(&encode(std::slice::from_ref(&img))).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "stream {}: final size is not the bytes written",
            img.streams[0].id
        )
    );
    assert_eq!(decode(b"CBXIMG\x00\x02"), Err(ImageError::BadMagic));
    let mut trailing = encode(&[]);
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(ImageError::Trailing(1)));
}

#[test]
fn a_server_refuses_an_image_it_cannot_take() {
    use crate::{Server, ServerConfig};
    let mut server = Server::new(ServerConfig::default(), 1).unwrap();
    let now = std::time::Instant::now();
    let mut img = SessionImage {
        owner: BoxId::new("box-a").unwrap(),
        session_id: 9,
        incarnation: 1,
        last_switch: 3,
        peer_window: 1024,
        next_index: 0,
        peer_opened_seen: 0,
        streams: Vec::new(),
    };
    // A stream the box never opened, as far as the image says.
    img.streams.push(StreamImage {
        id: StreamId::new(wire::Role::Box, 4).unwrap(),
        kind: StreamKind::Datagram,
        service: ServiceName::new("dns").unwrap(),
        dest: None,
        codec: Codec::None,
        open_pending: false,
        acked: 0,
        max_sent: 0,
        peer_limit: 0,
        unacked: Vec::new(),
        fin: None,
        fin_acked: false,
        delivered: 0,
        limit: 0,
        peer_fin: None,
        peer_fin_emitted: false,
    });
    assert!(matches!(
        server.import(img.clone(), now),
        Err(ImageError::Inconsistent {
            what: "an id beyond those opened",
            ..
        })
    ));
    img.peer_opened_seen = 5;
    server.import(img.clone(), now).unwrap();
    assert_eq!(server.images(), vec![img.clone()]);
    assert_eq!(
        server.import(img, now),
        Err(ImageError::Duplicate(BoxId::new("box-a").unwrap()))
    );
    assert_eq!(
        server.sessions().next().map(|s| s.state()),
        Some(crate::ServerState::Orphaned)
    );
}
