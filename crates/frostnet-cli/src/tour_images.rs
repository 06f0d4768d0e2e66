//! The tour's real-image section: shapes drawn at run time and written as PNG and JPEG files into
//! a temporary folder, read back with `image_dataset_from_directory` (decoding on worker threads),
//! a small convolutional base trained on three shapes, frozen, and a new head trained on two other
//! shapes: transfer learning on files, in seconds.

use frostnet::datasets::{
    image_datasets_from_directory, ImageDataset, ImageDatasetOptions, Subset,
};
use frostnet::layers::*;
use frostnet::training::{Adam, FitOptions, Loss, Metric, ValidationData};
use frostnet::{Model, Sequential};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SIZE: u32 = 32;

/// Whether pixel `(x, y)` is inside `shape` centred at `(cx, cy)` with radius `r`.
fn inside(shape: &str, x: f32, y: f32, cx: f32, cy: f32, r: f32) -> bool {
    let (dx, dy) = (x - cx, y - cy);
    match shape {
        "circle" => dx * dx + dy * dy <= r * r,
        "square" => dx.abs() <= r * 0.8 && dy.abs() <= r * 0.8,
        "triangle" => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.55,
        "cross" => {
            (dx.abs() <= r * 0.25 && dy.abs() <= r) || (dy.abs() <= r * 0.25 && dx.abs() <= r)
        }
        "ring" => {
            let d = (dx * dx + dy * dy).sqrt();
            d <= r && d >= r * 0.55
        }
        _ => false,
    }
}

/// One noisy image of `shape` in a random place, size and colour.
fn draw(shape: &str, rng: &mut rand::rngs::SmallRng) -> RgbImage {
    let r = rng.random_range(7.0..12.0f32);
    let cx = rng.random_range(r..SIZE as f32 - r);
    let cy = rng.random_range(r..SIZE as f32 - r);
    let fg = [
        rng.random_range(140..255u8),
        rng.random_range(140..255u8),
        rng.random_range(140..255u8),
    ];
    let bg = [
        rng.random_range(0..90u8),
        rng.random_range(0..90u8),
        rng.random_range(0..90u8),
    ];
    RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let on = inside(shape, x as f32 + 0.5, y as f32 + 0.5, cx, cy, r);
        let base = if on { fg } else { bg };
        let noise = rng.random_range(-20i16..=20);
        Rgb(base.map(|c| (c as i16 + noise).clamp(0, 255) as u8))
    })
}

/// Writes `per_class` images of each shape under `dir/<shape>/`, alternating PNG and JPEG.
fn write_folder(dir: &Path, shapes: &[&str], per_class: usize, seed: u64) -> Res<()> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for shape in shapes {
        let sub = dir.join(shape);
        std::fs::create_dir_all(&sub)?;
        for i in 0..per_class {
            let img = draw(shape, &mut rng);
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(sub.join(format!("{shape}_{i:03}.{ext}")))?;
        }
    }
    Ok(())
}

fn load(dir: &Path) -> Res<(ImageDataset, ImageDataset)> {
    Ok(image_datasets_from_directory(
        dir,
        &ImageDatasetOptions {
            image_size: (SIZE as usize, SIZE as usize),
            batch_size: 16,
            seed: Some(7),
            validation_split: Some(0.25),
            subset: Some(Subset::Both),
            ..Default::default()
        },
    )?)
}

fn train(model: &mut Model, data: (ImageDataset, ImageDataset), epochs: usize) -> Res<f64> {
    let (mut train, val) = data;
    model.compile(
        Adam::new(1e-2),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let h = model.fit_dataset(
        &mut train,
        FitOptions {
            epochs,
            seed: Some(1),
            verbose: 2,
            validation_data: Some(ValidationData::Dataset(Box::new(val))),
            ..Default::default()
        },
    )?;
    Ok(h.get("val_accuracy")
        .and_then(|v| v.last().copied())
        .unwrap_or(f64::NAN))
}

pub fn run() -> Res<()> {
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("frostnet-tour-images-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (old, new) = (dir.join("base_shapes"), dir.join("new_shapes"));
    write_folder(&old, &["circle", "square", "triangle"], 64, 1)?;
    write_folder(&new, &["cross", "ring"], 64, 2)?;
    println!(
        "Drew 320 images of 32x32 (PNG and JPEG) into {} in {:.2} s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );

    clear_session();
    let mut model = Sequential::named("shapes_cnn");
    model.add(Input::new(&[32, 32, 3]))?;
    model.add(Rescaling::new(1.0 / 255.0))?;
    for (i, filters) in [16, 32, 32].into_iter().enumerate() {
        model.add(
            Conv2D::new(filters, 3)
                .padding(frostnet::tensor::Padding::Same)
                .seed(i as u64 + 1),
        )?;
        // A short run: moving statistics must catch up within ~100 steps.
        model.add(BatchNormalization::new().momentum(0.9))?;
        model.add(Activation::new(ActivationFn::Relu))?;
        if i < 2 {
            model.add(MaxPooling2D::new(2))?;
        }
    }
    // Max pooling keeps "is there a corner / a curve anywhere", whatever the shape's position.
    model.add(GlobalMaxPooling2D::new())?;
    model.add(
        Dense::new(3)
            .activation(ActivationFn::Softmax)
            .seed(3)
            .named("head"),
    )?;
    let data = load(&old)?;
    println!("Classes: {:?}", data.0.class_names().unwrap_or_default());
    let acc = train(&mut model, data, 10)?;
    println!("Base on circle / square / triangle: validation accuracy {acc:.3}");

    model.pop()?;
    let n = model.layers().len();
    model.set_trainable_range(0..n, false)?;
    model.add(
        Dense::new(2)
            .activation(ActivationFn::Softmax)
            .seed(4)
            .named("new_head"),
    )?;
    let frozen = model.layer(1)?.get_weights()[0].clone();
    let data = load(&new)?;
    println!("Classes: {:?}", data.0.class_names().unwrap_or_default());
    let acc = train(&mut model, data, 10)?;
    let unchanged = model.layer(1)?.get_weights()[0].data() == frozen.data();
    println!("New head on cross / ring over the frozen base: validation accuracy {acc:.3}");
    println!("Frozen base bit-identical after training the head: {unchanged}");
    std::fs::remove_dir_all(&dir)?;
    println!("Section finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
