//! cnaptd's link monitor and policy routing against the real kernel (a
//! namespace of their own; needs root): a Wi-Fi-like and a wired WAN
//! uplink, both with a default route in the main table. Each gets its own
//! table (the gateway learnt from the main table) and a source rule, so
//! traffic from the wired address leaves through eth1 although the main
//! table prefers wlan0; the wired WAN's carrier loss removes its table and
//! rule, its return restores them, and stopping removes everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use box_os::linkmon::{self, LinkEvent};
use box_os::routing::{self, Planner};

struct Ns(Vec<String>);

impl Drop for Ns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(ns: &str, args: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `ip -n ns args` (at most 5 s) until `want` holds.
fn until(ns: &str, args: &str, what: &str, want: impl Fn(&str) -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ip(ns, args);
        if want(&out) {
            return;
        }
        assert!(Instant::now() < end, "{what}: `ip {args}` says\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn uplinks() -> Vec<config::Uplink> {
    #[derive(serde::Deserialize)]
    struct U {
        uplink: Vec<config::Uplink>,
    }
    let u: U = toml::from_str(
        "[[uplink]]\nname = \"wifi\"\ninterface = \"wlan0\"\n\
         [[uplink]]\nname = \"cable\"\ninterface = \"eth1\"\n",
    )
    .unwrap();
    u.uplink
}

#[test]
fn each_uplink_gets_a_table_and_source_rule_that_follow_its_link() {
    assert!(
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))),
        "this test needs root (network namespaces); run it through scripts/test.sh"
    );
    let (bx, isp) = (
        format!("cbxrt{}-box", std::process::id()),
        format!("cbxrt{}-isp", std::process::id()),
    );
    let mut guard = Ns(Vec::new());
    for n in [&bx, &isp] {
        assert!(
            Command::new("ip")
                .args(["netns", "add", n])
                .status()
                .unwrap()
                .success()
        );
        guard.0.push(n.clone());
    }
    for (dev, peer, net) in [
        ("wlan0", "w-isp", "198.18.50"),
        ("eth1", "e-isp", "198.18.51"),
    ] {
        ip(
            &bx,
            &format!("link add {dev} type veth peer name {peer} netns {isp}"),
        );
        ip(&bx, &format!("addr add {net}.2/24 dev {dev}"));
        ip(&isp, &format!("addr add {net}.1/24 dev {peer}"));
        ip(&isp, &format!("link set {peer} up"));
        ip(&bx, &format!("link set {dev} up"));
    }
    ip(
        &bx,
        "route add default via 198.18.50.1 dev wlan0 metric 100",
    );
    ip(&bx, "route add default via 198.18.51.1 dev eth1 metric 200");

    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let ns_path = format!("/var/run/netns/{bx}");
    let box_side = std::thread::spawn(move || {
        let f = std::fs::File::open(ns_path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let ups = uplinks();
            let mut planner = Planner::new(
                config::Routing {
                    enabled: true,
                    table_base: 100,
                    rule_priority_base: 1000,
                },
                &ups,
            );
            let (ctx, crx) = tokio::sync::mpsc::unbounded_channel();
            let task = routing::spawn(crx, planner.clear_all()).unwrap();
            let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel::<LinkEvent>();
            let _mon = linkmon::spawn(vec!["wlan0".into(), "eth1".into()], etx)
                .await
                .unwrap();
            // Until the test says stop (bounded by the test's own waits).
            let end = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                if stop_rx.try_recv().is_ok() || tokio::time::Instant::now() > end {
                    break;
                }
                if let Ok(Some(ev)) =
                    tokio::time::timeout(Duration::from_millis(50), erx.recv()).await
                {
                    for c in planner.observe(&ev) {
                        ctx.send(c).unwrap();
                    }
                }
            }
            drop(ctx);
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
        });
    });

    until(&bx, "rule show", "both rules", |r| {
        r.contains("1000:\tfrom 198.18.50.2 lookup 100")
            && r.contains("1001:\tfrom 198.18.51.2 lookup 101")
    });
    until(&bx, "route show table 101", "wired table", |r| {
        r.contains("default via 198.18.51.1 dev eth1")
    });
    // The main table prefers wlan0; from the wired address, eth1 is used.
    assert!(ip(&bx, "route get 198.18.30.1").contains("dev wlan0"));
    assert!(ip(&bx, "route get 198.18.30.1 from 198.18.51.2").contains("dev eth1"));
    // The cable is pulled at the site router: carrier lost.
    ip(&isp, "link set e-isp down");
    until(&bx, "rule show", "wired rule removed", |r| {
        !r.contains("lookup 101")
    });
    until(
        &bx,
        "route show table 101",
        "wired table emptied",
        str::is_empty,
    );
    assert!(
        ip(&bx, "rule show").contains("lookup 100"),
        "Wi-Fi untouched"
    );
    // Plugged in again.
    ip(&isp, "link set e-isp up");
    until(&bx, "rule show", "wired rule back", |r| {
        r.contains("from 198.18.51.2 lookup 101")
    });
    until(&bx, "route show table 101", "wired table back", |r| {
        r.contains("dev eth1")
    });
    // Stopping removes what it made.
    stop_tx.send(()).unwrap();
    box_side.join().unwrap();
    let rules = ip(&bx, "rule show");
    assert!(
        !rules.contains("lookup 100") && !rules.contains("lookup 101"),
        "{rules}"
    );
    assert!(ip(&bx, "route show table 100").is_empty());
}
