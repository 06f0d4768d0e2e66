//! Pretrained weights into frostnet-built architectures: by name (Keras 3 files) and by position
//! (legacy files whose layer names differ, like the official keras-applications downloads).

use frostnet::applications::{inception_v3, InceptionV3Options, Pooling};
use frostnet::io::npy::read_npy;
use frostnet::layers::*;
use frostnet::saving::load_weights_into;
use frostnet::tensor::Padding;
use frostnet::Sequential;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn legacy_weights_load_by_position_when_names_differ() {
    // cnn_seq's architecture with other layer names: Keras's by_name=False rule applies.
    clear_session();
    let mut m = Sequential::named("renamed");
    m.add(Input::new(&[8, 8, 3])).unwrap();
    m.add(
        Conv2D::new(4, 3)
            .padding(Padding::Same)
            .activation(ActivationFn::Relu)
            .named("c1"),
    )
    .unwrap();
    m.add(BatchNormalization::new().named("bn1")).unwrap();
    m.add(MaxPooling2D::new(2).named("p1")).unwrap();
    m.add(Flatten::new().named("f1")).unwrap();
    m.add(Dense::new(3).activation(ActivationFn::Softmax).named("d1"))
        .unwrap();
    load_weights_into(&mut m, &fixture("cnn_seq_tfkeras_weights_only.h5")).unwrap();
    let x = read_npy(&fixture("cnn_input.npy")).unwrap();
    let want = read_npy(&fixture("cnn_seq_output_tfkeras.npy")).unwrap();
    let got = m.predict(&x, 32).unwrap();
    assert!(
        got.max_abs_diff(&want) < 1e-5,
        "{}",
        got.max_abs_diff(&want)
    );
    // A different architecture is refused, and the model is unchanged.
    let mut other = Sequential::new();
    other.add(Input::new(&[8, 8, 3])).unwrap();
    other.add(Dense::new(2)).unwrap();
    let before = other.get_weights();
    let e = load_weights_into(&mut other, &fixture("cnn_seq_tfkeras_weights_only.h5")).unwrap_err();
    assert!(
        e.to_string().contains("cnn_seq_tfkeras_weights_only.h5"),
        "{e}"
    );
    assert_eq!(other.get_weights()[0].data(), before[0].data());
}

/// Keras-made InceptionV3 files (~90 MB each, not committed). Make them with
/// `bench/.venv/bin/python tools/make_inception_v3_reference.py DIR`, then run
/// `FROSTNET_INCEPTION_V3_DIR=DIR cargo test --release -p frostnet --test application_weights -- --ignored`.
#[test]
#[ignore = "needs Keras-made InceptionV3 files: set FROSTNET_INCEPTION_V3_DIR"]
fn inception_v3_loads_keras_weights_and_predicts_like_keras() {
    let dir = std::env::var("FROSTNET_INCEPTION_V3_DIR").expect("set FROSTNET_INCEPTION_V3_DIR");
    let x = read_npy(&format!("{dir}/input.npy")).unwrap();
    for (name, top) in [("top", true), ("notop", false)] {
        let want = read_npy(&format!("{dir}/{name}_output.npy")).unwrap();
        for file in [format!("{name}.weights.h5"), format!("{name}_legacy.h5")] {
            let mut model = inception_v3(&InceptionV3Options {
                include_top: top,
                pooling: (!top).then_some(Pooling::Avg),
                weights: Some(format!("{dir}/{file}")),
                ..Default::default()
            })
            .unwrap();
            let got = model.predict(&x, 2).unwrap();
            let err = got.max_abs_diff(&want);
            eprintln!("{file}: max abs error {err:.2e}");
            assert!(err < 1e-4, "{file}: {err}");
        }
    }
}
