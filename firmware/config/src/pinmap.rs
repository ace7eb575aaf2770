//! The board's pin map (`board/pinmap/*.toml`): which GPIO lines carry the
//! status LEDs and the pairing button. cnaptd loads it when `cnapt.toml`
//! names one; the LED and button drivers use it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::common::{ConfigError, invalid, read_toml};

/// One GPIO line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Line offset on the chip (BCM number on a Raspberry Pi).
    pub line: u32,
    /// The signal is active when the line is low.
    #[serde(default)]
    pub active_low: bool,
}

/// The board's LEDs and button.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinMap {
    /// GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: PathBuf,
    /// LEDs by name (`green`, `amber`, `blue`).
    pub leds: BTreeMap<String, Line>,
    /// Buttons by name (`pair`).
    pub button: BTreeMap<String, Line>,
}

impl PinMap {
    /// Reads and checks a pin map: known LED and button names, every line
    /// used once.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let map: PinMap = read_toml(path)?;
        map.check(path)?;
        Ok(map)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        for name in self.leds.keys() {
            if !["green", "amber", "blue"].contains(&name.as_str()) {
                return Err(invalid(
                    path,
                    format!("leds.{name}"),
                    "unknown LED; expected green, amber or blue",
                ));
            }
        }
        if !self.button.contains_key("pair") {
            return Err(invalid(
                path,
                "button.pair",
                "the pairing button is required",
            ));
        }
        let mut used = BTreeMap::new();
        let all = self
            .leds
            .iter()
            .map(|(n, l)| (format!("leds.{n}"), l))
            .chain(self.button.iter().map(|(n, l)| (format!("button.{n}"), l)));
        for (key, l) in all {
            if let Some(other) = used.insert(l.line, key.clone()) {
                return Err(invalid(
                    path,
                    key,
                    format!("line {} is already used by {other}", l.line),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_pin_maps_are_valid() {
        for board in ["rpi4", "rpi5"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../board/pinmap/{board}.toml"));
            let m = PinMap::load(&p).unwrap();
            assert_eq!(m.leds.len(), 3, "{board}");
            assert_eq!(
                m.button["pair"],
                Line {
                    line: 23,
                    active_low: true
                }
            );
        }
    }

    #[test]
    fn a_line_used_twice_is_named() {
        let dir = std::env::temp_dir().join(format!("cbox-pinmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pm.toml");
        std::fs::write(&p, "chip = \"/dev/gpiochip0\"\n[leds]\ngreen = { line = 5 }\n[button]\npair = { line = 5 }\n").unwrap();
        let e = PinMap::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("button.pair") && e.contains("already used by leds.green"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
