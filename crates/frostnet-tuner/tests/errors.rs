//! Error cases: invalid spaces, changed studies, missing objective, bad
//! stores. None of them may modify what is stored.

mod common;

use std::time::Duration;

use common::quadratic;
use frostnet_tuner::{
    Algorithm, Direction, Error, Hyperparameters, Scale, SpaceError, Storage, Study, TrialContext,
    TrialState,
};

fn builder(path: &std::path::Path, name: &str) -> frostnet_tuner::StudyBuilder {
    Study::builder(name)
        .storage(Storage::sqlite(path))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .max_trials(4)
}

type Objective = dyn FnMut(&mut Hyperparameters, &mut TrialContext) -> Result<(), SpaceError>;

fn space_error_of(
    f: impl FnMut(&mut Hyperparameters, &mut TrialContext) -> Result<(), SpaceError>,
) -> (SpaceError, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let mut study = builder(&path, "space").open().unwrap();
    let err = study.optimize(f).unwrap_err();
    let stored = study.results().unwrap().trials.len();
    match err {
        Error::Space(e) => (e, stored),
        other => panic!("expected a space error, got {other}"),
    }
}

#[test]
fn invalid_spaces_are_errors_and_store_nothing() {
    let cases: Vec<(&str, Box<Objective>)> = vec![
        ("low > high", Box::new(|hp, _| hp.int("x", 5, 1).map(drop))),
        (
            "float low > high",
            Box::new(|hp, _| hp.float("x", 1.0, 0.5, Scale::Linear).map(drop)),
        ),
        (
            "log at zero",
            Box::new(|hp, _| hp.float("lr", 0.0, 1.0, Scale::Log).map(drop)),
        ),
        (
            "log through zero",
            Box::new(|hp, _| hp.float("lr", -1.0, 1.0, Scale::Log).map(drop)),
        ),
        (
            "empty choice",
            Box::new(|hp, _| hp.choice("a", &[]).map(drop)),
        ),
        (
            "zero step",
            Box::new(|hp, _| hp.int_step("x", 0, 10, 0).map(drop)),
        ),
        (
            "redefined in one trial",
            Box::new(|hp, _| {
                hp.int("x", 0, 5)?;
                hp.int("x", 0, 6).map(drop)
            }),
        ),
        (
            "redefined as another kind",
            Box::new(|hp, _| {
                hp.boolean("x")?;
                hp.choice("x", &["a"]).map(drop)
            }),
        ),
        // The closure swallowing the error does not hide it.
        (
            "ignored error",
            Box::new(|hp, t| {
                let _ = hp.int("x", 3, 2);
                let _ = t.report(0, &[("loss", 1.0)]);
                Ok(())
            }),
        ),
        (
            "empty space",
            Box::new(|_, t| {
                let _ = t.report(0, &[("loss", 1.0)]);
                Ok(())
            }),
        ),
    ];
    for (what, f) in cases {
        let (e, stored) = space_error_of(f);
        assert_eq!(stored, 0, "{what}: the released trial must be gone");
        let msg = e.to_string();
        match what {
            "low > high" | "float low > high" | "ignored error" => {
                assert!(matches!(e, SpaceError::EmptyRange { .. }), "{what}: {msg}")
            }
            "log at zero" | "log through zero" => {
                assert!(
                    matches!(e, SpaceError::LogRangeNotPositive { .. }),
                    "{what}: {msg}"
                )
            }
            "empty choice" => assert!(matches!(e, SpaceError::EmptyChoice { .. })),
            "zero step" => assert!(matches!(e, SpaceError::InvalidStep { .. })),
            "empty space" => assert_eq!(e, SpaceError::Empty),
            _ => assert!(matches!(e, SpaceError::Redefined { .. }), "{what}: {msg}"),
        }
    }
}

/// A range changed between runs of the same study is refused before the
/// changed trial stores anything.
#[test]
fn redefinition_across_trials_is_refused_and_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let mut study = builder(&path, "redef").max_trials(3).open().unwrap();
    study.optimize(quadratic).unwrap();
    let before = study.results().unwrap();
    let mut study = builder(&path, "redef").max_trials(6).open().unwrap();
    let err = study
        .optimize(|hp, t| -> Result<(), SpaceError> {
            let x = hp.int("x", 0, 10)?; // was [0, 6]
            let _ = t.report(0, &[("loss", x as f64)]);
            Ok(())
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Space(SpaceError::Redefined { ref name, .. }) if name == "x"),
        "{msg}"
    );
    assert!(msg.contains("stored for the study"), "{msg}");
    assert_eq!(study.results().unwrap(), before);
}

/// Opening a stored study with another algorithm, seed, objective or
/// direction is an error naming both configurations; nothing changes and
/// the original configuration still opens.
#[test]
fn fingerprint_mismatch_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let mut study = builder(&path, "fp").open().unwrap();
    let before = study.optimize(quadratic).unwrap();
    let fp = study.fingerprint().to_string();
    drop(study);
    let variants = [
        builder(&path, "fp").algorithm(Algorithm::random(2)),
        builder(&path, "fp").algorithm(Algorithm::tpe(1)),
        builder(&path, "fp").objective("val_loss", Direction::Minimize),
        builder(&path, "fp").objective("loss", Direction::Maximize),
        builder(&path, "fp").pruner(frostnet_tuner::Pruner::median(3, 1)),
    ];
    for v in variants {
        match v.open() {
            Err(Error::FingerprintMismatch {
                study,
                stored_fingerprint,
                ..
            }) => {
                assert_eq!(study, "fp");
                assert_eq!(stored_fingerprint, fp);
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a changed study must not open"),
        }
    }
    // A larger budget is not part of the fingerprint: the study is extended.
    let mut again = builder(&path, "fp").max_trials(6).open().unwrap();
    assert_eq!(again.fingerprint(), fp);
    assert_eq!(again.results().unwrap(), before);
    let after = again.optimize(quadratic).unwrap();
    assert_eq!(after.trials.len(), 6);
    assert_eq!(after.trials[..4], before.trials[..]);
}

#[test]
fn objective_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let mut study = Study::builder("obj")
        .storage(Storage::sqlite(&path))
        .objective("val_loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .max_trials(3)
        .open()
        .unwrap();
    let err = study
        .optimize(|hp, t| -> Result<(), SpaceError> {
            let x = hp.int("x", 0, 3)?;
            let _ = t.report(0, &[("loss", x as f64), ("acc", 0.5)]);
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::ObjectiveNeverReported { ref metric, failed: 3 } if metric == "val_loss"),
        "{err}"
    );
    let r = study.results().unwrap();
    for t in &r.trials {
        assert_eq!(t.state, TrialState::Failed);
        let e = t.error.as_deref().unwrap();
        assert!(
            e.contains("`val_loss` was never reported") && e.contains("acc, loss"),
            "{e}"
        );
    }
    // When some trials report it, only the others fail.
    let mut study = Study::builder("obj2")
        .storage(Storage::sqlite(&path))
        .objective("val_loss", Direction::Maximize)
        .algorithm(Algorithm::random(1))
        .max_trials(6)
        .open()
        .unwrap();
    let r = study
        .optimize(|hp, t| -> Result<(), SpaceError> {
            let x = hp.int("x", 0, 3)?;
            let name = if t.number() % 2 == 0 {
                "val_loss"
            } else {
                "loss"
            };
            let _ = t.report(0, &[(name, x as f64)]);
            Ok(())
        })
        .unwrap();
    assert_eq!(r.count(TrialState::Failed), 3);
    assert_eq!(r.count(TrialState::Complete), 3);
    assert_eq!(r.best().unwrap().number % 2, 0);
}

#[test]
fn invalid_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let no_budget = Study::builder("c")
        .storage(Storage::sqlite(&path))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .open();
    assert!(matches!(no_budget, Err(Error::Config(_))));
    let no_objective = Study::builder("c")
        .storage(Storage::sqlite(&path))
        .algorithm(Algorithm::grid())
        .open();
    assert!(matches!(no_objective, Err(Error::Config(_))));
    let bad_hb = builder(&path, "c")
        .algorithm(Algorithm::hyperband(0, 9, 1))
        .open();
    assert!(matches!(bad_hb, Err(Error::Config(_))));
    let bad_lease = builder(&path, "c")
        .lease_timeout(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(200))
        .open();
    assert!(matches!(bad_lease, Err(Error::Config(_))));
}

#[test]
fn unreachable_postgres_is_a_clear_error() {
    // Port 1 on the loopback: nothing listens there.
    let url = "postgres://tuner:secret@127.0.0.1:1/nothing?connect_timeout=3";
    let err = match Storage::postgres(url).connect() {
        Err(e) => e,
        Ok(_) => panic!("connected to port 1?"),
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::Unreachable { .. }), "{msg}");
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(!msg.contains("secret"), "password leaked: {msg}");
    let err = Storage::postgres("this is not a url")
        .connect()
        .err()
        .unwrap();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[test]
fn wrong_sqlite_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all.
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = Storage::sqlite(&junk).connect().err().unwrap();
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), vec![b'x'; 4096]);

    // Our table names, another version.
    let other = dir.path().join("v99.sqlite3");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch(
            "CREATE TABLE tuner_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO tuner_meta VALUES ('schema_version', '99');",
        )
        .unwrap();
    }
    let err = Storage::sqlite(&other).connect().err().unwrap();
    assert!(matches!(err, Error::WrongSchema { .. }), "{err}");
    assert!(err.to_string().contains("99"), "{err}");

    // Our table name without our metadata.
    let foreign = dir.path().join("foreign.sqlite3");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE tuner_trials (a INTEGER);")
            .unwrap();
    }
    let err = Storage::sqlite(&foreign).connect().err().unwrap();
    assert!(matches!(err, Error::WrongSchema { .. }), "{err}");

    // Unrelated tables are left alone and ours are added.
    let shared = dir.path().join("shared.sqlite3");
    {
        let c = rusqlite::Connection::open(&shared).unwrap();
        c.execute_batch(
            "CREATE TABLE experiments (a INTEGER); INSERT INTO experiments VALUES (7);",
        )
        .unwrap();
    }
    let mut study = builder(&shared, "ok").open().unwrap();
    study.optimize(quadratic).unwrap();
    let c = rusqlite::Connection::open(&shared).unwrap();
    let a: i64 = c
        .query_row("SELECT a FROM experiments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(a, 7);
}

/// A search space declared up front is part of the fingerprint: a changed
/// range is refused at `open`, before any trial, and nothing changes.
#[test]
fn declared_search_space_is_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let declared = |high: i64| {
        builder(&path, "decl").search_space(move |hp| {
            hp.int("x", 0, high)?;
            hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
            hp.choice("activation", &["relu", "tanh", "sigmoid"])?;
            Ok(())
        })
    };
    let mut study = declared(6).open().unwrap();
    let before = study.optimize(quadratic).unwrap();
    let fp = study.fingerprint().to_string();
    // Without a declaration the fingerprint differs too.
    assert!(matches!(
        builder(&path, "decl").open(),
        Err(Error::FingerprintMismatch { .. })
    ));
    match declared(10).open() {
        Err(Error::FingerprintMismatch {
            stored_fingerprint,
            stored,
            requested,
            ..
        }) => {
            assert_eq!(stored_fingerprint, fp);
            assert!(stored.contains("\"high\":6") && requested.contains("\"high\":10"));
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("a changed space must not open"),
    }
    let same = declared(6).open().unwrap();
    assert_eq!(same.results().unwrap(), before);

    // The closure must match the declaration from the first trial on.
    let mut fresh = builder(&path, "decl2")
        .search_space(|hp| hp.int("x", 0, 3).map(drop))
        .open()
        .unwrap();
    let err = fresh.optimize(quadratic).unwrap_err();
    assert!(
        matches!(err, Error::Space(SpaceError::Redefined { .. })),
        "{err}"
    );
    assert!(fresh.results().unwrap().trials.is_empty());
    // An invalid declaration fails at open.
    let bad = builder(&path, "decl3")
        .search_space(|hp| hp.float("lr", 0.0, 1.0, Scale::Log).map(drop))
        .open();
    assert!(matches!(
        bad,
        Err(Error::Space(SpaceError::LogRangeNotPositive { .. }))
    ));
}
