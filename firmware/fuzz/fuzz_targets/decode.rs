//! Decodes arbitrary bytes as a tunnel would: frame after frame. Must never
//! panic, and every decoded frame must re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok((frame, used)) = wire::decode(rest, 4096) {
        assert!(used > 0 && used <= rest.len());
        let mut again = Vec::new();
        wire::encode(&frame, &mut again);
        assert_eq!(again, &rest[..used], "re-encoding differs for {frame:?}");
        rest = &rest[used..];
    }
});
