//! Keras's image preprocessing layers (issue #15, point 3) against Keras 3.15.1
//! (tools/make_preprocessing_reference.py): inference outputs of Resizing / CenterCrop /
//! RandomCrop, training-mode outputs of the random layers with their random factor pinned to one
//! value (Keras's exact geometric transforms, fill modes and interpolations), a Keras-made
//! `.keras` holding all of them; plus, by mathematics, flips and crops, identity at inference,
//! seeding and the gradient rule.

use frostnet::datasets::Interpolation;
use frostnet::io::npy::read_npz;
use frostnet::layers::*;
use frostnet::saving::{build_model, load_model, model_config, save_keras};
use frostnet::tensor::random;
use frostnet::{Error, Mode, Tensor};
use std::collections::HashMap;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/preprocessing/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn arrays(name: &str) -> HashMap<String, Tensor> {
    read_npz(&fixture(name)).unwrap()
}

fn close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let err = got.max_abs_diff(want);
    assert!(err <= tol, "{what}: max abs error {err}");
}

fn ctx(mode: Mode, seed: u64) -> ForwardCtx {
    ForwardCtx {
        mode,
        keep: false,
        input_needs_grad: Vec::new(),
        rng: random::rng(Some(seed)),
    }
}

/// Builds `layer` for `x`'s per-sample shape and runs it once in `mode`.
fn run(layer: &mut dyn Layer, x: &Tensor, mode: Mode) -> Tensor {
    let shape = shape_of(&x.shape()[1..]);
    layer.build(&[shape]).unwrap();
    layer.forward(&[x], &mut ctx(mode, 7)).unwrap()
}

#[test]
fn deterministic_layers_match_keras_at_inference() {
    let a = arrays("preprocessing.npz");
    let x = &a["x"];
    let cases: Vec<(&str, Box<dyn Layer>)> = vec![
        ("resize_bilinear", Box::new(Resizing::new(7, 9))),
        (
            "resize_nearest",
            Box::new(Resizing::new(7, 9).interpolation(Interpolation::Nearest)),
        ),
        ("resize_up", Box::new(Resizing::new(13, 17))),
        (
            "resize_crop",
            Box::new(Resizing::new(7, 5).crop_to_aspect_ratio(true)),
        ),
        (
            "resize_crop_wide",
            Box::new(Resizing::new(4, 11).crop_to_aspect_ratio(true)),
        ),
        (
            "resize_pad",
            Box::new(
                Resizing::new(6, 4)
                    .pad_to_aspect_ratio(true)
                    .fill_value(0.5),
            ),
        ),
        (
            "resize_pad_wide",
            Box::new(
                Resizing::new(4, 10)
                    .pad_to_aspect_ratio(true)
                    .fill_value(0.25),
            ),
        ),
        ("center_crop", Box::new(CenterCrop::new(6, 7))),
        ("center_crop_up", Box::new(CenterCrop::new(12, 8))),
        // Keras 3 returns RandomCrop's input unchanged at inference.
        ("random_crop_infer", Box::new(RandomCrop::new(4, 5))),
    ];
    for (name, mut layer) in cases {
        for mode in [Mode::Infer, Mode::Train] {
            if name == "random_crop_infer" && mode == Mode::Train {
                continue;
            }
            let y = run(layer.as_mut(), x, mode);
            close(&y, &a[name], 1e-5, &format!("{name} ({mode:?})"));
        }
    }
}

const FILLS: [(&str, FillMode); 4] = [
    ("reflect", FillMode::Reflect),
    ("wrap", FillMode::Wrap),
    ("constant", FillMode::Constant),
    ("nearest", FillMode::Nearest),
];
const INTERPS: [(&str, Interpolation); 2] = [
    ("bilinear", Interpolation::Bilinear),
    ("nearest", Interpolation::Nearest),
];

/// Each warping layer, with its factor pinned (equal bounds), against Keras's training-mode
/// output for every fill mode and interpolation. Rotation matrices hold sin/cos rounded to f32,
/// which may differ from TensorFlow's in the last bit, so bilinear outputs are compared at 1e-5
/// and nearest ones exactly except where a sample point lies within rounding of a pixel edge.
#[test]
fn pinned_warps_match_keras_in_training() {
    let a = arrays("preprocessing.npz");
    let x = &a["x"];
    for (fname, fill) in FILLS {
        for (iname, interp) in INTERPS {
            let k = format!("{fname}_{iname}");
            let cases: Vec<(String, Box<dyn Layer>)> = vec![
                (
                    format!("rot90_{k}"),
                    Box::new(
                        RandomRotation::new((0.25, 0.25))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
                (
                    format!("rot36_{k}"),
                    Box::new(
                        RandomRotation::new((0.1, 0.1))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
                (
                    format!("rotm54_{k}"),
                    Box::new(
                        RandomRotation::new((-0.15, -0.15))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
                (
                    format!("zoom_{k}"),
                    Box::new(
                        RandomZoom::new((-0.3, -0.3))
                            .width_factor((0.2, 0.2))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
                (
                    format!("zoomout_{k}"),
                    Box::new(
                        RandomZoom::new((0.5, 0.5))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
                (
                    format!("translate_{k}"),
                    Box::new(
                        RandomTranslation::new((0.3, 0.3), (-0.25, -0.25))
                            .fill_mode(fill)
                            .interpolation(interp)
                            .fill_value(0.3),
                    ),
                ),
            ];
            for (name, mut layer) in cases {
                let y = run(layer.as_mut(), x, Mode::Train);
                close(&y, &a[name.as_str()], 1e-5, &name);
            }
        }
    }
}

#[test]
fn pinned_colour_and_crop_layers_match_keras_in_training() {
    let a = arrays("preprocessing.npz");
    let x = &a["x"];
    let cases: Vec<(&str, Box<dyn Layer>, &Tensor)> = vec![
        (
            "contrast",
            Box::new(RandomContrast::new((-0.3, 0.3)).value_range(0.0, 1.0)),
            x,
        ),
        (
            "brightness_up",
            Box::new(RandomBrightness::new((0.1, 0.1)).value_range(0.0, 1.0)),
            x,
        ),
        (
            "brightness_down",
            Box::new(RandomBrightness::new((-0.4, -0.4)).value_range(0.0, 1.0)),
            x,
        ),
        (
            "random_crop_small",
            Box::new(RandomCrop::new(8, 9)),
            &a["x_small"],
        ),
        ("random_crop_tall", Box::new(RandomCrop::new(10, 5)), x),
    ];
    for (name, mut layer, input) in cases {
        let y = run(layer.as_mut(), input, Mode::Train);
        close(&y, &a[name], 1e-5, name);
    }
}

#[test]
fn keras_made_model_loads_predicts_and_round_trips() {
    let a = arrays("model.npz");
    let mut m = load_model(&fixture("model.keras")).unwrap();
    let classes: Vec<String> = m
        .layers()
        .iter()
        .map(|l| l.class_name().to_string())
        .collect();
    for c in [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomContrast",
        "RandomBrightness",
        "Resizing",
        "CenterCrop",
        "Normalization",
        "RandomCrop",
    ] {
        assert!(classes.iter().any(|k| k == c), "{c} missing: {classes:?}");
    }
    let pred = m.predict(&a["x"], 32).unwrap();
    close(&pred, &a["pred"], 1e-5, "Keras-made preprocessing model");

    let dir = std::env::temp_dir().join(format!("frostnet-preproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.keras").to_string_lossy().into_owned();
    save_keras(&m, &path).unwrap();
    let mut back = load_model(&path).unwrap();
    assert_eq!(model_config(&m), model_config(&back));
    assert_eq!(
        back.predict(&a["x"], 32).unwrap().data(),
        pred.data(),
        "prediction changed after the round trip"
    );
    let cfg = model_config(&back).to_string();
    for key in [
        "\"seed\":1",
        "\"mode\":\"horizontal\"",
        "\"factor\":[-0.1,0.1]",
        "\"crop_to_aspect_ratio\":true",
        "\"value_range\":[0.0,1.0]",
    ] {
        assert!(cfg.contains(key), "{key} missing from {cfg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every random layer, at inference, returns its input bit for bit.
#[test]
fn random_layers_pass_through_at_inference() {
    let x = arrays("preprocessing.npz")["x"].clone();
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(RandomFlip::new(FlipMode::HorizontalAndVertical)),
        Box::new(RandomRotation::new(0.5)),
        Box::new(RandomZoom::new(0.5)),
        Box::new(RandomTranslation::new(0.5, 0.5)),
        Box::new(RandomContrast::new(0.9)),
        Box::new(RandomBrightness::new(0.9)),
        Box::new(RandomCrop::new(3, 3)),
    ];
    for mut l in layers {
        let y = run(l.as_mut(), &x, Mode::Infer);
        assert_eq!(y.data(), x.data(), "{}", l.class_name());
        let y = run(l.as_mut(), &x, Mode::Train);
        assert_ne!(
            y.data(),
            x.data(),
            "{} did nothing in training",
            l.class_name()
        );
    }
}

fn mirrored(x: &[f32], h: usize, w: usize, c: usize, hor: bool, ver: bool) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for y in 0..h {
        for xx in 0..w {
            let (sy, sx) = (
                if ver { h - 1 - y } else { y },
                if hor { w - 1 - xx } else { xx },
            );
            for ch in 0..c {
                out[(y * w + xx) * c + ch] = x[(sy * w + sx) * c + ch];
            }
        }
    }
    out
}

#[test]
fn random_flip_flips_each_image_or_leaves_it() {
    let x = Tensor::from_vec(&[64, 3, 4, 2], (0..64 * 24).map(|v| v as f32).collect()).unwrap();
    for (mode, hor, ver) in [
        (FlipMode::Horizontal, true, false),
        (FlipMode::Vertical, false, true),
        (FlipMode::HorizontalAndVertical, true, true),
    ] {
        let y = run(&mut RandomFlip::new(mode).seed(3), &x, Mode::Train);
        let (mut kept, mut flipped) = (0, 0);
        for (a, b) in x.data().chunks(24).zip(y.data().chunks(24)) {
            if a == b {
                kept += 1;
            } else {
                assert_eq!(b, mirrored(a, 3, 4, 2, hor, ver).as_slice(), "{mode:?}");
                flipped += 1;
            }
        }
        assert!(
            kept > 16 && flipped > 16,
            "{mode:?}: {kept} kept, {flipped} flipped"
        );
    }
}

/// A 90° rotation of a square image is a permutation of its pixels: out[y][x] = in[x][n-1-y].
#[test]
fn rotation_by_a_quarter_turn_permutes_pixels() {
    let n = 5;
    let x = Tensor::from_vec(&[1, n, n, 1], (0..n * n).map(|v| v as f32).collect()).unwrap();
    for interp in [Interpolation::Nearest, Interpolation::Bilinear] {
        let y = run(
            &mut RandomRotation::new((0.25, 0.25)).interpolation(interp),
            &x,
            Mode::Train,
        );
        for r in 0..n {
            for c in 0..n {
                let want = x.data()[c * n + (n - 1 - r)];
                let got = y.data()[r * n + c];
                assert!(
                    (got - want).abs() < 1e-4,
                    "{interp:?} ({r},{c}): {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn random_crop_takes_one_window_per_batch() {
    let x = Tensor::from_vec(&[3, 6, 7, 1], (0..126).map(|v| v as f32).collect()).unwrap();
    let mut layer = RandomCrop::new(3, 4).seed(5);
    layer.build(&[shape_of(&[6, 7, 1])]).unwrap();
    let mut offsets = std::collections::HashSet::new();
    for call in 0..20 {
        let y = layer.forward(&[&x], &mut ctx(Mode::Train, call)).unwrap();
        assert_eq!(y.shape(), &[3, 3, 4, 1]);
        // Image 0 holds 0..42 row-major: its crop's first value gives the offset.
        let first = y.data()[0] as usize;
        let (top, left) = (first / 7, first % 7);
        assert!(top <= 3 && left <= 3);
        for b in 0..3 {
            for r in 0..3 {
                for c in 0..4 {
                    let want = (b * 42 + (top + r) * 7 + left + c) as f32;
                    assert_eq!(y.data()[b * 12 + r * 4 + c], want);
                }
            }
        }
        offsets.insert((top, left));
    }
    assert!(offsets.len() > 3, "offsets hardly vary: {offsets:?}");
}

fn seeded_layers(seed: Option<u64>) -> Vec<Box<dyn Layer>> {
    fn s<L: Layer + 'static>(l: L) -> Box<dyn Layer> {
        Box::new(l)
    }
    match seed {
        Some(k) => vec![
            s(RandomFlip::new(FlipMode::Horizontal).seed(k)),
            s(RandomRotation::new(0.2).seed(k)),
            s(RandomZoom::new(0.3).seed(k)),
            s(RandomTranslation::new(0.2, 0.2).seed(k)),
            s(RandomContrast::new(0.5).seed(k)),
            s(RandomBrightness::new(0.5).seed(k)),
            s(RandomCrop::new(4, 4).seed(k)),
        ],
        None => vec![
            s(RandomFlip::new(FlipMode::Horizontal)),
            s(RandomRotation::new(0.2)),
            s(RandomZoom::new(0.3)),
            s(RandomTranslation::new(0.2, 0.2)),
            s(RandomContrast::new(0.5)),
            s(RandomBrightness::new(0.5)),
            s(RandomCrop::new(4, 4)),
        ],
    }
}

/// A layer's own seed fixes its sequence of draws whatever the context's generator; without a
/// seed the context's generator decides.
#[test]
fn seeds_repeat_and_differ() {
    let x = Tensor::from_vec(
        &[16, 8, 8, 3],
        (0..16 * 192)
            .map(|v| (v % 97) as f32 / 97.0 * 255.0)
            .collect(),
    )
    .unwrap();
    let outputs = |seed: Option<u64>, ctx_seed: u64| -> Vec<Vec<f32>> {
        seeded_layers(seed)
            .into_iter()
            .map(|mut l| {
                l.build(&[shape_of(&[8, 8, 3])]).unwrap();
                let mut c = ctx(Mode::Train, ctx_seed);
                let mut v = l.forward(&[&x], &mut c).unwrap().data().to_vec();
                // The second call continues the layer's stream.
                v.extend(l.forward(&[&x], &mut c).unwrap().data());
                v
            })
            .collect()
    };
    let (a, b, c) = (
        outputs(Some(1), 10),
        outputs(Some(1), 11),
        outputs(Some(2), 10),
    );
    let (d, e, f) = (outputs(None, 10), outputs(None, 10), outputs(None, 11));
    for i in 0..a.len() {
        assert_eq!(a[i], b[i], "layer {i}: same seed, different output");
        assert_ne!(a[i], c[i], "layer {i}: different seeds, same output");
        assert_eq!(d[i], e[i], "layer {i}: same context seed, different output");
        assert_ne!(
            d[i], f[i],
            "layer {i}: different context seeds, same output"
        );
        let half = a[i].len() / 2;
        assert_ne!(
            a[i][..half],
            a[i][half..],
            "layer {i}: two calls drew the same"
        );
    }
}

/// Identity passes pass the gradient through; transformed ones refuse with a typed error.
#[test]
fn backward_passes_through_identity_and_refuses_transforms() {
    let x = arrays("preprocessing.npz")["x"].clone();
    for mut l in seeded_layers(Some(4)) {
        l.build(&[shape_of(&x.shape()[1..])]).unwrap();
        let mut c = ctx(Mode::Infer, 0);
        c.keep = true;
        let y = l.forward(&[&x], &mut c).unwrap();
        let g = l.backward(&y, &[true]).unwrap();
        assert_eq!(g[0].as_ref().unwrap().data(), x.data());
        let mut c = ctx(Mode::Train, 0);
        c.keep = true;
        let y = l.forward(&[&x], &mut c).unwrap();
        let err = l.backward(&y, &[true]).unwrap_err();
        assert!(matches!(err, Error::State(_)), "{}: {err}", l.class_name());
        assert!(err.to_string().contains(l.name()), "{err}");
    }
}

#[test]
fn invalid_options_are_errors_naming_the_layer() {
    let s = [shape_of(&[8, 8, 3])];
    assert!(RandomRotation::new(1.5).named("rot").build(&s).is_err());
    assert!(RandomZoom::new(-1.0).build(&s).is_err());
    assert!(RandomTranslation::new(0.1, (0.0, 1.5)).build(&s).is_err());
    assert!(RandomContrast::new(1.2).build(&s).is_err());
    assert!(Resizing::new(4, 4)
        .crop_to_aspect_ratio(true)
        .pad_to_aspect_ratio(true)
        .build(&s)
        .is_err());
    assert!(CenterCrop::new(0, 4).build(&s).is_err());
    assert!(RandomFlip::new(FlipMode::Vertical)
        .build(&[shape_of(&[8, 3])])
        .is_err());
    let err = RandomRotation::new(1.5)
        .named("rot")
        .build(&s)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'rot'") && err.contains("factor"), "{err}");

    let cfg = |layer: serde_json::Value| {
        serde_json::json!({"class_name": "Sequential", "config": {"name": "m", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [null, 8, 8, 3], "name": "in"}},
            layer]}})
    };
    for (layer, needle) in [
        (
            serde_json::json!({"class_name": "RandomRotation", "config": {"name": "r",
                "factor": 0.1, "fill_mode": "mirror"}}),
            "fill_mode",
        ),
        (
            serde_json::json!({"class_name": "RandomZoom", "config": {"name": "z",
                "height_factor": [0.1, 2.0]}}),
            "height_factor",
        ),
        (
            serde_json::json!({"class_name": "Resizing", "config": {"name": "rs",
                "height": 4, "width": 4, "interpolation": "bicubic"}}),
            "bicubic",
        ),
        (
            serde_json::json!({"class_name": "RandomFlip", "config": {"name": "f",
                "mode": "diagonal"}}),
            "diagonal",
        ),
        (
            serde_json::json!({"class_name": "CenterCrop", "config": {"name": "cc",
                "height": 4, "width": 4, "data_format": "channels_first"}}),
            "data_format",
        ),
    ] {
        let err = match build_model(&cfg(layer), "cfg.json") {
            Ok(_) => panic!("{needle}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("cfg.json") && err.contains(needle), "{err}");
    }
}
