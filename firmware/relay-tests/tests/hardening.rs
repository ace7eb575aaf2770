//! Everyday use and hostile peers, with the real binaries on loopback: what
//! must keep working after a day of phones, and what no peer may exhaust,
//! bypass or silently truncate (issue 14's defects, one test each).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use relay_tests::apps::{download, download_server};
use relay_tests::bed::{Bed, free_port, wait_established};

/// A box with one SNAPT on `port` and `body` appended.
fn box_conf(port: u16, body: &str) -> String {
    format!(
        "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n{body}"
    )
}

// ---- D10: a reset stays a reset -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_resets_its_connection_reaches_the_phone_as_a_reset() {
    let aborting = download_server(3, 4 << 20, Some(300_000)).await;
    let complete = download_server(4, 1 << 20, None).await;
    let mut bed = Bed::new("d10-reset");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!(
            "[[service]]\nname = \"abort\"\ntarget = \"{aborting}\"\n[[service]]\nname = \"whole\"\ntarget = \"{complete}\"\n"
        ),
    );
    let (l1, l2) = (free_port(), free_port());
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!(
                "[[service]]\nname = \"abort\"\nlisten = \"127.0.0.1:{l1}\"\n[[service]]\nname = \"whole\"\nlisten = \"127.0.0.1:{l2}\"\n"
            ),
        ),
    );
    wait_established(&control);
    let cut: SocketAddr = format!("127.0.0.1:{l1}").parse().unwrap();
    let whole: SocketAddr = format!("127.0.0.1:{l2}").parse().unwrap();

    // The server resets after 300,000 bytes: the phone must see an error,
    // never an end of stream that makes the truncated download look done.
    let d = download(cut, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        d.error,
        Some(ErrorKind::ConnectionReset),
        "the phone saw {d:?} for a download the server reset"
    );
    assert!(d.bytes <= 300_000, "more bytes than were sent: {d:?}");
    // A download that ends normally still ends with FIN and every byte.
    let d = download(whole, Duration::from_secs(20)).await.unwrap();
    assert_eq!((d.bytes, d.error), (1 << 20, None), "normal end: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cut_by_a_lost_session_reach_the_phone_as_resets() {
    // A download far longer than the test: it can only end by the cut.
    let endless = download_server(5, usize::MAX, None).await;
    let mut bed = Bed::new("d10-session");
    let port = free_port();
    let services = format!("[[service]]\nname = \"dl\"\ntarget = \"{endless}\"\n");
    bed.snaptd("snaptd", port, "", &services);
    let lport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &box_conf(
            port,
            &format!("[[service]]\nname = \"dl\"\nlisten = \"127.0.0.1:{lport}\"\n"),
        ),
    );
    wait_established(&control);
    let svc: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    let phone = tokio::spawn(download(svc, Duration::from_secs(40)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // snaptd crashes (SIGKILL: no DISCONNECT) and comes back without the
    // session: the box's resumption is refused and the stream is lost.
    let i = bed.daemons.iter().position(|d| d.name == "snaptd").unwrap();
    drop(bed.daemons.remove(i));
    let _ = std::fs::remove_file(bed.path("snaptd.sock"));
    bed.snaptd("snaptd", port, "", &services);
    let d = phone.await.unwrap().unwrap();
    assert!(d.bytes > 0, "nothing arrived before the crash: {d:?}");
    assert_eq!(
        d.error,
        Some(ErrorKind::ConnectionReset),
        "a stream lost with its session reached the phone as {d:?}"
    );
}
