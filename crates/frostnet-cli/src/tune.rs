//! `frostnet tune`: the bundled example study — how many hidden layers and units an MLP on the
//! digits should have, and its learning rate — searched by trials that each train a model.
//!
//! Trials live in a store (SQLite file by default, PostgreSQL for workers on several machines);
//! `--workers N` starts N worker processes on the same study, and rerunning the command resumes it.

use frostnet::datasets::load_digits;
use frostnet::layers::{clear_session, ActivationFn, Dense, Input};
use frostnet::training::{Adam, FitOptions, Loss, Metric};
use frostnet::{Model, Sequential, Tensor};
use frostnet_tuner::{
    Algorithm, Direction, Hyperparameters, Pruner, Scale, Storage, Study, TrialContext,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// What identifies a study on the command line.
#[derive(Clone, Debug, clap::Args)]
pub struct StudyArgs {
    /// `sqlite:PATH` or `postgres://user@host:port/db`.
    #[arg(long, default_value = "sqlite:frostnet-tune.sqlite3")]
    pub store: String,
    #[arg(long, default_value = "digits_mlp")]
    pub study: String,
    /// grid, random, hyperband or tpe.
    #[arg(long, default_value = "random")]
    pub algorithm: String,
    #[arg(long, default_value_t = 12)]
    pub trials: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Epochs per trial (Hyperband: the largest budget).
    #[arg(long, default_value_t = 6)]
    pub epochs: u64,
}

fn storage(spec: &str) -> Res<Storage> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        Ok(Storage::postgres(spec))
    } else if let Some(path) = spec.strip_prefix("sqlite:") {
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
    Ok(Study::builder(args.study.clone())
        .storage(storage(&args.store)?)
        .objective("val_accuracy", Direction::Maximize)
        .algorithm(algorithm(args)?)
        .pruner(Pruner::median(4, 1))
        .max_trials(args.trials)
        .open()?)
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

/// One trial: train epoch by epoch, report validation accuracy, stop if pruned.
fn trial(
    hp: &mut Hyperparameters,
    trial: &mut TrialContext,
    data: &Data,
    epochs: u64,
    out_dir: &str,
) -> Res<()> {
    let (mut model, lr) = build(hp)?;
    model.compile(
        Adam::new(lr),
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
    );
    let epochs = trial.max_epochs().unwrap_or(epochs);
    let mut best = f64::NEG_INFINITY;
    for epoch in 0..epochs {
        let opts = FitOptions {
            epochs: 1,
            batch_size: 32,
            seed: Some(trial.number() * 1000 + epoch),
            verbose: 0,
            ..Default::default()
        };
        model.fit(&data.x, &data.y, opts)?;
        let logs = model.evaluate(&data.vx, &data.vy, 256)?;
        let acc = logs["accuracy"];
        if acc > best {
            best = acc;
            frostnet::saving::save_model(
                &model,
                &format!("{out_dir}/trial_{}.frostnet", trial.number()),
            )?;
        }
        if trial
            .report(epoch, &[("val_accuracy", acc), ("val_loss", logs["loss"])])
            .should_stop()
        {
            break;
        }
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
    let dir = args
        .store
        .strip_prefix("sqlite:")
        .and_then(|p| {
            std::path::Path::new(p)
                .parent()
                .map(|d| d.to_string_lossy().to_string())
        })
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| ".".into());
    format!("{dir}/{}-trials", args.study)
}

/// Runs trials until the study is complete, in this process.
pub fn work(args: &StudyArgs) -> Res<frostnet_tuner::Results> {
    let dir = out_dir(args);
    std::fs::create_dir_all(&dir)?;
    let data = data()?;
    let mut study = open(args)?;
    let epochs = args.epochs;
    Ok(study.optimize(|hp, t| trial(hp, t, &data, epochs, &dir).map_err(|e| e.to_string()))?)
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
                std::process::Command::new(&exe)
                    .args([
                        "tune",
                        "worker",
                        "--store",
                        &args.store,
                        "--study",
                        &args.study,
                    ])
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
    println!("{results}");
    if let Some(best) = results.best() {
        let dir = out_dir(args);
        let src = format!("{dir}/trial_{}.frostnet", best.number);
        let dst = format!("{dir}/best.frostnet");
        std::fs::copy(&src, &dst)?;
        println!(
            "best trial: #{} {:?}; model saved to {dst}",
            best.number, best.params
        );
    }
    Ok(())
}
