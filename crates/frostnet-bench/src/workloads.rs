//! The workloads, built exactly like the peers' (`bench/peers/*.py`): same layers, batch sizes,
//! losses and optimizer. Synthetic data is made once, from fixed seeds, before any timing.

use crate::Res;
use frostnet::applications::{inception_v3, InceptionV3Options, Pooling};
use frostnet::layers::{
    ActivationFn, BatchNormalization, Conv2D, Dense, Flatten, Input, MaxPooling2D, ReLU,
};
use frostnet::tensor::{matmul, random, Padding, Transpose};
use frostnet::training::{Adam, FitOptions, Loss};
use frostnet::{Functional, Layer, Model, Sequential, Tensor};
use serde_json::Value;

pub(crate) const SGEMM_N: usize = 2048;
/// The input side of InceptionV3.
pub(crate) const SIDE: usize = 299;
/// Batch of the InceptionV3 training workloads.
pub(crate) const INCEPTION_TRAIN_BATCH: usize = 8;
/// Classes of the head trained on top of InceptionV3.
pub(crate) const HEAD_CLASSES: usize = 200;

/// One workload: a step to time and the extra JSON fields describing it.
pub(crate) struct Workload {
    pub(crate) step: Box<dyn FnMut() -> Res<()>>,
    pub(crate) extra: Vec<(&'static str, Value)>,
}

/// `n` standard-normal samples (Box-Muller over frostnet's seeded uniform generator), like the
/// peers' `randn`.
pub(crate) fn normal(seed: u64, n: usize) -> Vec<f32> {
    let mut r = random::rng(Some(seed));
    let u = random::uniform(&mut r, n.div_ceil(2) * 2, 0.0, 1.0);
    let mut out = Vec::with_capacity(n + 1);
    for pair in u.chunks_exact(2) {
        let r = (-2.0 * (1.0 - pair[0]).ln()).sqrt();
        let t = std::f32::consts::TAU * pair[1];
        out.push(r * t.cos());
        out.push(r * t.sin());
    }
    out.truncate(n);
    out
}

/// A tensor of standard-normal values.
pub(crate) fn randn(seed: u64, shape: &[usize]) -> Res<Tensor> {
    Ok(Tensor::from_vec(
        shape,
        normal(seed, shape.iter().product()),
    )?)
}

/// `n` class indices in `0..classes`, stored as f32 (frostnet's sparse labels).
pub(crate) fn labels(seed: u64, n: usize, classes: usize) -> Res<Tensor> {
    let mut r = random::rng(Some(seed));
    let v = random::uniform(&mut r, n, 0.0, classes as f32)
        .into_iter()
        .map(|x| (x.floor()).min(classes as f32 - 1.0))
        .collect();
    Ok(Tensor::from_vec(&[n], v)?)
}

fn trainable_params(m: &Model) -> usize {
    m.trainable_weights().iter().map(|w| w.len()).sum()
}

fn train_step(mut model: Model, x: Tensor, y: Tensor) -> Box<dyn FnMut() -> Res<()>> {
    Box::new(move || {
        let loss = model.train_on_batch(&x, &y)?;
        if !loss.is_finite() {
            return Err(format!("training step gave a non-finite loss ({loss})").into());
        }
        Ok(())
    })
}

/// InceptionV3 without top, global average pooling (2048 features), 299x299x3 input.
pub(crate) fn inception_base() -> Res<Model> {
    Ok(inception_v3(&InceptionV3Options {
        include_top: false,
        pooling: Some(Pooling::Avg),
        input_shape: Some([Some(SIDE), Some(SIDE), Some(3)]),
        ..Default::default()
    })?)
}

/// InceptionV3 with its 1000-way softmax top.
pub(crate) fn inception_with_top() -> Res<Model> {
    Ok(inception_v3(&InceptionV3Options::default())?)
}

/// The transfer-learning model: `base` nested as one layer, then Dense(200) logits.
pub(crate) fn inception_transfer(frozen: bool) -> Res<Model> {
    let mut base = inception_base()?;
    base.set_trainable(!frozen);
    let mut g = Functional::new();
    let inp = g.input(Input::new(&[SIDE, SIDE, 3]));
    let feats = g.call_boxed(Box::new(base), &[inp])?;
    let out = g.call(Dense::new(HEAD_CLASSES).seed(7), &[feats])?;
    Ok(g.build(&[inp], &[out])?)
}

/// transfer_fit: samples fitted each epoch, batch size, epochs per rep and head classes.
pub(crate) const TRANSFER_SAMPLES: usize = 64;
pub(crate) const TRANSFER_BATCH: usize = 16;
pub(crate) const TRANSFER_EPOCHS: usize = 5;
pub(crate) const TRANSFER_CLASSES: usize = 10;

/// transfer_fit's model: the frozen InceptionV3 base nested as one layer, then Dense(10) logits.
pub(crate) fn transfer_fit_model() -> Res<Model> {
    let mut base = inception_base()?;
    base.set_trainable(false);
    let mut g = Functional::new();
    let inp = g.input(Input::new(&[SIDE, SIDE, 3]));
    let feats = g.call_boxed(Box::new(base), &[inp])?;
    let out = g.call(Dense::new(TRANSFER_CLASSES).seed(7), &[feats])?;
    Ok(g.build(&[inp], &[out])?)
}

/// Boxed layers in order.
type Layers = Vec<Box<dyn Layer>>;

/// The layers of the two chain models, as in the peers.
fn chain_layers(workload: &str) -> Res<(Vec<usize>, Layers)> {
    Ok(match workload {
        "mlp_train" => (
            vec![256],
            vec![
                Box::new(Dense::new(500).activation(ActivationFn::Relu).seed(1)),
                Box::new(Dense::new(500).activation(ActivationFn::Relu).seed(2)),
                Box::new(Dense::new(1).seed(3)),
            ],
        ),
        "cnn_train" => (
            vec![28, 28, 1],
            vec![
                Box::new(Conv2D::new(32, 3).padding(Padding::Same).seed(1)),
                Box::new(BatchNormalization::new()),
                Box::new(ReLU::new()),
                Box::new(MaxPooling2D::new(2)),
                Box::new(Conv2D::new(64, 3).padding(Padding::Same).seed(2)),
                Box::new(BatchNormalization::new()),
                Box::new(ReLU::new()),
                Box::new(MaxPooling2D::new(2)),
                Box::new(Flatten::new()),
                Box::new(Dense::new(10).seed(3)),
            ],
        ),
        other => return Err(format!("'{other}' is not a chain model").into()),
    })
}

/// mlp_train's or cnn_train's model: a `Sequential` (what the benchmark times) or the same
/// chain as a `Functional` graph (which lists its input layer, for the profiler).
pub(crate) fn chain_model(workload: &str, functional: bool) -> Res<Model> {
    let (shape, layers) = chain_layers(workload)?;
    if functional {
        let mut g = Functional::new();
        let inp = g.input(Input::new(&shape));
        let mut x = inp;
        for l in layers {
            x = g.call_boxed(l, &[x])?;
        }
        return Ok(g.build(&[inp], &[x])?);
    }
    let mut m = Sequential::new();
    m.add(Input::new(&shape))?;
    for l in layers {
        m.add_boxed(l)?;
    }
    Ok(m)
}

/// The loss of a chain workload.
pub(crate) fn chain_loss(workload: &str) -> Loss {
    if workload == "mlp_train" {
        Loss::MeanSquaredError
    } else {
        Loss::SparseCategoricalCrossentropy { from_logits: true }
    }
}

/// The synthetic batch of a chain workload.
pub(crate) fn chain_data(workload: &str) -> Res<(Tensor, Tensor)> {
    if workload == "mlp_train" {
        Ok((randn(10, &[256, 256])?, randn(11, &[256, 1])?))
    } else {
        Ok((randn(20, &[64, 28, 28, 1])?, labels(21, 64, 10)?))
    }
}

pub(crate) fn build(workload: &str) -> Res<Workload> {
    Ok(match workload {
        "sgemm" => {
            let n = SGEMM_N;
            let a = normal(1, n * n);
            let b = normal(2, n * n);
            let mut c = vec![0.0f32; n * n];
            Workload {
                step: Box::new(move || {
                    matmul(&a, Transpose::No, &b, Transpose::No, &mut c, n, n, n, false);
                    std::hint::black_box(&c);
                    Ok(())
                }),
                extra: vec![("n", n.into())],
            }
        }
        "mlp_train" => {
            let mut m = chain_model(workload, false)?;
            m.compile(Adam::new(1e-3), chain_loss(workload), &[]);
            let (x, y) = chain_data(workload)?;
            Workload {
                step: train_step(m, x, y),
                extra: vec![("batch", 256.into())],
            }
        }
        "cnn_train" => {
            let mut m = chain_model(workload, false)?;
            m.compile(Adam::new(1e-3), chain_loss(workload), &[]);
            let (x, y) = chain_data(workload)?;
            Workload {
                step: train_step(m, x, y),
                extra: vec![("batch", 64.into()), ("layout", "nhwc".into())],
            }
        }
        "inception_infer" => {
            let mut m = inception_with_top()?;
            let x = randn(30, &[1, SIDE, SIDE, 3])?;
            Workload {
                step: Box::new(move || {
                    let y = m.call(&x)?;
                    std::hint::black_box(&y);
                    Ok(())
                }),
                extra: vec![
                    ("batch", 1.into()),
                    ("layout", "nhwc".into()),
                    ("mode", "model.call (inference)".into()),
                ],
            }
        }
        "inception_frozen" | "inception_finetune" => {
            let frozen = workload == "inception_frozen";
            let mut m = inception_transfer(frozen)?;
            m.compile(
                Adam::new(1e-3),
                Loss::SparseCategoricalCrossentropy { from_logits: true },
                &[],
            );
            let params = trainable_params(&m);
            let x = randn(40, &[INCEPTION_TRAIN_BATCH, SIDE, SIDE, 3])?;
            let y = labels(41, INCEPTION_TRAIN_BATCH, HEAD_CLASSES)?;
            Workload {
                step: train_step(m, x, y),
                extra: vec![
                    ("batch", INCEPTION_TRAIN_BATCH.into()),
                    ("layout", "nhwc".into()),
                    ("mode", "train_on_batch".into()),
                    ("trainable_params", params.into()),
                ],
            }
        }
        "image_pipeline" => image_pipeline()?,
        "transfer_fit" => {
            // The standard loop: `fit` for 5 epochs over the same 64 samples, shuffled, at batch
            // 16, as Keras's `model.fit` and PyTorch's loop in the peers. Every rep continues
            // training the same model with a fresh `fit` (so the prefix cache starts empty).
            let mut m = transfer_fit_model()?;
            m.compile(
                Adam::new(1e-3),
                Loss::SparseCategoricalCrossentropy { from_logits: true },
                &[],
            );
            let params = trainable_params(&m);
            let x = randn(50, &[TRANSFER_SAMPLES, SIDE, SIDE, 3])?;
            let y = labels(51, TRANSFER_SAMPLES, TRANSFER_CLASSES)?;
            let mut seed = 0;
            Workload {
                step: Box::new(move || {
                    seed += 1;
                    let opts = FitOptions {
                        batch_size: TRANSFER_BATCH,
                        epochs: TRANSFER_EPOCHS,
                        seed: Some(seed),
                        verbose: 0,
                        ..FitOptions::default()
                    };
                    let h = m.fit(&x, &y, opts)?;
                    let loss = h.get("loss").and_then(|l| l.last().copied());
                    if !loss.is_some_and(f64::is_finite) {
                        return Err(format!("fit gave a non-finite loss ({loss:?})").into());
                    }
                    if h.prefix_cache.hits == 0 {
                        return Err(format!(
                            "the frozen-prefix cache served no batch: {:?}",
                            h.prefix_cache
                        )
                        .into());
                    }
                    Ok(())
                }),
                extra: vec![
                    ("batch", TRANSFER_BATCH.into()),
                    ("samples", TRANSFER_SAMPLES.into()),
                    ("epochs", TRANSFER_EPOCHS.into()),
                    ("layout", "nhwc".into()),
                    ("mode", "fit (5 epochs, shuffled)".into()),
                    ("trainable_params", params.into()),
                ],
            }
        }
        other => return Err(format!("unknown workload '{other}'").into()),
    })
}

/// Where `bench/setup` writes the `image_pipeline` photos (`FROSTNET_BENCH_IMAGES` overrides).
pub(crate) fn image_pipeline_dir() -> String {
    std::env::var("FROSTNET_BENCH_IMAGES").unwrap_or_else(|_| {
        format!(
            "{}/../../bench/.data/image_pipeline",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

/// Images and batch of `image_pipeline`.
pub(crate) const PIPELINE_SIDE: usize = 299;
pub(crate) const PIPELINE_BATCH: usize = 32;

/// `image_pipeline`: one rep = one epoch over the folder: every JPEG read, decoded, resized to
/// 299x299 (`tf.image.resize` bilinear) and batched by 32, on as many decoding workers as threads,
/// as `image_dataset_from_directory` streams them to `fit`.
fn image_pipeline() -> Res<Workload> {
    use frostnet::datasets::{image_dataset_from_directory, Dataset, ImageDatasetOptions};
    let dir = image_pipeline_dir();
    let workers = rayon::current_num_threads();
    let mut ds = image_dataset_from_directory(
        &dir,
        &ImageDatasetOptions {
            image_size: (PIPELINE_SIDE, PIPELINE_SIDE),
            batch_size: PIPELINE_BATCH,
            shuffle: false,
            verbose: false,
            num_workers: workers,
            ..Default::default()
        },
    )
    .map_err(|e| format!("{e} (run bench/setup to generate the images)"))?;
    let n = ds.num_samples();
    Ok(Workload {
        step: Box::new(move || {
            let mut seen = 0;
            for b in ds.epoch()? {
                let b = b?;
                seen += b.x.batch();
                std::hint::black_box(&b);
            }
            if seen != n {
                return Err(format!("one epoch gave {seen} images of {n}").into());
            }
            Ok(())
        }),
        extra: vec![
            ("n", n.into()),
            ("batch", PIPELINE_BATCH.into()),
            ("workers", workers.into()),
            ("mode", "image_dataset_from_directory, 1 epoch".into()),
        ],
    })
}
