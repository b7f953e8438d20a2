//! The parser as it was before it was made fast: the plain, obviously-right version, kept as
//! the oracle the fuzzer and the corpus test compare [`parse_message`](crate::sip::parse_message)
//! with, result for result and error for error. A check the fast parser dropped, or an error
//! it reports in a different order, shows up as a difference here.
//!
//! The start line is the exception: this file calls the parser's own `parse_start_line`
//! instead of keeping a copy of it (a copy would only check the parser against itself). What
//! guards the start line is the round trip in [`parse`](super::parse): serialise → parse gives
//! the same message.
//!
//! Do not optimise this file: its value is that it is simple.

use crate::sip::header::Headers;
use crate::sip::message::{Message, Request, Response};
use crate::sip::names::{canonical_name, is_token};
use crate::sip::parse::{ParseError, StartLine, parse_start_line};
use crate::sip::uri::truncate;

/// Where the headers end: the index just past the first `\r\n\r\n`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// The first control character of a head that is not part of a line end: anything below
/// 0x20 but HTAB and LF, a CR not followed by LF, and DEL.
fn check_controls(head: &[u8]) -> Result<(), ParseError> {
    let mut line = 1;
    for (at, &byte) in head.iter().enumerate() {
        match byte {
            b'\n' => line += 1,
            b'\t' => {}
            b'\r' if head.get(at + 1) == Some(&b'\n') => {}
            0..0x20 | 0x7f => return Err(ParseError::ControlCharacter { byte, line }),
            _ => {}
        }
    }
    Ok(())
}

/// Header lines of a head (after the start line), with folded continuation lines joined.
fn header_lines(head: &str) -> impl Iterator<Item = String> + '_ {
    let mut lines = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip(1)
        .peekable();
    std::iter::from_fn(move || {
        let mut line = lines.next()?.to_owned();
        while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            line.push(' ');
            line.push_str(next.trim());
        }
        Some(line)
    })
    .filter(|l| !l.is_empty())
}

/// The Content-Length of a head, `Ok(None)` if absent. Compact `l` counts.
fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let head = String::from_utf8_lossy(head);
    let mut found: Option<(usize, String)> = None;
    for line in header_lines(&head) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if !(name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l")) {
            continue;
        }
        let value = value.trim();
        let invalid = || ParseError::InvalidContentLength {
            value: truncate(value, 40),
        };
        if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let length = value.parse().map_err(|_| invalid())?;
        match &found {
            Some((previous, _)) if *previous != length => return Err(invalid()),
            _ => found = Some((length, value.to_owned())),
        }
    }
    Ok(found.map(|(length, _)| length))
}

/// Parses one complete message. If Content-Length is present it must match the body exactly;
/// if absent, everything after the headers is the body.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    let head_end = find_head_end(bytes, 0).ok_or(ParseError::MissingHeadEnd)?;
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| ParseError::HeadNotUtf8)?;
    check_controls(head.as_bytes())?;
    let body = &bytes[head_end..];
    if let Some(declared) = content_length(head.as_bytes())?
        && declared != body.len()
    {
        return Err(ParseError::BodyLengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    let start = head.split('\n').next().unwrap_or("");
    let start = start.strip_suffix('\r').unwrap_or(start);
    let mut headers = Headers::new();
    for line in header_lines(head) {
        let (name, value) = line
            .split_once(':')
            .filter(|(name, _)| is_token(name.trim()))
            .ok_or_else(|| ParseError::InvalidHeaderLine {
                line: truncate(&line, 200),
            })?;
        let name = canonical_name(name.trim());
        if name != "Content-Length" {
            headers.push_parsed(&name, value.trim());
        }
    }
    let body = body.to_vec();
    parse_start_line(start).map(|start| match start {
        StartLine::Request { method, uri } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}
