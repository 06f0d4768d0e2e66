//! Issue #12 point 1: a custom layer written outside the crate owns weights through the public
//! API (`add_weight_init`, gradients, `built`, `trainable`), with a `State` running statistic
//! that never trains.

use frostnet::layers::{
    Dense, ForwardCtx, Initializer, Input, Layer, LayerBase, LayerOptions, Mode, Shape, WeightKind,
};
use frostnet::testing::gradient_check;
use frostnet::training::{Loss, Sgd};
use frostnet::{Sequential, Tensor};

/// `y = x * scale + shift` per feature with a hand-written backward, and a running mean of the
/// input (a `State` weight) updated in training passes of a trainable layer.
struct Affine {
    base: LayerBase,
    cache: Option<Tensor>,
}

impl Affine {
    fn new() -> Affine {
        Affine {
            base: LayerBase::new("Affine"),
            cache: None,
        }
    }
}

impl Layer for Affine {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "Affine"
    }
    fn build(&mut self, inputs: &[Shape]) -> frostnet::Result<Shape> {
        let f = inputs[0].last().copied().flatten().unwrap_or(1);
        if !self.base.built() {
            // Created first, listed last: Keras lists weights created trainable first.
            self.base.add_weight_init(
                "running_mean",
                &[f],
                Initializer::Zeros,
                WeightKind::State,
                false,
            )?;
            self.base.add_weight_init(
                "scale",
                &[f],
                Initializer::RandomUniform {
                    min: 0.5,
                    max: 1.5,
                    seed: Some(3),
                },
                WeightKind::Param,
                true,
            )?;
            self.base.add_weight_init(
                "shift",
                &[f],
                Initializer::Zeros,
                WeightKind::Param,
                true,
            )?;
            self.base.set_built(true);
        }
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> frostnet::Result<Tensor> {
        let x = inputs[0];
        let f = *x.shape().last().unwrap();
        let scale = self.base.weight("scale")?.value().clone();
        let shift = self.base.weight("shift")?.value().clone();
        let mut y = x.clone();
        for row in y.data_mut().chunks_mut(f) {
            for ((v, s), b) in row.iter_mut().zip(scale.data()).zip(shift.data()) {
                *v = *v * s + b;
            }
        }
        if ctx.mode == Mode::Train && self.base.trainable() {
            let rows = x.len() / f;
            let mut mean = self.base.weight("running_mean")?.value().clone();
            for j in 0..f {
                let m: f32 = x.data().iter().skip(j).step_by(f).sum::<f32>() / rows as f32;
                mean.data_mut()[j] = 0.9 * mean.data()[j] + 0.1 * m;
            }
            self.base.weight_mut("running_mean")?.assign(mean)?;
        }
        if ctx.keep {
            self.cache = Some(x.clone());
        }
        Ok(y)
    }
    fn backward(
        &mut self,
        grad: &Tensor,
        need_dx: &[bool],
    ) -> frostnet::Result<Vec<Option<Tensor>>> {
        let x = self.cache.take().expect("forward kept x");
        let f = *x.shape().last().unwrap();
        let (si, bi) = (
            self.base.weight_index("scale")?,
            self.base.weight_index("shift")?,
        );
        if self.base.wants_grad(si) {
            let mut ds = vec![0.0; f];
            for (xr, gr) in x.data().chunks(f).zip(grad.data().chunks(f)) {
                ds.iter_mut()
                    .zip(xr.iter().zip(gr))
                    .for_each(|(d, (x, g))| *d += x * g);
            }
            self.base.weights_mut()[si].set_grad(Some(Tensor::from_vec(&[f], ds)?))?;
        }
        if self.base.wants_grad(bi) {
            let mut db = vec![0.0; f];
            for gr in grad.data().chunks(f) {
                db.iter_mut().zip(gr).for_each(|(d, g)| *d += g);
            }
            self.base.set_grad(bi, Tensor::from_vec(&[f], db)?);
        }
        let dx = need_dx.first().copied().unwrap_or(false).then(|| {
            let scale = self.base.weight("scale").unwrap().value().clone();
            let mut d = grad.clone();
            for row in d.data_mut().chunks_mut(f) {
                row.iter_mut().zip(scale.data()).for_each(|(v, s)| *v *= s);
            }
            d
        });
        Ok(vec![dx])
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"name": self.base.name(), "trainable": self.base.trainable()})
    }
}

fn data() -> (Tensor, Tensor) {
    let x = Tensor::from_vec(
        &[6, 2],
        vec![1., 2., -1., 0.5, 3., -2., 0., 1., 2., 2., -3., 1.],
    )
    .unwrap();
    let y = Tensor::from_vec(&[6, 1], vec![1., 0., 2., -1., 0.5, 1.]).unwrap();
    (x, y)
}

#[test]
fn weights_follow_keras_order_and_kinds_and_built_is_reported() {
    let mut l = Affine::new();
    assert!(!l.is_built());
    l.build(&[vec![Some(2)]]).unwrap();
    assert!(l.is_built());
    let names: Vec<&str> = l.weights().iter().map(|w| w.name()).collect();
    assert_eq!(names, ["scale", "shift", "running_mean"]);
    assert_eq!(l.trainable_weights().len(), 2);
    assert_eq!(l.non_trainable_weights().len(), 1);
    // A State weight never trains, whatever its flag says.
    l.base_mut()
        .weight_mut("running_mean")
        .unwrap()
        .set_trainable(true);
    assert!(!l.base().weight("running_mean").unwrap().is_trainable());
    // Building again creates nothing new; a duplicate name is an error, not a second weight.
    l.build(&[vec![Some(2)]]).unwrap();
    assert_eq!(l.weights().len(), 3);
    let dup =
        l.base_mut()
            .add_weight_init("scale", &[2], Initializer::Ones, WeightKind::Param, true);
    assert!(dup.is_err());
    // A gradient of the wrong shape is refused.
    let w = l.base_mut().weight_mut("scale").unwrap();
    assert!(w.set_grad(Some(Tensor::zeros(&[3]))).is_err());
}

#[test]
fn hand_written_backward_passes_the_gradient_check() {
    let mut l = Affine::new();
    l.build(&[vec![Some(2)]]).unwrap();
    let (x, _) = data();
    let r = gradient_check(&mut l, &[x], Mode::Train, 1e-2).unwrap();
    assert!(r.max_rel_error < 1e-3, "{r:?}");
    assert_eq!(r.checked, 12 + 2 + 2);
}

#[test]
fn running_statistic_is_state_never_trained_and_frozen_layer_is_bit_identical() {
    let mut m = Sequential::new();
    m.add(Input::new(&[2])).unwrap();
    m.add(Affine::new().named("affine")).unwrap();
    m.add(Dense::new(1).seed(1)).unwrap();
    m.compile(Sgd::new(0.05), Loss::MeanSquaredError, &[]);
    let (x, y) = data();
    let before = m.get_layer("affine").unwrap().get_weights();
    m.train_on_batch(&x, &y).unwrap();
    let after = m.get_layer("affine").unwrap().get_weights();
    assert_ne!(before[0], after[0], "scale trains");
    // The running mean moved by its own rule: 0.1 * column means (2/6, 4.5/6).
    let rm = after[2].data();
    assert!((rm[0] - 0.1 / 3.0).abs() < 1e-6 && (rm[1] - 0.1 * 0.75).abs() < 1e-6);
    m.get_layer_mut("affine").unwrap().set_trainable(false);
    m.train_on_batch(&x, &y).unwrap();
    assert_eq!(m.get_layer("affine").unwrap().get_weights(), after);
}
