//! `summary()` on a narrow terminal: Keras 3 draws its table with rich, which shrinks the columns
//! to fit the console (at most `COLUMNS - 4` wide) and wraps or cuts the cells. Every width and
//! both tables are compared with what Keras 3.15.1 printed at `COLUMNS=W`
//! (tools/make_summary_width_reference.py).

use frostnet::saving::load_model;
use frostnet::{SummaryOptions, SummaryStyle};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/summary_width/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn summaries_shrink_to_the_terminal_as_keras_does() {
    for kind in ["sequential", "functional"] {
        let path = format!(
            "{}/tests/fixtures/summary_width/{kind}.keras",
            env!("CARGO_MANIFEST_DIR")
        );
        let model = load_model(&path).unwrap();
        for width in [40, 60, 80, 100, 120, 200] {
            for show_trainable in [false, true] {
                let got = model.summary_with(&SummaryOptions {
                    show_trainable,
                    style: SummaryStyle::Keras3,
                    console_width: Some(width),
                });
                let name = format!(
                    "{kind}_{width}{}.txt",
                    if show_trainable { "_trainable" } else { "" }
                );
                assert_eq!(got, fixture(&name), "{name}");
            }
        }
        // No console width: the canonical table, as Keras prints it on a wide terminal.
        let wide = model.summary_with(&SummaryOptions {
            show_trainable: true,
            ..Default::default()
        });
        assert_eq!(
            wide,
            fixture(&format!("{kind}_200_trainable.txt")),
            "{kind}"
        );
    }
}
