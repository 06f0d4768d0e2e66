//! A `Conv2D` keeps what its engine derives from the kernel (Winograd's transformed kernel, the
//! direct kernel's packed blocks) between calls, keyed by the kernel's version: every way of
//! changing the kernel (`set_weights`, an optimizer step, `set_trainable` and training again)
//! must show in the next output. Checked
//! against a plain f64 convolution, at every instruction set the CPU runs, on a layer wide enough
//! that only the kept-kernel dispatch picks Winograd (384 -> 256 channels, 3x3, stride 1) and on
//! one the direct kernel runs with its packed kernel kept (1x7, 160 -> 96).

use frostnet::layers::*;
use frostnet::tensor::isa::{self, Isa};
use frostnet::tensor::Padding;
use frostnet::training::*;
use frostnet::{Model, Sequential, Tensor};

mod common;
use common::uniform;

const H: usize = 5;
const W: usize = 6;

/// One convolution `c -> f` with a `kh x kw` window (`same` padding).
#[derive(Clone, Copy)]
struct Case {
    c: usize,
    f: usize,
    kh: usize,
    kw: usize,
}

/// Winograd (3x3 stride 1, 384 -> 256: picked only with the transformed kernel kept) and the
/// direct kernel (1x7, 160 -> 96).
const CASES: [Case; 2] = [
    Case {
        c: 384,
        f: 256,
        kh: 3,
        kw: 3,
    },
    Case {
        c: 160,
        f: 96,
        kh: 1,
        kw: 7,
    },
];

fn model(k: Case) -> Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[H, W, k.c])).unwrap();
    m.add(
        Conv2D::with_kernel(k.f, (k.kh, k.kw))
            .padding(Padding::Same)
            .seed(4)
            .named("conv"),
    )
    .unwrap();
    m
}

/// `same` convolution plus bias in f64 (NHWC, HWIO; odd window sizes).
fn reference(k: Case, x: &[f32], n: usize, kernel: &[f32], bias: &[f32]) -> Vec<f64> {
    let mut y = vec![0.0f64; n * H * W * k.f];
    for img in 0..n {
        for oy in 0..H {
            for ox in 0..W {
                let out = &mut y[((img * H + oy) * W + ox) * k.f..][..k.f];
                for (o, b) in out.iter_mut().zip(bias) {
                    *o = *b as f64;
                }
                for ky in 0..k.kh {
                    for kx in 0..k.kw {
                        let iy = (oy + ky).checked_sub(k.kh / 2).filter(|&r| r < H);
                        let ix = (ox + kx).checked_sub(k.kw / 2).filter(|&r| r < W);
                        let (Some(iy), Some(ix)) = (iy, ix) else {
                            continue;
                        };
                        let px = &x[((img * H + iy) * W + ix) * k.c..][..k.c];
                        for (ci, &v) in px.iter().enumerate() {
                            let w = &kernel[((ky * k.kw + kx) * k.c + ci) * k.f..][..k.f];
                            for (o, &w) in out.iter_mut().zip(w) {
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

/// The layer's output against the f64 convolution of its current weights: first at the default
/// level (the one the change before ran at, so a stale packing for it would be reused), then at
/// every level.
fn check(k: Case, m: &mut Model, x: &Tensor, what: &str) {
    let w = m.get_layer("conv").unwrap().weights().to_vec();
    let (kernel, bias) = (w[0].value().data(), w[1].value().data());
    let want = reference(k, x.data(), x.shape()[0], kernel, bias);
    for level in [isa::active()].into_iter().chain(Isa::supported()) {
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
    for k in CASES {
        let mut m = model(k);
        let x = Tensor::from_vec(&[2, H, W, k.c], uniform(1, 2 * H * W * k.c, -1.0, 1.0)).unwrap();
        check(k, &mut m, &x, "fresh weights");
        let first = m.call(&x).unwrap();

        // set_weights: a new kernel and bias.
        let taps = k.kh * k.kw * k.c;
        let scale = (2.0 / taps as f32).sqrt();
        let kernel = uniform(2, taps * k.f, -scale, scale);
        let bias = uniform(3, k.f, -0.5, 0.5);
        m.get_layer_mut("conv")
            .unwrap()
            .set_weights(vec![
                Tensor::from_vec(&[k.kh, k.kw, k.c, k.f], kernel).unwrap(),
                Tensor::from_vec(&[k.f], bias).unwrap(),
            ])
            .unwrap();
        check(k, &mut m, &x, "after set_weights");
        assert_ne!(m.call(&x).unwrap(), first, "set_weights changed the output");

        // An optimizer step.
        let before = m.call(&x).unwrap();
        m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
        let y = Tensor::from_vec(&[2, H, W, k.f], uniform(4, 2 * H * W * k.f, -1.0, 1.0)).unwrap();
        m.train_on_batch(&x, &y).unwrap();
        check(k, &mut m, &x, "after a training step");
        assert_ne!(m.call(&x).unwrap(), before, "the step changed the output");

        // Frozen, a step leaves the kernel (and the output) alone; unfrozen, it changes again.
        m.get_layer_mut("conv").unwrap().set_trainable(false);
        let frozen = m.call(&x).unwrap();
        m.train_on_batch(&x, &y).unwrap();
        assert_eq!(m.call(&x).unwrap(), frozen, "a frozen kernel did not move");
        m.get_layer_mut("conv").unwrap().set_trainable(true);
        m.train_on_batch(&x, &y).unwrap();
        check(k, &mut m, &x, "after unfreezing and training");
        assert_ne!(
            m.call(&x).unwrap(),
            frozen,
            "the unfrozen step changed the output"
        );
    }
}
