//! Issue #10 point 4: `fit` caches a deterministic frozen prefix's outputs across epochs. The
//! cache must be exact: every run here is compared bit for bit (weights and history) with the
//! same run with the cache off (`prefix_cache_bytes: 0`), and must really have used the cache
//! (`History::prefix_cache`), including when a callback changes a prefix weight or flag mid-fit.

use frostnet::datasets::TensorDataset;
use frostnet::layers::*;
use frostnet::training::*;
use frostnet::{Functional, Model, Sequential, Tensor};

fn bits(ws: &[Tensor]) -> Vec<Vec<u32>> {
    ws.iter()
        .map(|t| t.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// `n` deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn images(n: usize, seed: u64) -> Tensor {
    Tensor::from_vec(&[n, 6, 6, 2], values(n * 72, seed)).unwrap()
}

fn labels(n: usize, classes: usize) -> Tensor {
    Tensor::from_vec(&[n], (0..n).map(|i| (i * 7 % classes) as f32).collect()).unwrap()
}

/// Conv -> BN -> ReLU -> pool -> Flatten -> Dense(8) (all frozen), then Dropout and a Dense(3)
/// head. The frozen BN gets non-trivial moving statistics.
fn conv_net() -> Model {
    let mut m = Sequential::new();
    m.add(Input::new(&[6, 6, 2])).unwrap();
    m.add(
        Conv2D::new(4, 3)
            .padding(frostnet::tensor::Padding::Same)
            .seed(1)
            .named("conv"),
    )
    .unwrap();
    m.add(BatchNormalization::new().named("bn")).unwrap();
    m.add(ReLU::new()).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new().named("flat")).unwrap();
    m.add(
        Dense::new(8)
            .activation(ActivationFn::Relu)
            .seed(2)
            .named("features"),
    )
    .unwrap();
    m.add(Dropout::new(0.25)).unwrap();
    m.add(Dense::new(3).seed(3).named("head")).unwrap();
    let bn = m.get_layer_mut("bn").unwrap();
    let ws = bn.get_weights();
    let stats: Vec<Tensor> = ws
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let v = values(w.len(), 10 + i as u64);
            // gamma, beta, moving mean, moving variance (> 0).
            let v = if i == 3 {
                v.iter().map(|x| x.abs() + 0.5).collect()
            } else {
                v
            };
            Tensor::from_vec(w.shape(), v).unwrap()
        })
        .collect();
    bn.set_weights(stats).unwrap();
    for name in ["conv", "bn", "features"] {
        m.get_layer_mut(name).unwrap().set_trainable(false);
    }
    m
}

fn opts(cache: bool, epochs: usize) -> FitOptions {
    FitOptions {
        batch_size: 8,
        epochs,
        shuffle: true,
        seed: Some(5),
        verbose: 0,
        validation_data: Some((images(6, 99), labels(6, 3)).into()),
        prefix_cache_bytes: if cache { 1 << 30 } else { 0 },
        ..Default::default()
    }
}

fn compile(m: &mut Model) {
    m.compile(
        Adam::new(0.01),
        Loss::SparseCategoricalCrossentropy { from_logits: true },
        &[Metric::Accuracy],
    );
}

/// Fits `make()` with and without the cache (20 samples: batches of 8, 8 and 4, reshuffled),
/// asserts both runs are bit-identical, and returns the cached run's report.
fn both_ways(
    make: impl Fn() -> Model,
    epochs: usize,
    tweak: impl Fn(&mut FitOptions),
) -> PrefixCacheReport {
    let (x, y) = (images(20, 7), labels(20, 3));
    let run = |cache: bool| {
        let mut m = make();
        compile(&mut m);
        let mut o = opts(cache, epochs);
        tweak(&mut o);
        let h = m.fit(&x, &y, o).unwrap();
        (bits(&m.get_weights()), h)
    };
    let (plain_w, plain_h) = run(false);
    let (cached_w, cached_h) = run(true);
    assert_eq!(plain_h.prefix_cache.hits, 0);
    assert_eq!(cached_w, plain_w, "weights differ with the prefix cache");
    assert_eq!(
        cached_h.history, plain_h.history,
        "logs differ with the prefix cache"
    );
    cached_h.prefix_cache
}

#[test]
fn a_sequential_frozen_prefix_is_cached_and_training_is_bit_identical() {
    // Batches of 8, 8 and 4: rows are reused only at the batch size they were computed at, so
    // batches mixing rows of the smaller last batch recompute.
    let report = both_ways(conv_net, 4, |_| {});
    assert_eq!(report.frontier.as_deref(), Some("features"), "{report:?}");
    assert!(report.hits >= 2, "{report:?}");
    assert_eq!(report.hits + report.misses, 12, "{report:?}");
    assert_eq!(report.invalidations, 0);
    // Batches of 10 and 10: the first epoch fills the cache, the other three only read it.
    let report = both_ways(conv_net, 4, |o| o.batch_size = 10);
    assert_eq!((report.hits, report.misses), (6, 2), "{report:?}");
}

#[test]
fn the_cache_serves_a_custom_train_step_too() {
    let report = both_ways(
        || {
            let mut m = conv_net();
            m.set_train_step(|ctx: &mut StepContext<'_>| {
                let pred = ctx.forward()?;
                let (loss, grad) = ctx.loss(&pred)?;
                ctx.backward(grad)?;
                for w in ctx.trainable_weights_mut() {
                    if let Some(mut g) = w.take_grad() {
                        g.data_mut()
                            .iter_mut()
                            .for_each(|v| *v = v.clamp(-0.05, 0.05));
                        w.set_grad(Some(g))?;
                    }
                }
                ctx.apply_gradients()?;
                ctx.update_loss(loss);
                Ok(ctx.results())
            });
            m
        },
        3,
        |o| o.batch_size = 10,
    );
    assert_eq!((report.hits, report.misses), (4, 2), "{report:?}");
}

/// `Input -> base (nested, frozen: conv, BN, ReLU, global pooling) -> Dense(3)`.
fn nested_net() -> Model {
    let mut b = Functional::new();
    let i = b.input(Input::new(&[6, 6, 2]));
    let c = b.call(Conv2D::new(5, 3).seed(4), &[i]).unwrap();
    let n = b.call(BatchNormalization::new(), &[c]).unwrap();
    let r = b.call(ReLU::new(), &[n]).unwrap();
    let p = b.call(GlobalAveragePooling2D::new(), &[r]).unwrap();
    let mut base = b.build(&[i], &[p]).unwrap();
    base.set_trainable(false);
    let mut g = Functional::new();
    let i = g.input(Input::new(&[6, 6, 2]));
    let f = g.call_boxed(Box::new(base), &[i]).unwrap();
    let o = g.call(Dense::new(3).seed(5).named("head"), &[f]).unwrap();
    g.build(&[i], &[o]).unwrap()
}

#[test]
fn a_nested_frozen_base_in_a_functional_model_is_cached_exactly() {
    let report = both_ways(nested_net, 4, |o| o.batch_size = 10);
    assert!(report.frontier.is_some(), "{report:?}");
    assert_eq!((report.hits, report.misses), (6, 2), "{report:?}");
    // With a smaller last batch, exactness still holds (checked inside `both_ways`).
    both_ways(nested_net, 3, |_| {});
}

#[test]
fn unfreezing_the_frontier_mid_fit_invalidates_and_replans() {
    let unfreeze = |o: &mut FitOptions| {
        o.batch_size = 10;
        o.callbacks
            .push(Box::new(LambdaCallback::new().on_epoch_begin(
                |m: &mut Model, epoch: usize| {
                    if epoch == 2 {
                        m.get_layer_mut("features")?.set_trainable(true);
                    }
                    Ok(())
                },
            )));
    };
    let report = both_ways(conv_net, 4, unfreeze);
    assert_eq!(report.invalidations, 1, "{report:?}");
    // Planned again without the unfrozen layer: the prefix now ends at Flatten; epoch 2 reused
    // epoch 1's rows, epoch 3 fills the new cache and epoch 4 reuses it.
    assert_eq!(report.frontier.as_deref(), Some("flat"), "{report:?}");
    assert_eq!((report.hits, report.misses), (4, 4), "{report:?}");
}

#[test]
fn new_values_for_a_prefix_weight_mid_fit_invalidate_the_cache() {
    // After the optimizer's 7th update (the first batch of the 4th epoch of 2 batches each), a
    // callback changes one value of the frozen convolution's kernel, as `set_weights` or
    // loading would.
    let reassign = |o: &mut FitOptions| {
        o.batch_size = 10;
        o.callbacks
            .push(Box::new(LambdaCallback::new().on_batch_end(
                |m: &mut Model, _batch: usize, _logs: &Logs| {
                    if m.optimizer_mut().is_some_and(|o| o.iterations() == 7) {
                        let conv = m.get_layer_mut("conv")?;
                        let mut ws = conv.get_weights();
                        ws[0].data_mut()[0] = 0.25;
                        conv.set_weights(ws)?;
                    }
                    Ok(())
                },
            )));
    };
    let report = both_ways(conv_net, 4, reassign);
    assert_eq!(report.invalidations, 1, "{report:?}");
    assert_eq!((report.hits, report.misses), (5, 3), "{report:?}");

    // The change matters: without it the run ends elsewhere, so a stale cache would show.
    let (x, y) = (images(20, 7), labels(20, 3));
    let mut a = conv_net();
    compile(&mut a);
    a.fit(&x, &y, opts(false, 4)).unwrap();
    let mut b = conv_net();
    compile(&mut b);
    let mut o = opts(false, 4);
    reassign(&mut o);
    b.fit(&x, &y, o).unwrap();
    assert_ne!(bits(&a.get_weights()), bits(&b.get_weights()));
}

#[test]
fn a_flag_round_trip_on_a_prefix_layer_keeps_the_cache_exact() {
    // Unfrozen and frozen again between two epochs: the prefix computes what it did before, the
    // fingerprint (flags and weight versions) is unchanged, and the cache keeps serving.
    let flip = |o: &mut FitOptions| {
        o.batch_size = 10;
        o.callbacks
            .push(Box::new(LambdaCallback::new().on_epoch_end(
                |m: &mut Model, epoch: usize, _logs: &Logs| {
                    if epoch == 1 {
                        m.get_layer_mut("bn")?.set_trainable(true);
                        m.get_layer_mut("bn")?.set_trainable(false);
                    }
                    Ok(())
                },
            )));
    };
    let report = both_ways(conv_net, 3, flip);
    assert_eq!(report.invalidations, 0, "{report:?}");
    assert_eq!((report.hits, report.misses), (4, 2), "{report:?}");
}

fn assert_off(m: &mut Model, o: FitOptions, why: &str) {
    let (x, y) = (images(20, 7), labels(20, 3));
    compile(m);
    let h = m.fit(&x, &y, o).unwrap();
    let r = &h.prefix_cache;
    assert_eq!(r.hits, 0, "{r:?}");
    let reason = r.off_reason.as_deref().unwrap_or("");
    assert!(
        reason.contains(why),
        "reason {reason:?} should mention {why:?}"
    );
}

#[test]
fn a_trainable_batch_normalization_ends_the_prefix() {
    // BN in training mode uses batch statistics: only the frozen convolution before it is cached.
    let report = both_ways(
        || {
            let mut m = conv_net();
            m.get_layer_mut("bn").unwrap().set_trainable(true);
            m
        },
        3,
        |o| o.batch_size = 10,
    );
    assert_eq!(report.frontier.as_deref(), Some("conv"), "{report:?}");
    assert_eq!((report.hits, report.misses), (4, 2), "{report:?}");
}

#[test]
fn no_cache_when_it_cannot_be_exact_or_useful() {
    // Dropout before the frozen layers: nothing before it is worth caching.
    let mut m = Sequential::new();
    m.add(Input::new(&[6, 6, 2])).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(4).seed(1).trainable(false)).unwrap();
    m.add(Dense::new(3).seed(2)).unwrap();
    assert_off(&mut m, opts(true, 3), "random in training");

    // Over the budget.
    let mut o = opts(true, 3);
    o.prefix_cache_bytes = 64;
    assert_off(&mut conv_net(), o, "budget");

    // One epoch reuses nothing; 0 bytes turns it off.
    assert_off(&mut conv_net(), opts(true, 1), "single epoch");
    assert_off(&mut conv_net(), opts(false, 3), "disabled");

    // The trainable layers read the input directly: no single frontier.
    let mut g = Functional::new();
    let i = g.input(Input::new(&[4]));
    let a = g
        .call(Dense::new(3).seed(1).trainable(false), &[i])
        .unwrap();
    let t = g.call(Dense::new(3).seed(2), &[i]).unwrap();
    let s = g.call(Add::new(), &[a, t]).unwrap();
    let mut m = g.build(&[i], &[s]).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]);
    let x = Tensor::from_vec(&[10, 4], values(40, 3)).unwrap();
    let y = Tensor::from_vec(&[10, 3], values(30, 4)).unwrap();
    let h = m
        .fit(
            &x,
            &y,
            FitOptions {
                epochs: 2,
                verbose: 0,
                ..Default::default()
            },
        )
        .unwrap();
    let reason = h.prefix_cache.off_reason.unwrap_or_default();
    assert!(reason.contains("one tensor"), "{reason}");
}

#[test]
fn datasets_are_not_cached() {
    let mut m = conv_net();
    compile(&mut m);
    let mut d = TensorDataset::new(images(20, 7), Some(labels(20, 3)), 8).unwrap();
    let mut o = opts(true, 3);
    o.validation_data = None;
    let h = m.fit_dataset(&mut d, o).unwrap();
    assert_eq!(h.prefix_cache.hits, 0);
    assert!(h
        .prefix_cache
        .off_reason
        .unwrap_or_default()
        .contains("dataset"));
}
