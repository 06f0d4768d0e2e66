//! `frostnet fit`: the transfer-learning recipe on a folder of images, and `frostnet predict
//! --image`: class names and probabilities for image files.

use frostnet::applications::transfer::{
    base_name, load_class_names, save_classifier, transfer_model_augmented, unfreeze_from,
    TransferOptions,
};
use frostnet::applications::{top_k, Application, ImagenetClassIndex};
use frostnet::datasets::{
    image_dataset_from_directory, image_datasets_from_directory, load_image, ColorMode,
    ImageDataset, ImageDatasetOptions, Interpolation, Subset,
};
use frostnet::training::{Adam, FitOptions, Loss, Metric, ValidationData};
use frostnet::{Layer, Tensor};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(clap::Args)]
pub struct FitArgs {
    /// The pretrained base, any built-in application: inception_v3, resnet50, mobilenet_v2,
    /// vgg16, resnet101, resnet152, resnet50_v2, resnet101_v2, resnet152_v2, xception,
    /// densenet121, densenet169, densenet201, mobilenet, inception_resnet_v2, nasnet_mobile,
    /// efficientnet_b0 .. efficientnet_b7, efficientnet_v2_b0 .. efficientnet_v2_b3,
    /// efficientnet_v2_s, mobilenet_v3_small, mobilenet_v3_large, convnext_tiny.
    #[arg(long)]
    app: String,
    /// The base's weights: `imagenet` (Keras's file, downloaded once into $KERAS_HOME/models),
    /// a Keras weights file, or `none` (random).
    #[arg(long, default_value = "imagenet")]
    weights: String,
    /// A folder with one sub-folder of images per class.
    #[arg(long)]
    data: String,
    /// Side of the square images fed to the model (default: the application's ImageNet size,
    /// e.g. 299 for inception_v3, 224 for resnet50, 240 for efficientnet_b1; at least its
    /// minimum, 32 for most, 71 for xception, 75 for the Inceptions).
    #[arg(long)]
    image_size: Option<usize>,
    /// Epochs training the new head with the base frozen.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Fraction of the images held out to validate after each epoch (0 for none).
    #[arg(long, default_value_t = 0.2)]
    validation_split: f32,
    /// Learning rate of the head's training (Adam).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f32,
    /// Then unfreeze the base from this layer (name or index into the base's layers) on...
    #[arg(long)]
    fine_tune_at: Option<String>,
    /// ...and train this many more epochs...
    #[arg(long, default_value_t = 5, requires = "fine_tune_at")]
    fine_tune_epochs: usize,
    /// ...with this (lower) learning rate.
    #[arg(long, default_value_t = 1e-5, requires = "fine_tune_at")]
    fine_tune_lr: f32,
    /// Data augmentation in front of the base, random in training only and saved with the model:
    /// comma-separated `flip[=horizontal|vertical|horizontal_and_vertical]`, `rotation=F`,
    /// `zoom=F`, `translation=F`, `contrast=F`, `brightness=F` (e.g. `flip,rotation=0.1,zoom=0.1`).
    #[arg(long)]
    augment: Option<String>,
    /// Seed of the file shuffle, the split and the head's initialisation.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Write TensorBoard event files under DIR (`train/`, `validation/`, as Keras's TensorBoard
    /// callback); the fine-tuning's epochs continue the head's.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<String>,
    /// Where to write the trained model (`.keras`, class names kept in it).
    #[arg(long)]
    output: String,
}

fn datasets(args: &FitArgs, size: usize) -> Res<(ImageDataset, Option<ImageDataset>)> {
    let mut opts = ImageDatasetOptions {
        image_size: (size, size),
        batch_size: args.batch_size,
        seed: Some(args.seed),
        ..Default::default()
    };
    if args.validation_split > 0.0 {
        opts.validation_split = Some(args.validation_split);
        opts.subset = Some(Subset::Both);
        let (t, v) = image_datasets_from_directory(&args.data, &opts)?;
        Ok((t, Some(v)))
    } else {
        Ok((image_dataset_from_directory(&args.data, &opts)?, None))
    }
}

fn fit_opts(epochs: usize, seed: u64, val: &Option<ImageDataset>) -> FitOptions {
    FitOptions {
        epochs,
        seed: Some(seed),
        validation_data: val.clone().map(|v| ValidationData::Dataset(Box::new(v))),
        ..Default::default()
    }
}

fn trainable_params(model: &frostnet::Model) -> usize {
    model.trainable_weights().iter().map(|w| w.len()).sum()
}

pub fn run(args: &FitArgs) -> Res<()> {
    let augment = match &args.augment {
        Some(spec) => Some(crate::augment::parse(spec)?),
        None => None,
    };
    let app: Application = args.app.parse()?;
    let size = args.image_size.unwrap_or(app.default_size());
    if size < app.min_size() {
        return Err(format!(
            "--image-size {size}: {} needs at least {}",
            app.name(),
            app.min_size()
        )
        .into());
    }
    let (mut train, val) = datasets(args, size)?;
    let class_names = train.class_names().unwrap_or_default().to_vec();
    if class_names.len() < 2 {
        return Err(format!(
            "{}: found {} class folder(s); a classifier needs at least 2",
            args.data,
            class_names.len()
        )
        .into());
    }
    let weights = match args.weights.as_str() {
        "none" => None,
        w => Some(w.to_string()),
    };
    let augmentation = match &augment {
        Some(items) => Some(crate::augment::model(items, size, args.seed)?),
        None => None,
    };
    let mut model = transfer_model_augmented(
        &TransferOptions {
            app,
            weights,
            image_size: size,
            num_classes: class_names.len(),
            dropout: 0.2,
            seed: Some(args.seed),
        },
        augmentation,
    )?;
    model.compile(
        Adam::new(args.learning_rate),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    println!(
        "Training a new head for {} classes {:?} on a frozen {} ({} trainable params)",
        class_names.len(),
        class_names,
        base_name(&model)?,
        trainable_params(&model)
    );
    let board = args.tensorboard.as_ref().map(crate::tensorboard::Run::new);
    let logged = |mut opts: FitOptions, first: usize| {
        opts.callbacks
            .extend(board.as_ref().map(|b| b.callback(first)));
        opts
    };
    model.fit_dataset(
        &mut train,
        logged(fit_opts(args.epochs, args.seed, &val), 0),
    )?;
    if let Some(at) = &args.fine_tune_at {
        let index = unfreeze_from(&mut model, at)?;
        model.compile(
            Adam::new(args.fine_tune_lr),
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &[Metric::Accuracy],
        );
        println!(
            "Fine-tuning the base from layer {index} ({at}) on, learning rate {} ({} trainable params)",
            args.fine_tune_lr,
            trainable_params(&model)
        );
        model.fit_dataset(
            &mut train,
            logged(
                fit_opts(args.fine_tune_epochs, args.seed + 1, &val),
                args.epochs,
            ),
        )?;
    }
    save_classifier(&model, &class_names, &args.output)?;
    // The file must reload: check it before reporting success.
    frostnet::saving::load_model(&args.output)?;
    println!(
        "Saved {} (classes: {})",
        args.output,
        class_names.join(", ")
    );
    Ok(())
}

/// `frostnet predict MODEL --image FILES [--top K]`.
pub fn predict_images(file: &str, images: &[String], top: usize) -> Res<()> {
    let mut model = frostnet::saving::load_model(file)?;
    let shape = model.input_shapes()[0].clone();
    let (h, w, c) = match shape.as_slice() {
        [Some(h), Some(w), Some(c @ (1 | 3 | 4))] => (*h, *w, *c),
        s => {
            return Err(format!(
                "{file}: predict --image needs a model taking images of a fixed size \
                 (height, width, 1/3/4 channels); its input is {s:?}"
            )
            .into())
        }
    };
    let color = match c {
        1 => ColorMode::Grayscale,
        4 => ColorMode::Rgba,
        _ => ColorMode::Rgb,
    };
    let mut xs = Vec::new();
    for img in images {
        xs.push(load_image(img, (h, w), color, Interpolation::Bilinear)?);
    }
    let mut x = Tensor::concat_batch(&xs)?;
    let names = load_class_names(file)?;
    // A plain Keras application (an ImageNet classifier) expects its preprocess_input applied.
    if names.is_none() {
        if let Some(app) = Application::of_model_name(model.name()) {
            x = app.preprocess_input(&x)?;
        }
    }
    let probs = model.predict(&x, 32)?;
    let k = probs.shape().get(1).copied().unwrap_or(0);
    if probs.shape().len() != 2 || k == 0 {
        return Err(format!(
            "{file}: expected a classifier with outputs (batch, classes), got {:?}",
            probs.shape()
        )
        .into());
    }
    let imagenet = match &names {
        Some(n) if n.len() != k => {
            return Err(format!(
                "{file}: the model has {k} outputs but {} class names",
                n.len()
            )
            .into())
        }
        // Keras's class index, bundled: no download.
        None if k == 1000 => Some(ImagenetClassIndex::bundled()),
        _ => None,
    };
    for (img, row) in images.iter().zip(probs.data().chunks_exact(k)) {
        let parts: Vec<String> = top_k(row, top)
            .into_iter()
            .map(|i| {
                let name = match (&names, &imagenet) {
                    (Some(n), _) => n[i].clone(),
                    (None, Some(index)) => index.name(i).to_string(),
                    (None, None) => i.to_string(),
                };
                format!("{name} {:.4}", row[i])
            })
            .collect();
        println!("{img}: {}", parts.join(", "));
    }
    Ok(())
}
