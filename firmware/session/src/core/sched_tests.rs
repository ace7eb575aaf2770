//! The data scheduler: fresh streams before busy ones, a full writer holds
//! stream data back, and a poll looks only at the streams that changed.

use std::time::Instant;

use wire::{Frame, Role, ServiceName, StreamId, StreamKind};

use super::Core;
use crate::event::TunnelId;
use crate::testkit::cfg;

const T: TunnelId = TunnelId(1);

/// A box-side core with its data tunnel attached and a large peer window.
fn core() -> Core {
    let cfg = crate::SessionConfig {
        max_streams: 10_000,
        ..cfg()
    };
    let mut c = Core::new(Role::Box, cfg);
    c.peer_window = 1 << 24;
    c.attach(T, Instant::now());
    c.data_tunnel = Some(T);
    c
}

fn open(c: &mut Core) -> StreamId {
    c.open_stream(
        StreamKind::Stream,
        ServiceName::new("svc").unwrap(),
        None,
        wire::Codec::None,
    )
    .unwrap()
}

/// Every frame of every transmit until the core has nothing more.
fn drain(c: &mut Core, max: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    for _ in 0..10_000 {
        let Some(tx) = c.poll_transmit(max) else {
            return frames;
        };
        let mut at = 0;
        while at < tx.bytes.len() {
            let (f, n) = wire::decode(&tx.bytes[at..], 1 << 20).unwrap();
            frames.push(f);
            at += n;
        }
    }
    panic!("the core never ran dry");
}

fn data_streams(frames: &[Frame]) -> Vec<StreamId> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect()
}

#[test]
fn a_keystroke_goes_before_the_rest_of_a_download() {
    let mut c = core();
    let bulk = open(&mut c);
    let keys = open(&mut c);
    drain(&mut c, 64 * 1024);
    // The download has 1 MiB waiting; the writer took one batch and is full.
    let chunk = vec![7u8; 1 << 20];
    assert_eq!(c.send(bulk, &chunk).unwrap(), 1 << 20);
    let first = c.poll_transmit(64 * 1024).unwrap();
    assert!(first.bytes.len() < 80 * 1024);
    c.set_tunnel_room(T, 0);
    assert!(
        c.poll_transmit(64 * 1024).is_none(),
        "a full writer gets no data"
    );
    // A keystroke arrives meanwhile; the writer drains.
    c.send(keys, b"k").unwrap();
    c.set_tunnel_room(T, usize::MAX);
    let next = drain(&mut c, 16 * 1024 + 64);
    let order = data_streams(&next);
    assert_eq!(order.first(), Some(&keys), "{order:?}");
    assert_eq!(order.iter().filter(|s| **s == bulk).count(), 60);
}

#[test]
fn busy_streams_share_the_tunnel_frame_by_frame() {
    let mut c = core();
    let a = open(&mut c);
    let b = open(&mut c);
    drain(&mut c, 64 * 1024);
    c.send(a, &vec![1u8; 64 * 1024]).unwrap();
    c.send(b, &vec![2u8; 64 * 1024]).unwrap();
    let order = data_streams(&drain(&mut c, 16 * 1024));
    assert_eq!(order, vec![a, b, a, b, a, b, a, b]);
}

#[test]
fn a_poll_looks_only_at_the_streams_that_changed() {
    let mut c = core();
    let ids: Vec<StreamId> = (0..5_000).map(|_| open(&mut c)).collect();
    drain(&mut c, 64 * 1024);
    assert!(c.touched.is_empty());
    assert!(c.fresh.is_empty() && c.busy.is_empty());
    // One stream of 5,000 gets a byte: the poll sees that one.
    c.send(ids[4_321], b"x").unwrap();
    assert_eq!(c.touched.len(), 1);
    let frames = drain(&mut c, 64 * 1024);
    assert_eq!(data_streams(&frames), vec![ids[4_321]]);
    assert!(c.touched.is_empty() && c.fresh.is_empty() && c.busy.is_empty());
}

#[test]
fn opens_go_out_in_id_order_before_any_data() {
    let mut c = core();
    let ids: Vec<StreamId> = (0..5).map(|_| open(&mut c)).collect();
    c.send(ids[3], b"late data first").unwrap();
    let frames = drain(&mut c, 64 * 1024);
    let opens: Vec<StreamId> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Open { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(opens, ids);
    let first_data = frames.iter().position(|f| matches!(f, Frame::Data { .. }));
    let last_open = frames.iter().rposition(|f| matches!(f, Frame::Open { .. }));
    assert!(last_open < first_data);
}

#[test]
fn a_writer_with_little_room_gets_frames_no_bigger_than_its_room() {
    let mut c = core();
    let bulk = open(&mut c);
    drain(&mut c, 64 * 1024);
    c.send(bulk, &vec![1u8; 256 * 1024]).unwrap();
    c.set_tunnel_room(T, 5_000);
    let tx = c.poll_transmit(64 * 1024).unwrap();
    assert!(tx.bytes.len() <= 5_000 + 1024 + 64, "{}", tx.bytes.len());
    let (f, _) = wire::decode(&tx.bytes, 1 << 20).unwrap();
    assert!(matches!(f, Frame::Data { ref payload, .. } if payload.len() <= 5_000));
    c.set_tunnel_room(T, 0);
    assert!(c.poll_transmit(64 * 1024).is_none());
}

#[test]
fn datagrams_go_before_bulk_data_but_never_starve_it() {
    let mut c = core();
    let bulk = open(&mut c);
    let flow = c
        .open_stream(
            StreamKind::Datagram,
            ServiceName::new("dns").unwrap(),
            None,
            wire::Codec::None,
        )
        .unwrap();
    drain(&mut c, 64 * 1024);
    c.send(bulk, &vec![1u8; 256 * 1024]).unwrap();
    for _ in 0..200 {
        c.send_datagram(flow, vec![9u8; 100]).unwrap();
    }
    c.set_tunnel_room(T, 8_000);
    let tx = c.poll_transmit(64 * 1024).unwrap();
    let mut at = 0;
    let (mut dgram, mut data) = (0, 0);
    while at < tx.bytes.len() {
        let (f, n) = wire::decode(&tx.bytes[at..], 1 << 20).unwrap();
        match f {
            Frame::Datagram { .. } => dgram += n,
            Frame::Data { .. } => data += n,
            _ => {}
        }
        at += n;
    }
    assert!(dgram > 0 && data > 0, "datagrams {dgram}, data {data}");
    assert!(dgram <= 4_000 + 200, "datagrams take at most half: {dgram}");
}
