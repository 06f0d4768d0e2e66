//! The seed's reference models — the cases of `keras-reference/seed_cases` — built exactly as the
//! reference built them in Keras. The tour, the `seed` example and the tests share them.

use crate::error::{Error, Result};
use crate::io::npy;
use crate::layers::{
    ActivationFn, BatchNormalization, Conv2D, Dense, Flatten, Input, LayerOptions,
};
use crate::tensor::{Padding, Tensor};
use crate::{Model, Sequential};

/// The Sobel-x kernel, `(3, 3, 1, 1)` HWIO.
pub const SOBEL_X: [f32; 9] = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];

/// Builds seed case `a`, `b`, `c`, `d`, `d2`, `e`, `e2` or `f` in the current naming session.
pub fn build(case: &str) -> Result<Model> {
    let mut m = Sequential::new();
    match case {
        "a" | "b" | "c" | "d" => {
            m.add(Dense::new(10).trainable(false).input_shape(&[100]))?;
            if case != "a" {
                m.layer_mut(0)?.set_trainable(true);
            }
            if case == "c" || case == "d" {
                m.add(BatchNormalization::new())?;
            }
            if case == "d" {
                m.layer_mut(1)?.set_trainable(false);
            }
        }
        "d2" => {
            m.add(Input::new(&[100]))?;
            m.add(Dense::new(10))?;
            m.add(BatchNormalization::new().trainable(false))?;
        }
        "e" | "e2" => {
            m.add(
                Conv2D::new(1, 3)
                    .padding(Padding::Same)
                    .use_bias(false)
                    .input_shape(&[28, 28, 1]),
            )?;
            m.layer_mut(0)?
                .set_weights(vec![Tensor::from_vec(&[3, 3, 1, 1], SOBEL_X.to_vec())?])?;
            m.layer_mut(0)?.set_trainable(false);
            if case == "e2" {
                m.add(Flatten::new())?;
                m.add(Dense::new(10).activation(ActivationFn::Softmax))?;
            }
        }
        "f" => {
            m.add(Input::new(&[256]))?;
            m.add(Dense::new(500).activation(ActivationFn::Relu))?;
            m.add(Dense::new(500).activation(ActivationFn::Relu))?;
            m.add(Dense::new(1).activation(ActivationFn::Sigmoid))?;
        }
        other => return Err(Error::InvalidConfig(format!("unknown seed case '{other}'"))),
    }
    Ok(m)
}

/// Applies the Sobel model of case `e` to the fixture's 5x5 input (a model of any input size
/// with the same single convolution) and returns the largest difference from Keras's output.
pub fn sobel_error(model: &mut Model, fixture: &str) -> Result<f32> {
    let mut arrays = npy::read_npz(fixture)?;
    let input = arrays.remove("input").ok_or_else(|| Error::File {
        path: fixture.into(),
        message: "no array 'input'".into(),
    })?;
    let want = arrays.remove("output").ok_or_else(|| Error::File {
        path: fixture.into(),
        message: "no array 'output'".into(),
    })?;
    // The fixture image is 5x5; run the same frozen convolution on it.
    let dims = input.shape().to_vec();
    let x = match dims.len() {
        2 => input.reshape(&[1, dims[0], dims[1], 1])?,
        _ => input,
    };
    let mut conv = Sequential::new();
    conv.add(
        Conv2D::new(1, 3)
            .padding(Padding::Same)
            .use_bias(false)
            .input_shape(&[x.shape()[1], x.shape()[2], x.shape()[3]]),
    )?;
    conv.layer_mut(0)?
        .set_weights(model.layer(0)?.get_weights())?;
    let got = conv.predict(&x, 32)?;
    let want = want.reshape(got.shape())?;
    Ok(got.max_abs_diff(&want))
}
