//! Each algorithm finds the known optimum of a cheap synthetic objective
//! within a stated budget; conditional spaces; pruning; failures.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{loss, quadratic};
use frostnet_tuner::{
    Algorithm, Direction, GridConfig, HyperbandConfig, ParamValue, Pruner, Results, Scale,
    SpaceError, Storage, Study, TrialState,
};

fn sqlite_study(
    dir: &tempfile::TempDir,
    name: &str,
    alg: Algorithm,
) -> frostnet_tuner::StudyBuilder {
    Study::builder(name)
        .storage(Storage::sqlite(dir.path().join(format!("{name}.sqlite3"))))
        .objective("loss", Direction::Minimize)
        .algorithm(alg)
}

fn best_xla(r: &Results) -> (i64, f64, String, f64) {
    let b = r.best().expect("a best trial");
    (
        b.params["x"].as_i64().unwrap(),
        b.params["lr"].as_f64().unwrap(),
        b.params["activation"].as_str().unwrap().to_string(),
        b.value.unwrap(),
    )
}

/// Grid, 7 x 7 x 3 = 147 points with `lr` at 10^-4, 10^-3.5, ..., 10^-1:
/// the grid contains the exact optimum and must find it.
#[test]
fn grid_finds_exact_optimum() {
    let dir = tempfile::tempdir().unwrap();
    let mut study = sqlite_study(
        &dir,
        "grid",
        Algorithm::Grid(GridConfig { float_points: 7 }),
    )
    .open()
    .unwrap();
    let r = study.optimize(quadratic).unwrap();
    assert_eq!(r.trials.len(), 147, "the whole grid, once");
    let points: BTreeSet<String> = r.trials.iter().map(|t| format!("{:?}", t.params)).collect();
    assert_eq!(points.len(), 147, "no point visited twice");
    let (x, lr, act, v) = best_xla(&r);
    assert_eq!((x, act.as_str()), (3, "tanh"));
    assert!((lr.log10() + 2.0).abs() < 1e-9, "lr = {lr}");
    assert!(v < 1e-12, "{v}");
}

/// Random search, 100 trials, seed 3: x = 3, tanh, lr within half a decade
/// of 1e-2.
#[test]
fn random_finds_optimum_region() {
    let dir = tempfile::tempdir().unwrap();
    let mut study = sqlite_study(&dir, "random", Algorithm::random(3))
        .max_trials(100)
        .open()
        .unwrap();
    let r = study.optimize(quadratic).unwrap();
    assert_eq!(r.count(TrialState::Complete), 100);
    let (x, lr, act, v) = best_xla(&r);
    assert_eq!((x, act.as_str()), (3, "tanh"), "{r}");
    assert!((lr.log10() + 2.0).abs() < 0.5, "lr = {lr}");
    assert!(v < 0.25);
}

/// Same seed, same trials: random search is reproducible.
#[test]
fn random_is_reproducible_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed| {
        let mut s = sqlite_study(&dir, name, Algorithm::random(seed))
            .max_trials(15)
            .open()
            .unwrap();
        let r = s.optimize(quadratic).unwrap();
        r.trials
            .iter()
            .map(|t| t.params.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run("a", 9), run("b", 9));
    assert_ne!(run("c", 9), run("d", 10));
}

/// TPE, 40 trials (10 random startup): close to the optimum, and better than
/// random search with the same budget and seed.
#[test]
fn tpe_finds_optimum_and_beats_random() {
    let dir = tempfile::tempdir().unwrap();
    let mut tpe = sqlite_study(&dir, "tpe", Algorithm::tpe(1))
        .max_trials(40)
        .open()
        .unwrap();
    let r = tpe.optimize(quadratic).unwrap();
    let (x, lr, act, v) = best_xla(&r);
    assert_eq!((x, act.as_str()), (3, "tanh"), "{r}");
    assert!((lr.log10() + 2.0).abs() < 0.3, "lr = {lr}");
    assert!(v < 0.09);
    let mut rnd = sqlite_study(&dir, "rnd", Algorithm::random(1))
        .max_trials(40)
        .open()
        .unwrap();
    let rr = rnd.optimize(quadratic).unwrap();
    // TPE concentrates its later trials near the optimum.
    let mean_last = |r: &Results| {
        let v: Vec<f64> = r.trials[20..].iter().filter_map(|t| t.value).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean_last(&r) < mean_last(&rr),
        "tpe {} random {}",
        mean_last(&r),
        mean_last(&rr)
    );
}

/// Hyperband R = 9, eta = 3, two iterations (44 trials, 34 configurations):
/// the trial's budget follows the schedule, promotions keep values, and the
/// best trial is at the optimum `x`, within 1.0 of the optimum value, and
/// trained for the full 9 epochs.
#[test]
fn hyperband_schedule_promotions_and_optimum() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HyperbandConfig {
        seed: 4,
        max_epochs: 9,
        factor: 3,
        iterations: 2,
    };
    let mut study = sqlite_study(&dir, "hb", Algorithm::Hyperband(cfg.clone()))
        .open()
        .unwrap();
    let mut epochs_seen = BTreeMap::new();
    let r = study
        .optimize(|hp, trial| -> Result<(), SpaceError> {
            let x = hp.int("x", 0, 6)?;
            let act = hp.choice("activation", &["relu", "tanh"])?;
            let lr = hp.float("lr", 1e-3, 1e-1, Scale::Log)?;
            let epochs = trial.max_epochs().expect("hyperband sets a budget");
            epochs_seen.insert(trial.number(), epochs);
            for e in 0..epochs {
                // More epochs, lower loss: the budget matters.
                let v = loss(x, lr, act) + 1.0 / (e + 1) as f64;
                if trial.report(e, &[("loss", v)]).should_stop() {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(r.trials.len() as u64, cfg.total_trials());
    assert_eq!(r.trials.len(), 44);
    let mut by_epochs: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &r.trials {
        assert_eq!(Some(epochs_seen[&t.number]), t.max_epochs);
        *by_epochs.entry(t.max_epochs.unwrap()).or_default() += 1;
    }
    // Per iteration: 9 at 1 epoch; 3 + 5 at 3; 1 + 1 + 3 at 9.
    assert_eq!(by_epochs, BTreeMap::from([(1, 18), (3, 16), (9, 10)]));
    // Promoted trials (more epochs than their rung 0) repeat values seen at a
    // lower budget; 34 distinct configurations in all.
    let configs: BTreeSet<String> = r.trials.iter().map(|t| format!("{:?}", t.params)).collect();
    assert_eq!(configs.len(), 34);
    let best = r.best().unwrap();
    assert_eq!(best.params["x"], ParamValue::Int(3), "{r}");
    assert_eq!(best.max_epochs, Some(9));
    // Tolerance: at most one unit above the 9-epoch floor (x is exact; lr
    // and activation may be off with only 34 random configurations).
    assert!(best.value.unwrap() < 1.0 / 9.0 + 1.0, "{r}");
}

/// Conditional values: `units_i` exists only for `i < num_layers`. The grid
/// walks the tree: 2 + 4 + 8 = 14 leaves, each once, and no trial holds an
/// inactive value.
#[test]
fn conditional_space_grid_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let closure = |hp: &mut frostnet_tuner::Hyperparameters,
                   trial: &mut frostnet_tuner::TrialContext|
     -> Result<(), SpaceError> {
        let layers = hp.int("num_layers", 1, 3)?;
        let mut total = 0;
        for i in 0..layers {
            total += hp.int_step(&format!("units_{i}"), 16, 32, 16)?;
        }
        let _ = trial.report(0, &[("loss", (total as f64 - 80.0).abs())]);
        Ok(())
    };
    let mut grid = sqlite_study(&dir, "cond-grid", Algorithm::grid())
        .open()
        .unwrap();
    let r = grid.optimize(closure).unwrap();
    assert_eq!(r.trials.len(), 14, "{r}");
    let mut seen = BTreeSet::new();
    for t in &r.trials {
        let layers = t.params["num_layers"].as_i64().unwrap();
        let keys: BTreeSet<String> = t.params.keys().cloned().collect();
        let mut want: BTreeSet<String> = (0..layers).map(|i| format!("units_{i}")).collect();
        want.insert("num_layers".into());
        assert_eq!(keys, want);
        assert!(seen.insert(format!("{:?}", t.params)));
    }
    // 80 = 16 + 32 + 32 in some order: three layers.
    assert_eq!(r.best().unwrap().value, Some(0.0));
    assert_eq!(r.best().unwrap().params["num_layers"], ParamValue::Int(3));
    let text = r.to_string();
    assert!(text.contains("units_2") && text.contains(" - "), "{text}");

    let mut rnd = sqlite_study(&dir, "cond-tpe", Algorithm::tpe(2))
        .max_trials(25)
        .open()
        .unwrap();
    let r = rnd.optimize(closure).unwrap();
    for t in &r.trials {
        let layers = t.params["num_layers"].as_i64().unwrap() as usize;
        assert_eq!(t.params.len(), layers + 1);
    }
}

/// Median pruner: trials worse than the median of completed trials at a
/// step stop early; the best trial is unaffected.
#[test]
fn median_pruner_stops_bad_trials() {
    median_pruner_with(Algorithm::random(8), 5);
    // TPE with the median pruner, as Optuna's default setup.
    median_pruner_with(Algorithm::tpe(8), 2);
}

fn median_pruner_with(alg: Algorithm, min_pruned: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut study = sqlite_study(&dir, "prune", alg)
        .max_trials(30)
        .pruner(Pruner::median(5, 2))
        .open()
        .unwrap();
    let mut steps_run: BTreeMap<u64, u64> = BTreeMap::new();
    let r = study
        .optimize(|hp, trial| -> Result<(), SpaceError> {
            let x = hp.int("x", 0, 6)?;
            let mut n = 0;
            for s in 0..10 {
                n += 1;
                let v = (x as f64 - 3.0).powi(2) + 1.0 / (s + 1) as f64;
                if trial.report(s, &[("loss", v)]).should_stop() {
                    break;
                }
            }
            steps_run.insert(trial.number(), n);
            Ok(())
        })
        .unwrap();
    let pruned: Vec<_> = r
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
        .collect();
    assert!(pruned.len() >= min_pruned, "{r}");
    for t in &pruned {
        assert!(steps_run[&t.number] < 10);
        assert!(steps_run[&t.number] >= 3, "no pruning during warm-up steps");
        assert_ne!(t.params["x"], ParamValue::Int(3));
    }
    for t in r.trials.iter().take(5) {
        assert_eq!(
            t.state,
            TrialState::Complete,
            "startup trials are never pruned"
        );
    }
    assert_eq!(r.best().unwrap().params["x"], ParamValue::Int(3));
}

/// A failing closure fails its trial (message stored), the search goes on.
#[test]
fn closure_errors_fail_only_their_trial() {
    let dir = tempfile::tempdir().unwrap();
    let mut study = sqlite_study(&dir, "errs", Algorithm::random(1))
        .max_trials(10)
        .open()
        .unwrap();
    let r = study
        .optimize(|hp, trial| -> Result<(), String> {
            let x = hp.int("x", 0, 6).map_err(|e| e.to_string())?;
            if x % 2 == 1 {
                return Err(format!("odd x = {x} diverged"));
            }
            let _ = trial.report(0, &[("loss", x as f64)]);
            Ok(())
        })
        .unwrap();
    assert!(r.count(TrialState::Failed) > 0);
    for t in &r.trials {
        if t.state == TrialState::Failed {
            assert!(t.error.as_deref().unwrap().contains("diverged"));
        }
    }
    assert_eq!(r.best().unwrap().value.unwrap() % 2.0, 0.0);
    assert!(r.to_string().contains("diverged"));
    assert!(r.trials.iter().all(|t| t.duration.is_some()));
    let _ = Duration::ZERO;
}
