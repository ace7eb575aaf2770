//! `cboxctl pan …`: the PAN side — the pairing window, the passkey on
//! show, trusted devices, who is on the bridge.

use clap::Subcommand;
use control::Request;
use serde_json::Value;

use crate::s;

#[derive(Subcommand, Debug)]
pub enum PanCmd {
    /// Bluetooth NAP state, pairing window, trusted devices, PAN clients.
    Status,
    /// Trusted devices (allowed to connect), and whether they are.
    Devices,
    /// Open the pairing window: phones can find and pair with the box.
    Pair {
        /// How long (default: pan.bluetooth.pairing_seconds).
        #[arg(long)]
        seconds: Option<u32>,
    },
    /// Close the pairing window now.
    Close,
    /// The passkey on the phone matches the one on show: pair.
    Confirm,
    /// It does not: refuse the pairing.
    Reject,
    /// Forget a trusted device (cnaptd's list and BlueZ's pairing).
    Forget {
        /// Its Bluetooth address, like 00:1A:7D:DA:71:13.
        address: String,
    },
    /// How a phone joins the box's Wi-Fi access point: the QR code to scan
    /// (iPhone and Android cameras), the name and the passphrase.
    Wifi,
}

impl PanCmd {
    /// The request to send.
    pub fn request(&self) -> Request {
        match self {
            PanCmd::Status => Request::Status,
            PanCmd::Devices => Request::PanDevices,
            PanCmd::Pair { seconds } => Request::PanPair { seconds: *seconds },
            PanCmd::Close => Request::PanClose,
            PanCmd::Confirm => Request::PanConfirm { yes: true },
            PanCmd::Reject => Request::PanConfirm { yes: false },
            PanCmd::Forget { address } => Request::PanForget {
                address: address.clone(),
            },
            PanCmd::Wifi => Request::PanWifi,
        }
    }

    /// Prints the daemon's answer for people.
    pub fn print(&self, v: &Value) {
        match self {
            PanCmd::Status => {
                print_bluetooth(&v["bluetooth"]);
                print_access_point(&v["wifi_ap"]);
                print_clients(&v["pan_clients"]);
            }
            PanCmd::Wifi => {
                if let Some(uri) = v["uri"].as_str() {
                    match pairing::join_code::text(uri) {
                        Ok(t) => print!("{t}"),
                        Err(e) => println!("(no QR code: {e})"),
                    }
                }
                println!(
                    "Wi-Fi {} ({}{}), passphrase {}",
                    s(&v["ssid"]),
                    s(&v["security"]),
                    if v["hidden"] == Value::Bool(true) {
                        ", hidden outside a pairing window: join it from the code or as a hidden network"
                    } else {
                        ""
                    },
                    s(&v["passphrase"])
                );
            }
            PanCmd::Devices => print_devices(v),
            PanCmd::Pair { .. } => {
                println!(
                    "pairing window open for {} s ({}): pair from the phone's Bluetooth settings, or join the box's Wi-Fi (cboxctl pan wifi), now",
                    s(&v["seconds"]),
                    s(&v["policy"])
                );
                if let Some(w) = v["warning"].as_str() {
                    println!("note: the NAP is not up yet: {w}");
                }
            }
            PanCmd::Close => println!(
                "pairing window closed{}",
                if v["was_open"] == Value::Bool(true) {
                    ""
                } else {
                    " (it was not open)"
                }
            ),
            PanCmd::Confirm => println!("passkey confirmed"),
            PanCmd::Reject => println!("passkey refused"),
            PanCmd::Forget { .. } => println!(
                "forgot {} (trusted: {}, BlueZ: {})",
                s(&v["address"]),
                s(&v["was_trusted"]),
                s(&v["bluez"])
            ),
        }
    }
}

fn print_devices(v: &Value) {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no trusted devices (open the pairing window: cboxctl pan pair)");
        return;
    }
    println!("{:<18} {:<10} NAME", "ADDRESS", "CONNECTED");
    for d in list {
        println!(
            "{:<18} {:<10} {}",
            s(&d["address"]),
            if d["connected"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            s(&d["name"])
        );
    }
}

/// The NAP's lines (also in `cboxctl status`).
pub fn print_bluetooth(b: &Value) {
    if b.is_null() {
        println!("bluetooth: not configured");
        return;
    }
    let state = match (b["nap_registered"].as_bool(), b["problem"].as_str()) {
        (Some(true), _) => format!("NAP on {}", s(&b["bridge"])),
        (_, Some(p)) => format!("down: {p}"),
        _ => "down".into(),
    };
    println!(
        "bluetooth {} \"{}\": {state}",
        s(&b["adapter"]),
        s(&b["alias"])
    );
    let p = &b["pairing"];
    if p["open"] == Value::Bool(true) {
        println!(
            "  pairing window open, {} s left ({})",
            s(&p["seconds_left"]),
            s(&p["policy"])
        );
    } else {
        println!("  pairing window closed ({})", s(&p["policy"]));
    }
    if let Some(k) = p["passkey"].as_str() {
        println!(
            "  passkey {k} for {}: cboxctl pan confirm | cboxctl pan reject",
            s(&p["device"])
        );
    }
    let t = b["trusted"].as_array().map_or(0, Vec::len);
    println!("  {t} trusted device(s)");
}

/// The Wi-Fi access point's lines (also in `cboxctl status`).
pub fn print_access_point(a: &Value) {
    if a.is_null() {
        return;
    }
    let state = match a["problem"].as_str() {
        Some(p) => format!("down: {p}"),
        None => format!(
            "{} on {}, {}",
            s(&a["state"]),
            s(&a["bridge"]),
            if a["visible"] == Value::Bool(true) {
                "visible"
            } else {
                "hidden"
            }
        ),
    };
    println!(
        "wifi access point {} \"{}\" ({}): {state}",
        s(&a["interface"]),
        s(&a["ssid"]),
        s(&a["security"])
    );
    let n = a["stations"].as_array().map_or(0, Vec::len);
    println!(
        "  {n} phone(s) joined; outside a pairing window: {}; join code: cboxctl pan wifi",
        s(&a["outside_window"])
    );
}

/// Who is on the bridge (also in `cboxctl status`).
pub fn print_clients(c: &Value) {
    let list = c.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("PAN clients: none");
        return;
    }
    println!("PAN clients:");
    println!("  {:<18} {:<10} IP", "ADDRESS", "INTERFACE");
    for x in list {
        println!(
            "  {:<18} {:<10} {}",
            s(&x["address"]),
            s(&x["interface"]),
            s(&x["ip"])
        );
    }
}
