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
