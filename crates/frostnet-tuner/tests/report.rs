//! Issue #11, point 4: the study report. The page is one well-formed document with nothing
//! loaded from elsewhere; the plots hold every trial's data (checked against the store, the
//! best-so-far line against a running best computed here); PED-ANOVA finds the only parameter
//! that matters; 10,000 trials render in seconds (timed, printed, not asserted).

use std::collections::BTreeMap;
use std::time::Instant;

use frostnet_tuner::report::{ped_anova, PedAnovaOptions};
use frostnet_tuner::{
    write_report, Algorithm, DefinedParam, Direction, ParamSpec, ParamValue, Pruner, ReportOptions,
    Scale, Storage, Study, TrialPlan, TrialState,
};
use serde_json::Value;

/// The embedded data block, parsed.
fn data_of(doc: &roxmltree::Document<'_>) -> Value {
    let script = doc
        .descendants()
        .find(|n| n.has_tag_name("script") && n.attribute("id") == Some("study-data"))
        .expect("a study-data script");
    assert_eq!(script.attribute("type"), Some("application/json"));
    serde_json::from_str(script.text().unwrap()).unwrap()
}

/// Elements `tag` under the element with `id`.
fn count_in(
    doc: &roxmltree::Document<'_>,
    id: &str,
    pred: impl Fn(roxmltree::Node) -> bool,
) -> usize {
    let root = doc
        .descendants()
        .find(|n| n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no element with id {id}"));
    root.descendants()
        .filter(|n| n.is_element() && pred(*n))
        .count()
}

/// A mark drawn for a trial (not the legend's).
fn in_trials(n: roxmltree::Node) -> bool {
    n.parent().and_then(|p| p.attribute("class")) == Some("trials")
}

/// Nothing is fetched from elsewhere: no external scripts, styles, fonts or images.
fn assert_self_contained(html: &str, doc: &roxmltree::Document<'_>) {
    for n in doc.descendants().filter(|n| n.is_element()) {
        for a in n.attributes() {
            assert!(
                !matches!(a.name(), "src" | "href") && !a.value().contains("url("),
                "external reference <{} {}=\"{}\">",
                n.tag_name().name(),
                a.name(),
                a.value()
            );
        }
        assert!(
            !matches!(n.tag_name().name(), "link" | "img" | "iframe" | "object"),
            "external element <{}>",
            n.tag_name().name()
        );
    }
    for s in ["@import", "url(", "<script src"] {
        assert!(!html.contains(s), "the page contains {s}");
    }
}

#[test]
fn the_report_holds_every_trial_and_the_best_so_far_is_the_running_best() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::sqlite(dir.path().join("s.sqlite3"));
    let mut study = Study::builder("report")
        .storage(storage.clone())
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(3))
        .pruner(Pruner::median(3, 1))
        .max_trials(40)
        .open()
        .unwrap();
    study
        .optimize(|hp, trial| -> Result<(), frostnet_tuner::SpaceError> {
            let layers = hp.int("num_layers", 1, 3)?;
            let mut units = 0.0;
            for i in 0..layers {
                units += hp.int_step(&format!("units_{i}"), 16, 128, 16)? as f64;
            }
            let lr = hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
            let act = hp.choice("activation", &["relu", "tanh"])?;
            let base =
                (lr.log10() + 2.0).powi(2) + units / 400.0 + if act == "tanh" { 0.3 } else { 0.0 };
            for step in 0..5 {
                let v = base + 1.0 / (step + 1) as f64;
                if trial.report(step, &[("loss", v)]).should_stop() {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
    let out = dir.path().join("report.html");
    let reader = Study::open_existing("report", &storage).unwrap();
    let summary = write_report(&reader, &out, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert_eq!(summary.trials, 40);
    assert_eq!(summary.bytes, html.len());
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the page is well-formed");
    assert_self_contained(&html, &doc);
    let data = data_of(&doc);
    let results = reader.results().unwrap();
    let trials = data["trials"].as_array().unwrap();
    assert_eq!(trials.len(), results.trials.len());
    let pruned = results.count(TrialState::Pruned);
    let complete = results.count(TrialState::Complete);
    assert!(pruned > 0 && complete > 0, "{results}");
    for (t, j) in results.trials.iter().zip(trials) {
        assert_eq!(j["number"].as_u64(), Some(t.number));
        assert_eq!(j["state"].as_str(), Some(t.state.to_string().as_str()));
        assert_eq!(j["value"].as_f64(), t.value, "trial {}", t.number);
        for (name, v) in &t.params {
            let got = &j["params"][name];
            match v {
                ParamValue::Int(i) => assert_eq!(got.as_i64(), Some(*i)),
                ParamValue::Float(f) => assert_eq!(got.as_f64(), Some(*f)),
                ParamValue::Str(s) => assert_eq!(got.as_str(), Some(s.as_str())),
                ParamValue::Bool(b) => assert_eq!(got.as_bool(), Some(*b)),
            }
        }
        assert_eq!(
            j["params"].as_object().unwrap().len(),
            t.params.len(),
            "a conditional parameter appears only where it exists"
        );
    }
    // The history: complete trials by number, and the running minimum computed here.
    let mut running = f64::INFINITY;
    let mut expected = Vec::new();
    for t in results
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
    {
        running = running.min(t.value.unwrap());
        expected.push((t.number, t.value.unwrap(), running));
    }
    let h = &data["history"];
    let col = |k: &str| -> Vec<f64> {
        h[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (numbers, values, best) = (col("number"), col("value"), col("best"));
    assert_eq!(numbers.len(), expected.len());
    for (i, (n, v, b)) in expected.iter().enumerate() {
        assert_eq!((numbers[i], values[i], best[i]), (*n as f64, *v, *b));
    }
    assert!(
        best.windows(2).all(|w| w[1] <= w[0]),
        "best so far is monotone"
    );
    assert_eq!(
        *best.last().unwrap(),
        results.best().unwrap().value.unwrap()
    );
    // One point per complete or pruned trial, one line per complete trial, every pruned trial's
    // intermediate values marked, one table row per trial.
    assert_eq!(
        count_in(&doc, "history", |n| in_trials(n)
            && n.attribute("class") == Some("c")),
        complete
    );
    assert_eq!(
        count_in(&doc, "history", |n| in_trials(n)
            && n.attribute("class") == Some("p")),
        pruned
    );
    assert_eq!(
        count_in(&doc, "parallel", |n| n.has_tag_name("path")
            && n.parent().and_then(|p| p.attribute("class")) == Some("pc")),
        complete
    );
    assert_eq!(
        count_in(&doc, "intermediate", |n| in_trials(n)
            && n.attribute("class") == Some("ip")),
        pruned
    );
    assert_eq!(count_in(&doc, "trials", |n| n.has_tag_name("tr")), 41);
    // Log axis for the log-scaled learning rate; the conditional units_2 axis says in how many
    // complete trials it exists.
    let axes: BTreeMap<String, String> = data["axes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["scale"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(axes["lr"], "log");
    assert_eq!(axes["units_0"], "linear");
    assert_eq!(axes["activation"], "categorical");
    let with_units_2 = results
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.params.contains_key("units_2"))
        .count();
    assert!(with_units_2 < complete);
    let note = format!("in {with_units_2} of {complete}");
    assert_eq!(
        count_in(&doc, "parallel", |n| n.has_tag_name("text")
            && n.text() == Some(note.as_str())),
        1,
        "{note}"
    );
    // Importance: one entry per parameter, shares summing to 1.
    let imp = data["importance"].as_array().unwrap();
    let total: f64 = imp.iter().map(|i| i["importance"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    assert_eq!(
        imp.len(),
        results
            .trials
            .iter()
            .flat_map(|t| t.params.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
}

/// `loss = (x - 0.3)^2`: the objective is a function of `x` alone, so all of its variation (and
/// every decomposition of it, PED-ANOVA's included) belongs to `x`; the three other parameters
/// are drawn but never used.
#[test]
fn importance_of_the_only_parameter_that_matters() {
    let dir = tempfile::tempdir().unwrap();
    let mut study = Study::builder("importance")
        .storage(Storage::sqlite(dir.path().join("s.sqlite3")))
        .objective("loss", Direction::Minimize)
        .algorithm(Algorithm::random(11))
        .max_trials(300)
        .open()
        .unwrap();
    study
        .optimize(|hp, trial| -> Result<(), frostnet_tuner::SpaceError> {
            let x = hp.float("x", 0.0, 1.0, Scale::Linear)?;
            hp.float("lr", 1e-4, 1e-1, Scale::Log)?;
            hp.choice("activation", &["relu", "tanh", "gelu"])?;
            hp.int("layers", 1, 8)?;
            let _ = trial.report(0, &[("loss", (x - 0.3).powi(2))]);
            Ok(())
        })
        .unwrap();
    let records = study.trial_records().unwrap();
    let imp = ped_anova(&records, Direction::Minimize, &PedAnovaOptions::default());
    println!("{imp:#?}");
    assert_eq!(imp.len(), 4);
    assert_eq!(imp[0].name, "x");
    assert!(imp[0].importance > 0.8, "{imp:?}");
    assert!(
        imp[0].mean - imp[0].sd > 0.8,
        "stable across seeds: {imp:?}"
    );
    assert!(imp[0].sd > 0.0, "the bootstrap seeds differ");
    for i in &imp[1..] {
        assert!(i.importance < 0.1, "{i:?}");
    }
    // Maximizing the negated loss is the same study: same importances.
    let neg: Vec<_> = records
        .iter()
        .cloned()
        .map(|mut r| {
            r.value = r.value.map(|v| -v);
            r
        })
        .collect();
    assert_eq!(
        ped_anova(&neg, Direction::Maximize, &PedAnovaOptions::default()),
        imp
    );
}

/// A 10,000-trial study written straight into the store (running 10,000 closures through the
/// claim loop would test the loop, not the report), then reported.
#[test]
fn ten_thousand_trials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sqlite3");
    let storage = Storage::sqlite(&path);
    drop(
        Study::builder("big")
            .storage(storage.clone())
            .objective("val_loss", Direction::Minimize)
            .algorithm(Algorithm::random(1))
            .max_trials(10_000)
            .open()
            .unwrap(),
    );
    let n = 10_000u64;
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        let study_id: i64 = tx
            .query_row("SELECT id FROM tuner_studies WHERE name = 'big'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for number in 0..n {
            let lr = 10f64.powf(-4.0 + 3.0 * uniform());
            let layers = 1 + (uniform() * 3.0) as i64;
            let mut params = vec![DefinedParam {
                name: "num_layers".into(),
                spec: ParamSpec::Int {
                    low: 1,
                    high: 3,
                    step: 1,
                },
                value: ParamValue::Int(layers),
            }];
            for i in 0..layers {
                params.push(DefinedParam {
                    name: format!("units_{i}"),
                    spec: ParamSpec::Int {
                        low: 16,
                        high: 128,
                        step: 16,
                    },
                    value: ParamValue::Int(16 * (1 + (uniform() * 8.0) as i64)),
                });
            }
            params.push(DefinedParam {
                name: "lr".into(),
                spec: ParamSpec::Float {
                    low: 1e-4,
                    high: 1e-1,
                    scale: Scale::Log,
                    step: None,
                },
                value: ParamValue::Float(lr),
            });
            let base = (lr.log10() + 2.0).powi(2) + 0.1 * uniform();
            let pruned = uniform() < 0.3;
            let steps = if pruned { 3 } else { 10 };
            let intermediate: BTreeMap<u64, f64> = (0..steps)
                .map(|s| (s, base + 1.0 / (s + 1) as f64))
                .collect();
            let value = intermediate.values().copied().fold(f64::INFINITY, f64::min);
            tx.execute(
                "INSERT INTO tuner_trials (study_id, number, state, plan, params, intermediate, \
                 metrics, value, attempts, lease_until, started_at, finished_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '{}', ?7, 1, 0, ?8, ?9)",
                rusqlite::params![
                    study_id,
                    number as i64,
                    if pruned { "pruned" } else { "complete" },
                    serde_json::to_string(&TrialPlan::Random { key: number }).unwrap(),
                    serde_json::to_string(&params).unwrap(),
                    serde_json::to_string(&intermediate).unwrap(),
                    value,
                    number as f64,
                    number as f64 + 1.5,
                ],
            )
            .unwrap();
        }
        tx.execute("UPDATE tuner_trials SET token = NULL", [])
            .unwrap();
        tx.commit().unwrap();
    }
    let study = Study::open_existing("big", &storage).unwrap();
    let out = dir.path().join("big.html");
    let wall = Instant::now();
    let summary = write_report(&study, &out, &ReportOptions::default()).unwrap();
    let wall = wall.elapsed();
    println!(
        "10,000-trial report: {:.3} s to compute and draw, {:.3} s with the store's read and the \
         write, {:.1} MB",
        summary.elapsed.as_secs_f64(),
        wall.as_secs_f64(),
        summary.bytes as f64 / 1e6
    );
    assert_eq!(summary.trials, n as usize);
    let html = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            nodes_limit: u32::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let data = data_of(&doc);
    assert_eq!(data["trials"].as_array().unwrap().len(), n as usize);
    let imp = data["importance"].as_array().unwrap();
    assert_eq!(imp[0]["name"], "lr", "{imp:?}");
    assert!(html.contains("for 10000 trials"));
}
