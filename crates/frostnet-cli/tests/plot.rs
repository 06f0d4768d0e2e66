//! The pictures the `frostnet` command draws: files that parse (SVG) or decode (PNG), and a bad
//! request answered by one line on stderr.

use std::process::Command;

fn frostnet(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frostnet"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("frostnet_cli_plot_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

#[test]
fn plot_model_draws_resnet50_with_the_frozen_prefix_and_a_png() {
    let svg = scratch("resnet50.svg");
    let (ok, err) = frostnet(&[
        "plot-model",
        "--app",
        "resnet50",
        "--freeze",
        "143",
        "--show-shapes",
        "--show-trainable",
        "--rankdir",
        "LR",
        "--output",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let nodes: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("node"))
        .collect();
    // keras.applications.ResNet50 has 177 layers; layers[:143] frozen leaves conv5 training.
    assert_eq!(nodes.len(), 177);
    let status = |name: &str| {
        nodes
            .iter()
            .find(|n| n.attribute("data-name") == Some(name))
            .unwrap()
            .attribute("data-status")
            .unwrap()
    };
    assert_eq!(status("conv1_conv"), "frozen");
    assert_eq!(status("conv5_block3_3_conv"), "trainable");
    assert_eq!(status("input_layer"), "none");

    let png = scratch("seed_d.png");
    let (ok, err) = frostnet(&[
        "plot-model",
        "--app",
        "seed_d",
        "--show-trainable",
        "--dpi",
        "192",
        "--output",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (w, h) = png_size(&png);
    assert!(w > 200 && h > 150, "{w}x{h}");

    let (ok, err) = frostnet(&["plot-model", "--app", "seed_d", "--output", "model.gif"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("model.gif") && err.contains(".svg or .png"),
        "{err}"
    );
    // Only this test's files: the other test shares the directory.
    std::fs::remove_file(&svg).unwrap();
    std::fs::remove_file(&png).unwrap();
}

#[test]
fn plot_history_draws_a_csv_log_as_svg_and_png() {
    let csv = scratch("history/log.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    // The CsvLogger's layout: epoch (0-based), then the logged names sorted.
    std::fs::write(
        &csv,
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,1.25,0.45,1.5\n1,0.75,0.5,0.6,0.875\n",
    )
    .unwrap();
    let svg = csv.with_file_name("curves.svg");
    let (ok, err) = frostnet(&[
        "plot-history",
        csv.to_str().unwrap(),
        "--output",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let series: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-series"))
        .collect();
    assert_eq!(series, ["loss", "val_loss", "accuracy", "val_accuracy"]);
    let png = csv.with_file_name("curves.png");
    let (ok, err) = frostnet(&[
        "plot-history",
        csv.to_str().unwrap(),
        "--output",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(png_size(&png), (864, 304));
    std::fs::write(&csv, "epoch,loss\n0,1.0\n1,oops\n").unwrap();
    let (ok, err) = frostnet(&["plot-history", csv.to_str().unwrap(), "--output", "x.svg"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("log.csv: line 3: loss 'oops' is not a number"),
        "{err}"
    );
    std::fs::remove_dir_all(csv.parent().unwrap()).unwrap();
}
