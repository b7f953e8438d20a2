//! Parsing a 440-byte MESSAGE: `lcs_sim::sip::parse_message` side by side with the `rsip`
//! crate on the same bytes, in the same process (issue 10; see BENCHMARKS.md, "SIP parser").
//!
//! Method: warm both up, then 15 rounds, alternating which parser goes first; each round times
//! a batch of parses per parser and records nanoseconds per parse. Reported: the median per
//! parser and the median of the per-round ratios ours / rsip. Serialisation (`to_bytes`) is
//! timed the same way for reference. Also checks, once, that both parsers accept the message
//! and that the framer parses a head once while its body trickles in.
//!
//! `cargo bench --bench sip_parse` (add `-- --quick` for a short run). For an instruction
//! count that the machine's load cannot disturb, run one parser alone under callgrind:
//! `valgrind --tool=callgrind <bench binary> --only ours 10000` (or `rsip`, or `before`: the
//! parser this one replaced), and subtract a run with 0 parses.

use std::hint::black_box;
use std::time::Duration;

use lcs_sim::clock::monotonic_now;
// The parser before issue 10, kept as the fuzzers' reference (it also checks for control
// characters, which the old one did not: one more pass over the head).
use lcs_sim::fuzzcheck::reference::parse_message as before;
use lcs_sim::sip::{Frame, Framer, Message, parse_message};

/// A MESSAGE as a Windows Messenger client would send it through the proxy: two Vias, display
/// names, tags, a User-Agent and a short body. 440 bytes.
const MESSAGE: &[u8] = b"MESSAGE sip:bob@contoso.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:49152;branch=z9hG4bK.lcs.0.1f\r\n\
Via: SIP/2.0/TLS alice-pc.contoso.com:5061;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@contoso.com>;tag=9fxced76sl\r\n\
To: \"Bob\" <sip:bob@contoso.com>\r\n\
Call-ID: 3848276298220188511@alice-pc.contoso.com\r\n\
CSeq: 31862 MESSAGE\r\n\
User-Agent: RTC/1.3\r\n\
Content-Type: text/plain\r\n\
Content-Length: 34\r\n\
\r\n\
Hello Bob, your key was renewed :)";

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let start = monotonic_now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Side {
    name: &'static str,
    run: Box<dyn FnMut()>,
    samples: Vec<f64>,
}

/// Times the sides against each other: warm-up, then `rounds` rounds alternating the order.
fn compare(title: &str, mut sides: [Side; 2], rounds: usize, batch: u32, warm: Duration) {
    for side in &mut sides {
        let start = monotonic_now();
        while start.elapsed() < warm {
            per_call(1000, &mut side.run);
        }
    }
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = &mut sides[i];
            let ns = per_call(batch, &mut side.run);
            side.samples.push(ns);
        }
        ratios.push(sides[0].samples[round] / sides[1].samples[round]);
    }
    println!("{title}");
    for side in &mut sides {
        let (min, max) = side
            .samples
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        let med = median(&mut side.samples);
        println!(
            "  {:<22} median {med:7.0} ns/op  (min {min:.0}, max {max:.0})",
            side.name
        );
    }
    println!(
        "  ratio {} / {}: median {:.3}",
        sides[0].name,
        sides[1].name,
        median(&mut ratios)
    );
}

/// `--only ours|rsip|before N`: N parses by one parser and nothing else, for callgrind.
fn only(args: &[String]) -> bool {
    let Some(at) = args.iter().position(|a| a == "--only") else {
        return false;
    };
    let n: u32 = args
        .get(at + 2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    match args.get(at + 1).map(String::as_str) {
        Some("ours") => (0..n).for_each(|_| drop(black_box(parse_message(black_box(MESSAGE))))),
        Some("rsip") => (0..n).for_each(|_| {
            drop(black_box(rsip::SipMessage::try_from(black_box(MESSAGE))));
        }),
        Some("before") => (0..n).for_each(|_| drop(black_box(before(black_box(MESSAGE))))),
        other => panic!("--only ours|rsip|before, not {other:?}"),
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if only(&args) {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, batch, warm) = if quick {
        (5, 20_000, Duration::from_millis(200))
    } else {
        (15, 100_000, Duration::from_secs(1))
    };
    assert_eq!(MESSAGE.len(), 440);
    let ours = parse_message(MESSAGE).expect("our parser accepts the bench message");
    assert!(matches!(ours, Message::Request(_)));
    rsip::SipMessage::try_from(MESSAGE).expect("rsip accepts the bench message");
    println!(
        "{}-byte MESSAGE, {rounds} rounds of {batch} parses\n",
        MESSAGE.len()
    );

    compare(
        "parse",
        [
            Side {
                name: "lcs_sim parse_message",
                run: Box::new(|| drop(black_box(parse_message(black_box(MESSAGE))))),
                samples: Vec::new(),
            },
            Side {
                name: "rsip SipMessage",
                run: Box::new(|| drop(black_box(rsip::SipMessage::try_from(black_box(MESSAGE))))),
                samples: Vec::new(),
            },
        ],
        rounds,
        batch,
        warm,
    );

    compare(
        "parse, before (the reference parser)",
        [
            Side {
                name: "reference parser",
                run: Box::new(|| drop(black_box(before(black_box(MESSAGE))))),
                samples: Vec::new(),
            },
            Side {
                name: "rsip SipMessage",
                run: Box::new(|| drop(black_box(rsip::SipMessage::try_from(black_box(MESSAGE))))),
                samples: Vec::new(),
            },
        ],
        rounds,
        batch,
        warm,
    );

    let rsip_message = rsip::SipMessage::try_from(MESSAGE).expect("parsed above");
    compare(
        "serialise",
        [
            Side {
                name: "lcs_sim to_bytes",
                run: Box::new(move || drop(black_box(black_box(&ours).to_bytes()))),
                samples: Vec::new(),
            },
            Side {
                name: "rsip to_string",
                run: Box::new(move || drop(black_box(black_box(&rsip_message).to_string()))),
                samples: Vec::new(),
            },
        ],
        rounds,
        batch,
        warm,
    );

    // The framer parses a head once, however slowly its body arrives.
    let mut framer = Framer::default();
    let mut frames = Vec::new();
    for byte in MESSAGE {
        framer.push(std::slice::from_ref(byte));
        frames.extend(framer.pop());
    }
    assert_eq!(frames, [Ok(Frame::Message(MESSAGE.to_vec()))]);
    println!(
        "\nframer, {} bytes pushed one at a time: {} head parse(s)",
        MESSAGE.len(),
        framer.heads_parsed()
    );
}
