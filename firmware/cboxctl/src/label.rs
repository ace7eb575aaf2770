//! Each box's Wi-Fi access point passphrase (made at provisioning beside
//! its certificate, in the PKI folder) and the label printed for the box:
//! its id, the network's name and passphrase, and the QR code phones join
//! from.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Letters and digits that cannot be misread on a label (no 0/o, 1/l).
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A new passphrase: 20 characters from [`ALPHABET`] in groups of five
/// (100 bits from the kernel's random source), easy to type on a phone.
pub fn new_passphrase() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let mut out = String::with_capacity(23);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        // 256 is a multiple of 32: every character equally likely.
        out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    Ok(out)
}

/// Where a box's passphrase is kept in the PKI folder.
pub fn passphrase_file(pki_dir: &Path, id: &str) -> PathBuf {
    pki_dir.join("boxes").join(format!("{id}.ap-passphrase"))
}

/// The box's passphrase, made (0600) if it has none yet; whether it is new.
pub fn ensure_passphrase(pki_dir: &Path, id: &str) -> anyhow::Result<(PathBuf, bool)> {
    let f = passphrase_file(pki_dir, id);
    if f.exists() {
        return Ok((f, false));
    }
    let p = new_passphrase()?;
    write_private(&f, &format!("{p}\n"))?;
    Ok((f, true))
}

fn write_private(f: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = f.parent() {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(f)
        .with_context(|| f.display().to_string())?;
    file.write_all(text.as_bytes())
        .with_context(|| f.display().to_string())
}

/// Reads a box's passphrase.
pub fn read_passphrase(pki_dir: &Path, id: &str) -> anyhow::Result<String> {
    let f = passphrase_file(pki_dir, id);
    let text = std::fs::read_to_string(&f).with_context(|| {
        format!(
            "{}: no passphrase for box {id} (cboxctl pki box {id} makes one)",
            f.display()
        )
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The label (SVG, 90 × 50 mm): box id, network, passphrase, QR code.
pub fn label_svg(box_id: &str, ssid: &str, passphrase: &str, uri: &str) -> anyhow::Result<String> {
    let qr = pairing::join_code::svg_group(uri, 52.0, 6.0, 38.0)?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"90mm\" height=\"50mm\" viewBox=\"0 0 90 50\">\n\
         <rect width=\"90\" height=\"50\" fill=\"#fff\" stroke=\"#000\" stroke-width=\"0.3\"/>\n\
         <g font-family=\"DejaVu Sans Mono, monospace\" fill=\"#000\">\n\
         <text x=\"4\" y=\"9\" font-size=\"5\" font-weight=\"bold\">cbox {}</text>\n\
         <text x=\"4\" y=\"17\" font-size=\"2.6\">Wi-Fi for phones (scan the code)</text>\n\
         <text x=\"4\" y=\"24\" font-size=\"2.6\">network</text>\n\
         <text x=\"4\" y=\"28.5\" font-size=\"3.2\">{}</text>\n\
         <text x=\"4\" y=\"35\" font-size=\"2.6\">passphrase</text>\n\
         <text x=\"4\" y=\"39.5\" font-size=\"3.2\">{}</text>\n\
         <text x=\"4\" y=\"46\" font-size=\"2.2\">Bluetooth: cbox {} (press the button to pair)</text>\n\
         </g>\n{qr}\n</svg>\n",
        xml(box_id),
        xml(ssid),
        xml(passphrase),
        xml(box_id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrases_are_grouped_unambiguous_and_differ() {
        let a = new_passphrase().unwrap();
        let b = new_passphrase().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.len(), 4);
        assert!(groups.iter().all(|g| g.len() == 5));
        assert!(a.bytes().all(|c| c == b'-' || ALPHABET.contains(&c)));
        assert!(wpa_ok(&a));
    }

    fn wpa_ok(p: &str) -> bool {
        (8..=63).contains(&p.len()) && p.bytes().all(|b| (0x20..0x7f).contains(&b))
    }

    #[test]
    fn a_passphrase_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cboxctl-label-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (f, new) = ensure_passphrase(&dir, "box-1").unwrap();
        assert!(new);
        let first = read_passphrase(&dir, "box-1").unwrap();
        let (_, again) = ensure_passphrase(&dir, "box-1").unwrap();
        assert!(!again);
        assert_eq!(read_passphrase(&dir, "box-1").unwrap(), first);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let e = read_passphrase(&dir, "box-2").unwrap_err().to_string();
        assert!(e.contains("cboxctl pki box box-2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_label_escapes_and_holds_the_code() {
        let s = label_svg(
            "box<1>",
            "cbox-box<1>",
            "abcde-fghij",
            "WIFI:T:WPA;S:x;P:y;;",
        )
        .unwrap();
        assert!(s.contains("cbox box&lt;1&gt;"));
        assert!(!s.contains("box<1>"));
        assert!(s.contains("<path fill=\"#000\""));
    }
}
