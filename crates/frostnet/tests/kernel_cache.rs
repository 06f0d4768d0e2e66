//! A `Conv2D` keeps what its engine derives from the kernel (Winograd's transformed kernel)
//! between calls, keyed by the kernel's version: every way of changing the kernel (`set_weights`,
//! an optimizer step, `set_trainable` and training again) must show in the next output. Checked
//! against a plain f64 convolution on a layer wide enough that only the kept-kernel dispatch
//! picks Winograd (384 -> 256 channels, 3x3, stride 1), at every instruction set the CPU runs.

use frostnet::layers::*;
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Model, Sequential, Tensor};

mod common;
use common::uniform;

const H: usize = 5;
const W: usize = 6;
const C: usize = 384;
const F: usize = 256;

fn model() -> Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[H, W, C])).unwrap();
    m.add(
        Conv2D::new(F, 3)
            .padding(Padding::Same)
            .seed(4)
            .named("wide"),
    )
    .unwrap();
    m
}

/// `same` 3x3 convolution plus bias in f64 (NHWC, HWIO).
fn reference(x: &[f32], n: usize, kernel: &[f32], bias: &[f32]) -> Vec<f64> {
    let mut y = vec![0.0f64; n * H * W * F];
    for img in 0..n {
        for oy in 0..H {
            for ox in 0..W {
                let out = &mut y[((img * H + oy) * W + ox) * F..][..F];
                for (o, b) in out.iter_mut().zip(bias) {
                    *o = *b as f64;
                }
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (Some(iy), Some(ix)) =
                            ((oy + ky).checked_sub(1), (ox + kx).checked_sub(1))
                        else {
                            continue;
                        };
                        if iy >= H || ix >= W {
                            continue;
                        }
                        let px = &x[((img * H + iy) * W + ix) * C..][..C];
                        for (ci, &v) in px.iter().enumerate() {
                            let k = &kernel[((ky * 3 + kx) * C + ci) * F..][..F];
                            for (o, &w) in out.iter_mut().zip(k) {
                                *o += v as f64 * w as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// The layer's output against the f64 convolution of its current weights, at every level.
fn check(m: &mut Model, x: &Tensor, what: &str) {
    let w = m.get_layer("wide").unwrap().weights().to_vec();
    let want = reference(
        x.data(),
        x.shape()[0],
        w[0].value().data(),
        w[1].value().data(),
    );
    for level in Isa::supported() {
        let got = isa::with_forced(level, || m.call(x).unwrap());
        let err = got
            .data()
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs() / b.abs().max(1.0))
            .fold(0.0f64, f64::max);
        assert!(err <= 1e-5, "{what} at {level}: max rel err {err:e}");
    }
}

#[test]
fn a_changed_kernel_is_never_served_from_the_cache() {
    let mut m = model();
    let x = Tensor::from_vec(&[2, H, W, C], uniform(1, 2 * H * W * C, -1.0, 1.0)).unwrap();
    check(&mut m, &x, "fresh weights");
    let first = m.call(&x).unwrap();

    // set_weights: a new kernel and bias.
    let scale = (2.0 / (9.0 * C as f32)).sqrt();
    let k = uniform(2, 9 * C * F, -scale, scale);
    let b = uniform(3, F, -0.5, 0.5);
    m.get_layer_mut("wide")
        .unwrap()
        .set_weights(vec![
            Tensor::from_vec(&[3, 3, C, F], k).unwrap(),
            Tensor::from_vec(&[F], b).unwrap(),
        ])
        .unwrap();
    check(&mut m, &x, "after set_weights");
    assert_ne!(m.call(&x).unwrap(), first, "set_weights changed the output");

    // An optimizer step.
    let before = m.call(&x).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let y = Tensor::from_vec(&[2, H, W, F], uniform(4, 2 * H * W * F, -1.0, 1.0)).unwrap();
    m.train_on_batch(&x, &y).unwrap();
    check(&mut m, &x, "after a training step");
    assert_ne!(m.call(&x).unwrap(), before, "the step changed the output");

    // Frozen, a step leaves the kernel (and the output) alone; unfrozen, it changes again.
    m.get_layer_mut("wide").unwrap().set_trainable(false);
    let frozen = m.call(&x).unwrap();
    m.train_on_batch(&x, &y).unwrap();
    assert_eq!(m.call(&x).unwrap(), frozen, "a frozen kernel did not move");
    m.get_layer_mut("wide").unwrap().set_trainable(true);
    m.train_on_batch(&x, &y).unwrap();
    check(&mut m, &x, "after unfreezing and training");
    assert_ne!(
        m.call(&x).unwrap(),
        frozen,
        "the unfrozen step changed the output"
    );
}
