//! Issue #12 point 5 (part): `predict` and `evaluate` take `impl Into<Option<usize>>`, with
//! Keras's default batch size of 32 for `None`; a batch size of 0 is a typed error.

use frostnet::layers::{Dense, ForwardCtx, Input, Layer, LayerBase, Shape};
use frostnet::training::{Loss, Metric, Sgd};
use frostnet::{Error, Model, Sequential, Tensor};
use std::sync::{Arc, Mutex};

/// Passes its input through and records the batch size of every call.
struct BatchSpy {
    base: LayerBase,
    seen: Arc<Mutex<Vec<usize>>>,
}

impl Layer for BatchSpy {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        "BatchSpy"
    }
    fn build(&mut self, inputs: &[Shape]) -> frostnet::Result<Shape> {
        self.base.set_built(true);
        Ok(inputs[0].clone())
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &mut ForwardCtx) -> frostnet::Result<Tensor> {
        self.seen.lock().unwrap().push(inputs[0].batch());
        Ok(inputs[0].clone())
    }
    fn backward(&mut self, grad: &Tensor, _need: &[bool]) -> frostnet::Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.clone())])
    }
    fn config(&self) -> frostnet::serde_json::Value {
        frostnet::serde_json::json!({"name": self.base.name()})
    }
}

fn model(seen: Arc<Mutex<Vec<usize>>>) -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[3])).unwrap();
    m.add_boxed(Box::new(BatchSpy {
        base: LayerBase::new("BatchSpy"),
        seen,
    }))
    .unwrap();
    m.add(Dense::new(2).seed(1)).unwrap();
    m.compile(
        Sgd::new(0.1),
        Loss::MeanSquaredError,
        &[Metric::MeanAbsoluteError],
    );
    m
}

#[test]
fn none_means_batches_of_32_as_in_keras() {
    let x = Tensor::from_vec(&[70, 3], (0..210).map(|i| (i % 13) as f32 / 13.0).collect()).unwrap();
    let y = Tensor::from_vec(&[70, 2], (0..140).map(|i| (i % 5) as f32 / 5.0).collect()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut m = model(seen.clone());

    seen.lock().unwrap().clear();
    let p_none = m.predict(&x, None).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![32, 32, 6]);
    seen.lock().unwrap().clear();
    let p_32 = m.predict(&x, 32).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![32, 32, 6]);
    assert_eq!(p_none, p_32);
    seen.lock().unwrap().clear();
    let p_16 = m.predict(&x, Some(50)).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![50, 20]);
    assert_eq!(p_16, p_32);

    seen.lock().unwrap().clear();
    let e_none = m.evaluate(&x, &y, None).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![32, 32, 6]);
    let e_32 = m.evaluate(&x, &y, 32).unwrap();
    assert_eq!(e_none, e_32);
}

#[test]
fn a_batch_size_of_zero_is_a_typed_error() {
    let x = Tensor::from_vec(&[4, 3], vec![0.5; 12]).unwrap();
    let y = Tensor::from_vec(&[4, 2], vec![0.5; 8]).unwrap();
    let mut m = model(Arc::default());
    assert!(matches!(m.predict(&x, 0), Err(Error::InvalidConfig(_))));
    assert!(matches!(
        m.evaluate(&x, &y, 0),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        m.predict(&x, Some(0)),
        Err(Error::InvalidConfig(_))
    ));
}
