//! `cargo +nightly fuzz run frame_decoder` (from crates/protocol): arbitrary bytes, fed in
//! arbitrary pieces, must never panic and never buffer more than one frame.
#![no_main]

use ferry_protocol::{FrameDecoder, decode_payload};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let _ = decode_payload(data, LIMIT);
    // The first byte picks the piece size for the stream decoder.
    let (step, rest) = match data.split_first() {
        Some((s, r)) => (usize::from(*s).max(1), r),
        None => return,
    };
    let mut d = FrameDecoder::new(LIMIT);
    for piece in rest.chunks(step) {
        if d.feed(piece).is_err() {
            break;
        }
        assert!(d.buffered() <= LIMIT + 4);
    }
});
