//! The seed cases' summaries, byte for byte against what Keras 3 and tf-keras printed.

use frostnet::layers::clear_session;
use frostnet::{seed, SummaryOptions, SummaryStyle};

fn fixture(name: &str) -> Option<String> {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/seed_cases/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .ok()
}

fn check(case: &str, style: SummaryStyle, show_trainable: bool) {
    let prefix = match style {
        SummaryStyle::Keras3 => "keras3",
        SummaryStyle::Classic => "tfkeras",
    };
    let file = format!(
        "{prefix}_{case}{}",
        if show_trainable {
            "_show_trainable"
        } else {
            ""
        }
    );
    let want = fixture(&file).unwrap_or_else(|| panic!("missing fixture {file}"));
    clear_session();
    let model = seed::build(case).unwrap();
    let got = model.summary_with(&SummaryOptions {
        show_trainable,
        style,
        ..Default::default()
    });
    assert_eq!(
        got, want,
        "{file}:\n--- got ---\n{got}\n--- want ---\n{want}"
    );
}

const CASES: [&str; 8] = ["a", "b", "c", "d", "d2", "e", "e2", "f"];

#[test]
fn keras3_summaries_match_byte_for_byte() {
    for case in CASES {
        check(case, SummaryStyle::Keras3, false);
        check(case, SummaryStyle::Keras3, true);
    }
}

#[test]
fn classic_summaries_match_byte_for_byte() {
    for case in CASES {
        check(case, SummaryStyle::Classic, false);
        check(case, SummaryStyle::Classic, true);
    }
}
