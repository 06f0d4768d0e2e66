//! Values a user can pass that used to panic inside the library now come back as typed errors.
//! Layers whose constructors cannot fail (`Dense::new(0)`, `.strides(0)`) are refused when they
//! are added to a model that knows its input shape, where Keras refuses them in the constructor.

use frostnet::layers::{Conv2D, Dense, DepthwiseConv2D, Input, SeparableConv2D};
use frostnet::training::Loss;
use frostnet::{Error, Sequential, Tensor};

fn invalid_config(e: Error, words: &[&str]) {
    let text = e.to_string();
    assert!(matches!(e, Error::InvalidConfig(_)), "{text}");
    for w in words {
        assert!(text.contains(w), "'{w}' not in: {text}");
    }
}

#[test]
fn dense_with_zero_units_is_refused_when_added() {
    let mut m = Sequential::new();
    m.add(Input::new(&[4])).unwrap();
    let e = m.add(Dense::new(0)).unwrap_err();
    invalid_config(e, &["units must be positive"]);
    // The model is unchanged and still usable.
    assert_eq!(m.len(), 0);
    m.add(Dense::new(2)).unwrap();
}

#[test]
fn zero_strides_and_kernel_sizes_are_refused_when_added() {
    let image = || {
        let mut m = Sequential::new();
        m.add(Input::new(&[8, 8, 3])).unwrap();
        m
    };
    invalid_config(
        image().add(Conv2D::new(4, 3).strides(0)).unwrap_err(),
        &["strides (0, 0)", "must be positive"],
    );
    invalid_config(
        image().add(Conv2D::new(4, 3).strides2((1, 0))).unwrap_err(),
        &["strides (1, 0)"],
    );
    invalid_config(
        image().add(Conv2D::with_kernel(4, (0, 3))).unwrap_err(),
        &["kernel_size (0, 3)"],
    );
    invalid_config(
        image().add(Conv2D::new(0, 3)).unwrap_err(),
        &["filters (0)"],
    );
    invalid_config(
        image().add(DepthwiseConv2D::new(3).strides(0)).unwrap_err(),
        &["strides (0, 0)"],
    );
    invalid_config(
        image().add(SeparableConv2D::new(4, 0)).unwrap_err(),
        &["kernel_size (0, 0)"],
    );
}

#[test]
fn loss_on_mismatched_batches_is_a_data_error() {
    let pred = Tensor::zeros(&[4, 3]);
    for loss in [
        Loss::MeanSquaredError,
        Loss::CategoricalCrossentropy { from_logits: false },
        Loss::SparseCategoricalCrossentropy { from_logits: true },
    ] {
        let y = Tensor::zeros(&[3, 3]);
        let e = loss.compute(&pred, &y).unwrap_err();
        assert!(
            matches!(&e, Error::Data(m) if m.contains("same batch size") && m.contains("(4, 3)")),
            "{e}"
        );
        let scalar = Tensor::from_vec(&[], vec![0.0]).unwrap();
        assert!(matches!(loss.compute(&pred, &scalar), Err(Error::Data(_))));
        assert!(matches!(loss.compute(&scalar, &y), Err(Error::Data(_))));
    }
    // Matching batches still compute: MSE of 0 against 1 is 1.
    let (v, _) = Loss::MeanSquaredError
        .compute(&pred, &Tensor::from_vec(&[4, 3], vec![1.0; 12]).unwrap())
        .unwrap();
    assert_eq!(v, 1.0);
}

#[test]
fn concat_batch_of_a_0d_tensor_is_an_error() {
    let scalar = Tensor::from_vec(&[], vec![1.0]).unwrap();
    let e = Tensor::concat_batch(std::slice::from_ref(&scalar)).unwrap_err();
    assert!(matches!(&e, Error::Data(m) if m.contains("0-d")), "{e}");
    let row = Tensor::zeros(&[1, 2]);
    assert!(Tensor::concat_batch(&[row.clone(), scalar]).is_err());
    assert_eq!(
        Tensor::concat_batch(&[row.clone(), row]).unwrap().shape(),
        &[2, 2]
    );
}
