//! Application-visible stall of each kind of handover, measured in the
//! deterministic world (virtual time, so the figures are exact and
//! repeatable). A paced application writes a 100-byte record every 5 ms in
//! both directions; the stall is the worst record delay minus the path's
//! one-way latency, i.e. how much later than normal a record arrived.
//!
//!     cargo run --release -p session --example handover_stall
//!
//! Baseline in the same run: the same stream without any switch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::large_enum_variant
)]

#[path = "../tests/world/mod.rs"]
mod world;

use std::time::Duration;

use world::{StreamPlan, World, ms, test_config};

#[derive(Clone, Copy)]
enum Event {
    None,
    Planned,
    CutRst,
    Blackhole,
}

/// Returns (stall, bytes replayed by both sides).
fn run(latency_ms: u64, event: Event) -> (Duration, u64) {
    let mut w = World::new(1, test_config(), ms(latency_ms));
    let (plan, pace) = StreamPlan::paced(0, 600, 5);
    w.plan_paced_stream(plan, pace);
    w.run_for(ms(1000));
    match event {
        Event::None => {}
        Event::Planned => w.planned_switch(),
        Event::CutRst => w.cut(500, false),
        Event::Blackhole => w.cut(500, true),
    }
    w.run_for(ms(20_000));
    w.assert_all_complete();
    let s = &w.streams[0];
    let worst = s.up.max_record_delay.max(s.down.max_record_delay);
    let replayed = w.box_session(0).stats().bytes_replayed
        + w.servers[0]
            .sessions()
            .map(|s| s.stats().bytes_replayed)
            .sum::<u64>();
    (worst.saturating_sub(ms(latency_ms)), replayed)
}

fn main() {
    let cfg = test_config();
    println!(
        "handover stall, virtual time; keepalive {:?}, inactivity timeout {:?}",
        cfg.keepalive, cfg.inactivity_timeout
    );
    println!(
        "{:>8} {:>8} | {:>9} | {:>9} {:>7} | {:>9} {:>7} {:>9} | {:>9} {:>7}",
        "one-way",
        "RTT",
        "baseline",
        "planned",
        "/RTT",
        "RST cut",
        "/RTT",
        "replayed",
        "blackhole",
        "/RTT"
    );
    for latency in [2u64, 5, 20, 40, 80] {
        let rtt = ms(2 * latency);
        let ratio = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
        let (base, _) = run(latency, Event::None);
        let (planned, planned_replay) = run(latency, Event::Planned);
        let (cut, cut_replay) = run(latency, Event::CutRst);
        let (hole, _) = run(latency, Event::Blackhole);
        assert_eq!(planned_replay, 0, "a planned switch resends nothing");
        println!(
            "{:>6}ms {:>6}ms | {:>7.1}ms | {:>7.1}ms {:>7.2} | {:>7.1}ms {:>7.2} {:>8}B | {:>7.1}ms {:>7.2}",
            latency,
            rtt.as_millis(),
            base.as_secs_f64() * 1e3,
            planned.as_secs_f64() * 1e3,
            ratio(planned),
            cut.as_secs_f64() * 1e3,
            ratio(cut),
            cut_replay,
            hole.as_secs_f64() * 1e3,
            ratio(hole),
        );
    }
    println!("reference sequence (seed): forwarding stops for about 4 RTT during a planned switch");
}
