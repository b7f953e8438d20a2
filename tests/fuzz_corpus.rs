//! Replays the committed fuzz corpus (`fixtures/fuzz/<target>/`: the minimised corpus and every
//! input that ever failed) through the same checks the fuzz targets run
//! (`lcs_sim::fuzzcheck`), so a stable `cargo test` guards what the nightly fuzzers found.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use lcs_sim::fuzzcheck;

/// Runs `check` on every file of `fixtures/fuzz/<target>/`; fails naming each input that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: corpus missing", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: inputs that fail: {failed:#?}");
}

#[test]
fn parse_corpus_round_trips() {
    replay("parse", fuzzcheck::parse);
}

#[test]
fn framer_corpus_ignores_chunking() {
    replay("framer", fuzzcheck::framer);
}

#[test]
fn proxy_corpus_answers_every_message_once_and_leaves_no_state() {
    replay("proxy", fuzzcheck::proxy);
}
