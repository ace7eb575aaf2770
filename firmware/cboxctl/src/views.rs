//! Views on the status model ([`status::Snapshot`]) for the terminal:
//! the handover history table and the live `watch` screen.

use std::fmt::Write as _;

use status::{HandoverRecord, Outcome, Snapshot};

/// Milliseconds since the epoch → `HH:MM:SS` (UTC).
fn clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Completed => "ok".into(),
        Outcome::Failed(why) => format!("FAILED: {why}"),
    }
}

/// The handover table, newest first.
pub fn handovers(records: &[HandoverRecord], total: u64) -> String {
    let mut out = String::new();
    if records.is_empty() {
        return "no handover yet\n".into();
    }
    let _ = writeln!(
        out,
        "{:>4} {:<8} {:<4} {:<7} {:<16} {:>9} {:>10} {:>10}  {:<6} REASON",
        "#", "TIME UTC", "SITE", "KIND", "FROM -> TO", "STALL", "BUFFERED", "REPLAYED", "RESULT"
    );
    for r in records.iter().rev() {
        let route = format!(
            "{} -> {}",
            r.from_uplink.as_deref().unwrap_or("none"),
            r.to_uplink
        );
        let kind = match r.kind {
            status::HandoverKind::Planned => "planned",
            status::HandoverKind::Sudden => "sudden",
            status::HandoverKind::Prompt => "prompt",
        };
        let _ = writeln!(
            out,
            "{:>4} {:<8} {:<4} {:<7} {:<16} {:>6.0} ms {:>10} {:>10}  {:<6} {}",
            r.seq,
            clock(r.at_unix_ms),
            r.site,
            kind,
            route,
            r.stall_ms,
            bytes(r.bytes_buffered),
            bytes(r.bytes_replayed),
            outcome(&r.outcome),
            r.reason
        );
    }
    let kept = records.len() as u64;
    if total > kept {
        let _ = writeln!(out, "({} earlier handovers no longer kept)", total - kept);
    }
    out
}

/// One screen of `cboxctl watch`.
pub fn watch_screen(s: &Snapshot) -> String {
    let mut out = String::new();
    let active = s.active_uplink().map_or("none", |u| u.name.as_str());
    let _ = writeln!(
        out,
        "box {}   mode {}   uplink {}   {}",
        s.box_id,
        s.mode,
        active,
        if s.connected() {
            "connected"
        } else {
            "NOT CONNECTED"
        }
    );
    if let Some(sg) = &s.suggestion {
        let _ = writeln!(
            out,
            ">> the box suggests {} ({}) — cboxctl approve | decline",
            sg.uplink,
            sg.reason.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(out);
    for u in &s.uplinks {
        let signal = u
            .signal_dbm
            .map_or("      ".into(), |d| format!("{d:>4}dBm"));
        let rtt = u.rtt_ms.map_or("     -".into(), |r| format!("{r:>6.1}"));
        let _ = writeln!(
            out,
            "{} {:<8} {:<6} {:<8} {} rtt {} ms  loss {:>3.0}%  {}",
            if u.active { "*" } else { " " },
            u.name,
            u.kind,
            u.health,
            signal,
            rtt,
            u.loss * 100.0,
            if u.link { u.why.as_str() } else { "no link" }
        );
    }
    let _ = writeln!(out);
    for site in &s.sites {
        let _ = writeln!(
            out,
            "SNAPT {:<10} {:<12} over {:<6} streams {:>3}  sent {:>10}  received {:>10}  replayed {:>9}",
            site.snapt,
            site.state,
            site.uplink.as_deref().unwrap_or("-"),
            site.streams,
            bytes(site.bytes_sent),
            bytes(site.bytes_received),
            bytes(site.bytes_replayed)
        );
        if let Some(e) = &site.last_error {
            let _ = writeln!(out, "      {e}");
        }
    }
    let last: Vec<HandoverRecord> = s.handovers.iter().rev().take(5).rev().cloned().collect();
    if !last.is_empty() {
        let _ = writeln!(out, "\nlast handovers:");
        out += &handovers(&last, last.len() as u64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use status::HandoverKind;

    fn rec(seq: u64, outcome: Outcome) -> HandoverRecord {
        HandoverRecord {
            seq,
            at_unix_ms: 3_723_000,
            site: 0,
            kind: HandoverKind::Sudden,
            from_uplink: Some("wifi".into()),
            to_uplink: "lte".into(),
            reason: "wifi: link down".into(),
            stall_ms: 241.4,
            bytes_buffered: 3 << 20,
            bytes_replayed: 2048,
            outcome,
        }
    }

    #[test]
    fn the_table_lists_newest_first_with_figures_and_outcome() {
        let t = handovers(
            &[
                rec(4, Outcome::Completed),
                rec(5, Outcome::Failed("lte: tcp timed out".into())),
            ],
            5,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("STALL") && lines[0].contains("REPLAYED"));
        assert!(
            lines[1].trim_start().starts_with('5')
                && lines[1].contains("FAILED: lte: tcp timed out")
        );
        assert!(lines[2].contains("01:02:03") && lines[2].contains("wifi -> lte"));
        assert!(
            lines[2].contains("241 ms")
                && lines[2].contains("3.0 MiB")
                && lines[2].contains("2.0 KiB")
        );
        assert_eq!(lines[3], "(3 earlier handovers no longer kept)");
        assert_eq!(handovers(&[], 0), "no handover yet\n");
    }
}
