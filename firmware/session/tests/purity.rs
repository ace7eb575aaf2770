//! The pure crates — `wire`, `session`, `decision`, `modem-at`, `wpa-ctrl`,
//! `status`, `panel` — have no async runtime, no sockets, no threads, no clock, no
//! global randomness. Time and randomness come in as values.
//! (The test command also checks `cargo tree` for tokio.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "wire", "session", "decision", "modem-at", "wpa-ctrl", "status", "pairing",
];

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "UNIX_EPOCH",
    "thread_rng",
    "rand::",
    "getrandom",
    "std::thread",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::fs",
    "tokio",
    "async fn",
    ".await",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Library code only: test modules (`tests.rs`, `*_tests.rs`, `testkit.rs`)
/// may use the clock.
fn library_files(krate: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.retain(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        !name.ends_with("tests.rs") && name != "testkit.rs"
    });
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        root.display()
    );
    files
}

#[test]
fn pure_crates_never_touch_clock_threads_sockets_or_global_rng() {
    let mut hits = Vec::new();
    for krate in PURE {
        for f in library_files(krate) {
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit-test modules close each file (house style) and may use the clock.
            let text = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for bad in FORBIDDEN {
                    if code.contains(bad) {
                        hits.push(format!("{}:{}: {bad}", f.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "impure code in a pure crate:\n{}",
        hits.join("\n")
    );
}

#[test]
fn pure_crates_depend_on_no_runtime() {
    for krate in PURE {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(manifest).unwrap();
        let deps = text.split("[dependencies]").nth(1).unwrap_or("");
        let deps = deps.split("\n[").next().unwrap_or("");
        for bad in [
            "tokio",
            "mio",
            "socket2",
            "rand",
            "async-std",
            "smol",
            "nix",
        ] {
            assert!(
                !deps.lines().any(|l| l.trim_start().starts_with(bad)),
                "{krate} depends on {bad}"
            );
        }
    }
}
