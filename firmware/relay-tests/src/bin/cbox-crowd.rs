// A test tool: a poisoned lock (after a panic) may end it.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]
//! cbox-crowd — a crowd of boxes for the simulated world (issue 17): BOXES
//! hand-driven boxes (`crowd-0` …), each with its own certificate and real
//! TLS 1.3, start their sessions within 200 ms of each other on the relay
//! (or, with `--relays`, on the relay of the fleet cnaptd's rendezvous hash
//! gives each, named in the SNI), hold them with a PING a second, and when
//! a tunnel is lost resume as cnaptd does — SWITCH_UNEXPECTED on the same
//! relay, a new session when the relay no longer knows theirs, REFUSED
//! waits and jittered back-off honoured. After `--secs` it writes a JSON
//! summary: arrivals, losses, how long until every box was back, attempts,
//! refusals, the peak rate of attempts.
//!
//! ```text
//! cbox-crowd --pki DIR --boxes 500 --addr 198.18.30.1:4433 \
//!     --relays relay-1.cbox.world,relay-2.cbox.world,relay-3.cbox.world \
//!     --secs 30 --out crowd.json [--issue]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use relay_tests::crowd::{Tally, Target, arrive, hold, session};
use serde_json::json;
use wire::BoxId;

/// A crowd of boxes for the simulated world.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// The deployment's PKI folder (`cboxctl pki`).
    #[arg(long)]
    pki: PathBuf,
    /// How many boxes.
    #[arg(long, default_value_t = 500)]
    boxes: usize,
    /// The relay's or the router's address.
    #[arg(long)]
    addr: SocketAddr,
    /// The relay's name (single relay).
    #[arg(long, default_value = "127.0.0.1")]
    server: String,
    /// The fleet's relays, comma-separated: each box picks its own.
    #[arg(long, value_delimiter = ',')]
    relays: Vec<String>,
    /// How long to run.
    #[arg(long)]
    secs: f64,
    /// Where the summary goes.
    #[arg(long)]
    out: PathBuf,
    /// Issue the boxes' certificates first (those missing).
    #[arg(long)]
    issue: bool,
}

/// What happened to the crowd after it arrived.
#[derive(Debug, Default)]
struct Outages {
    /// (lost at, back at) since the start, per loss.
    spans: Vec<(Duration, Option<Duration>)>,
    resumed: usize,
    new_sessions: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ids: Vec<String> = (0..args.boxes).map(|i| format!("crowd-{i}")).collect();
    if args.issue {
        let pki = tls::pki::Pki::new(&args.pki);
        let t = Instant::now();
        for id in &ids {
            if !args.pki.join(format!("boxes/{id}.pem")).exists() {
                pki.issue_box(&BoxId::new(id)?, 30)
                    .with_context(|| format!("issuing {id}"))?;
            }
        }
        eprintln!(
            "cbox-crowd: {} certificates in {:.1} s",
            ids.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.secs);
    let arrivals = Arc::new(Mutex::new(Tally::default()));
    let after = Arc::new(Mutex::new(Tally::default()));
    let outages = Arc::new(Mutex::new(Outages::default()));
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let server = if args.relays.is_empty() {
            args.server.clone()
        } else {
            let mut rs = box_driver::relays::RelaySet::new(args.relays.clone());
            rs.relay(id, std::time::Instant::now())
                .unwrap_or(args.relays[0].as_str())
                .to_owned()
        };
        let t = Target {
            pki: args.pki.clone(),
            id: id.clone(),
            addr: args.addr,
            server,
        };
        let (arrivals, after, outages) = (arrivals.clone(), after.clone(), outages.clone());
        set.spawn(async move {
            let Some((mut raw, mut sid)) = arrive(t.clone(), start, arrivals).await else {
                return;
            };
            let mut incarnation = 1;
            let mut switch = 0u32;
            while hold(&mut raw, until).await {
                let lost = start.elapsed();
                let i = {
                    let mut o = outages.lock().unwrap();
                    o.spans.push((lost, None));
                    o.spans.len() - 1
                };
                let Some((r, s, resumed)) =
                    session(&t, Some((sid, switch)), &mut incarnation, &after, start).await
                else {
                    return;
                };
                switch += 1;
                if s != sid {
                    switch = 0;
                }
                (raw, sid) = (r, s);
                let mut o = outages.lock().unwrap();
                o.spans[i].1 = Some(start.elapsed());
                if resumed {
                    o.resumed += 1;
                } else {
                    o.new_sessions += 1;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let a = arrivals.lock().unwrap();
    let (arr_median, arr_all) = a.median_and_max();
    let o = outages.lock().unwrap();
    let af = after.lock().unwrap();
    let first_loss = o.spans.iter().map(|(l, _)| *l).min();
    let last_back = o.spans.iter().filter_map(|(_, b)| *b).max();
    let mut downs: Vec<Duration> = o
        .spans
        .iter()
        .filter_map(|(l, b)| b.map(|b| b.saturating_sub(*l)))
        .collect();
    downs.sort();
    let summary = json!({
        "boxes": args.boxes,
        "arrived": a.done.len(),
        "arrival_median_s": arr_median.as_secs_f64(),
        "arrival_all_s": arr_all.as_secs_f64(),
        "arrival_attempts": a.attempts.len(),
        "arrival_refused": a.busy,
        "losses": o.spans.len(),
        "back": downs.len(),
        "not_back": o.spans.len() - downs.len(),
        "resumed": o.resumed,
        "new_sessions": o.new_sessions,
        "outage_median_s": downs.get(downs.len() / 2).map(Duration::as_secs_f64),
        "outage_max_s": downs.last().map(Duration::as_secs_f64),
        "all_back_after_first_loss_s": match (first_loss, last_back) {
            (Some(f), Some(l)) => Some(l.saturating_sub(f).as_secs_f64()),
            _ => None,
        },
        "attempts_after_loss": af.attempts.len(),
        "refused_after_loss": af.busy,
        "failed_after_loss": af.failed,
        "peak_attempts_per_s": af.peak_attempts_per_s(),
        "first_refusal": af.reason,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{summary}");
    Ok(())
}
