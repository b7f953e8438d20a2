//! The README's examples are what a newcomer copies first: the scenario file it shows must run
//! as written and its expectations must hold, or the first thing a user tries says the tool is
//! broken. Read from README.md itself, so the test follows the text.

mod common;

use common::cli::lcs;

/// The body of the README's first fenced block of `lang` that contains `marker`.
fn fenced_block(lang: &str, marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let fence = format!("```{lang}\n");
    readme
        .split(fence.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(body, _)| body))
        .find(|body| body.contains(marker))
        .unwrap_or_else(|| panic!("README.md has no ```{lang} block containing {marker:?}"))
        .to_string()
}

#[test]
fn the_readme_scenario_file_runs_as_written_and_its_expectations_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("my-incident.toml");
    std::fs::write(&path, fenced_block("toml", "name = \"my-incident\"")).unwrap();
    let out = lcs(&["reproduce", "--scenario", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every expectation the example lists is checked, not only some.
    let listed = fenced_block("toml", "name = \"my-incident\"")
        .split("[expect]")
        .nth(1)
        .expect("an [expect] table")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
        .count();
    assert!(
        stdout.contains(&format!("Expectations: {listed} of {listed} hold")),
        "{stdout}"
    );
}
