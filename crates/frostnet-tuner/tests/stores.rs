//! Issue #13, point 6: reading a study never creates or restarts one, and a
//! damaged store is reported as damage, naming the file (and the row and
//! column of a bad value).

mod common;

use std::path::Path;

use common::quadratic;
use frostnet_tuner::{Algorithm, Direction, Error, Storage, Study};

fn builder(path: &Path, name: &str) -> frostnet_tuner::StudyBuilder {
    Study::builder(name)
        .storage(Storage::sqlite(path))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(1))
        .max_trials(4)
}

/// A finished study of 4 trials in `dir/s.sqlite3`.
fn stored_study(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("s.sqlite3");
    builder(&path, "s")
        .open()
        .unwrap()
        .optimize(quadratic)
        .unwrap();
    path
}

fn one_line(e: &Error) -> String {
    let m = e.to_string();
    assert!(!m.contains('\n'), "not one line: {m}");
    m
}

#[test]
fn reading_a_missing_file_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sqlite3");
    let err = Study::open_existing("s", &Storage::sqlite(&path))
        .err()
        .expect("a missing file must not open");
    assert!(matches!(err, Error::StudyNotFound { .. }), "{err}");
    assert_eq!(
        one_line(&err),
        format!("study 's' does not exist in {}", path.display())
    );
    assert!(!path.exists(), "reading created the file");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn reading_a_missing_study_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    let before = std::fs::read(&path).unwrap();
    let err = Study::open_existing("other", &Storage::sqlite(&path))
        .err()
        .unwrap();
    assert_eq!(
        one_line(&err),
        format!("study 'other' does not exist in {}", path.display())
    );
    // Reading the study that exists needs no configuration, and writes nothing.
    let study = Study::open_existing("s", &Storage::sqlite(&path)).unwrap();
    assert_eq!(study.results().unwrap().trials.len(), 4);
    assert_eq!(
        study.configuration(),
        "objective loss (minimize), algorithm random(seed=1), pruner none"
    );
    drop(study);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_read_only_study_does_not_run_trials() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    let mut study = Study::open_existing("s", &Storage::sqlite(&path)).unwrap();
    let err = study.optimize(quadratic).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn an_empty_sqlite_path_is_an_error() {
    // SQLite would use a temporary database and lose the study at exit.
    let err = Storage::sqlite("").connect().err().unwrap();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Study::open_existing("s", &Storage::sqlite(""))
        .err()
        .unwrap();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn a_truncated_store_is_damage_and_is_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    std::fs::write(&path, b"").unwrap();
    let expected = format!("{} is not a frostnet study database: ", path.display());
    // A worker resuming the study refuses instead of starting it over.
    let err = builder(&path, "s").open().err().unwrap();
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    assert!(one_line(&err).starts_with(&expected), "{err}");
    assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
    // Reading says the same.
    let err = Study::open_existing("s", &Storage::sqlite(&path))
        .err()
        .unwrap();
    assert!(one_line(&err).starts_with(&expected), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_corrupted_store_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    let good = std::fs::read(&path).unwrap();
    let expected = format!("{} is not a frostnet study database: ", path.display());

    // The header overwritten: not an SQLite file any more.
    let mut bad = good.clone();
    bad[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&path, &bad).unwrap();
    for err in [
        builder(&path, "s").open().err().unwrap(),
        Study::open_existing("s", &Storage::sqlite(&path))
            .err()
            .unwrap(),
    ] {
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
        assert!(one_line(&err).starts_with(&expected), "{err}");
    }

    // Every page after the schema page overwritten: the tables are damaged.
    let page = u16::from_be_bytes([good[16], good[17]]) as usize;
    let mut bad = good.clone();
    for b in &mut bad[page..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bad).unwrap();
    let err = match Study::open_existing("s", &Storage::sqlite(&path)) {
        Err(e) => e,
        Ok(study) => study.results().expect_err("damaged pages read fine"),
    };
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    assert!(one_line(&err).starts_with(&expected), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bad, "the file was changed");
}

#[test]
fn a_garbage_row_is_one_line_naming_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    let (id, _) = {
        let c = rusqlite::Connection::open(&path).unwrap();
        let id: i64 = c
            .query_row("SELECT id FROM tuner_trials WHERE number = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        // Invalid UTF-8 in a text column (what a corrupted page can hold).
        c.execute(
            "UPDATE tuner_trials SET params = CAST(X'7B22FF' AS TEXT) WHERE id = ?1",
            [id],
        )
        .unwrap();
        (id, ())
    };
    let study = Study::open_existing("s", &Storage::sqlite(&path)).unwrap();
    let err = study.results().unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    let m = one_line(&err);
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(m.contains(&format!("row id {id}")), "{m}");
    assert!(m.contains("column `params`"), "{m}");
    assert!(m.contains("utf-8"), "{m}");
    assert!(m.len() < 300, "{m}");

    // Valid text that is not the JSON we wrote.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE tuner_trials SET params = '[]', metrics = '{not json' WHERE id = ?1",
        [id],
    )
    .unwrap();
    let err = study.results().unwrap_err();
    let m = one_line(&err);
    assert!(m.contains("column `metrics`"), "{m}");
    assert!(m.contains(&format!("row id {id}")), "{m}");

    // A number where text belongs.
    c.execute(
        "UPDATE tuner_trials SET metrics = '{}', state = 7 WHERE id = ?1",
        [id],
    )
    .unwrap();
    let m = one_line(&study.results().unwrap_err());
    assert!(m.contains("column `state`"), "{m}");
}

/// A store written before failure counts and lease holders existed (schema
/// version 1) is upgraded in place by a worker, keeping every trial; reading
/// alone never changes it.
#[test]
fn a_version_1_store_is_upgraded_by_a_worker_and_keeps_its_trials() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_study(dir.path());
    let before = Study::open_existing("s", &Storage::sqlite(&path))
        .unwrap()
        .results()
        .unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for col in ["failures", "preemptions", "host", "pid"] {
            c.execute_batch(&format!("ALTER TABLE tuner_trials DROP COLUMN {col}"))
                .unwrap();
        }
        c.execute_batch("UPDATE tuner_meta SET value = '1' WHERE key = 'schema_version'")
            .unwrap();
    }
    let err = Study::open_existing("s", &Storage::sqlite(&path))
        .err()
        .unwrap();
    assert!(matches!(err, Error::WrongSchema { .. }), "{err}");
    assert!(err.to_string().contains("run a worker on it once"), "{err}");

    let mut study = builder(&path, "s").max_trials(6).open().unwrap();
    assert_eq!(study.results().unwrap(), before);
    let r = study.optimize(quadratic).unwrap();
    assert_eq!(r.trials.len(), 6);
    assert_eq!(&r.trials[..4], &before.trials[..]);
}
