//! The join code of the box's Wi-Fi access point as a QR code a phone's
//! camera reads (the `WIFI:` URI): drawn as SVG for the status page and the
//! printed label, and as text for a terminal. The encoding is the `qrcode`
//! crate's; the drawing is here (a path of dark modules, no renderer
//! features pulled in).

use qrcode::{Color, EcLevel, QrCode};

/// Why a text has no QR code.
#[derive(Debug, thiserror::Error)]
#[error("no QR code for this text: {0}")]
pub struct JoinCodeError(#[from] qrcode::types::QrError);

/// The modules (true = dark) and the width of `text`'s code, error
/// correction M (a scuffed label still reads).
fn modules(text: &str) -> Result<(Vec<bool>, usize), JoinCodeError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let w = code.width();
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Ok((dark, w))
}

/// The SVG path (`d`) of the dark modules, one unit per module, offset by
/// the 4-module quiet zone.
fn path(dark: &[bool], w: usize) -> String {
    let mut d = String::new();
    for (i, _) in dark.iter().enumerate().filter(|(_, on)| **on) {
        let (x, y) = (i % w + 4, i / w + 4);
        d.push_str(&format!("M{x} {y}h1v1h-1z"));
    }
    d
}

/// A standalone SVG of `text`'s QR code, `size` pixels square, black on
/// white with the quiet zone.
pub fn svg(text: &str, size: u32) -> Result<String, JoinCodeError> {
    let (dark, w) = modules(text)?;
    let n = w + 8;
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" \
         viewBox=\"0 0 {n} {n}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{}\"/></svg>",
        path(&dark, w)
    ))
}

/// `text`'s QR code as an SVG group placed at (`x`, `y`), `size` units
/// square, for drawing inside another SVG (the label).
pub fn svg_group(text: &str, x: f64, y: f64, size: f64) -> Result<String, JoinCodeError> {
    let (dark, w) = modules(text)?;
    let n = (w + 8) as f64;
    Ok(format!(
        "<g transform=\"translate({x} {y}) scale({})\" shape-rendering=\"crispEdges\">\
         <rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{}\"/></g>",
        size / n,
        path(&dark, w)
    ))
}

/// `text`'s QR code for a terminal: two modules per character row with
/// half blocks, dark modules drawn light-on-dark-terminal safe (the
/// quiet zone included, so phones read it off a dark screen too).
pub fn text(text: &str) -> Result<String, JoinCodeError> {
    let (dark, w) = modules(text)?;
    let n = w + 8;
    // Light = drawn (a full block), so the code reads on a dark terminal.
    let light = |x: usize, y: usize| {
        if x < 4 || y < 4 || x >= w + 4 || y >= w + 4 {
            return true;
        }
        !dark[(y - 4) * w + (x - 4)]
    };
    let mut out = String::new();
    for row in (0..n).step_by(2) {
        for x in 0..n {
            let top = light(x, row);
            let bottom = row + 1 >= n || light(x, row + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "WIFI:T:WPA;S:cbox-box-0042;P:k7mqa-wxp4h-9trd2-fvc8n;H:true;;";

    #[test]
    fn the_svg_draws_every_dark_module_and_nothing_else() {
        let (dark, w) = modules(URI).unwrap();
        let s = svg(URI, 240).unwrap();
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>"));
        assert_eq!(s.matches('M').count(), dark.iter().filter(|d| **d).count());
        assert!(s.contains(&format!("viewBox=\"0 0 {n} {n}\"", n = w + 8)));
        // Finder pattern: the top-left module of the code is dark.
        assert!(s.contains("M4 4h1v1h-1z"));
    }

    #[test]
    fn the_text_rendering_has_the_quiet_zone_and_half_rows() {
        let (_, w) = modules(URI).unwrap();
        let t = text(URI).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), (w + 8).div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == w + 8));
        assert!(lines[0].chars().all(|c| c == '█'), "quiet zone");
    }

    #[test]
    fn a_text_too_long_for_any_code_is_an_error() {
        assert!(svg(&"x".repeat(5000), 100).is_err());
    }
}
