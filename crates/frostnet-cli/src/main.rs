//! `frostnet`: summarize and explain models, train the bundled examples, and take the tour.
//!
//! Errors print as one line on stderr and exit with status 1. Output goes through a locked stdout
//! handle and its errors are propagated: a reader that closes the pipe early (`| head -1`) ends the
//! command quietly with status 0, as pipeline tools do; any other write error (a full disk) is a
//! one-line error with status 1.

/// Training allocates and frees many activation-sized buffers per step; glibc's malloc hands
/// those back to the kernel (mmap/munmap) each time, and the page faults cost ~25% of a small
/// CNN's step. mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod augment;
mod fit;
mod plot;
mod tensorboard;
mod tour;
mod tour_images;
mod tune;
mod tune_image;

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
    /// On an error, also print the chain of underlying causes, one per line.
    #[arg(long, global = true)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Style {
    Keras3,
    Classic,
}

// Parsed once per process: the size of the largest variant (`tune`'s options) does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// Instead, frostnet's extended table: mult-adds per layer, a Trainable column that
        /// says `Partial` for partly frozen nested models, and memory for inference and for one
        /// training step.
        #[arg(long, conflicts_with_all = ["show_trainable", "style"])]
        extras: bool,
        /// The batch size the extras count mult-adds and memory for.
        #[arg(long, default_value_t = 32, requires = "extras", value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
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
    /// Search the bundled example study (hidden layers, units, learning rate of an MLP on digits),
    /// or with --app and --data the transfer-learning recipe on a folder of images.
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
    /// Write a study as one self-contained HTML page: history, parallel coordinates,
    /// importance, intermediate values, the trials (only --store, --study, --output).
    Report {
        #[command(flatten)]
        at: tune::StoreArgs,
        /// The HTML file to write.
        #[arg(long)]
        output: String,
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
    /// A built-in model: inception_v3, resnet50, resnet101, resnet152, resnet50_v2, resnet101_v2,
    /// resnet152_v2, mobilenet, mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, vgg16,
    /// xception, densenet121, densenet169, densenet201, inception_resnet_v2, nasnet_mobile,
    /// efficientnet_b0 .. efficientnet_b7, efficientnet_v2_b0 .. efficientnet_v2_b3,
    /// efficientnet_v2_s, convnext_tiny; or a seed case seed_a .. seed_f.
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
            return load(self.file.as_deref().unwrap_or_default());
        };
        let opts = ApplicationOptions {
            include_top: !self.no_top,
            pooling: self.no_top.then_some(Pooling::Avg),
            ..Default::default()
        };
        match app.as_str() {
            name if apps::by_name::knows(name) => apps::build_by_name(name, &opts),
            name => match name.strip_prefix("seed_") {
                Some(case) => frostnet::seed::build(case),
                // The full list would pass the 300-character error line; `--help` has the names.
                None => Err(frostnet::Error::InvalidConfig(format!(
                    "unknown model '{name}' (known: {} keras.applications names such as \
                     inception_v3, efficientnet_b0, convnext_tiny (see --help), and seed_a .. seed_f)",
                    apps::by_name::APPLICATIONS.len()
                ))),
            },
        }
    }
}

/// Loads a model file, printing on stderr what the file holds but the model does not (an
/// optimizer frostnet lacks, for instance), as Keras warns when it loads such a file.
fn load(path: &str) -> frostnet::Result<frostnet::Model> {
    let (model, report) = frostnet::saving::load_model_with_report(path)?;
    for w in &report.warnings {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "frostnet: warning: {path}: {w}");
    }
    Ok(model)
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Tour => tour::run()?,
        Command::Summary {
            model,
            show_trainable,
            style,
            extras,
            batch_size,
        } => {
            let model = model.build()?;
            let width = frostnet::models::terminal_width();
            if extras {
                emit(&model.summary_extras(batch_size as usize, width))?;
                return Ok(());
            }
            let style = match style {
                Style::Keras3 => SummaryStyle::Keras3,
                Style::Classic => SummaryStyle::Classic,
            };
            emit(&model.summary_with(&SummaryOptions {
                show_trainable,
                style,
                console_width: width,
            }))?;
        }
        Command::Explain { model } => emit(&model.build()?.explain())?,
        Command::Predict {
            file,
            input,
            output,
            batch_size,
            image,
            top,
        } => match (input, output) {
            (Some(input), Some(output)) => {
                let mut model = load(&file)?;
                let x = frostnet::io::npy::read_npy(&input)?;
                let y = model.predict(&x, batch_size)?;
                frostnet::io::npy::write_npy(&output, &y)?;
            }
            _ => fit::predict_images(&file, &image, top)?,
        },
        Command::Fit(args) => fit::run(&args)?,
        Command::Convert { input, output } => {
            let model = load(&input)?;
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
            Some(TuneAction::Report { at, output }) => tune::report(&at, &output)?,
            Some(TuneAction::Worker { study }) => {
                tune::work(&study)?;
            }
        },
        Command::PlotModel(args) => plot::plot_model(&args)?,
        Command::PlotHistory(args) => plot::plot_history(&args)?,
    }
    Ok(())
}

/// Writes `text` to stdout through the locked handle and flushes it, so that a closed pipe or a
/// full disk comes back as an error instead of the panic `print!` raises.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing to stdout: {e}")))
}

/// True when `e` is the error `emit` returns for a pipe on stdout whose reader has gone away.
/// Only stdout's: a FIFO given as an output file whose reader left is a failed save, reported
/// as an error (frostnet's own error type wraps that one).
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Output that still goes through `print!` (the tour, the tuner's and training's progress lines)
/// panics with "failed printing to stdout: <io error>" when the write fails. Turn that panic into
/// what a pipeline tool does: a closed pipe ends the process quietly (status 0), any other output
/// error is one line on stderr and status 1. Every other panic keeps Rust's default report.
fn quiet_output_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        for stream in ["stdout", "stderr"] {
            if let Some(err) = payload.strip_prefix(&format!("failed printing to {stream}: ")) {
                // std formats the io::Error as "<description> (os error N)"; EPIPE is 32.
                if err.contains(&format!("(os error {})", EPIPE)) || stream == "stderr" {
                    std::process::exit(if stream == "stderr" { 1 } else { 0 });
                }
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "frostnet: writing to {stream}: {err}");
                std::process::exit(1);
            }
        }
        default(info)
    }));
}

/// `EPIPE` on Linux and the BSDs (macOS included).
const EPIPE: i32 = 32;

/// Longest error line printed without `--verbose`. The library keeps its messages short; this
/// guards against what it quotes (a path, a name from a file) being long.
const MAX_ERROR_CHARS: usize = 300;

/// The error as one line: newlines folded, the middle of an overlong line elided (the file is
/// named at the start, the problem at the end).
fn one_line(e: &dyn std::error::Error) -> String {
    let text = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_ERROR_CHARS {
        return text;
    }
    let keep = (MAX_ERROR_CHARS - 5) / 2;
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("{head} ... {tail}")
}

fn main() {
    quiet_output_panics();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    if let Err(e) = run(cli) {
        if is_broken_pipe(e.as_ref()) {
            return;
        }
        // eprintln! itself panics if stderr is closed; there is nowhere left to report to then.
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        if verbose {
            let _ = writeln!(err, "frostnet: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                let _ = writeln!(err, "  caused by: {s}");
                source = s.source();
            }
        } else {
            let _ = writeln!(err, "frostnet: {}", one_line(e.as_ref()));
        }
        std::process::exit(1);
    }
}
