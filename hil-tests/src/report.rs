//! What a run reports: the mode that carried the phone's traffic and
//! the figures the applications saw (shared by the product's runs and the
//! baselines').

use serde::Serialize;

use crate::apps::{StreamFigures, UdpFigures};

/// What carries the phone's traffic in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// cnaptd + snaptd (the product).
    Cbox,
    /// Plain TCP from the phone through the box's NAT, no relay.
    PlainTcp,
    /// Linux MPTCP between box and internet host, a subflow per uplink,
    /// the kernel's path manager.
    MptcpActive,
    /// The same with the LTE endpoint as backup.
    MptcpBackup,
    /// MPTCP whose endpoint is removed on the link event (as mptcpd or
    /// NetworkManager do): the strongest baseline.
    MptcpEvent,
}

impl Mode {
    /// Every mode, the product first.
    pub const ALL: [Mode; 5] = [
        Mode::Cbox,
        Mode::PlainTcp,
        Mode::MptcpActive,
        Mode::MptcpBackup,
        Mode::MptcpEvent,
    ];

    /// The mode of a short name ([`Mode::name`]).
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cbox => "cbox",
            Mode::PlainTcp => "plain-tcp",
            Mode::MptcpActive => "mptcp",
            Mode::MptcpBackup => "mptcp-backup",
            Mode::MptcpEvent => "mptcp-event",
        }
    }
}

/// What one scenario run showed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// What carried the traffic.
    pub mode: Mode,
    /// Links without delay or rate limit.
    pub zero_delay: bool,
    /// The interactive stream's connection broke (error and time), if it did.
    pub broken: Option<String>,
    /// Handovers completed by the box.
    pub handovers: u64,
    /// Wi-Fi roams between access points of one network (cbox runs).
    pub roams: u64,
    /// Largest gap between two echoed records of the interactive stream (ms).
    pub max_stall_ms: f64,
    /// Interactive records sent.
    pub records_sent: u64,
    /// Records that came back intact.
    pub records_echoed: u64,
    /// Records lost, duplicated, reordered or corrupted.
    pub records_damaged: u64,
    /// The SSH session typing through the box (cbox runs only).
    pub ssh: Option<StreamFigures>,
    /// The UDP stream (cbox runs only).
    pub udp: Option<UdpFigures>,
    /// The UDP stream a server pushed to the phone through the box's UDP
    /// client service (scenarios with `udp_push`), as the server saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_push: Option<UdpFigures>,
    /// The live stream (scenarios with `live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::live::LiveFigures>,
    /// Round trip of the interactive records, median (ms).
    pub rtt_p50_ms: Option<f64>,
    /// … and 99th percentile.
    pub rtt_p99_ms: Option<f64>,
    /// The download's rate (Mbit/s), if it finished.
    pub download_mbit: Option<f64>,
    /// Bytes of the download that arrived.
    pub download_bytes: u64,
    /// Download complete and intact (SHA-256).
    pub download_intact: bool,
    /// What arrived of the download differs from the file (not merely cut).
    pub download_corrupted: bool,
    /// After the timeline, the box was connected and a new download through
    /// it arrived intact (cbox runs only).
    pub reconnected: Option<bool>,
    /// Applications that failed (curl, the interactive stream, the SSH
    /// session, the UDP stream).
    pub app_errors: u64,
    /// Payload bytes the box resent after resynchronisations.
    pub bytes_replayed: u64,
    /// CPU seconds used by cnaptd and snaptd during the run.
    pub cnaptd_cpu_s: f64,
    /// See `cnaptd_cpu_s` (the last snaptd if it restarted).
    pub snaptd_cpu_s: f64,
    /// Peak resident memory of cnaptd and snaptd (MiB).
    pub cnaptd_peak_rss_mib: f64,
    /// See `cnaptd_peak_rss_mib`.
    pub snaptd_peak_rss_mib: f64,
    /// Timeline steps that failed or were refused, and expected breakage.
    pub notes: Vec<String>,
    /// Everything held: nothing corrupted, nothing lost where the scenario
    /// expects streams to survive, no app error, handovers in range, new
    /// connections work afterwards.
    pub passed: bool,
}
