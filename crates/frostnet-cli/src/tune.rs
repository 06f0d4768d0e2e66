//! `frostnet tune`: the bundled example study — how many hidden layers and units an MLP on the
//! digits should have, and its learning rate — searched by trials that each train a model.
//!
//! Trials live in a store (SQLite file by default, PostgreSQL for workers on several machines);
//! `--workers N` starts N worker processes on the same study, and rerunning the command resumes it.

use frostnet::datasets::load_digits;
use frostnet::layers::{clear_session, ActivationFn, Dense, Input};
use frostnet::training::{Adam, FitOptions, Loss, Metric, ValidationData};
use frostnet::{Model, Sequential, Tensor};
use frostnet_tuner::{
    Algorithm, Direction, Hyperparameters, Pruner, Scale, Storage, Study, TrialContext,
};

use std::io::Write;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The environment variable that may hold the store, so that a PostgreSQL URL (and any password
/// in it) stays off command lines, where every local user can read it with `ps`.
pub const STORE_ENV: &str = "FROSTNET_STORE";

/// Where a study is: all that reading it (`tune status`) needs.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreArgs {
    /// `sqlite:PATH` or `postgres://user@host:port/db` [default: $FROSTNET_STORE, else
    /// sqlite:frostnet-tune.sqlite3]. PostgreSQL passwords come from PGPASSWORD or ~/.pgpass.
    #[arg(long)]
    pub store: Option<String>,
    #[arg(long, default_value = "digits_mlp")]
    pub study: String,
}

impl StoreArgs {
    /// `--store`, else `$FROSTNET_STORE`, else the default SQLite file.
    pub fn spec(&self) -> String {
        self.store
            .clone()
            .or_else(|| std::env::var(STORE_ENV).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "sqlite:frostnet-tune.sqlite3".into())
    }
}

/// What identifies a study on the command line, with the configuration it is created with.
#[derive(Clone, Debug, clap::Args)]
pub struct StudyArgs {
    #[command(flatten)]
    pub at: StoreArgs,
    /// grid, random, hyperband or tpe.
    #[arg(long, default_value = "random")]
    pub algorithm: String,
    #[arg(long, default_value_t = 12)]
    pub trials: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Epochs per trial (Hyperband: the largest budget); with --app, the head's epochs.
    #[arg(long, default_value_t = 6)]
    pub epochs: u64,
    #[command(flatten)]
    pub image: crate::tune_image::ImageArgs,
    /// Write TensorBoard event files, one run per trial: DIR/trial_N/train and .../validation.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<String>,
}

fn storage(spec: &str) -> Res<Storage> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        Ok(Storage::postgres(spec))
    } else if let Some(path) = spec.strip_prefix("sqlite:") {
        if path.is_empty() {
            // SQLite would silently use a temporary database that vanishes at exit.
            return Err("--store sqlite: needs a path (sqlite:PATH)".into());
        }
        Ok(Storage::sqlite(path))
    } else {
        Err(format!("--store must be sqlite:PATH or postgres://..., got '{spec}'").into())
    }
}

fn algorithm(args: &StudyArgs) -> Res<Algorithm> {
    Ok(match args.algorithm.as_str() {
        "grid" => Algorithm::grid(),
        "random" => Algorithm::random(args.seed),
        "hyperband" => Algorithm::hyperband(args.seed, args.epochs, 3),
        "tpe" => Algorithm::tpe(args.seed),
        other => {
            return Err(
                format!("unknown algorithm '{other}' (grid, random, hyperband, tpe)").into(),
            )
        }
    })
}

pub fn open(args: &StudyArgs) -> Res<Study> {
    let mut builder = Study::builder(args.at.study.clone())
        .storage(storage(&args.at.spec())?)
        .objective("val_accuracy", Direction::Maximize)
        .algorithm(algorithm(args)?)
        .pruner(Pruner::median(4, 1))
        .max_trials(args.trials);
    if let Some(choices) = crate::tune_image::fine_tune_choices(&args.image)? {
        let choices: Vec<&str> = choices.iter().map(String::as_str).collect();
        builder = builder.search_space(|hp| crate::tune_image::declare(&choices, hp));
    }
    Ok(builder.open()?)
}

/// The search space and the model it describes: 1-3 hidden layers, 16-128 units each (only for
/// layers that exist), and a log-uniform learning rate.
pub fn build(hp: &mut Hyperparameters) -> Res<(Model, f32)> {
    let layers = hp.int("num_layers", 1, 3)?;
    let mut units = Vec::new();
    for i in 0..layers {
        units.push(hp.int_step(&format!("units_{i}"), 16, 128, 16)? as usize);
    }
    let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)? as f32;
    clear_session();
    let mut m = Sequential::named("digits_mlp");
    m.add(Input::new(&[64]))?;
    for u in units {
        m.add(Dense::new(u).activation(ActivationFn::Relu))?;
    }
    m.add(Dense::new(10).activation(ActivationFn::Softmax))?;
    Ok((m, lr))
}

/// A trial's progress after a finished epoch, enough to resume it bit for bit: the model (with
/// its optimizer state) in `trial_N.ckpt-E.frostnet`, and this record in `trial_N.ckpt`.
struct Checkpoint {
    /// The trial's hyperparameters (exact), so a checkpoint is never resumed by other values.
    params: String,
    /// The last finished epoch.
    epoch: u64,
    /// `(epoch, val_accuracy, val_loss)` reported so far, replayed on resume.
    reports: Vec<(u64, f64, f64)>,
}

impl Checkpoint {
    fn record_path(out_dir: &str, trial: u64) -> String {
        format!("{out_dir}/trial_{trial}.ckpt")
    }
    fn model_path(out_dir: &str, trial: u64, epoch: u64) -> String {
        format!("{out_dir}/trial_{trial}.ckpt-{epoch}.frostnet")
    }

    /// Text, with floats as their bits so the replayed values are exact.
    fn encode(&self) -> String {
        let mut s = format!(
            "frostnet-tune-checkpoint 1\nparams {}\nepoch {}\n",
            self.params, self.epoch
        );
        for (e, acc, loss) in &self.reports {
            s.push_str(&format!(
                "report {e} {:016x} {:016x}\n",
                acc.to_bits(),
                loss.to_bits()
            ));
        }
        s
    }

    fn decode(text: &str) -> Option<Checkpoint> {
        let mut lines = text.lines();
        if lines.next()? != "frostnet-tune-checkpoint 1" {
            return None;
        }
        let params = lines.next()?.strip_prefix("params ")?.to_string();
        let epoch = lines.next()?.strip_prefix("epoch ")?.parse().ok()?;
        let mut reports = Vec::new();
        for l in lines {
            let mut it = l.strip_prefix("report ")?.split(' ');
            let e = it.next()?.parse().ok()?;
            let acc = f64::from_bits(u64::from_str_radix(it.next()?, 16).ok()?);
            let loss = f64::from_bits(u64::from_str_radix(it.next()?, 16).ok()?);
            reports.push((e, acc, loss));
        }
        Some(Checkpoint {
            params,
            epoch,
            reports,
        })
    }

    /// The checkpoint of `trial` for these `params`, if one was saved (and its model file
    /// exists). A record that cannot be read is reported and ignored: the trial starts over.
    fn find(out_dir: &str, trial: u64, params: &str) -> Option<Checkpoint> {
        let path = Self::record_path(out_dir, trial);
        let text = std::fs::read_to_string(&path).ok()?;
        match Self::decode(&text) {
            Some(c)
                if c.params == params
                    && std::path::Path::new(&Self::model_path(out_dir, trial, c.epoch))
                        .is_file() =>
            {
                Some(c)
            }
            Some(_) => None,
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "frostnet: ignoring unreadable checkpoint {path}; trial {trial} starts over"
                );
                None
            }
        }
    }

    /// Saves the model, then (atomically) the record that points to it, then removes the
    /// previous epoch's model: a kill at any moment leaves a record and its model.
    fn save(&self, model: &Model, out_dir: &str, trial: u64) -> Res<()> {
        frostnet::saving::save_model(model, &Self::model_path(out_dir, trial, self.epoch))?;
        let path = Self::record_path(out_dir, trial);
        let tmp = format!("{path}.tmp{}", std::process::id());
        std::fs::write(&tmp, self.encode()).map_err(|e| format!("writing {tmp}: {e}"))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {tmp} to {path}: {e}"))?;
        if self.epoch > 0 {
            let _ = std::fs::remove_file(Self::model_path(out_dir, trial, self.epoch - 1));
        }
        Ok(())
    }

    /// Removes the checkpoint of a trial that ended.
    fn remove(out_dir: &str, trial: u64) {
        if let Ok(text) = std::fs::read_to_string(Self::record_path(out_dir, trial)) {
            if let Some(c) = Self::decode(&text) {
                let _ = std::fs::remove_file(Self::model_path(out_dir, trial, c.epoch));
            }
        }
        let _ = std::fs::remove_file(Self::record_path(out_dir, trial));
    }
}

/// One trial: train epoch by epoch, report validation accuracy, stop if pruned. After every
/// epoch the trial saves a checkpoint; a trial whose worker was killed resumes from it (same
/// model, optimizer state and per-epoch seeds, so it ends exactly as an uninterrupted one).
fn trial(
    hp: &mut Hyperparameters,
    trial: &mut TrialContext,
    data: &Data,
    epochs: u64,
    out_dir: &str,
    board: Option<&str>,
) -> Res<()> {
    let (mut model, lr) = build(hp)?;
    let number = trial.number();
    let board =
        board.map(|d| crate::tensorboard::Run::new(crate::tensorboard::trial_dir(d, number)));
    let params = format!("{:?}", hp.values());
    let epochs = trial.max_epochs().unwrap_or(epochs);
    let mut best = f64::NEG_INFINITY;
    let mut ck = Checkpoint {
        params: params.clone(),
        epoch: 0,
        reports: Vec::new(),
    };
    let mut start = 0;
    if let Some(saved) = Checkpoint::find(out_dir, number, &params) {
        model =
            frostnet::saving::load_model(&Checkpoint::model_path(out_dir, number, saved.epoch))?;
        let _ = writeln!(
            std::io::stderr(),
            "frostnet: resuming trial {number} after epoch {} from its checkpoint",
            saved.epoch
        );
        for &(epoch, acc, loss) in &saved.reports {
            best = best.max(acc);
            if trial
                .report(epoch, &[("val_accuracy", acc), ("val_loss", loss)])
                .should_stop()
            {
                Checkpoint::remove(out_dir, number);
                return Ok(());
            }
        }
        start = saved.epoch + 1;
        ck = saved;
    } else {
        model.compile(
            Adam::new(lr),
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            &[Metric::Accuracy],
        );
    }
    for epoch in start..epochs {
        let opts = FitOptions {
            epochs: 1,
            batch_size: 32,
            seed: Some(number * 1000 + epoch),
            verbose: 0,
            // Validated by `fit` only for TensorBoard's `validation/` run; the reported values
            // stay `evaluate`'s below.
            validation_data: board
                .as_ref()
                .map(|_| ValidationData::Tensors(data.vx.clone(), data.vy.clone())),
            callbacks: board.iter().map(|b| b.callback(epoch as usize)).collect(),
            ..Default::default()
        };
        model.fit(&data.x, &data.y, opts)?;
        let logs = model.evaluate(&data.vx, &data.vy, 256)?;
        let (acc, loss) = (logs["accuracy"], logs["loss"]);
        if acc > best {
            best = acc;
            frostnet::saving::save_model(&model, &format!("{out_dir}/trial_{number}.frostnet"))?;
        }
        ck.epoch = epoch;
        ck.reports.push((epoch, acc, loss));
        if epoch + 1 < epochs {
            ck.save(&model, out_dir, number)?;
        }
        if trial
            .report(epoch, &[("val_accuracy", acc), ("val_loss", loss)])
            .should_stop()
        {
            break;
        }
    }
    if !trial.is_lost() {
        Checkpoint::remove(out_dir, number);
    }
    Ok(())
}

pub struct Data {
    x: Tensor,
    y: Tensor,
    vx: Tensor,
    vy: Tensor,
}

pub fn data() -> Res<Data> {
    let d = load_digits()?;
    let x = d.flat();
    let split = 1400;
    Ok(Data {
        x: x.slice_batch(0, split),
        y: d.labels.slice_batch(0, split),
        vx: x.slice_batch(split, x.batch()),
        vy: d.labels.slice_batch(split, x.batch()),
    })
}

/// Where trial checkpoints go: beside the SQLite file, or the current directory.
fn out_dir(args: &StudyArgs) -> String {
    let spec = args.at.spec();
    let dir = spec
        .strip_prefix("sqlite:")
        .and_then(|p| {
            std::path::Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().to_string())
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| ".".into());
    format!("{dir}/{}-trials", args.at.study)
}

/// Runs trials until the study is complete, in this process.
pub fn work(args: &StudyArgs) -> Res<frostnet_tuner::Results> {
    let dir = out_dir(args);
    let epochs = args.epochs;
    // The folder is listed (and the options checked) before the store is touched.
    if let Some(search) = crate::tune_image::ImageSearch::load(&args.image, args.seed)? {
        let mut study = open(args)?;
        std::fs::create_dir_all(&dir)?;
        let board = args.tensorboard.as_deref();
        return Ok(study.optimize(|hp, t| {
            let run = board.map(|d| {
                crate::tensorboard::Run::new(crate::tensorboard::trial_dir(d, t.number()))
            });
            search
                .trial(hp, t, epochs, &dir, &|step| {
                    Ok(run.iter().map(|r| r.callback(step as usize)).collect())
                })
                .map_err(|e| e.to_string())
        })?);
    }
    std::fs::create_dir_all(&dir)?;
    let data = data()?;
    let mut study = open(args)?;
    let board = args.tensorboard.as_deref();
    Ok(study
        .optimize(|hp, t| trial(hp, t, &data, epochs, &dir, board).map_err(|e| e.to_string()))?)
}

/// Ends a command's output: a reader that went away (`| head`) ends the command quietly, as
/// tools in a pipeline do; any other write error (a full disk) is a one-line error.
fn finish_output(written: std::io::Result<()>) -> Res<()> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing to standard output: {e}").into()),
    }
}

/// `k=v, ...` with values as a user writes them (`lr=0.0065, num_layers=2`).
pub fn format_params(
    params: &std::collections::BTreeMap<String, frostnet_tuner::ParamValue>,
) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `frostnet tune status`: the stored configuration and the table of trials of an existing
/// study, read from the store (opened read-only) with nothing but its location and the name.
pub fn status(args: &StoreArgs) -> Res<()> {
    let study = Study::open_existing(&args.study, &storage(&args.spec())?)?;
    let results = study.results()?;
    let mut out = std::io::stdout().lock();
    finish_output((|| {
        writeln!(out, "configuration: {}", study.configuration())?;
        writeln!(out, "{results}")?;
        out.flush()
    })())
}

/// `frostnet tune report`: the study as one HTML page (see `frostnet_tuner::report`), read from
/// the store opened read-only.
pub fn report(args: &StoreArgs, output: &str) -> Res<()> {
    let study = Study::open_existing(&args.study, &storage(&args.spec())?)?;
    let done = frostnet_tuner::write_report(&study, output, &Default::default())?;
    let mut out = std::io::stdout().lock();
    finish_output((|| {
        writeln!(
            out,
            "wrote {output}: {} trials, {:.1} kB, drawn in {:.2} s",
            done.trials,
            done.bytes as f64 / 1e3,
            done.elapsed.as_secs_f64()
        )?;
        out.flush()
    })())
}

/// `frostnet tune`: runs the study with `workers` processes, then prints the table and saves the
/// best model's weights.
pub fn run(args: &StudyArgs, workers: usize) -> Res<()> {
    let results = if workers <= 1 {
        work(args)?
    } else {
        let exe = std::env::current_exe()?;
        let children: Vec<_> = (0..workers)
            .map(|_| {
                // The store goes through the environment, never the command line.
                std::process::Command::new(&exe)
                    .env(STORE_ENV, args.at.spec())
                    .args(["tune", "worker", "--study", &args.at.study])
                    .args([
                        "--algorithm",
                        &args.algorithm,
                        "--trials",
                        &args.trials.to_string(),
                    ])
                    .args([
                        "--seed",
                        &args.seed.to_string(),
                        "--epochs",
                        &args.epochs.to_string(),
                    ])
                    .args(args.image.to_args())
                    .args(
                        args.tensorboard
                            .iter()
                            .flat_map(|d| ["--tensorboard".to_string(), d.clone()]),
                    )
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            let status = c.wait()?;
            if !status.success() {
                return Err(format!("a tuning worker failed ({status})").into());
            }
        }
        open(args)?.results()?
    };
    let saved = match results.best() {
        Some(best) => {
            let dir = out_dir(args);
            // The image search saves `.keras` classifiers (class names kept), the MLP native files.
            let ext = if args.image.app.is_some() {
                "keras"
            } else {
                "frostnet"
            };
            let src = format!("{dir}/trial_{}.{ext}", best.number);
            let dst = format!("{dir}/best.{ext}");
            std::fs::copy(&src, &dst).map_err(|e| format!("copying {src} to {dst}: {e}"))?;
            Some((best.number, format_params(&best.params), dst))
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    finish_output((|| {
        writeln!(out, "{results}")?;
        if let Some((number, params, dst)) = &saved {
            writeln!(out, "best trial: #{number} {params}; model saved to {dst}")?;
        }
        out.flush()
    })())
}
