//! `preprocess_input` against Keras's outputs (fixtures from
//! `tools/make_image_dataset_reference.py`) and `decode_predictions`' ranking and errors.

use frostnet::applications::{Application, ImagenetClassIndex};
use frostnet::io::npy::read_npy;
use frostnet::Tensor;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn preprocess_input_matches_keras() {
    let x = read_npy(&fixture("preprocess_input_x.npy")).unwrap();
    for name in ["inception_v3", "mobilenet_v2", "resnet50", "vgg16"] {
        let app: Application = name.parse().unwrap();
        let want = read_npy(&fixture(&format!("preprocess_input_{name}.npy"))).unwrap();
        let got = app.preprocess_input(&x).unwrap();
        assert_eq!(got.shape(), want.shape());
        assert!(
            got.max_abs_diff(&want) <= 1e-5,
            "{name}: {}",
            got.max_abs_diff(&want)
        );
    }
    let gray = Tensor::zeros(&[1, 2, 2, 1]);
    assert!(Application::Vgg16.preprocess_input(&gray).is_err());
}

#[test]
fn decode_predictions_ranks_like_keras() {
    let path =
        std::env::temp_dir().join(format!("frostnet_class_index_{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"0": ["n0", "tench"], "1": ["n1", "goldfish"], "2": ["n2", "shark"], "3": ["n3", "ray"]}"#,
    )
    .unwrap();
    let index = ImagenetClassIndex::from_file(&path).unwrap();
    assert_eq!(index.len(), 4);
    let preds = Tensor::from_vec(&[2, 4], vec![0.1, 0.6, 0.2, 0.1, 0.25, 0.25, 0.4, 0.1]).unwrap();
    let d = index.decode(&preds, 2).unwrap();
    assert_eq!(d[0][0], ("n1".into(), "goldfish".into(), 0.6));
    assert_eq!(d[0][1].1, "shark");
    // Ties: numpy's argsort()[-top:][::-1] puts the higher index first.
    assert_eq!(d[1][0].1, "shark");
    assert_eq!(d[1][1].1, "goldfish");
    let e = index.decode(&Tensor::zeros(&[1, 5]), 1).unwrap_err();
    assert!(e.to_string().contains("(samples, 4)"), "{e}");
    std::fs::write(&path, r#"{"0": ["n0", "a"], "2": ["n2", "b"]}"#).unwrap();
    let e = ImagenetClassIndex::from_file(&path).err().unwrap();
    assert!(e.to_string().contains("index"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// The real class index, as Keras caches it (`~/.keras/models/imagenet_class_index.json`).
#[test]
#[ignore = "needs Keras's imagenet_class_index.json in $KERAS_HOME/models or network access"]
fn keras_class_index_has_the_1000_imagenet_classes() {
    let index = ImagenetClassIndex::keras().unwrap();
    assert_eq!(index.len(), 1000);
    let mut p = vec![0.0; 1000];
    p[0] = 1.0;
    let d = index
        .decode(&Tensor::from_vec(&[1, 1000], p).unwrap(), 1)
        .unwrap();
    assert_eq!(d[0][0].0, "n01440764");
    assert_eq!(d[0][0].1, "tench");
}
