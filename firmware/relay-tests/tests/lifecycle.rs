//! Daemon behaviour: graceful shutdown drains open streams, then
//! DISCONNECT; a crashed and restarted snaptd costs the open streams (their
//! state died with it) but not the box; configuration errors name the key
//! and stop the start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, bin, ctl, free_port, wait_established, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_streams_finish_then_disconnects() {
    let echo = echo_server().await;
    let mut bed = Bed::new("shutdown");
    let port = free_port();
    bed.snaptd(
        "snaptd",
        port,
        "",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n"),
    );
    let lport = free_port();
    let control = bed.cnaptd_with(
        "box-1",
        "shutdown_grace_ms = 8000",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n"
        ),
    );

    wait_established(&control);
    let svc: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    // 2 s of paced traffic; SIGTERM arrives after 0.3 s.
    let t = tokio::spawn(echo_transfer(
        svc,
        31,
        400 * 100,
        100,
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let box_daemon = bed.daemons.iter().position(|d| d.name == "box-1").unwrap();
    let pid = bed.daemons[box_daemon].pid();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    t.await
        .unwrap()
        .unwrap_or_else(|e| panic!("stream cut by the shutdown: {e}"));
    wait_until(Duration::from_secs(10), "cnaptd to exit", || {
        bed.daemons[box_daemon].exited()
    });
    let took = start.elapsed();
    assert!(bed.log("box-1").contains("draining before shutdown"));
    wait_until(
        Duration::from_secs(5),
        "snaptd to see the DISCONNECT",
        || {
            bed.log("snaptd")
                .contains("box disconnected: cnaptd shutting down")
        },
    );
    // New connections are refused while draining and after.
    assert!(tokio::net::TcpStream::connect(svc).await.is_err());
    println!("cnaptd drained and exited {took:?} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_snaptd_costs_the_open_streams_but_the_box_comes_back() {
    let echo = echo_server().await;
    let mut bed = Bed::new("snapt-restart");
    let port = free_port();
    let services = format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n");
    bed.snaptd("snaptd", port, "", &services);
    let lport = free_port();
    let control = bed.cnaptd(
        "box-1",
        &format!(
            "[[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:{port}\"\nserver_name = \"127.0.0.1\"\n[[uplink]]\nname = \"a\"\n[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:{lport}\"\n"
        ),
    );
    wait_established(&control);
    let before = ctl(&control, &["status"]).unwrap()["sites"][0]["session_id"].clone();
    assert!(before.is_u64(), "no session id in the status: {before}");
    let svc: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    // 10 s of paced traffic; snaptd is killed (SIGKILL: a crash, no
    // DISCONNECT) after 0.3 s and started again on the same port.
    let t = tokio::spawn(echo_transfer(
        svc,
        41,
        2_000 * 100,
        100,
        Duration::from_millis(5),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let i = bed.daemons.iter().position(|d| d.name == "snaptd").unwrap();
    drop(bed.daemons.remove(i));
    let _ = std::fs::remove_file(bed.path("snaptd.sock"));
    bed.snaptd("snaptd", port, "", &services);

    // The new snaptd does not know the session: the box's resumption is
    // refused, the open stream is reset (not left hanging), …
    let cut = tokio::time::timeout(Duration::from_secs(30), t)
        .await
        .expect("the open stream neither finished nor failed within 30 s")
        .unwrap();
    assert!(
        cut.is_err(),
        "the stream survived a server that lost its state"
    );
    // … and the box opens a new session on its own, which carries new
    // streams.
    wait_established(&control);
    let after = ctl(&control, &["status"]).unwrap()["sites"][0]["session_id"].clone();
    assert_ne!(before, after, "expected a new session");
    let ok = echo_transfer(svc, 42, 64 * 1024, 4096, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("new stream after the restart: {e}"));
    assert_eq!(ok.bytes, 64 * 1024);
    println!(
        "snaptd restart: open stream ended with {:?}; new session {after}",
        cut.err()
    );
}

#[test]
fn a_bad_config_names_the_key_and_stops_the_daemon() {
    let bed = Bed::new("badconfig");
    let conf = bed.path("cnapt.toml");
    let pki = bed.path("pki");
    std::fs::write(
        &conf,
        format!(
            "box_id = \"box-1\"\n[tls]\nca = \"{p}/ca.pem\"\ncert = \"{p}/servers/snapt.pem\"\nkey = \"{p}/servers/snapt.key\"\n\
             [[snapt]]\nname = \"main\"\naddress = \"127.0.0.1:1\"\nserver_name = \"x\"\n[[uplink]]\nname = \"a\"\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:1\"\nsnapt = \"lab\"\n",
            p = pki.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin("cnaptd"))
        .arg("-c")
        .arg(&conf)
        .arg("--check")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("service[0].snapt") && err.contains("no [[snapt]] named \"lab\""),
        "{err}"
    );
    std::fs::write(&conf, "box_id = \"box-1\"\nbogus = 1\n").unwrap();
    let out = std::process::Command::new(bin("cnaptd"))
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bogus"), "{err}");
}
