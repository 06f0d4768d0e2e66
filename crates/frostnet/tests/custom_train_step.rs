//! Issue #12 point 4: a replaceable training step (Keras's overridable `train_step`). Custom
//! steps are checked against updates computed by hand from the loss formulas; frozen weights stay
//! bit-identical under them; the default step expressed through the public pieces changes nothing.

use frostnet::layers::*;
use frostnet::training::*;
use frostnet::{Error, Model, Sequential, Tensor};
use std::sync::{Arc, Mutex};

fn quiet(batch_size: usize, epochs: usize) -> FitOptions {
    FitOptions {
        batch_size,
        epochs,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    }
}

/// `Sequential([Input((2,)), Dense(1)])` with kernel `[w0, w1]` and bias `b`.
fn line(w: [f32; 2], b: f32) -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[2])).unwrap();
    m.add(Dense::new(1)).unwrap();
    m.set_weights(vec![
        Tensor::from_vec(&[2, 1], w.to_vec()).unwrap(),
        Tensor::from_vec(&[1], vec![b]).unwrap(),
    ])
    .unwrap();
    m
}

const X: [[f32; 2]; 4] = [[1.0, 2.0], [-1.0, 0.5], [3.0, -2.0], [0.0, 1.0]];
const Y: [f32; 4] = [4.0, -1.0, 2.0, 0.5];

fn data() -> (Tensor, Tensor) {
    (
        Tensor::from_vec(&[4, 2], X.iter().flatten().copied().collect()).unwrap(),
        Tensor::from_vec(&[4, 1], Y.to_vec()).unwrap(),
    )
}

/// Gradients of `loss(pred)` for the line model on the whole batch, by hand (f64):
/// `dL/dw_j = sum_i dL/dp_i * x_ij`, `dL/db = sum_i dL/dp_i`, with `dL/dp_i` from `dloss`.
fn hand_grads(w: [f32; 2], b: f32, dloss: impl Fn(f64, f64) -> f64) -> ([f64; 2], f64) {
    let mut gw = [0.0f64; 2];
    let mut gb = 0.0;
    for (x, &y) in X.iter().zip(&Y) {
        let p = w[0] as f64 * x[0] as f64 + w[1] as f64 * x[1] as f64 + b as f64;
        let d = dloss(p, y as f64);
        gw[0] += d * x[0] as f64;
        gw[1] += d * x[1] as f64;
        gb += d;
    }
    (gw, gb)
}

fn kernel_and_bias(m: &Model) -> ([f32; 2], f32) {
    let w = m.get_weights();
    ([w[0].data()[0], w[0].data()[1]], w[1].data()[0])
}

fn close(got: f32, want: f64, what: &str) {
    assert!(
        (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn a_gradient_clipping_step_updates_by_the_clipped_hand_computed_gradient() {
    let (w0, b0) = ([0.5f32, -0.25], 0.1f32);
    let (x, y) = data();
    let lr = 0.1;
    let clip = 2.0;
    let mut m = line(w0, b0);
    m.compile(
        Sgd::new(lr),
        Loss::MeanSquaredError,
        &[Metric::MeanAbsoluteError],
    );
    m.set_train_step(move |ctx: &mut StepContext<'_>| {
        let pred = ctx.forward()?;
        let (loss, grad) = ctx.loss(&pred)?;
        ctx.backward(grad)?;
        for w in ctx.trainable_weights_mut() {
            if let Some(mut g) = w.take_grad() {
                g.data_mut()
                    .iter_mut()
                    .for_each(|v| *v = v.clamp(-clip, clip));
                w.set_grad(Some(g))?;
            }
        }
        ctx.apply_gradients()?;
        ctx.update_loss(loss);
        ctx.update_metrics(&pred);
        Ok(ctx.results())
    });
    assert!(m.has_custom_train_step());
    let h = m.fit(&x, &y, quiet(4, 1)).unwrap();

    // MSE over 4 samples: dL/dp = 2 (p - y) / 4.
    let (gw, gb) = hand_grads(w0, b0, |p, y| 2.0 * (p - y) / 4.0);
    let c = |g: f64| g.clamp(-clip as f64, clip as f64);
    // The data is chosen so clipping matters for some gradients and not others.
    assert!(gw.iter().chain([&gb]).any(|g| g.abs() > clip as f64));
    assert!(gw.iter().chain([&gb]).any(|g| g.abs() < clip as f64));
    let (w, b) = kernel_and_bias(&m);
    close(w[0], w0[0] as f64 - lr as f64 * c(gw[0]), "w0");
    close(w[1], w0[1] as f64 - lr as f64 * c(gw[1]), "w1");
    close(b, b0 as f64 - lr as f64 * c(gb), "b");

    // The logs are the step's: the loss and metric before the update.
    let preds: Vec<f64> = X
        .iter()
        .map(|x| w0[0] as f64 * x[0] as f64 + w0[1] as f64 * x[1] as f64 + b0 as f64)
        .collect();
    let mse = preds
        .iter()
        .zip(&Y)
        .map(|(p, &y)| (p - y as f64).powi(2))
        .sum::<f64>()
        / 4.0;
    let mae = preds
        .iter()
        .zip(&Y)
        .map(|(p, &y)| (p - y as f64).abs())
        .sum::<f64>()
        / 4.0;
    assert!((h.get("loss").unwrap()[0] - mse).abs() < 1e-5);
    assert!((h.get("mae").unwrap()[0] - mae).abs() < 1e-5);

    // The same model under the default step moves by the unclipped gradient instead.
    let mut d = line(w0, b0);
    d.compile(Sgd::new(lr), Loss::MeanSquaredError, &[]);
    d.fit(&x, &y, quiet(4, 1)).unwrap();
    let (wd, _) = kernel_and_bias(&d);
    close(wd[0], w0[0] as f64 - lr as f64 * gw[0], "default w0");
    assert_ne!(wd[0], w[0], "clipping must have changed the update");
}

#[test]
fn a_two_loss_step_trains_on_the_weighted_sum_of_both_gradients() {
    // No prediction equals its target here (MAE's gradient is 0 at a tie).
    let (w0, b0) = ([0.3f32, 0.7], -0.15f32);
    let (x, y) = data();
    let lr = 0.05;
    let mut m = line(w0, b0);
    m.compile(Sgd::new(lr), Loss::MeanSquaredError, &[]);
    m.set_train_step(|ctx: &mut StepContext<'_>| {
        let pred = ctx.forward()?;
        let (mse, mut grad) = ctx.loss(&pred)?;
        let (mae, g2) = Loss::MeanAbsoluteError.compute(&pred, ctx.y())?;
        for (a, b) in grad.data_mut().iter_mut().zip(g2.data()) {
            *a += 0.5 * b;
        }
        ctx.backward(grad)?;
        ctx.apply_gradients()?;
        ctx.update_loss(mse + 0.5 * mae);
        let mut logs = ctx.results();
        logs.insert("mae_part".into(), mae as f64);
        Ok(logs)
    });
    let h = m.fit(&x, &y, quiet(4, 1)).unwrap();

    // d/dp of MSE + 0.5 MAE over 4 samples.
    let (gw, gb) = hand_grads(w0, b0, |p, y| {
        2.0 * (p - y) / 4.0 + 0.5 * (p - y).signum() / 4.0
    });
    let (w, b) = kernel_and_bias(&m);
    close(w[0], w0[0] as f64 - lr as f64 * gw[0], "w0");
    close(w[1], w0[1] as f64 - lr as f64 * gw[1], "w1");
    close(b, b0 as f64 - lr as f64 * gb, "b");
    let preds: Vec<f64> = X
        .iter()
        .map(|x| w0[0] as f64 * x[0] as f64 + w0[1] as f64 * x[1] as f64 + b0 as f64)
        .collect();
    let mse = preds
        .iter()
        .zip(&Y)
        .map(|(p, &y)| (p - y as f64).powi(2))
        .sum::<f64>()
        / 4.0;
    let mae = preds
        .iter()
        .zip(&Y)
        .map(|(p, &y)| (p - y as f64).abs())
        .sum::<f64>()
        / 4.0;
    // Extra keys a step logs reach the history like the built-in ones.
    assert!((h.get("loss").unwrap()[0] - (mse + 0.5 * mae)).abs() < 1e-5);
    assert!((h.get("mae_part").unwrap()[0] - mae).abs() < 1e-5);
}

/// `Input(4) -> Dense(8, relu) -> Dropout(0.3) -> Dense(1)` with seeded initializers.
fn mlp() -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[4])).unwrap();
    m.add(Dense::new(8).activation(ActivationFn::Relu).seed(1))
        .unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(1).seed(2)).unwrap();
    m
}

fn mlp_data() -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..40).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let y: Vec<f32> = (0..10).map(|i| (i % 3) as f32 - 1.0).collect();
    (
        Tensor::from_vec(&[10, 4], x).unwrap(),
        Tensor::from_vec(&[10, 1], y).unwrap(),
    )
}

/// A custom step that scales every gradient by 0.5 (so it differs from the default).
fn halving_step(ctx: &mut StepContext<'_>) -> frostnet::Result<Logs> {
    let pred = ctx.forward()?;
    let (loss, grad) = ctx.loss(&pred)?;
    ctx.backward(grad)?;
    for w in ctx.trainable_weights_mut() {
        if let Some(mut g) = w.take_grad() {
            g.data_mut().iter_mut().for_each(|v| *v *= 0.5);
            w.set_grad(Some(g))?;
        }
    }
    ctx.apply_gradients()?;
    ctx.update_loss(loss);
    Ok(ctx.results())
}

#[test]
fn frozen_weights_stay_bit_identical_under_a_custom_step_and_flags_are_read_every_step() {
    let (x, y) = mlp_data();
    let mut m = mlp();
    m.layer_mut(0).unwrap().set_trainable(false);
    m.compile(Adam::new(0.01), Loss::MeanSquaredError, &[]);
    m.set_train_step(halving_step);
    let before = m.get_weights();
    let mut opts = quiet(4, 4);
    opts.shuffle = true;
    opts.seed = Some(3);
    // Freeze the last layer too after the second epoch: its weights must not move afterwards.
    let snapshot: Arc<Mutex<Vec<Tensor>>> = Arc::default();
    let snap = snapshot.clone();
    opts.callbacks
        .push(Box::new(LambdaCallback::new().on_epoch_end(
            move |model: &mut Model, epoch: usize, _logs: &Logs| {
                if epoch == 1 {
                    model.layer_mut(2)?.set_trainable(false);
                    *snap.lock().unwrap() = model.get_weights();
                }
                Ok(())
            },
        )));
    let h = m.fit(&x, &y, opts).unwrap();
    assert_eq!(h.epochs(), 4);
    let after = m.get_weights();
    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // Layer 0 (kernel, bias) frozen throughout.
    assert_eq!(bits(&after[0]), bits(&before[0]));
    assert_eq!(bits(&after[1]), bits(&before[1]));
    // Layer 2 trained in epochs 0-1 and then stood still.
    assert_ne!(bits(&after[2]), bits(&before[2]));
    let mid = snapshot.lock().unwrap().clone();
    assert_eq!(bits(&after[2]), bits(&mid[2]));
    assert_eq!(bits(&after[3]), bits(&mid[3]));
    // Nothing trains at the end: the step ran forward only and the optimizer stopped counting.
    let iterations = m.optimizer_mut().unwrap().iterations();
    assert_eq!(
        iterations,
        2 * 3,
        "two epochs of three batches updated anything"
    );
}

#[test]
fn the_default_step_set_explicitly_gives_the_bit_identical_run() {
    // Dropout, shuffling and Adam: the default step expressed through the public pieces must
    // draw the same random numbers and apply the same updates as the built-in path.
    let (x, y) = mlp_data();
    let run = |explicit: bool| {
        let mut m = mlp();
        m.compile(
            Adam::new(0.01),
            Loss::MeanSquaredError,
            &[Metric::MeanSquaredError],
        );
        if explicit {
            m.set_train_step(DefaultTrainStep);
        }
        let mut opts = quiet(3, 3);
        opts.shuffle = true;
        opts.seed = Some(11);
        let h = m.fit(&x, &y, opts).unwrap();
        (m.get_weights(), h.history)
    };
    let (wa, ha) = run(false);
    let (wb, hb) = run(true);
    assert_eq!(wa, wb);
    assert_eq!(ha, hb);
    // And a different step really gives a different run (the comparison can fail).
    let mut m = mlp();
    m.compile(Adam::new(0.01), Loss::MeanSquaredError, &[]);
    m.set_train_step(|ctx: &mut StepContext<'_>| {
        let pred = ctx.forward()?;
        let (loss, grad) = ctx.loss(&pred)?;
        let mut g = grad;
        g.data_mut().iter_mut().for_each(|v| *v *= 3.0);
        ctx.backward(g)?;
        ctx.apply_gradients()?;
        ctx.update_loss(loss);
        Ok(ctx.results())
    });
    let mut opts = quiet(3, 3);
    opts.shuffle = true;
    opts.seed = Some(11);
    m.fit(&x, &y, opts).unwrap();
    assert_ne!(m.get_weights(), wa);
    m.reset_train_step();
    assert!(!m.has_custom_train_step());
}

#[test]
fn train_on_batch_runs_the_custom_step_and_needs_its_loss() {
    let (x, y) = data();
    let mut m = line([1.0, 1.0], 0.0);
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let calls = Arc::new(Mutex::new(0usize));
    let seen = calls.clone();
    m.set_train_step(move |ctx: &mut StepContext<'_>| {
        *seen.lock().unwrap() += 1;
        let mut logs = Logs::new();
        logs.insert("loss".into(), ctx.x().batch() as f64 * 10.0);
        Ok(logs)
    });
    let before = m.get_weights();
    assert_eq!(m.train_on_batch(&x, &y).unwrap(), 40.0);
    assert_eq!(*calls.lock().unwrap(), 1);
    // The step did no update, so nothing changed.
    assert_eq!(m.get_weights(), before);
    m.set_train_step(|_ctx: &mut StepContext<'_>| Ok(Logs::new()));
    let err = m.train_on_batch(&x, &y).unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    // An error inside the step reaches the caller as is.
    m.set_train_step(|_ctx: &mut StepContext<'_>| Err(Error::Data("bad batch".into())));
    let err = m.fit(&x, &y, quiet(2, 1)).unwrap_err();
    assert!(matches!(&err, Error::Data(s) if s == "bad batch"), "{err}");
}
