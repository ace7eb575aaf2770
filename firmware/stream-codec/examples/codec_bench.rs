//! How the codecs do on this machine: bytes on the tunnel for text-like
//! traffic, CPU per MB, and the cost of one small interactive write, each
//! as a ratio against a baseline measured in the same run (no compression
//! for bytes; ChaCha20-Poly1305 sealing of the same bytes — what the tunnel
//! pays anyway — for CPU).
//!
//!     cargo run --release -p stream-codec --example codec_bench
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use stream_codec::{Compressor, Decompressor};
use wire::Codec;

/// JSON lines of an API (status objects of many boxes).
fn json(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 256);
    let mut i = 1u64;
    while out.len() < n {
        out.extend_from_slice(
            format!(
                "{{\"seq\":{i},\"box\":\"box-{}\",\"uplink\":\"{}\",\"rtt_ms\":{}.{},\"signal_dbm\":-{},\"streams\":{},\"ok\":true}}\n",
                i % 97,
                if i.is_multiple_of(3) { "wifi" } else { "lte" },
                20 + i % 180,
                i % 10,
                50 + i % 40,
                i % 13
            )
            .as_bytes(),
        );
        i = i
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            >> 40;
    }
    out.truncate(n);
    out
}

/// A syslog-like stream.
fn log(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 256);
    let mut i = 7u64;
    let words = [
        "session",
        "handover",
        "uplink",
        "keepalive",
        "stream",
        "opened",
        "closed",
        "lte",
        "wifi",
        "rtt",
    ];
    while out.len() < n {
        out.extend_from_slice(
            format!(
                "Dec 07 05:{:02}:{:02} box-{} cnaptd[{}]: INFO {} {} id={} bytes={} took={}ms\n",
                i % 60,
                (i / 60) % 60,
                i % 50,
                1000 + i % 7,
                words[(i % 10) as usize],
                words[((i / 10) % 10) as usize],
                i,
                (i * 7919) % 100_000,
                i % 300
            )
            .as_bytes(),
        );
        i = i
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(3_037_000_493)
            >> 33;
    }
    out.truncate(n);
    out
}

/// Random bytes (SSH, TLS, media: already dense).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes on the wire and time to compress and decompress `data` written in
/// `write`-sized pieces.
fn run(codec: Codec, data: &[u8], write: usize) -> (usize, Duration, Duration) {
    let mut c = Compressor::new(codec).unwrap().unwrap();
    let mut d = Decompressor::new(codec).unwrap().unwrap();
    let t = Instant::now();
    let records: Vec<Vec<u8>> = data.chunks(write).map(|w| c.compress(w).unwrap()).collect();
    let ct = t.elapsed();
    let wire: usize = records.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut back = 0;
    for r in &records {
        d.push(r);
        while let Some((p, _)) = d.next_record().unwrap() {
            back += p.len();
        }
    }
    let dt = t.elapsed();
    assert_eq!(back, data.len());
    (wire, ct, dt)
}

/// Time to seal `data` with ChaCha20-Poly1305 in TLS-record-sized pieces.
fn chacha(data: &[u8]) -> Duration {
    thread_local! {
        static KEY: LessSafeKey =
            LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).unwrap());
    }
    KEY.with(|key| seal(key, data))
}

/// See [`chacha`].
fn seal(key: &LessSafeKey, data: &[u8]) -> Duration {
    let t = Instant::now();
    for (i, piece) in data.chunks(16 * 1024).enumerate() {
        let mut buf = piece.to_vec();
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .unwrap();
    }
    t.elapsed()
}

/// Resident set of this process (KiB).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn mb_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

fn memory(codec: Codec) {
    let msg = json(64 * 1024);
    let before = rss_kib();
    let mut keep = Vec::new();
    for _ in 0..200 {
        let mut c = Compressor::new(codec).unwrap().unwrap();
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        d.push(&c.compress(&msg).unwrap());
        let _ = d.next_record().unwrap();
        keep.push((c, d));
    }
    let per = (rss_kib().saturating_sub(before)) as f64 / 200.0;
    println!(
        "{codec}: {per:.0} KiB per compressed stream (both directions), beside the 16 KiB of any idle stream"
    );
    drop(keep);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--memory") {
        return memory(if args.get(2).map(String::as_str) == Some("lz4") {
            Codec::Lz4
        } else {
            Codec::Zstd
        });
    }
    const N: usize = 32 << 20;
    let inputs = [
        ("JSON API", json(N)),
        ("log lines", log(N)),
        ("random (SSH/TLS)", noise(N)),
    ];
    let base = inputs
        .iter()
        .map(|(_, d)| chacha(d))
        .min()
        .unwrap_or_default();
    println!(
        "baseline: ChaCha20-Poly1305 sealing (the tunnel's own cost) {:.0} MB/s\n",
        mb_s(N, base)
    );
    println!(
        "{:<18} {:<5} {:>7} {:>14} {:>14} {:>14} {:>14}",
        "traffic", "codec", "write", "wire/plain", "compress MB/s", "decomp. MB/s", "CPU vs ChaCha"
    );
    for (name, data) in &inputs {
        for codec in [Codec::Zstd, Codec::Lz4] {
            for write in [64 * 1024, 1400, 200] {
                let (wire, ct, dt) = run(codec, data, write);
                // Both ends' work on one MB, against sealing it once.
                let cpu = (ct + dt).as_secs_f64() / base.as_secs_f64();
                println!(
                    "{:<18} {:<5} {:>7} {:>14.3} {:>14.0} {:>14.0} {:>13.2}x",
                    name,
                    codec.to_string(),
                    write,
                    wire as f64 / data.len() as f64,
                    mb_s(data.len(), ct),
                    mb_s(data.len(), dt),
                    cpu
                );
            }
        }
    }
    // Memory per compressed stream (both directions' contexts and history,
    // after 64 KiB each way), from a fresh process's resident size.
    let me = std::env::current_exe().unwrap();
    for codec in ["zstd", "lz4"] {
        let out = std::process::Command::new(&me)
            .args(["--memory", codec])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!();
    // One interactive write (a keystroke's record, a small JSON request):
    // added latency at both ends, against sealing it.
    println!();
    for (name, size) in [("keystroke", 1usize), ("small request", 300)] {
        let msg = json(size.max(1));
        for codec in [Codec::Zstd, Codec::Lz4] {
            let mut c = Compressor::new(codec).unwrap().unwrap();
            let mut d = Decompressor::new(codec).unwrap().unwrap();
            // Warm: the first record allocates the contexts.
            d.push(&c.compress(&msg).unwrap());
            let _ = d.next_record().unwrap();
            let rounds = 20_000;
            let t = Instant::now();
            let mut wire = 0;
            for _ in 0..rounds {
                let r = c.compress(&msg).unwrap();
                wire += r.len();
                d.push(&r);
                let _ = d.next_record().unwrap();
            }
            let per = t.elapsed() / rounds;
            // Sealing each write as its own TLS record.
            let t = Instant::now();
            for _ in 0..rounds {
                let _ = chacha(&msg);
            }
            let seal = t.elapsed() / rounds;
            println!(
                "{name} ({size} B) {codec}: {:.1} µs per write at both ends ({:.1}x sealing it), {:.1} B on the wire",
                per.as_secs_f64() * 1e6,
                per.as_secs_f64() / seal.as_secs_f64().max(1e-9),
                wire as f64 / rounds as f64
            );
        }
    }
}
