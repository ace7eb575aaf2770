use proptest::prelude::*;
use wire::Codec;

use super::*;

/// JSON-like text: what an app's API traffic looks like.
fn json(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"user\":\"tech-{}\",\"status\":\"ok\",\"lat\":{}.{:04},\"items\":[{},{},{}]}}\n",
                i % 37,
                48 + i % 3,
                (i * 7919) % 10_000,
                i % 11,
                i * 3 % 17,
                i * 5 % 23
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// Compresses `writes` one by one, delivers the records cut at `cuts`,
/// decompresses everything, and returns it (with the stream bytes counted).
fn round_trip(codec: Codec, writes: &[Vec<u8>], cuts: &[usize]) -> (Vec<u8>, usize, usize) {
    let mut c = Compressor::new(codec).unwrap().unwrap();
    let mut d = Decompressor::new(codec).unwrap().unwrap();
    let mut wire = Vec::new();
    for w in writes {
        wire.extend(c.compress(w).unwrap());
    }
    let mut out = Vec::new();
    let mut counted = 0;
    let mut at = 0;
    let mut cut = cuts.iter().cycle();
    while at < wire.len() {
        let n = (*cut.next().unwrap_or(&1)).max(1).min(wire.len() - at);
        d.push(&wire[at..at + n]);
        at += n;
        while let Some((plain, used)) = d.next_record().unwrap() {
            out.extend(plain);
            counted += used;
        }
    }
    assert_eq!(d.pending(), 0);
    (out, counted, wire.len())
}

#[test]
fn every_write_is_one_flushed_record_and_comes_back_whole() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let writes: Vec<Vec<u8>> = (0..50).map(|i| json(100 + i * 37)).collect();
        let (out, counted, sent) = round_trip(codec, &writes, &[1, 7, 300, 4096]);
        assert_eq!(out, writes.concat(), "{codec}");
        assert_eq!(counted, sent, "{codec}: every stream byte counted once");
    }
}

#[test]
fn a_small_write_is_decodable_at_once_without_waiting_for_more() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let mut c = Compressor::new(codec).unwrap().unwrap();
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        for key in [&b"l"[..], b"s", b" ", b"-", b"l", b"\n"] {
            d.push(&c.compress(key).unwrap());
            let (plain, _) = d.next_record().unwrap().expect("a whole record per write");
            assert_eq!(plain, key);
        }
    }
}

#[test]
fn text_compresses_and_history_helps_small_records() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let data = json(256 * 1024);
        // 200-byte writes: each record alone would hardly compress.
        let writes: Vec<Vec<u8>> = data.chunks(200).map(<[u8]>::to_vec).collect();
        let (_, _, sent) = round_trip(codec, &writes, &[65536]);
        // Alone, a 200-byte piece of JSON hardly compresses.
        assert!(
            sent * 2 < data.len(),
            "{codec}: {sent} bytes for {} of JSON in small writes",
            data.len()
        );
    }
}

#[test]
fn a_large_write_is_cut_into_records_of_at_most_64_kib() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut c = Compressor::new(codec).unwrap().unwrap();
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        d.push(&c.compress(&data).unwrap());
        let mut records = Vec::new();
        while let Some((plain, _)) = d.next_record().unwrap() {
            assert!(plain.len() <= MAX_RECORD);
            records.push(plain);
        }
        assert_eq!(records.len(), 5, "{codec}");
        assert_eq!(records.concat(), data);
    }
}

#[test]
fn none_needs_no_codec_and_unknown_ones_are_refused() {
    assert!(Compressor::new(Codec::None).unwrap().is_none());
    assert!(Decompressor::new(Codec::None).unwrap().is_none());
    assert_eq!(
        Decompressor::new(Codec::Other(9)).err(),
        Some(CodecError::Unknown(9))
    );
}

#[test]
fn a_record_declaring_more_than_64_kib_is_refused_before_any_work() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        let mut rec = Vec::new();
        put_varint(&mut rec, 10);
        put_varint(&mut rec, MAX_RECORD + 1);
        d.push(&rec);
        assert!(matches!(d.next_record(), Err(CodecError::Corrupt(_))));
    }
}

#[test]
fn a_record_that_expands_to_another_size_is_corrupt() {
    for codec in [Codec::Zstd, Codec::Lz4] {
        let mut c = Compressor::new(codec).unwrap().unwrap();
        let rec = c.compress(&json(1000)).unwrap();
        // Same payload, a declared size one byte short.
        let (comp, a) = get_varint(&rec).unwrap().unwrap();
        let (plain, b) = get_varint(&rec[a..]).unwrap().unwrap();
        let mut lie = Vec::new();
        put_varint(&mut lie, comp);
        put_varint(&mut lie, plain - 1);
        lie.extend_from_slice(&rec[a + b..]);
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        d.push(&lie);
        assert!(
            matches!(d.next_record(), Err(CodecError::Corrupt(_))),
            "{codec}"
        );
    }
}

#[test]
fn a_zstd_window_larger_than_64_kib_is_refused() {
    // A frame whose header asks for a 128 MiB window (streamed: no size
    // known), in one record: the decoder refuses it instead of allocating.
    use std::io::Write;
    let data = json(60_000);
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    e.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
        .unwrap();
    e.write_all(&data).unwrap();
    let p = e.finish().unwrap();
    let mut rec = Vec::new();
    put_varint(&mut rec, p.len());
    put_varint(&mut rec, data.len());
    rec.extend_from_slice(&p);
    let mut d = Decompressor::new(Codec::Zstd).unwrap().unwrap();
    d.push(&rec);
    assert!(d.next_record().is_err());
}

proptest! {
    #[test]
    fn any_writes_cut_anywhere_come_back_exactly(
        writes in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..3000),
                (0usize..5000).prop_map(json),
                (0u8..4, 0usize..100_000).prop_map(|(b, n)| vec![b; n]),
            ],
            1..12,
        ),
        cuts in prop::collection::vec(1usize..70_000, 1..8),
        lz4 in any::<bool>(),
    ) {
        let codec = if lz4 { Codec::Lz4 } else { Codec::Zstd };
        let (out, counted, sent) = round_trip(codec, &writes, &cuts);
        prop_assert_eq!(out, writes.concat());
        prop_assert_eq!(counted, sent);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_expand_beyond_a_record(
        bytes in prop::collection::vec(any::<u8>(), 0..4000),
        lz4 in any::<bool>(),
    ) {
        let codec = if lz4 { Codec::Lz4 } else { Codec::Zstd };
        let mut d = Decompressor::new(codec).unwrap().unwrap();
        d.push(&bytes);
        for _ in 0..100 {
            match d.next_record() {
                Ok(Some((plain, used))) => {
                    prop_assert!(plain.len() <= MAX_RECORD);
                    prop_assert!(used > 0);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
}
