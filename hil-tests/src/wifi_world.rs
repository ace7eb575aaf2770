//! The world's Wi-Fi: the hotspots the box can hear and what association
//! does to its `wlan0`. The wpa_supplicant emulator ([`crate::wpa_emu`])
//! serves cnaptd's Wi-Fi driver; when it associates, the box's `wlan0`
//! gets its carrier and the Wi-Fi radio takes that hotspot's conditions;
//! during a roam the radio drops frames (the reassociation gap); when the
//! association is lost the carrier goes (a link event, as a real Wi-Fi
//! interface gives).
//!
//! Every hotspot leads to the same ISP namespace (one site network behind
//! two access points, and a café hotspot the box is not configured for),
//! so a roam keeps the box's address.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;

use crate::radio::{LinkParams, Radio};
use crate::topology::Topology;
use crate::wpa_emu::{Hotspot, LinkChange, WpaEmu};

/// The site network the box is configured for.
pub const SSID: &str = "cbox-world";
/// Its passphrase.
pub const PSK: &str = "field-tech-2026";

/// The world's hotspots by scenario name: `site-a` (in range at start),
/// `site-b` (same network, out of range at start), `cafe` (open, not
/// configured on the box).
pub fn hotspots() -> Vec<(&'static str, Hotspot)> {
    let h = |ssid: &str, bssid: &str, freq, signal_dbm, psk: Option<&str>| Hotspot {
        ssid: ssid.into(),
        bssid: bssid.into(),
        freq,
        signal_dbm,
        psk: psk.map(String::from),
    };
    vec![
        (
            "site-a",
            h(SSID, "02:cb:0a:00:00:01", 2412, Some(-52), Some(PSK)),
        ),
        (
            "site-b",
            h(SSID, "02:cb:0a:00:00:02", 5180, None, Some(PSK)),
        ),
        (
            "cafe",
            h("CafeGuest", "02:cb:0c:00:00:01", 2437, Some(-67), None),
        ),
    ]
}

/// What a scenario's `hotspot` step changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct HotspotChange {
    /// Signal the box hears, dBm.
    pub signal_dbm: Option<i32>,
    /// Out of range.
    pub gone: Option<bool>,
    /// One-way delay through it, ms.
    pub delay_ms: Option<u64>,
    /// Frame loss, 0..1.
    pub loss: Option<f64>,
    /// Rate, Mbit/s.
    pub rate_mbit: Option<f64>,
}

/// The emulator and the hotspots' radio conditions; stops when dropped.
#[derive(Debug)]
pub struct WifiWorld {
    emu: WpaEmu,
    names: HashMap<&'static str, String>,
    quality: Arc<Mutex<HashMap<String, LinkParams>>>,
    radio: Arc<Mutex<LinkParams>>,
}

fn carrier(ns: &str, on: bool) {
    let _ = Command::new("ip")
        .args([
            "-n",
            ns,
            "link",
            "set",
            "rad-a",
            if on { "up" } else { "down" },
        ])
        .status();
}

impl WifiWorld {
    /// Starts the emulator at `ctrl` for the box's `wlan0`, which has no
    /// carrier until the box associates; every hotspot starts with `base`
    /// conditions.
    pub fn start(
        ctrl: &Path,
        world: &Topology,
        radio: &Radio,
        base: LinkParams,
    ) -> anyhow::Result<Self> {
        let ns = world.ns("radio-wifi");
        carrier(&ns, false);
        let all = hotspots();
        let quality: HashMap<String, LinkParams> =
            all.iter().map(|(_, h)| (h.bssid.clone(), base)).collect();
        let quality = Arc::new(Mutex::new(quality));
        let (q, params) = (quality.clone(), radio.params.clone());
        let on_link = Box::new(move |c: &LinkChange| {
            let set = |f: &dyn Fn(&mut LinkParams)| {
                if let Ok(mut p) = params.lock() {
                    f(&mut p);
                }
            };
            match c {
                LinkChange::Associated(b) | LinkChange::Roamed(b) => {
                    let lp = q
                        .lock()
                        .ok()
                        .and_then(|m| m.get(b).copied())
                        .unwrap_or(base);
                    set(&|p| *p = lp);
                    carrier(&ns, true);
                }
                LinkChange::Roaming(_) => set(&|p| p.down = true),
                LinkChange::Lost => {
                    set(&|p| p.down = true);
                    carrier(&ns, false);
                }
            }
        });
        let emu = WpaEmu::start(ctrl, all.iter().map(|(_, h)| h.clone()).collect(), on_link)?;
        Ok(Self {
            emu,
            names: all.into_iter().map(|(n, h)| (n, h.bssid)).collect(),
            quality,
            radio: radio.params.clone(),
        })
    }

    /// A scenario step on hotspot `name`.
    pub fn apply(&self, name: &str, ch: &HotspotChange) -> anyhow::Result<()> {
        let Some(bssid) = self.names.get(name) else {
            let mut known: Vec<&str> = self.names.keys().copied().collect();
            known.sort_unstable();
            bail!(
                "no hotspot {name:?} in the world (known: {})",
                known.join(", ")
            );
        };
        let update = |p: &mut LinkParams| {
            if let Some(d) = ch.delay_ms {
                p.delay = Duration::from_millis(d);
            }
            if let Some(l) = ch.loss {
                p.loss = l;
            }
            if let Some(r) = ch.rate_mbit {
                p.rate_bps = (r * 1e6) as u64;
            }
        };
        if let Ok(mut q) = self.quality.lock()
            && let Some(p) = q.get_mut(bssid)
        {
            update(p);
        }
        if self.emu.associated().as_deref() == Some(bssid.as_str())
            && let Ok(mut p) = self.radio.lock()
        {
            update(&mut p);
        }
        let signal = if ch.gone == Some(true) {
            Some(None)
        } else {
            ch.signal_dbm.map(Some)
        };
        if let Some(s) = signal {
            self.emu.set_signal(bssid, s);
        }
        Ok(())
    }

    /// Roams the box made.
    pub fn roams(&self) -> u32 {
        self.emu.roams()
    }
}
