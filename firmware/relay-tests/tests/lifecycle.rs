//! Daemon behaviour: graceful shutdown drains open streams, then
//! DISCONNECT; configuration errors name the key and stop the start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_tests::apps::{echo_server, echo_transfer};
use relay_tests::bed::{Bed, bin, free_port, wait_established, wait_until};

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
