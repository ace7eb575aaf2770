//! `cboxctl pki …`: the deployment's certificates (CA, relays, boxes,
//! revocation) and, beside each box's certificate, its Wi-Fi access point
//! passphrase and label.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use tls::Pki;
use wire::BoxId;

use crate::label;

#[derive(Subcommand, Debug)]
pub enum PkiCmd {
    /// Create the CA and an empty revocation list.
    Init {
        /// CA common name.
        #[arg(long, default_value = "cbox CA")]
        name: String,
        /// Validity in years.
        #[arg(long, default_value_t = 10)]
        years: i64,
    },
    /// Issue a SNAPT server certificate.
    Server {
        /// Server name (file name and CN).
        name: String,
        /// DNS names and IP addresses boxes use to reach it.
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: i64,
    },
    /// Issue a box certificate (CN = box id), and the passphrase of the
    /// box's Wi-Fi access point if it has none yet.
    Box {
        /// The box id (CNAPT ID).
        id: String,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: i64,
    },
    /// The box's label (SVG, 90 × 50 mm): id, Wi-Fi network and
    /// passphrase, and the QR code phones join from; the code is also
    /// printed in the terminal.
    Label {
        /// The box id.
        id: String,
        /// The network's name, if not the default `cbox-<id>`.
        #[arg(long)]
        ssid: Option<String>,
        /// `[pan.wifi] outside_window` is `visible` (the QR code then does
        /// not tell phones the network is hidden).
        #[arg(long)]
        visible: bool,
        /// Where to write it (default: boxes/<id>.label.svg in the PKI).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a box's certificate and rewrite the CRL (snaptd reloads it).
    Revoke {
        /// The box id.
        id: String,
    },
    /// Everything issued, with status.
    List,
}

/// Carries out a `cboxctl pki …` command.
pub fn run(p: &Pki, cmd: PkiCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        PkiCmd::Init { name, years } => {
            p.init(&name, years)?;
            println!(
                "CA created: {} (key 0600 beside it), CRL {}",
                p.ca_cert().display(),
                p.crl().display()
            );
        }
        PkiCmd::Server { name, sans, days } => {
            let (cert, key) = p.issue_server(&name, &sans, days)?;
            println!(
                "server certificate {} (key {})",
                cert.display(),
                key.display()
            );
        }
        PkiCmd::Box { id, days } => {
            let id = BoxId::new(&id).map_err(|e| anyhow::anyhow!("box id {id:?}: {e}"))?;
            let (cert, key) = p.issue_box(&id, days)?;
            println!("box certificate {} (key {})", cert.display(), key.display());
            let (f, new) = label::ensure_passphrase(p.dir(), id.as_str())?;
            println!(
                "Wi-Fi access point passphrase {} ({}); provision it as ap-passphrase, print the label: cboxctl pki label {}",
                f.display(),
                if new { "new" } else { "kept" },
                id.as_str()
            );
        }
        PkiCmd::Label {
            id,
            ssid,
            visible,
            out,
        } => {
            let id = BoxId::new(&id).map_err(|e| anyhow::anyhow!("box id {id:?}: {e}"))?;
            let pass = label::read_passphrase(p.dir(), id.as_str())?;
            let ssid = ssid.unwrap_or_else(|| {
                let mut s = format!("cbox-{}", id.as_str());
                while s.len() > 32 {
                    s.pop();
                }
                s
            });
            let ap = wpa_ctrl::hostapd::AccessPoint {
                ssid: ssid.clone(),
                passphrase: pass.clone(),
                security: wpa_ctrl::hostapd::ApSecurity::Wpa2Wpa3,
            };
            ap.check().map_err(|e| anyhow::anyhow!("{e}"))?;
            let uri = ap.join_uri(!visible);
            let svg = label::label_svg(id.as_str(), &ssid, &pass, &uri)?;
            let out = out.unwrap_or_else(|| {
                p.dir()
                    .join("boxes")
                    .join(format!("{}.label.svg", id.as_str()))
            });
            std::fs::write(&out, svg).with_context(|| out.display().to_string())?;
            print!("{}", pairing::join_code::text(&uri)?);
            println!("box {}: Wi-Fi {ssid:?}, passphrase {pass}", id.as_str());
            println!("label written: {}", out.display());
        }
        PkiCmd::Revoke { id } => {
            let serial = p.revoke("box", &id)?;
            println!(
                "revoked box {id} (serial {serial}); CRL rewritten: {}",
                p.crl().display()
            );
        }
        PkiCmd::List => {
            let entries = p.index()?;
            if json {
                let v: Vec<Value> = entries
                    .iter()
                    .map(|e| serde_json::json!({"serial": e.serial, "kind": e.kind, "name": e.name, "revoked_at": e.revoked_at}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{:<34} {:<7} {:<20} STATUS", "SERIAL", "KIND", "NAME");
                for e in entries {
                    let status = e
                        .revoked_at
                        .map_or("valid".to_string(), |t| format!("revoked at {t}"));
                    println!("{:<34} {:<7} {:<20} {status}", e.serial, e.kind, e.name);
                }
            }
        }
    }
    Ok(())
}
