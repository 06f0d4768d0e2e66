//! `fit`, `evaluate` and `predict` on datasets: the same batches as tensors give bit-identical
//! training (weights and history), a dataset can be the validation data, and an image folder
//! trains like the tensors it decodes to.

use frostnet::datasets::*;
use frostnet::layers::*;
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Model, Sequential, Tensor};

fn model(shape: &[usize], classes: usize) -> Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(shape)).unwrap();
    m.add(Conv2D::new(4, 3).padding(Padding::Same).seed(1))
        .unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(Activation::new(ActivationFn::Relu)).unwrap();
    m.add(GlobalAveragePooling2D::new()).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(
        Dense::new(classes)
            .activation(ActivationFn::Softmax)
            .seed(2),
    )
    .unwrap();
    m.compile(
        Adam::new(0.01),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    m
}

fn opts(batch_size: usize, epochs: usize) -> FitOptions {
    FitOptions {
        batch_size,
        epochs,
        shuffle: false,
        seed: Some(11),
        verbose: 0,
        ..Default::default()
    }
}

fn data(n: usize) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..n * 6 * 6 * 3)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    (
        Tensor::from_vec(&[n, 6, 6, 3], x).unwrap(),
        Tensor::from_vec(&[n], y).unwrap(),
    )
}

fn assert_same_weights(a: &Model, b: &Model) {
    for (wa, wb) in a.get_weights().iter().zip(b.get_weights()) {
        assert_eq!(wa.data(), wb.data());
    }
}

#[test]
fn fit_on_a_dataset_is_bit_identical_to_fit_on_the_same_tensors() {
    let (x, y) = data(23);
    let (vx, vy) = data(7);
    let mut a = model(&[6, 6, 3], 3);
    let mut oa = opts(5, 3);
    oa.validation_data = Some((vx.clone(), vy.clone()).into());
    let ha = a.fit(&x, &y, oa).unwrap();

    let mut b = model(&[6, 6, 3], 3);
    let mut ob = opts(999, 3); // ignored for datasets: the dataset's batches rule
    ob.validation_data = Some(ValidationData::Dataset(Box::new(
        TensorDataset::new(vx.clone(), Some(vy.clone()), 5).unwrap(),
    )));
    let mut train = TensorDataset::new(x.clone(), Some(y.clone()), 5).unwrap();
    let hb = b.fit_dataset(&mut train, ob).unwrap();

    assert_same_weights(&a, &b);
    assert_eq!(ha.history, hb.history);
    assert!(ha.get("val_accuracy").is_some());
    // evaluate and predict agree too.
    let ea = a.evaluate(&vx, &vy, 4).unwrap();
    let eb = b
        .evaluate_dataset(&mut TensorDataset::new(vx.clone(), Some(vy.clone()), 4).unwrap())
        .unwrap();
    assert_eq!(ea, eb);
    let pa = a.predict(&vx, 3).unwrap();
    let pb = b
        .predict_dataset(&mut TensorDataset::new(vx.clone(), None, 3).unwrap())
        .unwrap();
    assert_eq!(pa.data(), pb.data());
}

#[test]
fn an_image_folder_trains_like_the_tensors_it_decodes_to() {
    let dir = format!("{}/tests/fixtures/image_folder", env!("CARGO_MANIFEST_DIR"));
    let o = ImageDatasetOptions {
        image_size: (6, 6),
        batch_size: 4,
        shuffle: false,
        verbose: false,
        ..Default::default()
    };
    let mut ds = image_dataset_from_directory(&dir, &o).unwrap();
    let batches: Vec<Batch> = ds.epoch().unwrap().map(Result::unwrap).collect();
    let x = Tensor::concat_batch(&batches.iter().map(|b| b.x.clone()).collect::<Vec<_>>()).unwrap();
    let y = Tensor::concat_batch(
        &batches
            .iter()
            .map(|b| b.y.clone().unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(x.shape(), &[13, 6, 6, 3]);

    let mut a = model(&[6, 6, 3], 3);
    let ha = a.fit(&x, &y, opts(4, 2)).unwrap();
    let mut b = model(&[6, 6, 3], 3);
    let hb = b.fit_dataset(&mut ds, opts(4, 2)).unwrap();
    assert_same_weights(&a, &b);
    assert_eq!(ha.history, hb.history);
    assert_eq!(ds.num_batches(), Some(4));
}

#[test]
fn dataset_errors_are_typed() {
    let (x, y) = data(6);
    let mut m = model(&[6, 6, 3], 3);
    // No labels.
    let e = m
        .fit_dataset(
            &mut TensorDataset::new(x.clone(), None, 2).unwrap(),
            opts(2, 1),
        )
        .unwrap_err();
    assert!(e.to_string().contains("no labels"), "{e}");
    // validation_split is for tensors only.
    let mut o = opts(2, 1);
    o.validation_split = 0.5;
    let e = m
        .fit_dataset(
            &mut TensorDataset::new(x.clone(), Some(y.clone()), 2).unwrap(),
            o,
        )
        .unwrap_err();
    assert!(e.to_string().contains("validation_split"), "{e}");
    // Wrong input shape fails before any weight changes.
    let before = m.get_weights();
    let (x2, y2) = (Tensor::zeros(&[4, 5, 5, 3]), Tensor::zeros(&[4]));
    assert!(m
        .fit_dataset(
            &mut TensorDataset::new(x2, Some(y2), 2).unwrap(),
            opts(2, 1)
        )
        .is_err());
    assert_same_weights_vec(&before, &m.get_weights());
}

fn assert_same_weights_vec(a: &[Tensor], b: &[Tensor]) {
    for (p, q) in a.iter().zip(b) {
        assert_eq!(p.data(), q.data());
    }
}
