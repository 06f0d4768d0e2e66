//! `frostnet`: summarize and explain models, train the bundled examples, and take the tour.
//!
//! Errors print as one line on stderr and exit with status 1.

/// Training allocates and frees many activation-sized buffers per step; glibc's malloc hands
/// those back to the kernel (mmap/munmap) each time, and the page faults cost ~25% of a small
/// CNN's step. mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod fit;
mod plot;
mod tour;
mod tour_images;
mod tune;

use clap::{Parser, Subcommand, ValueEnum};
use frostnet::{SummaryOptions, SummaryStyle};

#[derive(Parser)]
#[command(
    name = "frostnet",
    version,
    about = "Keras's trainable / non-trainable weight model, in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Style {
    Keras3,
    Classic,
}

#[derive(Subcommand)]
enum Command {
    /// Build, summarize, explain and train the bundled examples, one after the other.
    Tour,
    /// Print a model's summary exactly as Keras prints it.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        /// Add the "Trainable" column.
        #[arg(long)]
        show_trainable: bool,
        #[arg(long, value_enum, default_value = "keras3")]
        style: Style,
    },
    /// Explain where a model's non-trainable parameters come from.
    Explain {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Run a model file on a NumPy array and write its predictions as another, or classify
    /// image files (`--image`).
    Predict {
        file: String,
        /// Input `.npy` (f32 or f64), batch axis first.
        #[arg(long, required_unless_present = "image", requires = "output")]
        input: Option<String>,
        /// Where to write the predictions (`.npy`, f32).
        #[arg(long, requires = "input")]
        output: Option<String>,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Image files to classify: prints the top classes with their probabilities.
        #[arg(long, num_args = 1.., conflicts_with = "input")]
        image: Vec<String>,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 3, requires = "image")]
        top: usize,
    },
    /// Transfer learning on a folder of images: a pretrained base, frozen, and a new head.
    Fit(fit::FitArgs),
    /// Convert a model file: to `.keras` when OUT ends in `.keras`, else to frostnet's native format.
    Convert { input: String, output: String },
    /// Search the bundled example study (hidden layers, units, learning rate of an MLP on digits).
    Tune {
        #[command(subcommand)]
        action: Option<TuneAction>,
        #[command(flatten)]
        study: tune::StudyArgs,
        /// Worker processes sharing the study.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Draw a model's graph (SVG or PNG), like keras.utils.plot_model.
    PlotModel(plot::PlotModelArgs),
    /// Draw training curves (loss and metrics with their val_ twins) from a CSV log.
    PlotHistory(plot::PlotHistoryArgs),
}

#[derive(Subcommand)]
enum TuneAction {
    /// Print the stored configuration and the trials of an existing study (only --store, --study).
    Status {
        #[command(flatten)]
        at: tune::StoreArgs,
    },
    /// Run trials of a study until it is complete (what `--workers` starts).
    Worker {
        #[command(flatten)]
        study: tune::StudyArgs,
    },
}

/// Which model a command works on: a file, or a built-in architecture.
#[derive(clap::Args)]
struct ModelArgs {
    /// A model file: `.keras`, legacy `.h5` (tf-keras or Keras 3), or frostnet's native format.
    #[arg(required_unless_present = "app", conflicts_with = "app")]
    file: Option<String>,
    /// A built-in model: inception_v3, resnet50, mobilenet_v2, vgg16, or a seed case seed_a .. seed_f.
    #[arg(long)]
    app: Option<String>,
    /// Without the classifier (`include_top=False`), with global average pooling.
    #[arg(long)]
    no_top: bool,
}

impl ModelArgs {
    fn build(&self) -> frostnet::Result<frostnet::Model> {
        use frostnet::applications::{self as apps, ApplicationOptions, Pooling};
        let Some(app) = &self.app else {
            return frostnet::saving::load_model(self.file.as_deref().unwrap_or_default());
        };
        let opts = ApplicationOptions {
            include_top: !self.no_top,
            pooling: self.no_top.then_some(Pooling::Avg),
            ..Default::default()
        };
        match app.as_str() {
            "inception_v3" => apps::inception_v3(&opts),
            "resnet50" => apps::resnet50(&opts),
            "mobilenet_v2" => apps::mobilenet_v2(&opts),
            "vgg16" => apps::vgg16(&opts),
            name => match name.strip_prefix("seed_") {
                Some(case) => frostnet::seed::build(case),
                None => Err(frostnet::Error::InvalidConfig(format!(
                    "unknown model '{name}' (known: inception_v3, resnet50, mobilenet_v2, vgg16, seed_a .. seed_f)"
                ))),
            },
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Tour => tour::run()?,
        Command::Summary {
            model,
            show_trainable,
            style,
        } => {
            let model = model.build()?;
            let style = match style {
                Style::Keras3 => SummaryStyle::Keras3,
                Style::Classic => SummaryStyle::Classic,
            };
            print!(
                "{}",
                model.summary_with(&SummaryOptions {
                    show_trainable,
                    style
                })
            );
        }
        Command::Explain { model } => print!("{}", model.build()?.explain()),
        Command::Predict {
            file,
            input,
            output,
            batch_size,
            image,
            top,
        } => match (input, output) {
            (Some(input), Some(output)) => {
                let mut model = frostnet::saving::load_model(&file)?;
                let x = frostnet::io::npy::read_npy(&input)?;
                let y = model.predict(&x, batch_size)?;
                frostnet::io::npy::write_npy(&output, &y)?;
            }
            _ => fit::predict_images(&file, &image, top)?,
        },
        Command::Fit(args) => fit::run(&args)?,
        Command::Convert { input, output } => {
            let model = frostnet::saving::load_model(&input)?;
            if output.ends_with(".keras") {
                frostnet::saving::save_keras(&model, &output)?;
            } else {
                frostnet::saving::save_model(&model, &output)?;
            }
        }
        Command::Tune {
            action,
            study,
            workers,
        } => match action {
            None => tune::run(&study, workers)?,
            Some(TuneAction::Status { at }) => tune::status(&at)?,
            Some(TuneAction::Worker { study }) => {
                tune::work(&study)?;
            }
        },
        Command::PlotModel(args) => plot::plot_model(&args)?,
        Command::PlotHistory(args) => plot::plot_history(&args)?,
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("frostnet: {e}");
        std::process::exit(1);
    }
}
