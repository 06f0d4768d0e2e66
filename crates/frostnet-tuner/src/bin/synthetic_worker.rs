//! A worker process running a synthetic objective against a stored study.
//!
//! It exists so that tests (and people trying the tuner) can run real worker
//! processes: several at once against one PostgreSQL study, or one that is
//! killed mid-trial and restarted. The objective is cheap and has a known
//! optimum: `(x-3)^2 + (log10(lr)+2)^2 + [activation != "tanh"]/2`, plus a
//! term decaying with the epoch, so the best trial is `x = 3, lr = 1e-2,
//! activation = tanh`.
//!
//! ```text
//! tuner-synthetic-worker --storage PATH|postgres://... --study NAME
//!     [--algorithm random|grid|tpe|hyperband] [--seed N] [--trials N]
//!     [--epochs N] [--sleep-ms N] [--log FILE] [--hang-on TRIAL]
//!     [--lease-ms N] [--heartbeat-ms N] [--poll-ms N] [--worker NAME]
//! ```
//! `--log` appends `start N` and `end N` lines (one `write` each, so lines of
//! concurrent workers do not interleave; `start` lines end with the worker's
//! pid). `--hang-on N` makes the first attempt of trial `N` (no `start N` in
//! the log yet) sleep for ten minutes after its first report, to be killed.
//! At the end it prints the results table, then
//! `BEST <number> <value> <name=value,...>`.

use std::io::Write;
use std::time::Duration;

use frostnet_tuner::{Algorithm, Direction, Scale, Storage, Study};

struct Args {
    storage: String,
    study: String,
    algorithm: String,
    seed: u64,
    trials: u64,
    epochs: u64,
    sleep_ms: u64,
    log: Option<String>,
    hang_on: Option<u64>,
    lease_ms: u64,
    heartbeat_ms: u64,
    poll_ms: u64,
    worker: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        storage: String::new(),
        study: String::new(),
        algorithm: "random".into(),
        seed: 0,
        trials: 12,
        epochs: 3,
        sleep_ms: 5,
        log: None,
        hang_on: None,
        lease_ms: 3000,
        heartbeat_ms: 200,
        poll_ms: 50,
        worker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
        match flag.as_str() {
            "--storage" => a.storage = val()?,
            "--study" => a.study = val()?,
            "--algorithm" => a.algorithm = val()?,
            "--seed" => a.seed = num(val()?)?,
            "--trials" => a.trials = num(val()?)?,
            "--epochs" => a.epochs = num(val()?)?,
            "--sleep-ms" => a.sleep_ms = num(val()?)?,
            "--log" => a.log = Some(val()?),
            "--hang-on" => a.hang_on = Some(num(val()?)?),
            "--lease-ms" => a.lease_ms = num(val()?)?,
            "--heartbeat-ms" => a.heartbeat_ms = num(val()?)?,
            "--poll-ms" => a.poll_ms = num(val()?)?,
            "--worker" => a.worker = Some(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.storage.is_empty() || a.study.is_empty() {
        return Err("--storage and --study are required".into());
    }
    Ok(a)
}

fn log_line(path: &Option<String>, line: &str) {
    if let Some(p) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open log");
        f.write_all(format!("{line}\n").as_bytes())
            .expect("write log");
    }
}

fn run(a: Args) -> Result<(), frostnet_tuner::Error> {
    let storage = if a.storage.starts_with("postgres://") || a.storage.starts_with("postgresql://")
    {
        Storage::postgres(a.storage.clone())
    } else {
        Storage::sqlite(a.storage.clone())
    };
    let algorithm = match a.algorithm.as_str() {
        "grid" => Algorithm::grid(),
        "tpe" => Algorithm::tpe(a.seed),
        "hyperband" => Algorithm::hyperband(a.seed, 9, 3),
        _ => Algorithm::random(a.seed),
    };
    let mut builder = Study::builder(a.study.clone())
        .storage(storage)
        .objective("loss", Direction::Minimize)
        .algorithm(algorithm)
        .max_trials(a.trials)
        .lease_timeout(Duration::from_millis(a.lease_ms))
        .heartbeat_interval(Duration::from_millis(a.heartbeat_ms))
        .poll_interval(Duration::from_millis(a.poll_ms));
    if let Some(w) = &a.worker {
        builder = builder.worker_name(w.clone());
    }
    let mut study = builder.open()?;
    let results = study.optimize(|hp, trial| -> Result<(), frostnet_tuner::SpaceError> {
        let n = trial.number();
        // Hang only on the first attempt of the trial, so the worker that
        // takes the trial over completes it.
        let started_before = a.log.as_ref().is_some_and(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.split_whitespace().nth(1) == Some(&n.to_string()) && l.starts_with("start ")
                })
        });
        let hang = a.hang_on == Some(n) && !started_before;
        log_line(&a.log, &format!("start {n} {}", std::process::id()));
        let x = hp.int("x", 0, 6)?;
        let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
        let act = hp.choice("activation", &["relu", "tanh", "sigmoid"])?;
        let base = (x as f64 - 3.0).powi(2)
            + (lr.log10() + 2.0).powi(2)
            + if act == "tanh" { 0.0 } else { 0.5 };
        let epochs = trial.max_epochs().unwrap_or(a.epochs);
        for e in 0..epochs {
            std::thread::sleep(Duration::from_millis(a.sleep_ms));
            let loss = base + 1.0 / (e + 1) as f64;
            if trial.report(e, &[("loss", loss)]).should_stop() {
                break;
            }
            if hang {
                std::thread::sleep(Duration::from_secs(600));
            }
        }
        log_line(&a.log, &format!("end {n}"));
        Ok(())
    })?;
    println!("{results}");
    let best = results
        .best()
        .expect("optimize returns an error when nothing completed");
    let params: Vec<String> = best
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "BEST {} {:.9} {}",
        best.number,
        best.value.unwrap_or(f64::NAN),
        params.join(",")
    );
    Ok(())
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tuner-synthetic-worker: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("tuner-synthetic-worker: {e}");
        std::process::exit(1);
    }
}
