//! `frostnet tune --app NAME --data DIR`: the transfer-learning recipe of `frostnet fit`
//! (a pretrained base, frozen, a new head; then the base's top unfrozen and trained with a lower
//! learning rate) with its choices searched instead of given: the head's hidden units and
//! dropout, both learning rates, and the layer the fine-tuning starts at.

use frostnet::applications::transfer::{
    save_classifier, transfer_model_with_head, unfreeze_from, TransferOptions,
};
use frostnet::applications::Application;
use frostnet::datasets::{
    image_datasets_from_directory, ImageDataset, ImageDatasetOptions, Subset,
};
use frostnet::layers::clear_session;
use frostnet::training::{Adam, Callback, FitOptions, Loss, Metric, ValidationData};
use frostnet_tuner::{Hyperparameters, Scale, SpaceError, TrialContext};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The image search's options; `--app` switches `frostnet tune` from the bundled MLP to it.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ImageArgs {
    /// Search the transfer-learning recipe on an image folder with this base (any built-in
    /// application: inception_v3, resnet50_v2, efficientnet_b0, ...; see `frostnet summary
    /// --app`) instead of the bundled MLP on digits.
    #[arg(long, requires = "data")]
    pub app: Option<String>,
    /// The base's weights: `imagenet`, a Keras weights file, or `none` (random).
    #[arg(long, default_value = "imagenet")]
    pub weights: String,
    /// A folder with one sub-folder of images per class.
    #[arg(long, requires = "app")]
    pub data: Option<String>,
    /// Side of the square images fed to the model (default: the application's ImageNet size,
    /// e.g. 299 for inception_v3, 224 for resnet50, 240 for efficientnet_b1).
    #[arg(long, requires = "app")]
    pub image_size: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Fraction of the images held out; the trials are ranked by their accuracy on it.
    #[arg(long, default_value_t = 0.2)]
    pub validation_split: f32,
    /// The layers the fine-tuning may start at, searched as a choice (names or indices into the
    /// base's layers; `none`: no fine-tuning) [default: none and two or three of the base's top
    /// blocks].
    #[arg(long, value_delimiter = ',')]
    pub fine_tune_at: Vec<String>,
    /// Epochs of the fine-tuning, after `--epochs` of the head alone.
    #[arg(long, default_value_t = 2)]
    pub fine_tune_epochs: u64,
}

impl ImageArgs {
    /// The same options as command-line arguments, for the worker processes.
    pub fn to_args(&self) -> Vec<String> {
        let Some(app) = &self.app else {
            return Vec::new();
        };
        let mut a = vec![
            "--app".to_string(),
            app.clone(),
            "--weights".into(),
            self.weights.clone(),
            "--data".into(),
            self.data.clone().unwrap_or_default(),
            "--batch-size".into(),
            self.batch_size.to_string(),
            "--validation-split".into(),
            self.validation_split.to_string(),
            "--fine-tune-epochs".into(),
            self.fine_tune_epochs.to_string(),
        ];
        if let Some(s) = self.image_size {
            a.extend(["--image-size".into(), s.to_string()]);
        }
        if !self.fine_tune_at.is_empty() {
            a.extend(["--fine-tune-at".into(), self.fine_tune_at.join(",")]);
        }
        a
    }
}

/// Where the fine-tuning may start by default: `none`, and the tops of the bases as Keras's
/// guides fine-tune them (InceptionV3 from `mixed8`/`mixed9`, ...), from the applications' table.
fn default_fine_tune_at(app: Application) -> Vec<String> {
    std::iter::once("none")
        .chain(app.spec().fine_tune_at.iter().copied())
        .map(str::to_string)
        .collect()
}

/// The choices of `fine_tune_at` the search is opened with (`None` without `--app`).
pub fn fine_tune_choices(args: &ImageArgs) -> Res<Option<Vec<String>>> {
    let Some(app) = &args.app else {
        return Ok(None);
    };
    let app: Application = app.parse()?;
    Ok(Some(if args.fine_tune_at.is_empty() {
        default_fine_tune_at(app)
    } else {
        args.fine_tune_at.clone()
    }))
}

/// Declares every hyperparameter of the image search up front, the conditional `fine_tune_lr`
/// included: the ranges become part of the study's fingerprint, so reopening the store and study
/// with another space (other `--fine-tune-at` choices, or the digits MLP's) is refused at once.
pub fn declare(fine_tune_at: &[&str], hp: &mut Hyperparameters) -> Result<(), SpaceError> {
    let s = Space { fine_tune_at };
    s.units(hp)?;
    s.dropout(hp)?;
    s.lr(hp)?;
    s.fine_tune_at(hp)?;
    s.fine_tune_lr(hp)?;
    Ok(())
}

/// The search space, in one place: the trial's closure and the declaration the study is
/// opened with ([`declare`]) ask the same ranges.
struct Space<'a> {
    fine_tune_at: &'a [&'a str],
}

impl Space<'_> {
    fn units(&self, hp: &mut Hyperparameters) -> Result<usize, SpaceError> {
        Ok(hp.int_step("units", 64, 512, 64)? as usize)
    }
    fn dropout(&self, hp: &mut Hyperparameters) -> Result<f32, SpaceError> {
        Ok(hp.float_step("dropout", 0.0, 0.5, 0.1)? as f32)
    }
    fn lr(&self, hp: &mut Hyperparameters) -> Result<f32, SpaceError> {
        Ok(hp.float("lr", 1e-4, 1e-2, Scale::Log)? as f32)
    }
    fn fine_tune_at<'h>(&'h self, hp: &mut Hyperparameters) -> Result<&'h str, SpaceError> {
        hp.choice("fine_tune_at", self.fine_tune_at)
    }
    /// Asked only when the trial fine-tunes: a conditional hyperparameter.
    fn fine_tune_lr(&self, hp: &mut Hyperparameters) -> Result<f32, SpaceError> {
        Ok(hp.float("fine_tune_lr", 1e-6, 1e-4, Scale::Log)? as f32)
    }
}

/// An image folder loaded for the search, and the base to search on.
pub struct ImageSearch {
    app: Application,
    weights: Option<String>,
    size: usize,
    train: ImageDataset,
    val: ImageDataset,
    class_names: Vec<String>,
    fine_tune_at: Vec<String>,
    fine_tune_epochs: u64,
    seed: u64,
}

impl ImageSearch {
    /// Checks the options and lists the folder (`None` without `--app`).
    pub fn load(args: &ImageArgs, seed: u64) -> Res<Option<ImageSearch>> {
        let Some(app) = &args.app else {
            return Ok(None);
        };
        let app: Application = app.parse()?;
        let data = args
            .data
            .as_deref()
            .ok_or("--app needs --data DIR (a folder of class sub-folders)")?;
        let size = args.image_size.unwrap_or(app.default_size());
        if size < app.min_size() {
            return Err(format!(
                "--image-size {size}: {} needs at least {}",
                app.name(),
                app.min_size()
            )
            .into());
        }
        if !(args.validation_split > 0.0 && args.validation_split < 1.0) {
            return Err(format!(
                "--validation-split {}: the search ranks trials by validation accuracy; \
                 give a fraction in (0, 1)",
                args.validation_split
            )
            .into());
        }
        if args.batch_size == 0 {
            return Err("--batch-size must be at least 1".into());
        }
        let (train, val) = image_datasets_from_directory(
            data,
            &ImageDatasetOptions {
                image_size: (size, size),
                batch_size: args.batch_size,
                seed: Some(seed),
                validation_split: Some(args.validation_split),
                subset: Some(Subset::Both),
                ..Default::default()
            },
        )?;
        let class_names = train.class_names().unwrap_or_default().to_vec();
        if class_names.len() < 2 {
            return Err(format!(
                "{data}: found {} class folder(s); a classifier needs at least 2",
                class_names.len()
            )
            .into());
        }
        let fine_tune_at = fine_tune_choices(args)?.unwrap_or_default();
        Ok(Some(ImageSearch {
            app,
            weights: match args.weights.as_str() {
                "none" => None,
                w => Some(w.to_string()),
            },
            size,
            train,
            val,
            class_names,
            fine_tune_at,
            fine_tune_epochs: args.fine_tune_epochs,
            seed,
        }))
    }

    fn choices(&self) -> Vec<&str> {
        self.fine_tune_at.iter().map(String::as_str).collect()
    }

    /// One trial: the head trains on the frozen base for `epochs` (or the algorithm's budget),
    /// then, unless the trial's `fine_tune_at` is `none`, the base from that layer on trains
    /// `--fine-tune-epochs` more with the fine-tuning learning rate. The validation accuracy is
    /// reported after every epoch (steps numbered across both phases), so the pruner can stop
    /// the trial; the best epoch's model is saved as `trial_N.keras` with the class names.
    /// `callbacks(step)` gives the callbacks of the epoch trained as `step` (TensorBoard).
    pub fn trial(
        &self,
        hp: &mut Hyperparameters,
        trial: &mut TrialContext,
        epochs: u64,
        out_dir: &str,
        callbacks: &dyn Fn(u64) -> Res<Vec<Box<dyn Callback>>>,
    ) -> Res<()> {
        let choices = self.choices();
        let space = Space {
            fine_tune_at: &choices,
        };
        let units = space.units(hp)?;
        let dropout = space.dropout(hp)?;
        let lr = space.lr(hp)?;
        let at = space.fine_tune_at(hp)?.to_string();
        let fine_tune = if at == "none" {
            None
        } else {
            Some((at, space.fine_tune_lr(hp)?))
        };
        clear_session();
        let number = trial.number();
        let mut model = transfer_model_with_head(
            &TransferOptions {
                app: self.app,
                weights: self.weights.clone(),
                image_size: self.size,
                num_classes: self.class_names.len(),
                dropout,
                seed: Some(self.seed.wrapping_add(number)),
            },
            &[units],
        )?;
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
        model.compile(Adam::new(lr), loss, &[Metric::Accuracy]);
        let head_epochs = trial.max_epochs().unwrap_or(epochs);
        let path = format!("{out_dir}/trial_{number}.keras");
        let mut train = self.train.clone();
        let mut best = f64::NEG_INFINITY;
        let mut step = 0u64;
        let phases = [
            (head_epochs, None),
            (
                if fine_tune.is_some() {
                    self.fine_tune_epochs
                } else {
                    0
                },
                fine_tune,
            ),
        ];
        for (n, phase) in phases {
            if n == 0 {
                continue;
            }
            if let Some((at, lr)) = phase {
                unfreeze_from(&mut model, &at)?;
                model.compile(Adam::new(lr), loss, &[Metric::Accuracy]);
            }
            for _ in 0..n {
                let history = model.fit_dataset(
                    &mut train,
                    FitOptions {
                        epochs: 1,
                        seed: Some(self.seed ^ number.wrapping_mul(0x9e37_79b9) ^ step),
                        verbose: 0,
                        validation_data: Some(ValidationData::Dataset(Box::new(self.val.clone()))),
                        callbacks: callbacks(step)?,
                        ..Default::default()
                    },
                )?;
                let last = |k: &str| {
                    history
                        .get(k)
                        .and_then(|v| v.last().copied())
                        .unwrap_or(f64::NAN)
                };
                let (acc, val_loss) = (last("val_accuracy"), last("val_loss"));
                if acc > best {
                    best = acc;
                    save_classifier(&model, &self.class_names, &path)?;
                }
                if trial
                    .report(step, &[("val_accuracy", acc), ("val_loss", val_loss)])
                    .should_stop()
                {
                    return Ok(());
                }
                step += 1;
            }
        }
        Ok(())
    }
}
