//! Training semantics against Keras's ground truth and mathematics: the BN/SGD fixture, frozen
//! weights bit-identical, the backward plan, freezing inside a callback, optimizer slots.

use frostnet::io::npy::read_npz;
use frostnet::layers::*;
use frostnet::training::*;
use frostnet::{seed, Model, Sequential, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn quiet(batch_size: usize, epochs: usize) -> FitOptions {
    FitOptions {
        batch_size,
        epochs,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    }
}

/// `Sequential([Input((3,)), Dense(4), BatchNormalization(), Dense(1)])` with the fixture's weights.
fn bn_model(a: &HashMap<String, Tensor>) -> Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[3])).unwrap();
    m.add(Dense::new(4)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(Dense::new(1)).unwrap();
    let names = [
        "w1",
        "b1",
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
        "w2",
        "b2",
    ];
    m.set_weights(
        names
            .iter()
            .map(|n| a[&format!("init_{n}")].clone())
            .collect(),
    )
    .unwrap();
    m
}

#[test]
fn one_sgd_epoch_matches_keras_in_all_three_variants() {
    let a = read_npz(&fixture("bn_sgd_step.npz")).unwrap();
    let (x, y) = (a["x"].clone(), a["y"].clone());
    let names = [
        "w1",
        "b1",
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
        "w2",
        "b2",
    ];
    for variant in ["train", "dense0_frozen", "bn_frozen"] {
        let mut m = bn_model(&a);
        match variant {
            "dense0_frozen" => m.layer_mut(0).unwrap().set_trainable(false),
            "bn_frozen" => m.layer_mut(1).unwrap().set_trainable(false),
            _ => {}
        }
        let before = m.get_weights();
        m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
        let losses = Rc::new(RefCell::new(Vec::new()));
        let seen = losses.clone();
        let mut opts = quiet(8, 1);
        opts.callbacks
            .push(Box::new(LambdaCallback::new().on_batch_end(
                move |_, _, logs| {
                    seen.borrow_mut().push(logs["loss"]);
                    Ok(())
                },
            )));
        let h = m.fit(&x, &y, opts).unwrap();
        for (i, (n, got)) in names.iter().zip(m.get_weights()).enumerate() {
            let want = &a[&format!("k3_{variant}_{n}")];
            let err = got.max_abs_diff(&want.clone().reshape(got.shape()).unwrap());
            assert!(err < 1e-5, "{variant} {n}: max abs error {err}");
            // Frozen weights are bit-identical, not merely close.
            let frozen = match variant {
                "dense0_frozen" => i < 2,
                "bn_frozen" => (2..6).contains(&i),
                _ => false,
            };
            if frozen {
                assert_eq!(got.data(), before[i].data(), "{variant} {n} changed");
            }
        }
        // Keras's running-mean batch logs and epoch history.
        let want_batches = a[&format!("k3_{variant}_batch_logs_loss")].data().to_vec();
        for (g, w) in losses.borrow().iter().zip(&want_batches) {
            assert!(
                (*g as f32 - w).abs() < 1e-5,
                "{variant} batch loss {g} vs {w}"
            );
        }
        let want_hist = a[&format!("k3_{variant}_history_loss")].data()[0];
        assert!((h.get("loss").unwrap()[0] as f32 - want_hist).abs() < 1e-5);
        // predict() after fit uses the moving statistics.
        let pred = m.predict(&x, 16).unwrap();
        let want = &a[&format!("k3_{variant}_predict_after")];
        assert!(
            pred.max_abs_diff(&want.clone().reshape(pred.shape()).unwrap()) < 1e-5,
            "{variant} predict"
        );
    }
}

#[test]
fn summary_after_one_adam_step_counts_optimizer_params_as_keras_3() {
    clear_session();
    let mut m = seed::build("f").unwrap();
    m.compile(
        Adam::default(),
        Loss::BinaryCrossentropy { from_logits: false },
        &[],
    );
    let x = Tensor::full(&[4, 256], 0.5);
    let y = Tensor::full(&[4, 1], 1.0);
    m.fit(&x, &y, quiet(4, 1)).unwrap();
    let want = std::fs::read_to_string(fixture("seed_cases/keras3_f_after_fit.txt")).unwrap();
    assert_eq!(m.summary(), want);
}

fn mlp() -> Model {
    clear_session();
    let mut m = Sequential::new();
    m.add(Input::new(&[6])).unwrap();
    m.add(Dense::new(8).activation(ActivationFn::Relu).seed(1))
        .unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(Dense::new(8).activation(ActivationFn::Tanh).seed(2))
        .unwrap();
    m.add(Dense::new(3).activation(ActivationFn::Softmax).seed(3))
        .unwrap();
    m
}

fn data() -> (Tensor, Tensor) {
    let mut r = frostnet::tensor::random::rng(Some(5));
    let x = Tensor::from_vec(
        &[40, 6],
        frostnet::tensor::random::uniform(&mut r, 240, -1.0, 1.0),
    )
    .unwrap();
    let y = Tensor::from_vec(&[40], (0..40).map(|i| (i % 3) as f32).collect()).unwrap();
    (x, y)
}

#[test]
fn frozen_prefix_runs_forward_only_and_stays_bit_identical() {
    let mut m = mlp();
    m.layer_mut(0).unwrap().set_trainable(false);
    m.layer_mut(1).unwrap().set_trainable(false);
    let before = m.get_weights();
    m.compile(
        Adam::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let (x, y) = data();
    m.fit(&x, &y, quiet(8, 3)).unwrap();
    // Backward ran in the head only: no layer of the frozen prefix computed anything.
    assert_eq!(m.last_backward_profile(), ["dense_2", "dense_1"]);
    let after = m.get_weights();
    for i in 0..6 {
        assert_eq!(
            before[i].data(),
            after[i].data(),
            "frozen weight {i} changed"
        );
    }
    assert_ne!(before[6].data(), after[6].data(), "the head trained");
}

#[test]
fn freezing_in_a_callback_takes_effect_at_the_next_batch_without_recompiling() {
    let mut m = mlp();
    m.compile(
        Sgd::new(0.1),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[],
    );
    let snapshots = Rc::new(RefCell::new(Vec::new()));
    let s = snapshots.clone();
    let mut opts = quiet(8, 1);
    opts.callbacks
        .push(Box::new(LambdaCallback::new().on_batch_end(
            move |model, batch, _| {
                s.borrow_mut().push(model.layer(0)?.get_weights());
                if batch == 1 {
                    model.layer_mut(0)?.set_trainable(false);
                }
                Ok(())
            },
        )));
    let (x, y) = data();
    m.fit(&x, &y, opts).unwrap();
    let snaps = snapshots.borrow();
    assert_ne!(
        snaps[0][0].data(),
        snaps[1][0].data(),
        "batch 1 still trained dense"
    );
    for later in &snaps[2..] {
        assert_eq!(
            later[0].data(),
            snaps[1][0].data(),
            "dense changed after it was frozen"
        );
    }
}

#[test]
fn optimizer_slots_survive_freeze_and_unfreeze() {
    // Adam with slots keyed by weight: after freeze + unfreeze, the update equals the one from
    // an uninterrupted run that skipped the frozen steps' updates for that weight.
    let (x, y) = data();
    let mut m = mlp();
    m.compile(
        Adam::new(0.01),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[],
    );
    m.train_on_batch(&x, &y).unwrap();
    m.layer_mut(2).unwrap().set_trainable(false);
    let frozen = m.layer(2).unwrap().get_weights();
    m.train_on_batch(&x, &y).unwrap();
    assert_eq!(
        m.layer(2).unwrap().get_weights()[0].data(),
        frozen[0].data()
    );
    m.layer_mut(2).unwrap().set_trainable(true);
    m.train_on_batch(&x, &y).unwrap();
    assert_ne!(
        m.layer(2).unwrap().get_weights()[0].data(),
        frozen[0].data()
    );
    // The slot count did not grow on unfreezing: one (m, v) pair per weight ever trained.
    let params: usize = m
        .weights()
        .iter()
        .filter(|w| w.kind() == WeightKind::Param)
        .map(|w| w.len())
        .sum();
    let opt = m.summary();
    let line = opt
        .lines()
        .find(|l| l.contains("Optimizer params"))
        .unwrap()
        .to_string();
    assert!(
        line.replace(',', "")
            .contains(&(2 * params + 2).to_string()),
        "{line}"
    );
}

#[test]
fn keras3_nested_trainable_semantics() {
    // semantics.md §6: base (3 -> Dense(4) -> BatchNormalization) frozen, then its Dense
    // re-enabled; outer = base + Dense(1): 37 params, Keras 3 gives 21 trainable / 16 non-trainable.
    clear_session();
    let mut base = Sequential::new();
    base.add(Input::new(&[3])).unwrap();
    base.add(Dense::new(4)).unwrap();
    base.add(BatchNormalization::new()).unwrap();
    let mut outer = Sequential::new();
    outer.add(Input::new(&[3])).unwrap();
    outer.add(base).unwrap();
    outer.add(Dense::new(1)).unwrap();
    outer.layer_mut(0).unwrap().set_trainable(false);
    outer
        .layer_mut(0)
        .unwrap()
        .as_model_mut()
        .unwrap()
        .layer_mut(0)
        .unwrap()
        .set_trainable(true);
    let count = |ws: Vec<&Weight>| ws.iter().map(|w| w.len()).sum::<usize>();
    assert_eq!(count(outer.trainable_weights()), 21);
    assert_eq!(count(outer.non_trainable_weights()), 16);
    let inner = outer.layer(0).unwrap();
    assert_eq!(count(inner.trainable_weights()), 0);
    assert_eq!(count(inner.non_trainable_weights()), 32);
    // And the re-enabled child is updated by the outer fit, as in Keras 3.
    let before = outer
        .layer(0)
        .unwrap()
        .as_model()
        .unwrap()
        .layer(0)
        .unwrap()
        .get_weights();
    let frozen_before = outer
        .layer(0)
        .unwrap()
        .as_model()
        .unwrap()
        .layer(1)
        .unwrap()
        .get_weights();
    outer.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let x = Tensor::full(&[4, 3], 1.0);
    let y = Tensor::full(&[4, 1], 2.0);
    outer.fit(&x, &y, quiet(4, 1)).unwrap();
    let inner = outer.layer(0).unwrap().as_model().unwrap();
    assert_ne!(
        inner.layer(0).unwrap().get_weights()[0].data(),
        before[0].data()
    );
    assert_eq!(
        inner.layer(1).unwrap().get_weights()[0].data(),
        frozen_before[0].data()
    );
}

#[test]
fn bad_data_is_a_typed_error() {
    let (x, y) = data();
    let mut m = mlp();
    // Not compiled.
    assert!(m
        .fit(&x, &y, quiet(8, 1))
        .unwrap_err()
        .to_string()
        .contains("compiled"));
    m.compile(
        Sgd::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[],
    );
    let before = m.get_weights();
    let cases: Vec<(Tensor, Tensor, FitOptions, &str)> = vec![
        (x.slice_batch(0, 10), y.clone(), quiet(8, 1), "samples"),
        (
            Tensor::zeros(&[40, 5]),
            y.clone(),
            quiet(8, 1),
            "input shape",
        ),
        (
            x.clone(),
            Tensor::full(&[40], 3.0),
            quiet(8, 1),
            "class index",
        ),
        (x.clone(), y.clone(), quiet(0, 1), "batch_size"),
        (
            Tensor::zeros(&[0, 6]),
            Tensor::zeros(&[0]),
            quiet(8, 1),
            "empty",
        ),
        (
            {
                let mut t = x.clone();
                t.data_mut()[7] = f32::NAN;
                t
            },
            y.clone(),
            quiet(8, 1),
            "non-finite",
        ),
    ];
    for (xb, yb, opts, needle) in cases {
        let e = m.fit(&xb, &yb, opts).unwrap_err().to_string();
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
    }
    let after = m.get_weights();
    assert!(
        before.iter().zip(&after).all(|(a, b)| a.data() == b.data()),
        "a failed fit changed weights"
    );
}

#[test]
fn terminate_on_nan_stops_with_the_reason() {
    // Finite inputs whose products overflow f32: the first batch's loss is not finite.
    let mut m = mlp();
    m.compile(
        Sgd::new(0.1),
        Loss::SparseCategoricalCrossentropy { from_logits: true },
        &[],
    );
    let (_, y) = data();
    let x = Tensor::full(&[40, 6], 3e38);
    let mut opts = quiet(4, 5);
    opts.callbacks.push(Box::new(TerminateOnNaN));
    let h = m.fit(&x, &y, opts).unwrap();
    let reason = h.stopped.clone().expect("stopped");
    assert!(
        reason.contains("TerminateOnNaN") && reason.contains("batch 0"),
        "{reason}"
    );
    assert_eq!(h.epochs(), 1);
}

#[test]
fn early_stopping_restores_best_weights_and_checkpoint_is_atomic() {
    let dir = std::env::temp_dir().join(format!("frostnet-es-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("best.safetensors").to_string_lossy().to_string();
    let csv = dir.join("log.csv").to_string_lossy().to_string();
    let mut m = mlp();
    m.compile(
        Adam::new(0.05),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let (x, y) = data();
    let mut opts = quiet(8, 30);
    opts.validation_split = 0.25;
    opts.callbacks.push(Box::new(
        EarlyStopping::new("val_loss", 2).restore_best_weights(true),
    ));
    opts.callbacks.push(Box::new(
        ModelCheckpoint::new(&ckpt)
            .monitor("val_loss")
            .save_best_only(true),
    ));
    opts.callbacks.push(Box::new(CsvLogger::new(&csv)));
    opts.callbacks.push(Box::new(
        ReduceLROnPlateau::new("val_loss").patience(1).factor(0.5),
    ));
    let h = m.fit(&x, &y, opts).unwrap();
    let val = h.get("val_loss").unwrap();
    let best = val.iter().cloned().fold(f64::INFINITY, f64::min);
    // The restored weights give the best validation loss again.
    let logs = m
        .evaluate(&x.slice_batch(30, 40), &y.slice_batch(30, 40), 8)
        .unwrap();
    if h.stopped.is_some() {
        assert!(
            (logs["loss"] - best).abs() < 1e-5,
            "{} vs {best}",
            logs["loss"]
        );
    }
    // The checkpoint holds the best epoch's weights and loads back.
    let mut again = mlp();
    frostnet::saving::load_weights(&mut again, &ckpt).unwrap();
    again.compile(
        Sgd::default(),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[],
    );
    let l2 = again
        .evaluate(&x.slice_batch(30, 40), &y.slice_batch(30, 40), 8)
        .unwrap();
    assert!((l2["loss"] - best).abs() < 1e-5);
    // No temporary files left behind; one CSV row per epoch plus the header.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains(".tmp")),
        "{names:?}"
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), h.epochs() + 1);
    assert!(rows.starts_with("epoch,accuracy,loss,val_accuracy,val_loss"));
    std::fs::remove_dir_all(&dir).unwrap();
}
