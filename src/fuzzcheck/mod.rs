//! The properties the fuzzers check, shared by the fuzz targets (`fuzz/fuzz_targets/`, nightly,
//! cargo-fuzz) and the corpus replay (`tests/fuzz_corpus.rs`, stable `cargo test`).
//!
//! Each check takes arbitrary bytes and panics, with a message saying which property broke, if
//! the SIP core misbehaves on them. Keeping them here rather than in the fuzz crate means the
//! stable test suite replays every committed input (`fixtures/fuzz/<target>/`) through exactly
//! the code the fuzzer ran, so CI needs no nightly toolchain and a fixed bug stays fixed.
//!
//! - [`parse`]: whatever [`parse_message`] accepts survives serialise → parse unchanged, and
//!   the wire form is stable; the parser agrees with the plain reference parser it replaced
//!   (`fuzzcheck/reference.rs`), result for result and error for error.
//! - [`framer`]: the [`Framer`] yields the same frames whether the bytes arrive whole, one at a
//!   time, or cut where the input says; no frame exceeds the limit.
//! - [`proxy`]: arbitrary bytes on several connections, time jumps, closes and reopens: no
//!   panic, every message the proxy sends parses, every MESSAGE is answered and never more
//!   often than it (or a retransmission) arrived, and once every connection is closed and the
//!   timers have run the proxy holds nothing.
//!
//! Not part of the crate's API: hidden from the docs, public only for the fuzz crate and the
//! integration test.

mod proxy;
pub mod reference;

pub use proxy::proxy;

use crate::sip::{DEFAULT_MAX_MESSAGE_SIZE, Frame, FrameError, Framer, parse_message};

/// The parser agrees with the reference parser; parse → serialise → parse gives the same
/// message, and serialising is stable.
pub fn parse(data: &[u8]) {
    let parsed = parse_message(data);
    assert_eq!(
        parsed,
        reference::parse_message(data),
        "the parser and the reference parser disagree"
    );
    let Ok(message) = parsed else {
        return;
    };
    let wire = message.to_bytes();
    match parse_message(&wire) {
        Ok(again) => {
            assert_eq!(
                again, message,
                "parse → serialise → parse changed the message"
            );
            assert_eq!(again.to_bytes(), wire, "serialising is not stable");
        }
        Err(error) => panic!(
            "the serialised form of an accepted message does not parse ({error}): {:?}",
            String::from_utf8_lossy(&wire)
        ),
    }
}

/// Frames from one framer fed `chunks` in turn.
fn frame_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
) -> Vec<Result<Frame, FrameError>> {
    let mut framer = Framer::new(max);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        frames.extend(std::iter::from_fn(|| framer.pop()));
    }
    frames
}

/// The framer's output does not depend on how the stream is cut.
///
/// Input: one byte choosing the size limit, one byte giving a number of cuts (0–15), two bytes
/// (little-endian) per cut position, then the stream.
pub fn framer(data: &[u8]) {
    let [size, cuts, rest @ ..] = data else {
        return;
    };
    let max = match size {
        0 => DEFAULT_MAX_MESSAGE_SIZE,
        n => 16 + usize::from(*n) * 8,
    };
    let cut_bytes = usize::from(cuts % 16) * 2;
    let (cuts, stream) = rest.split_at(cut_bytes.min(rest.len()));
    let mut cuts: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let whole = frame_chunks([stream], max);
    let bytewise = frame_chunks(stream.chunks(1), max);
    assert_eq!(bytewise, whole, "one byte at a time differs from whole");
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        chunks.push(&stream[start..cut]);
        start = cut;
    }
    assert_eq!(
        frame_chunks(chunks, max),
        whole,
        "cut where the input says differs from whole"
    );
    for frame in &whole {
        if let Ok(Frame::Message(message)) = frame {
            assert!(message.len() <= max, "a {}-byte frame", message.len());
            parse(message);
        }
    }
}
