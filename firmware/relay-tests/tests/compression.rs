//! Per-service compression between box and relay, with the real binaries:
//! exact bytes across planned and sudden switches (zstd and lz4), fewer
//! bytes on the tunnel for text, and a mismatch refused with its reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::Duration;

use relay_tests::apps::{echo_data, echo_server, echo_transfer, json_lines};
use relay_tests::bed::{Bed, ctl, free_port, wait_established};
use relay_tests::cutter::Cutter;
use relay_tests::raw::Raw;
use wire::{BoxId, Codec, Frame, ResetCode, ServiceName, StreamId, StreamKind, VERSION};

const SESSION: &str =
    "[session]\nkeepalive_ms = 200\ninactivity_timeout_ms = 1500\nswitch_timeout_ms = 10000\n";

/// A box and a relay (through a cutter) with the echo service twice: `zstd`
/// compressed with zstd, `lz4` with lz4, each as `box`/`relay` configure it.
async fn bed(
    name: &str,
    box_zstd: &str,
    relay_zstd: &str,
) -> (Bed, Cutter, std::path::PathBuf, SocketAddr, SocketAddr) {
    let echo = echo_server().await;
    let mut bed = Bed::new(name);
    let sport = free_port();
    bed.snaptd(
        "snaptd",
        sport,
        "",
        &format!(
            "[[service]]\nname = \"zstd\"\ntarget = \"{echo}\"\ncompress = \"{relay_zstd}\"\n\
             [[service]]\nname = \"lz4\"\ntarget = \"{echo}\"\ncompress = \"lz4\"\n{SESSION}"
        ),
    );
    let cutter = Cutter::start(format!("127.0.0.1:{sport}").parse().unwrap()).await;
    let (p1, p2) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"{}\"\nserver_name = \"127.0.0.1\"\n\
             [[uplink]]\nname = \"a\"\nsource = \"127.0.0.2\"\n[[uplink]]\nname = \"b\"\nsource = \"127.0.0.3\"\n\
             [[service]]\nname = \"zstd\"\nlisten = \"127.0.0.1:{p1}\"\ncompress = \"{box_zstd}\"\n\
             [[service]]\nname = \"lz4\"\nlisten = \"127.0.0.1:{p2}\"\ncompress = \"lz4\"\n{SESSION}",
            cutter.addr
        ),
    );
    wait_established(&control);
    (
        bed,
        cutter,
        control,
        format!("127.0.0.1:{p1}").parse().unwrap(),
        format!("127.0.0.1:{p2}").parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_services_keep_every_byte_across_planned_and_sudden_switches() {
    let (bed, cutter, control, zstd, lz4) = bed("compress", "zstd", "zstd").await;
    let before = ctl(&control, &["status"]).unwrap()["sites"][0].clone();
    // JSON in small writes (interactive API traffic), JSON in bulk, and
    // incompressible bytes, on both codecs, all at once.
    let pace = Duration::from_millis(2);
    let tasks = vec![
        tokio::spawn(echo_data(zstd, json_lines(1, 6 << 20), 1400, pace)),
        tokio::spawn(echo_data(zstd, json_lines(2, 300_000), 90, pace)),
        tokio::spawn(echo_transfer(zstd, 3, 2 << 20, 16 * 1024, pace)),
        tokio::spawn(echo_data(lz4, json_lines(4, 6 << 20), 1400, pace)),
        tokio::spawn(echo_transfer(lz4, 5, 2 << 20, 16 * 1024, pace)),
    ];
    let c = control.clone();
    let cut = cutter.clone();
    tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(400));
        ctl(&c, &["switch", "b"]).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        // Sudden: every tunnel cut with RST, then resumption by offsets.
        cut.reset_all();
        wait_established(&c);
        std::thread::sleep(Duration::from_millis(400));
        ctl(&c, &["switch", "a"]).unwrap();
    })
    .await
    .unwrap();
    let mut plain = 0u64;
    for t in tasks {
        let r = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", bed.log("box-1")));
        plain += r.bytes as u64;
    }
    let site = ctl(&control, &["status"]).unwrap()["sites"][0].clone();
    let sent = site["bytes_sent"].as_u64().unwrap() - before["bytes_sent"].as_u64().unwrap();
    let received =
        site["bytes_received"].as_u64().unwrap() - before["bytes_received"].as_u64().unwrap();
    println!(
        "{plain} bytes each way; on the tunnel {sent} sent, {received} received ({:.2}x, {:.2}x); {} switches",
        sent as f64 / plain as f64,
        received as f64 / plain as f64,
        site["switches"]
    );
    // 12.3 MB of JSON and 4 MiB of noise: well under 3/4 of it on the wire.
    assert!(sent * 4 < plain * 3, "sent {sent} of {plain}");
    assert!(received * 4 < plain * 3, "received {received} of {plain}");
    assert!(site["switches"].as_u64().unwrap() >= 2, "{site}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_mismatch_is_refused_with_its_reason_and_nothing_else_suffers() {
    // The box compresses `zstd` with zstd, the relay expects it plain.
    let (bed, _cutter, control, zstd, lz4) = bed("mismatch", "zstd", "none").await;
    let refused = echo_data(zstd, json_lines(1, 10_000), 1000, Duration::ZERO).await;
    assert!(refused.is_err(), "a mismatched stream must not carry bytes");
    // The other service, and the session, are untouched.
    echo_data(lz4, json_lines(2, 200_000), 1000, Duration::ZERO)
        .await
        .unwrap();
    let log = bed.log("snaptd");
    assert!(
        log.contains("the box compresses service zstd with zstd, this relay expects none"),
        "{log}"
    );
    let site = &ctl(&control, &["status"]).unwrap()["sites"][0];
    assert_eq!(site["state"], "Established", "{site}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_compressed_stream_is_reset_and_the_session_goes_on() {
    // A hand-driven box: one compressed stream with a record that lies about
    // its size, one with garbage, one honest (compressed here with the same
    // codec): only the first two are reset, with the reason.
    let echo = echo_server().await;
    let mut bed = Bed::new("corrupt");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"api\"\ntarget = \"{echo}\"\ncompress = \"zstd\"\n{SESSION}"
        ),
    );
    bed.pki(&["box", "box-9"]);
    let mut raw = Raw::connect(
        &bed.path("pki"),
        "box-9",
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .await
    .unwrap();
    raw.send(&Frame::Connect {
        version: VERSION,
        window: 256 * 1024,
        keepalive_ms: 200,
        incarnation: 1,
        box_id: BoxId::new("box-9").unwrap(),
    })
    .await
    .unwrap();
    assert!(matches!(
        raw.recv(Duration::from_secs(5)).await,
        Some(Frame::ConnectAck { .. })
    ));
    let open = |i| Frame::Open {
        stream: StreamId::new(wire::Role::Box, i).unwrap(),
        kind: StreamKind::Stream,
        service: ServiceName::new("api").unwrap(),
        dest: None,
        codec: Codec::Zstd,
    };
    let data = |i, payload: Vec<u8>| Frame::Data {
        stream: StreamId::new(wire::Role::Box, i).unwrap(),
        offset: 0,
        payload,
    };
    // 0: a record declaring 1 MiB of application bytes.
    // 1: a well-formed header over bytes that are no zstd frame.
    // 2: honest.
    let mut c = stream_codec::Compressor::new(Codec::Zstd).unwrap().unwrap();
    let text = json_lines(7, 5000);
    let honest = c.compress(&text).unwrap();
    for f in [
        open(0),
        data(0, vec![0x80, 0x80, 0x01, 0x80, 0x80, 0x40, 1, 2, 3]),
        open(1),
        data(
            1,
            vec![
                20, 100, 0x13, 0x37, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
            ],
        ),
        open(2),
        data(2, honest),
    ] {
        raw.send(&f).await.unwrap();
    }
    let mut resets = Vec::new();
    let mut back = Vec::new();
    let mut d = stream_codec::Decompressor::new(Codec::Zstd)
        .unwrap()
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while (resets.len() < 2 || back.len() < text.len()) && tokio::time::Instant::now() < until {
        match raw.recv(Duration::from_millis(500)).await {
            Some(Frame::Reset {
                stream,
                code,
                reason,
            }) => resets.push((stream.index(), code, reason)),
            Some(Frame::Data {
                stream, payload, ..
            }) if stream.index() == 2 => {
                d.push(&payload);
                while let Some((plain, _)) = d.next_record().unwrap() {
                    back.extend(plain);
                }
            }
            Some(Frame::Ping { nonce }) => raw.send(&Frame::Pong { nonce }).await.unwrap(),
            Some(_) | None => {}
        }
    }
    resets.sort_by_key(|r| r.0);
    assert_eq!(resets.len(), 2, "{resets:?}");
    for (i, (stream, code, reason)) in resets.iter().enumerate() {
        assert_eq!(*stream, i as u32);
        assert_eq!(*code, ResetCode::ProtocolViolation, "{reason}");
        assert!(reason.contains("compressed stream"), "{reason}");
    }
    assert_eq!(back, text, "the honest stream's echo, decompressed");
}
