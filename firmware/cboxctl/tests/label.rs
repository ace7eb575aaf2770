#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The provisioning of a box's Wi-Fi access point, with the real binary:
//! `cboxctl pki box` makes the passphrase once, `cboxctl pki label` draws
//! the label, and a real QR reader (zbar, after librsvg renders the SVG as
//! a printer would) reads from it exactly the join code a phone's camera
//! needs.

use std::path::Path;
use std::process::Command;

fn cboxctl(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cboxctl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cboxctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn decode(svg: &Path, png: &Path) -> String {
    for tool in ["rsvg-convert", "zbarimg"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is missing: apt-get install librsvg2-bin zbar-tools (scripts/test.sh does)"
        );
    }
    let r = Command::new("rsvg-convert")
        .args(["-w", "700", "-o"])
        .arg(png)
        .arg(svg)
        .status()
        .unwrap();
    assert!(r.success());
    let out = Command::new("zbarimg")
        .args(["-q", "--raw"])
        .arg(png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zbar found no code in {}",
        png.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_box_gets_a_passphrase_once_and_a_label_a_camera_reads() {
    let dir = std::env::temp_dir().join(format!("cboxctl-label-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    cboxctl(&["pki", "--dir", d, "init"]);
    let out = cboxctl(&["pki", "--dir", d, "box", "box-0042"]);
    assert!(out.contains("(new)"), "{out}");
    let pass_file = dir.join("boxes/box-0042.ap-passphrase");
    let pass = std::fs::read_to_string(&pass_file)
        .unwrap()
        .trim()
        .to_string();
    // A certificate revoked and issued again keeps the passphrase (the
    // phones that joined keep joining).
    cboxctl(&["pki", "--dir", d, "revoke", "box-0042"]);
    let out = cboxctl(&["pki", "--dir", d, "box", "box-0042", "--days", "10"]);
    assert!(out.contains("(kept)"), "{out}");
    assert_eq!(std::fs::read_to_string(&pass_file).unwrap().trim(), pass);

    let out = cboxctl(&["pki", "--dir", d, "label", "box-0042"]);
    assert!(out.contains(&pass), "{out}");
    let svg = dir.join("boxes/box-0042.label.svg");
    let read = decode(&svg, &dir.join("label.png"));
    assert_eq!(
        read,
        format!("WIFI:T:WPA;S:cbox-box-0042;P:{pass};H:true;;")
    );

    // A network kept visible, with a name of its own needing escapes.
    let out_svg = dir.join("visible.svg");
    cboxctl(&[
        "pki",
        "--dir",
        d,
        "label",
        "box-0042",
        "--visible",
        "--ssid",
        "crew;7",
        "--out",
        out_svg.to_str().unwrap(),
    ]);
    let read = decode(&out_svg, &dir.join("visible.png"));
    assert_eq!(read, format!("WIFI:T:WPA;S:crew\\;7;P:{pass};;"));

    // A box without a passphrase: a clear error naming the fix.
    let out = Command::new(env!("CARGO_BIN_EXE_cboxctl"))
        .args(["pki", "--dir", d, "label", "box-0043"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cboxctl pki box box-0043"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
