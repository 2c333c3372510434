//! Fuzzes `FrameCodec` decoding: the first bytes of an input choose the limit, the codec and
//! where the stream is split; the rest is the stream. The decoder must not panic, must decode
//! the split stream like the whole one (as `shared/protocol/tests/framing_props.rs` checks on
//! generated streams), and must keep its buffer within a bound set by its limit.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mcli_protocol::framing::{Frame, FrameCodec, FrameError, Framing};
use tokio_util::codec::Decoder;

/// The header section limit of the decoder (`MAX_HEADER_BYTES` in `framing.rs`).
const MAX_HEADER_BYTES: usize = 8 * 1024;

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Message(Vec<u8>),
    TooLarge,
    Fault(&'static str),
}

fn event_of(result: Result<Option<Frame>, FrameError>) -> Option<Event> {
    match result {
        Ok(Some(Frame::Message(bytes))) => Some(Event::Message(bytes.to_vec())),
        Ok(Some(Frame::TooLarge { .. })) => Some(Event::TooLarge),
        Ok(None) => None,
        Err(FrameError::BadHeader(_)) => Some(Event::Fault("bad header")),
        Err(FrameError::Truncated) => Some(Event::Fault("truncated")),
        Err(FrameError::Io(_)) => Some(Event::Fault("io")),
    }
}

/// Decodes `input` fed in pieces of `piece` bytes (all at once when 0), checking the buffer's
/// size after each step.
fn decode(mut codec: FrameCodec, max: usize, input: &[u8], piece: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    let step = if piece == 0 { input.len().max(1) } else { piece };
    for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            let event = event_of(codec.decode(&mut buf));
            if piece != 0 {
                let bound = 2 * (max + MAX_HEADER_BYTES + piece) + 4096;
                assert!(buf.capacity() <= bound, "buffer of {} bytes (bound {bound})", buf.capacity());
            }
            match event {
                None => break,
                Some(event @ Event::Fault(_)) => {
                    events.push(event);
                    return events;
                }
                Some(event) => events.push(event),
            }
        }
    }
    while let Some(event) = event_of(codec.decode_eof(&mut buf)) {
        let fault = matches!(event, Event::Fault(_));
        events.push(event);
        if fault {
            break;
        }
    }
    events
}

/// The shapes on which splitting is known to change the result (see the ignored tests of
/// `framing_props.rs`): skipped here too, so that the fuzzer looks for new ones.
fn has_known_divergence(input: &[u8], max: usize) -> bool {
    input.split(|b| *b == b'\n').any(|line| {
        let text = line.trim_ascii_start();
        let blank_and_long = line.len() > max && line.iter().all(u8::is_ascii_whitespace);
        let at_limit_before_cr = (line.len() == max + 1 || text.len() == max + 1) && line.last() == Some(&b'\r');
        blank_and_long || at_limit_before_cr
    })
}

fuzz_target!(|data: &[u8]| {
    let [limit, kind, piece, input @ ..] = data else { return };
    let max = [8, 16, 64, 1024][usize::from(*limit % 4)];
    let make = || match kind % 3 {
        0 => FrameCodec::detect(max),
        1 => FrameCodec::with_framing(Framing::Lines, max),
        _ => FrameCodec::with_framing(Framing::Headers, max),
    };
    let piece = usize::from(*piece % 32);
    let whole = decode(make(), max, input, 0);
    let split = decode(make(), max, input, piece.max(1));
    if !has_known_divergence(input, max) {
        assert_eq!(split, whole, "pieces of {} bytes", piece.max(1));
    }
});
