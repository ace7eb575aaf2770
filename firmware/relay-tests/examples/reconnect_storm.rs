//! A fleet arriving at once (issue 17, item 4): BOXES hand-driven boxes,
//! each with its own certificate and real TLS, start their first attempt
//! within 200 ms of each other — what a relay restart looks like when
//! every box's back-off (0.2 s base, full jitter) starts together — and
//! each retries as cnaptd does: after a REFUSED with a wait, that wait plus
//! up to a quarter; after a closed or failed connection, a jittered
//! back-off doubling from 0.2 s to 5 s. Run once against snaptd with its
//! shipped limits and once with them lifted, in the same run; printed:
//! time until every box has its session, attempts, refusals, connections
//! closed before their handshake, peak handshakes a second (client side,
//! 100 ms windows), snaptd's CPU seconds. Then the same crowd against a
//! fleet of three snaptd behind HAProxy (SNI routing, shipped limits):
//! each box picks its relay as cnaptd does (`box_driver`'s rendezvous hash
//! over the relay set) and names it in the SNI — a restart of every relay
//! of the fleet at once; printed beside the single relay's row, with each
//! relay's share and the CPU of the relays and of the router.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p relay-tests --example reconnect_storm [BOXES]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_tests::apps::echo_server;
use relay_tests::bed::{Bed, free_port, snapt_ctl};
use relay_tests::crowd::{Tally, Target, arrive, session};
use relay_tests::procinfo::{cpu_seconds, rss_mib};
use relay_tests::raw::Raw;
use relay_tests::router::{RELAYS, start_fleet};
use wire::BoxId;

/// A box whose relay was upgraded: once its tunnel is closed it resumes
/// its session (`crowd::session`); true once it has.
async fn resume_box(
    t: Target,
    (mut old, sid): (Raw, u64),
    start: Instant,
    tally: Arc<Mutex<Tally>>,
) -> bool {
    if !old.closed_within(Duration::from_secs(30)).await {
        return false;
    }
    let mut incarnation = 1;
    match session(&t, Some((sid, 0)), &mut incarnation, &tally, start).await {
        Some((raw, _, resumed)) => {
            // Held until the end of the run, as a live box would.
            std::mem::forget(raw);
            resumed
        }
        None => false,
    }
}

/// The crowd holds its sessions on one relay, which is then upgraded
/// (`cboxctl snapt upgrade`): the sessions move to the new process and
/// every box resumes its own.
async fn upgrade_storm(bed: &mut Bed, ids: &[String]) {
    let echo = echo_server().await;
    let port = free_port();
    let ctl = bed.snaptd(
        "snaptd-upgrade",
        port,
        "max_boxes = 100000",
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[session]\ninactivity_timeout_ms = 120000\n"),
    );
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let old_pid = bed.daemons.last().map(|d| d.pid()).unwrap_or(0);
    let idle_rss = rss_mib(old_pid);
    let arrivals = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        set.spawn(arrive(
            target(bed, id, snapt, "127.0.0.1"),
            start,
            arrivals.clone(),
        ));
    }
    let mut kept = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(b)) = r {
            kept.push(b);
        }
    }
    let old_rss = rss_mib(old_pid);
    // Which box each session belongs to: asked from the relay itself.
    let st = snapt_ctl(&ctl, &["status"]).unwrap_or_default();
    let owner: std::collections::HashMap<u64, String> = st["boxes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| Some((b["session_id"].as_u64()?, b["box_id"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut resumes = tokio::task::JoinSet::new();
    for (raw, sid) in kept {
        let Some(id) = owner.get(&sid).cloned() else {
            continue;
        };
        resumes.spawn(resume_box(
            target(bed, &id, snapt, "127.0.0.1"),
            (raw, sid),
            start,
            tally.clone(),
        ));
    }
    let c = ctl.clone();
    let reply = tokio::task::spawn_blocking(move || snapt_ctl(&c, &["upgrade"]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("upgrade: {e}"));
    let new_pid = reply["successor_pid"].as_u64().unwrap_or(0) as u32;
    bed.descendants.push(new_pid);
    let cpu0 = cpu_seconds(new_pid);
    let mut resumed = 0;
    while let Some(r) = resumes.join_next().await {
        resumed += usize::from(r.unwrap_or(false));
    }
    let cpu = cpu_seconds(new_pid) - cpu0;
    let st = snapt_ctl(&ctl, &["status"]).unwrap_or_default();
    row(
        &format!(
            "upgrade of the relay holding them (handover {} ms, of which stopping {} ms)",
            reply["handover_ms"], reply["stopped_ms"]
        ),
        &tally,
        resumed,
        ids.len(),
        &st["handshakes_shed"].to_string(),
        &format!("{cpu:.2}"),
        rss_mib(new_pid) - idle_rss,
    );
    println!(
        "\nupgrade: {} sessions handed over; old process {old_rss:.1} MiB, new one {:.1} MiB with the same sessions",
        reply["sessions"],
        rss_mib(new_pid)
    );
}

/// Where box `id` of the crowd goes.
fn target(bed: &Bed, id: &str, addr: SocketAddr, server: &str) -> Target {
    Target {
        pki: bed.path("pki"),
        id: id.to_owned(),
        addr,
        server: server.to_owned(),
    }
}

async fn storm(bed: &mut Bed, label: &str, top: &str, ids: &[String]) {
    let echo = echo_server().await;
    let port = free_port();
    let name = format!("snaptd-{}", label.split_whitespace().next().unwrap_or("x"));
    let ctl = bed.snaptd(
        &name,
        port,
        &format!("max_boxes = 100000\n{top}"),
        &format!("[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[session]\ninactivity_timeout_ms = 120000\n"),
    );
    let pid = bed.daemons.last().map(|d| d.pid()).unwrap_or(0);
    let snapt: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let cpu0 = cpu_seconds(pid);
    let rss0 = rss_mib(pid);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        set.spawn(arrive(
            target(bed, id, snapt, "127.0.0.1"),
            start,
            tally.clone(),
        ));
    }
    let mut kept = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(raw)) = r {
            kept.push(raw);
        }
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let rss = rss_mib(pid) - rss0;
    let st = snapt_ctl(&ctl, &["status"]).unwrap_or_default();
    row(
        label,
        &tally,
        kept.len(),
        ids.len(),
        &st["handshakes_shed"].to_string(),
        &format!("{cpu:.2}"),
        rss,
    );
    drop(kept);
    if let Some(d) = bed.daemons.last_mut() {
        d.terminate(Duration::from_secs(5));
    }
}

/// One row of the table.
fn row(
    label: &str,
    tally: &Mutex<Tally>,
    kept: usize,
    boxes: usize,
    shed: &str,
    cpu: &str,
    rss_mib: f64,
) {
    let t = tally.lock().unwrap();
    let (median, all) = t.median_and_max();
    let peak = t.peak_attempts_per_s();
    println!(
        "| {label} | {kept}/{boxes} | {:.2} s | {:.2} s | {} | {} | {} | {shed} | {peak} | {cpu} | {:.1} MiB ({:.1} KiB per box, {:.0} boxes per GiB) |",
        median.as_secs_f64(),
        all.as_secs_f64(),
        t.attempts.len(),
        t.busy,
        t.failed,
        rss_mib,
        rss_mib * 1024.0 / kept.max(1) as f64,
        kept as f64 / (rss_mib / 1024.0).max(1e-9),
    );
    if let Some(r) = &t.reason {
        eprintln!("{label}: first refusal: {r}");
    }
}

/// The crowd against three relays behind HAProxy, each box on the relay
/// cnaptd's rendezvous hash gives it.
async fn fleet_storm(bed: &mut Bed, ids: &[String]) {
    let echo = echo_server().await;
    let fleet = start_fleet(
        bed,
        "max_boxes = 100000",
        &format!(
            "[[service]]\nname = \"echo\"\ntarget = \"{echo}\"\n[session]\ninactivity_timeout_ms = 120000\n"
        ),
    );
    let pids: Vec<u32> = fleet
        .daemons
        .iter()
        .map(|i| bed.daemons[*i].pid())
        .collect();
    let router_pid = bed.daemons[fleet.router_daemon].pid();
    let names: Vec<String> = RELAYS.iter().map(|r| (*r).to_string()).collect();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let rss0: f64 = pids.iter().map(|p| rss_mib(*p)).sum();
    let router0 = cpu_seconds(router_pid);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut planned = [0usize; 3];
    for id in ids {
        let mut set_of = box_driver::relays::RelaySet::new(names.clone());
        let relay = set_of
            .relay(id, std::time::Instant::now())
            .unwrap_or(RELAYS[0])
            .to_string();
        if let Some(i) = RELAYS.iter().position(|r| *r == relay) {
            planned[i] += 1;
        }
        set.spawn(arrive(
            target(bed, id, fleet.router, &relay),
            start,
            tally.clone(),
        ));
    }
    let mut kept = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(raw)) = r {
            kept.push(raw);
        }
    }
    let relays_cpu: f64 = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c)| cpu_seconds(*p) - c)
        .sum();
    let router_cpu = cpu_seconds(router_pid) - router0;
    let rss = pids.iter().map(|p| rss_mib(*p)).sum::<f64>() - rss0;
    let mut shed = 0u64;
    let mut held = Vec::new();
    for c in &fleet.controls {
        let st = snapt_ctl(c, &["status"]).unwrap_or_default();
        shed += st["handshakes_shed"].as_u64().unwrap_or(0);
        held.push(st["boxes"].as_array().map_or(0, Vec::len));
    }
    row(
        "fleet: 3 relays behind HAProxy, shipped limits",
        &tally,
        kept.len(),
        ids.len(),
        &shed.to_string(),
        &format!("{relays_cpu:.2} (+ HAProxy {router_cpu:.2})"),
        rss,
    );
    println!(
        "\nsessions per relay (planned by the hash / held): {}",
        RELAYS
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{r} {} / {}", planned[i], held[i]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(kept);
    for i in fleet.daemons.iter().chain([&fleet.router_daemon]) {
        bed.daemons[*i].terminate(Duration::from_secs(5));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let boxes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let mut bed = Bed::new("storm");
    let pki = tls::pki::Pki::new(bed.path("pki"));
    let started = Instant::now();
    let ids: Vec<String> = (0..boxes).map(|i| format!("box-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        pki.issue_box(&BoxId::new(id).unwrap(), 30).unwrap();
        if (i + 1) % 100 == 0 {
            eprintln!("issued {} of {boxes} box certificates", i + 1);
        }
    }
    eprintln!("certificates in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "{boxes} boxes arriving within 200 ms (a relay restart), loopback, 2 cores shared by the boxes and snaptd\n"
    );
    println!(
        "| snaptd | sessions | median | all back | TLS attempts | refused Busy | closed or failed | shed by snaptd | peak attempts/s | snaptd CPU s | relay memory for the sessions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    storm(&mut bed, "shipped limits (1000/s, 64 handshakes)", "", &ids).await;
    storm(
        &mut bed,
        "limits lifted",
        "new_sessions_per_s = 1000000\nmax_handshakes = 4096",
        &ids,
    )
    .await;
    storm(
        &mut bed,
        "first default tried (200/s, 64 handshakes)",
        "new_sessions_per_s = 200",
        &ids,
    )
    .await;
    storm(
        &mut bed,
        "tight limits (50/s, 8 handshakes)",
        "new_sessions_per_s = 50\nmax_handshakes = 8",
        &ids,
    )
    .await;
    fleet_storm(&mut bed, &ids).await;
    upgrade_storm(&mut bed, &ids).await;
}
