//! The tour: the seed's models with their summaries and explanations, a prediction, then training
//! on the bundled digits, freezing a convolutional base and training a new head (transfer learning
//! in miniature), with summaries before and after each freeze and the time per training step.

use frostnet::datasets::load_digits;
use frostnet::layers::*;
use frostnet::tensor::Padding;
use frostnet::training::{Adam, FitOptions, Loss, Metric};
use frostnet::{seed, Model, Sequential, SummaryOptions, Tensor};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn heading(title: &str) {
    println!("\n=== {title} ===\n");
}

fn fit_opts(epochs: usize, batch_size: usize) -> FitOptions {
    FitOptions {
        epochs,
        batch_size,
        seed: Some(1),
        verbose: 2,
        ..Default::default()
    }
}

/// Compiles `model` for digit classes with Adam at `lr` and fits it, holding out 20% for validation.
fn train_classifier(model: &mut Model, x: &Tensor, y: &Tensor, lr: f32, epochs: usize) -> Res<()> {
    model.compile(
        Adam::new(lr),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let mut opts = fit_opts(epochs, 32);
    opts.validation_split = 0.2;
    model.fit(x, y, opts)?;
    Ok(())
}

/// The Keras 3 summary with the "Trainable" column.
fn show_trainable(model: &Model) -> String {
    model.summary_with(&SummaryOptions {
        show_trainable: true,
        ..Default::default()
    })
}

/// Milliseconds per `train_on_batch` on `(x, y)`, median of `reps` after one warm-up.
fn ms_per_step(model: &mut Model, x: &Tensor, y: &Tensor, reps: usize) -> Res<f64> {
    model.train_on_batch(x, y)?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        model.train_on_batch(x, y)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// 8x8 digits upsampled 2x (nearest) to 16x16 = 256 features, the seed MLP's input size.
fn digits_256(images: &Tensor) -> Res<Tensor> {
    let n = images.batch();
    let src = images.data();
    let mut out = Vec::with_capacity(n * 256);
    for i in 0..n {
        for y in 0..16 {
            for x in 0..16 {
                out.push(src[i * 64 + (y / 2) * 8 + x / 2]);
            }
        }
    }
    Ok(Tensor::from_vec(&[n, 256], out)?)
}

fn small_cnn() -> Res<Model> {
    let mut m = Sequential::named("digits_cnn");
    m.add(Input::new(&[8, 8, 1]))?;
    m.add(Conv2D::new(16, 3).padding(Padding::Same).seed(1))?;
    m.add(BatchNormalization::new())?;
    m.add(Activation::new(ActivationFn::Relu))?;
    m.add(Conv2D::new(32, 3).strides(2).padding(Padding::Same).seed(2))?;
    m.add(BatchNormalization::new())?;
    m.add(Activation::new(ActivationFn::Relu))?;
    m.add(Flatten::new())?;
    m.add(
        Dense::new(10)
            .activation(ActivationFn::Softmax)
            .seed(3)
            .named("head"),
    )?;
    Ok(m)
}

pub fn run() -> Res<()> {
    let start = Instant::now();
    heading("1. The seed's models: where non-trainable params come from");
    for case in ["a", "b", "c", "d", "e", "f"] {
        clear_session();
        let model = seed::build(case)?;
        print!("{}", model.summary());
        print!("{}", model.explain());
        println!();
    }
    clear_session();
    let mut sobel = seed::build("e")?;
    let mut img = Tensor::zeros(&[1, 28, 28, 1]);
    for y in 0..28 {
        for x in 14..28 {
            img.data_mut()[y * 28 + x] = 1.0;
        }
    }
    let edges = sobel.predict(&img, 1)?;
    let row: Vec<String> = edges.data()[14 * 28 + 11..14 * 28 + 17]
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect();
    println!(
        "Frozen Sobel-x filter on a vertical edge (row 14, columns 11..16): [{}]",
        row.join(", ")
    );

    heading("2. Training the seed MLP (256 -> 500 -> 500 -> 1) on the digits: is it below 5?");
    let digits = load_digits()?;
    let x = digits_256(&digits.images)?;
    let y = Tensor::from_vec(
        &[x.batch(), 1],
        digits
            .labels
            .data()
            .iter()
            .map(|&l| (l < 5.0) as u8 as f32)
            .collect(),
    )?;
    clear_session();
    let mut mlp = seed::build("f")?;
    mlp.compile(
        Adam::default(),
        Loss::BinaryCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let mut opts = fit_opts(3, 64);
    opts.validation_split = 0.2;
    mlp.fit(&x, &y, opts)?;
    print!("{}", mlp.summary());
    let mlp_ms = ms_per_step(&mut mlp, &x.slice_batch(0, 256), &y.slice_batch(0, 256), 10)?;

    heading("3. A small CNN with BatchNormalization on digits 0-4");
    clear_session();
    let (low, high): (Vec<usize>, Vec<usize>) =
        (0..digits.labels.len()).partition(|&i| digits.labels.data()[i] < 5.0);
    let (lx, ly) = (
        digits.images.gather_batch(&low),
        digits.labels.gather_batch(&low),
    );
    let (hx, hy) = (
        digits.images.gather_batch(&high),
        digits.labels.gather_batch(&high),
    );
    let mut cnn = small_cnn()?;
    train_classifier(&mut cnn, &lx, &ly, 0.01, 4)?;
    print!("{}", show_trainable(&cnn));
    let cnn_ms = ms_per_step(&mut cnn, &lx.slice_batch(0, 64), &ly.slice_batch(0, 64), 10)?;

    heading("4. Transfer: freeze the convolutional base, train a new head on digits 5-9");
    cnn.pop()?;
    let base_layers = cnn.layers().len();
    cnn.set_trainable_range(0..base_layers, false)?;
    cnn.add(
        Dense::new(10)
            .activation(ActivationFn::Softmax)
            .seed(4)
            .named("new_head"),
    )?;
    print!("{}", show_trainable(&cnn));
    print!("{}", cnn.explain());
    let frozen_before = cnn.layer(0)?.get_weights();
    train_classifier(&mut cnn, &hx, &hy, 0.01, 4)?;
    let unchanged = cnn.layer(0)?.get_weights()[0].data() == frozen_before[0].data();
    println!("Frozen base conv kernel bit-identical after training the head: {unchanged}");
    println!(
        "Layers that ran backward in the last step: {:?}",
        cnn.last_backward_profile()
    );
    let frozen_ms = ms_per_step(&mut cnn, &hx.slice_batch(0, 64), &hy.slice_batch(0, 64), 10)?;

    heading("5. Fine-tune: unfreeze everything, lower learning rate");
    cnn.set_trainable(true);
    train_classifier(&mut cnn, &hx, &hy, 1e-3, 2)?;
    print!("{}", show_trainable(&cnn));

    heading(
        "6. What training cannot learn: a short search over hidden layers, units, learning rate",
    );
    let dir = std::env::temp_dir().join(format!("frostnet-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let args = crate::tune::StudyArgs {
        at: crate::tune::StoreArgs {
            store: Some(format!("sqlite:{}", dir.join("tour.sqlite3").display())),
            study: "tour".into(),
        },
        algorithm: "random".into(),
        trials: 6,
        seed: 7,
        epochs: 4,
        image: Default::default(),
        tensorboard: None,
    };
    crate::tune::run(&args, 1)?;
    std::fs::remove_dir_all(&dir)?;

    heading("7. Real images: drawn, saved as PNG and JPEG, streamed from folders, transferred");
    crate::tour_images::run()?;

    heading("Timing (release build recommended)");
    println!("seed MLP train step, batch 256:           {mlp_ms:.2} ms");
    println!("small CNN train step, batch 64:           {cnn_ms:.2} ms");
    println!("small CNN, base frozen, batch 64:         {frozen_ms:.2} ms");
    println!("tour finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
