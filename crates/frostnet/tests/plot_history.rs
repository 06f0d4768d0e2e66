//! Training curves read back: the CsvLogger's file drawn as SVG whose polylines, mapped through
//! the axes' own ticks, give back the logged values; the callback redrawing after every epoch;
//! the PNG decoding.

use frostnet::datasets::load_digits;
use frostnet::layers::{ActivationFn, Dense, Input};
use frostnet::plot::{history_to_svg, plot_history, read_history_csv, HistoryPlotter};
use frostnet::training::{Adam, CsvLogger, FitOptions, History, LambdaCallback, Loss, Metric};
use frostnet::Sequential;
use std::collections::BTreeMap;

/// A file in a directory of its own per test (tests run in parallel and clean up after themselves).
fn scratch(test: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "frostnet_plot_history_{}_{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A linear map from two ticks: value -> pixel.
fn axis_map(ticks: &[(f64, f64)]) -> impl Fn(f64) -> f64 {
    assert!(ticks.len() >= 2, "an axis needs two ticks");
    let (v0, p0) = ticks[0];
    let (v1, p1) = ticks[ticks.len() - 1];
    move |v| p0 + (v - v0) / (v1 - v0) * (p1 - p0)
}

/// Checks every curve of `svg` against `history`: one panel per name without `val_` (loss
/// first), each with its `val_` twin; every point `(x, y)` is `(map_x(epoch), map_y(value))` by
/// the panel's own tick marks, to a hundredth of a pixel (the file's precision); the ticks are
/// evenly spaced and enclose the values.
fn check_curves(svg: &str, history: &History) {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let panels: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("panel"))
        .collect();
    let names: Vec<&str> = panels
        .iter()
        .map(|p| p.attribute("data-metric").unwrap())
        .collect();
    let mut want: Vec<&str> = history
        .history
        .keys()
        .filter(|k| !k.starts_with("val_"))
        .map(String::as_str)
        .collect();
    want.sort_by_key(|k| (*k != "loss", *k));
    assert_eq!(names, want);
    let mut seen = BTreeMap::new();
    for panel in &panels {
        let ticks = |axis: &str, coord: &str| -> Vec<(f64, f64)> {
            panel
                .descendants()
                .filter(|n| {
                    n.attribute("class") == Some("tick") && n.attribute("data-axis") == Some(axis)
                })
                .map(|n| {
                    (
                        n.attribute("data-value").unwrap().parse().unwrap(),
                        n.attribute(coord).unwrap().parse().unwrap(),
                    )
                })
                .collect()
        };
        let (xt, yt) = (ticks("x", "x1"), ticks("y", "y1"));
        // Evenly spaced ticks: the same value step and pixel step between neighbours.
        for t in [&xt, &yt] {
            for w in t.windows(3) {
                let (dv1, dv2) = (w[1].0 - w[0].0, w[2].0 - w[1].0);
                let (dp1, dp2) = (w[1].1 - w[0].1, w[2].1 - w[1].1);
                assert!(
                    (dv1 - dv2).abs() < 1e-9 && (dp1 - dp2).abs() < 0.02,
                    "{t:?}"
                );
            }
        }
        let (map_x, map_y) = (axis_map(&xt), axis_map(&yt));
        let (y_min, y_max) = (yt[0].0, yt[yt.len() - 1].0);
        for line in panel
            .descendants()
            .filter(|n| n.attribute("class") == Some("series"))
        {
            let name = line.attribute("data-series").unwrap();
            let values = history.get(name).unwrap();
            let pts: Vec<(f64, f64)> = line
                .attribute("points")
                .unwrap()
                .split(' ')
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            assert_eq!(pts.len(), values.len(), "{name}");
            for (i, ((x, y), v)) in pts.iter().zip(values).enumerate() {
                assert!(*v >= y_min && *v <= y_max, "{name}: {v} outside the axis");
                let epoch = (i + 1) as f64;
                assert!(
                    (x - map_x(epoch)).abs() <= 0.011,
                    "{name} epoch {epoch}: x {x}"
                );
                assert!(
                    (y - map_y(*v)).abs() <= 0.011,
                    "{name} epoch {epoch}: y {y} for {v}"
                );
            }
            seen.insert(name.to_string(), pts.len());
        }
    }
    // Every logged name drawn, in full.
    let all: BTreeMap<String, usize> = history
        .history
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    assert_eq!(seen, all);
}

#[test]
fn the_csv_loggers_file_draws_back_to_its_values_and_the_callback_redraws_each_epoch() {
    let digits = load_digits().unwrap();
    let ((x, y), _) = digits.split(400);
    let x = x.reshape(&[400, 64]).unwrap();
    let mut model = Sequential::new();
    model.add(Input::new(&[64])).unwrap();
    model
        .add(Dense::new(16).activation(ActivationFn::Relu))
        .unwrap();
    model
        .add(Dense::new(10).activation(ActivationFn::Softmax))
        .unwrap();
    model.compile(
        Adam::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let csv = scratch("fit", "log.csv");
    let live = scratch("fit", "live.svg");
    let live_path = live.clone();
    let counts = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let counts_in = counts.clone();
    let history = model
        .fit(
            &x,
            &y,
            FitOptions {
                epochs: 4,
                batch_size: 50,
                validation_split: 0.25,
                seed: Some(1),
                verbose: 0,
                callbacks: vec![
                    Box::new(CsvLogger::new(csv.to_str().unwrap())),
                    Box::new(HistoryPlotter::new(live.to_str().unwrap())),
                    // Runs after the plotter: the picture on disk has this epoch's points.
                    Box::new(LambdaCallback::new().on_epoch_end(move |_, _, _| {
                        let svg = std::fs::read_to_string(&live_path).unwrap();
                        let doc = roxmltree::Document::parse(&svg).unwrap();
                        let line = doc
                            .descendants()
                            .find(|n| n.attribute("data-series") == Some("val_loss"))
                            .unwrap();
                        counts_in
                            .borrow_mut()
                            .push(line.attribute("points").unwrap().split(' ').count());
                        Ok(())
                    })),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(*counts.borrow(), vec![1, 2, 3, 4]);
    let logged = read_history_csv(csv.to_str().unwrap()).unwrap();
    // The CSV holds exactly what fit returned (Rust prints f64 so that it parses back exactly).
    assert_eq!(logged.history, history.history);
    let names: Vec<&String> = logged.history.keys().collect();
    assert_eq!(names, ["accuracy", "loss", "val_accuracy", "val_loss"]);
    check_curves(&history_to_svg(&logged).unwrap(), &logged);
    check_curves(&std::fs::read_to_string(&live).unwrap(), &logged);
    std::fs::remove_dir_all(csv.parent().unwrap()).unwrap();
}

#[test]
fn a_nan_epoch_breaks_the_curve_and_flat_or_single_epochs_still_draw() {
    let mut h = History::default();
    h.history
        .insert("loss".into(), vec![2.0, f64::NAN, 1.0, 0.5]);
    h.history.insert("mae".into(), vec![0.3, 0.3, 0.3, 0.3]);
    let svg = history_to_svg(&h).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let loss_runs: Vec<usize> = doc
        .descendants()
        .filter(|n| n.attribute("data-series") == Some("loss"))
        .map(|n| n.attribute("points").unwrap().split(' ').count())
        .collect();
    assert_eq!(loss_runs, [1, 2]);
    let mut one = History::default();
    one.history.insert("loss".into(), vec![0.7]);
    check_curves(&history_to_svg(&one).unwrap(), &one);
    assert!(history_to_svg(&History::default()).is_err());
}

#[test]
#[cfg_attr(
    not(feature = "png"),
    ignore = "PNG needs the `png` feature (--all-features)"
)]
fn the_png_decodes_at_the_svgs_size() {
    let mut h = History::default();
    h.history.insert("loss".into(), vec![1.0, 0.5, 0.25]);
    h.history.insert("val_loss".into(), vec![1.1, 0.7, 0.6]);
    h.history.insert("accuracy".into(), vec![0.5, 0.7, 0.8]);
    let path = scratch("png", "curves.png");
    plot_history(&h, path.to_str().unwrap(), 96).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    // Two panels side by side, 420 x 280 each, 12 px margins.
    assert_eq!((info.width, info.height), (864, 304));
    // Some pixel is the training curve's blue.
    assert!(buf
        .chunks(4)
        .any(|p| (p[0], p[1], p[2]) == (0x1f, 0x77, 0xb4)));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
