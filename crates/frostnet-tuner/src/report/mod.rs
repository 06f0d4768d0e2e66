//! A study as one self-contained HTML page: what people look at after a search.
//!
//! [`render_html`] (and [`write_report`], behind `frostnet tune report`) draws, as inline SVG
//! written here:
//!
//! * the optimisation history: every complete (and pruned) trial's value by trial number, with
//!   the best-so-far line;
//! * a parallel-coordinates plot: one line per complete trial through the objective and every
//!   hyperparameter, log axes for log-scaled ranges, a conditional hyperparameter's axis crossed
//!   only by the trials that have it;
//! * hyperparameter importance by PED-ANOVA ([`importance`]) with its spread over bootstrap seeds;
//! * the intermediate values reported per step, the pruned trials marked;
//! * the table of all trials.
//!
//! The page needs nothing else: no script, font or style sheet from anywhere (it opens offline
//! and from a mail attachment); points and lines carry their trial in an SVG `<title>`, which
//! browsers show on hover. The data behind the plots is embedded as JSON
//! (`<script type="application/json" id="study-data">`), so the numbers can be taken back out.
//! The document is well-formed XML as well as HTML, so tools of either kind can read it.

pub mod importance;
mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::results::Results;
use crate::space::{ParamSpec, ParamValue, Scale as SpecScale};
use crate::store::{TrialRecord, TrialState};
use crate::study::{Direction, Study};

pub use importance::{ped_anova, Importance, PedAnovaOptions};
use svg::{esc, num, px, viridis, Scale};

/// What the report computes beyond drawing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportOptions {
    pub importance: PedAnovaOptions,
}

/// The study a report is about.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyInfo {
    pub name: String,
    pub objective: String,
    pub direction: Direction,
    /// One line describing the stored configuration ([`Study::configuration`]).
    pub configuration: String,
}

impl StudyInfo {
    /// The description of an opened study.
    pub fn of(study: &Study) -> StudyInfo {
        StudyInfo {
            name: study.name().to_string(),
            objective: study.objective().to_string(),
            direction: study.direction(),
            configuration: study.configuration(),
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    pub trials: usize,
    pub bytes: usize,
    /// Time to compute and draw the page (the store's read not included).
    pub elapsed: Duration,
}

/// Reads every trial of `study` and writes the report to `path` (atomically: a temporary file
/// beside it, then renamed).
pub fn write_report(
    study: &Study,
    path: impl AsRef<Path>,
    opts: &ReportOptions,
) -> Result<ReportSummary> {
    let path = path.as_ref();
    let records = study.trial_records()?;
    let start = Instant::now();
    let html = render_html(&StudyInfo::of(study), &records, opts);
    let elapsed = start.elapsed();
    let io = |e: std::io::Error, p: &Path| Error::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, html.as_bytes()).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e, path)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e, path)
    })?;
    Ok(ReportSummary {
        trials: records.len(),
        bytes: html.len(),
        elapsed,
    })
}

const WIDTH: f64 = 960.0;

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Minimize => "minimize",
        Direction::Maximize => "maximize",
    }
}

fn param_json(v: &ParamValue) -> Value {
    match v {
        ParamValue::Int(i) => json!(i),
        ParamValue::Float(f) => json!(f),
        ParamValue::Str(s) => json!(s),
        ParamValue::Bool(b) => json!(b),
    }
}

/// The page for `records` (every trial of the study, as stored).
pub fn render_html(info: &StudyInfo, records: &[TrialRecord], opts: &ReportOptions) -> String {
    let start = Instant::now();
    let results = Results::new(&info.name, &info.objective, info.direction, records);
    let importance = ped_anova(records, info.direction, &opts.importance);
    let importance_time = start.elapsed();
    let rows: Vec<Row<'_>> = records
        .iter()
        .zip(&results.trials)
        .map(|(r, t)| Row {
            rec: r,
            state: t.state,
            duration: t.duration,
        })
        .collect();
    let best = results.best().map(|t| t.number);

    let (history_svg, history) = history_plot(info, &rows);
    let axes = axes_of(records, &importance);
    let parallel_svg = parallel_plot(info, &rows, &axes);
    let importance_svg = importance_plot(&importance, opts.importance.seeds);
    let intermediate_svg = intermediate_plot(info, &rows);
    let table = trial_table(info, &rows, best);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.state.as_str()).or_default() += 1;
    }
    let counts_text: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let best_text = match results.best() {
        Some(b) => format!(
            "best: trial {} with {} = {}{}",
            b.number,
            info.objective,
            b.value.map(num).unwrap_or_default(),
            if b.params.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    b.params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        None => "best: none (no trial completed)".into(),
    };

    let data = json!({
        "study": info.name,
        "objective": info.objective,
        "direction": direction_name(info.direction),
        "trials": rows.iter().map(|r| json!({
            "number": r.rec.number,
            "state": r.state.as_str(),
            "value": r.rec.value,
            "params": r.rec.params.iter().map(|p| (p.name.clone(), param_json(&p.value)))
                .collect::<serde_json::Map<String, Value>>(),
            "intermediate": r.rec.intermediate.iter().map(|(s, v)| json!([s, v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "history": {
            "number": history.numbers,
            "value": history.values,
            "best": history.best,
        },
        "importance": importance.iter().map(|i| json!({
            "name": i.name, "importance": i.importance, "mean": i.mean, "sd": i.sd,
            "trials": i.trials,
        })).collect::<Vec<_>>(),
        "importance_seeds": opts.importance.seeds,
        "axes": axes.iter().map(|a| json!({
            "name": a.name,
            "scale": match &a.kind { AxisKind::Num(s) if s.log => "log", AxisKind::Num(_) => "linear",
                AxisKind::Cat(_) => "categorical" },
        })).collect::<Vec<_>>(),
    });
    // Inside <script>, `<`, `>` and `&` only occur in JSON strings, where \u escapes mean the
    // same: the block can then neither end early in HTML nor break the XML form.
    let data = data
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");

    let elapsed = start.elapsed();
    let mut page = String::with_capacity(
        history_svg.len()
            + parallel_svg.len()
            + intermediate_svg.len()
            + table.len()
            + data.len()
            + 8192,
    );
    let title = format!("Study {}", info.name);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n\
         <meta charset=\"utf-8\"/>\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{}</h1>\n<p class=\"config\">{}</p>\n<p>{} trials: {}. {} ({}).</p>\n",
        esc(&title),
        esc(&title),
        esc(&info.configuration),
        rows.len(),
        esc(&counts_text.join(", ")),
        esc(&best_text),
        direction_name(info.direction),
    );
    let _ = write!(
        page,
        "<h2 id=\"history-title\">Optimisation history</h2>\n<p>Each complete trial's {obj} \
         (pruned trials hollow, at their best reported value) and the best so far.</p>\n{history_svg}\n\
         <h2>Parallel coordinates</h2>\n<p>One line per complete trial, darker for better {obj}; \
         axes by importance; a conditional hyperparameter's axis is crossed only by the trials \
         that have it.</p>\n{parallel_svg}\n\
         <h2>Hyperparameter importance</h2>\n<p>PED-ANOVA (Watanabe et al., 2023): how differently \
         each hyperparameter is distributed among the best {q}% of the complete trials than among \
         all of them, as a share of the total; bars on all trials, whiskers the mean ± standard \
         deviation over {seeds} bootstrap resamples (seeds 0..{seeds}).</p>\n{importance_svg}\n\
         <h2>Intermediate values</h2>\n<p>The {obj} each trial reported per step; pruned trials in \
         red, ending with a cross.</p>\n{intermediate_svg}\n\
         <h2>Trials</h2>\n{table}\n",
        obj = esc(&info.objective),
        q = num(opts.importance.target_quantile * 100.0),
        seeds = opts.importance.seeds,
    );
    let _ = write!(
        page,
        "<p class=\"footer\">Generated by frostnet-tuner in {:.3} s for {} trials (importance \
         {:.3} s).</p>\n<script type=\"application/json\" id=\"study-data\">{data}</script>\n\
         </body>\n</html>\n",
        elapsed.as_secs_f64(),
        rows.len(),
        importance_time.as_secs_f64()
    );
    page
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:1.5em auto;max-width:1000px;color:#222;padding:0 1em}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\
.config,.footer{color:#555;font-size:.9em}\
svg{display:block;background:#fff;border:1px solid #ddd;max-width:100%;height:auto}\
svg text{font-size:11px;fill:#333}svg .ax{stroke:#888;fill:none}svg .grid{stroke:#eee}\
svg .c{fill:#3b528b}svg .p{fill:none;stroke:#d62728}svg .best{stroke:#e6550d;fill:none;stroke-width:2}\
svg .pc path{fill:none;stroke-opacity:.55;stroke-linecap:round;stroke-linejoin:round}\
svg .ic{stroke:#3b528b;stroke-opacity:.45;fill:none}svg .ip{stroke:#d62728;stroke-opacity:.7;fill:none}\
svg .if{stroke:#999;stroke-dasharray:3 2;fill:none}svg .ir{stroke:#aaa;fill:none}\
svg .bar{fill:#21918c}svg .err{stroke:#222}svg .name{font-weight:bold}\
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;\
text-align:right}th{background:#f4f4f4}tr.best td{background:#fff3c4;font-weight:bold}\
td.note{text-align:left;color:#a33}.scroll{max-height:40em;overflow:auto}";

/// A trial with the state it is shown in (a running trial whose worker died shows as preempted).
struct Row<'a> {
    rec: &'a TrialRecord,
    state: TrialState,
    duration: Option<Duration>,
}

/// The data drawn in the history plot, for the embedded JSON.
struct History {
    numbers: Vec<u64>,
    values: Vec<f64>,
    best: Vec<f64>,
}

fn svg_open(id: &str, height: f64, label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">\n",
        esc(label),
        w = WIDTH,
        h = height
    )
}

/// A plot frame: box, grid lines, tick labels and axis titles.
fn frame(out: &mut String, x: &Scale, y: &Scale, x_ints: bool, xlabel: &str, ylabel: &str) {
    let (x0, x1, y0, y1) = (x.a, x.b, y.b, y.a);
    for t in y.ticks() {
        let p = y.px(t);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{p}\" y2=\"{p}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            px(x0),
            px(x1),
            px(x0 - 6.0),
            px(p + 4.0),
            esc(&num(t)),
            p = px(p)
        );
    }
    for t in x.ticks() {
        if x_ints && t.fract() != 0.0 {
            continue;
        }
        let p = x.px(t);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{p}\" x2=\"{p}\" y1=\"{}\" y2=\"{}\"/>\
             <text x=\"{p}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(y0),
            px(y1),
            px(y1 + 16.0),
            esc(&num(t)),
            p = px(p)
        );
    }
    let _ = writeln!(
        out,
        "<rect class=\"ax\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        px(x0),
        px(y0),
        px(x1 - x0),
        px(y1 - y0),
        px((x0 + x1) / 2.0),
        px(y1 + 34.0),
        esc(xlabel),
        px((y0 + y1) / 2.0),
        esc(ylabel)
    );
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn history_plot(info: &StudyInfo, rows: &[Row<'_>]) -> (String, History) {
    let height = 360.0;
    let mut history = History {
        numbers: Vec::new(),
        values: Vec::new(),
        best: Vec::new(),
    };
    let mut best: Option<f64> = None;
    for r in rows {
        let Some(v) = finite(r.rec.value) else {
            continue;
        };
        if r.state != TrialState::Complete {
            continue;
        }
        best = Some(match best {
            Some(b) if info.direction.compare(b, v).is_le() => b,
            _ => v,
        });
        history.numbers.push(r.rec.number);
        history.values.push(v);
        history.best.push(best.unwrap_or(v));
    }
    let shown: Vec<(&Row<'_>, f64)> = rows
        .iter()
        .filter(|r| matches!(r.state, TrialState::Complete | TrialState::Pruned))
        .filter_map(|r| finite(r.rec.value).map(|v| (r, v)))
        .collect();
    let (lo, hi) = shown
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    let max_n = rows.iter().map(|r| r.rec.number).max().unwrap_or(0) as f64;
    let x = Scale::new(0.0, max_n.max(1.0), false, 70.0, WIDTH - 20.0);
    // The top 34 px hold the legend, above the data, so it never hides the best-so-far line.
    let y = Scale::new(lo, hi, false, height - 50.0, 34.0);
    let mut out = svg_open("history", height, "optimisation history");
    frame(&mut out, &x, &y, true, "trial", &info.objective);
    out.push_str("<g class=\"trials\">\n");
    for (r, v) in &shown {
        let class = if r.state == TrialState::Complete {
            "c"
        } else {
            "p"
        };
        let _ = writeln!(
            out,
            "<circle class=\"{class}\" cx=\"{}\" cy=\"{}\" r=\"2.5\"><title>trial {} ({}): {}</title></circle>",
            px(x.px(r.rec.number as f64)),
            px(y.px(*v)),
            r.rec.number,
            r.state,
            num(*v)
        );
    }
    out.push_str("</g>\n");
    if !history.numbers.is_empty() {
        let mut d = String::new();
        let mut prev: Option<f64> = None;
        for (n, b) in history.numbers.iter().zip(&history.best) {
            let (px_x, px_y) = (px(x.px(*n as f64)), px(y.px(*b)));
            match prev {
                None => {
                    let _ = write!(d, "M{px_x} {px_y}");
                }
                Some(p) if p != *b => {
                    let _ = write!(d, "H{px_x}V{px_y}");
                }
                Some(_) => {}
            }
            prev = Some(*b);
        }
        let _ = write!(d, "H{}", px(x.px(max_n.max(1.0))));
        let _ = writeln!(
            out,
            "<path class=\"best\" d=\"{d}\"><title>best so far: {}</title></path>",
            num(*history.best.last().unwrap_or(&f64::NAN))
        );
    }
    let _ = writeln!(
        out,
        "<g transform=\"translate({} 14)\"><circle class=\"c\" cx=\"0\" cy=\"0\" r=\"3\"/>\
         <text x=\"8\" y=\"4\">complete</text><circle class=\"p\" cx=\"80\" cy=\"0\" r=\"3\"/>\
         <text x=\"88\" y=\"4\">pruned</text><line class=\"best\" x1=\"150\" x2=\"170\" y1=\"0\" y2=\"0\"/>\
         <text x=\"176\" y=\"4\">best so far</text></g>",
        px(WIDTH - 300.0)
    );
    out.push_str("</svg>");
    (out, history)
}

enum AxisKind {
    Num(Scale),
    Cat(Vec<String>),
}

struct Axis {
    /// `None` for the objective.
    name: Option<String>,
    kind: AxisKind,
}

impl Axis {
    /// Where the trial's value falls on the axis, in `[0, 1]` (0 at the bottom).
    fn unit(&self, v: &ParamValue) -> Option<f64> {
        match (&self.kind, v) {
            (AxisKind::Num(s), v) => v.as_f64().map(|f| s.unit(f)),
            (AxisKind::Cat(opts), v) => {
                let label = v.to_string();
                let i = opts.iter().position(|o| *o == label)?;
                Some(if opts.len() <= 1 {
                    0.5
                } else {
                    i as f64 / (opts.len() - 1) as f64
                })
            }
        }
    }
}

/// The hyperparameter axes, most important first (then the ones no complete trial has).
fn axes_of(records: &[TrialRecord], importance: &[Importance]) -> Vec<Axis> {
    let mut specs: BTreeMap<&str, &ParamSpec> = BTreeMap::new();
    for r in records {
        for p in &r.params {
            specs.entry(p.name.as_str()).or_insert(&p.spec);
        }
    }
    let mut names: Vec<&str> = importance.iter().map(|i| i.name.as_str()).collect();
    for n in specs.keys() {
        if !names.contains(n) {
            names.push(n);
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            let kind = match specs.get(n)? {
                ParamSpec::Int { low, high, .. } => {
                    AxisKind::Num(Scale::new(*low as f64, *high as f64, false, 0.0, 1.0))
                }
                ParamSpec::Float {
                    low, high, scale, ..
                } => AxisKind::Num(Scale::new(*low, *high, *scale == SpecScale::Log, 0.0, 1.0)),
                ParamSpec::Choice { options } => AxisKind::Cat(options.clone()),
                ParamSpec::Boolean => AxisKind::Cat(vec!["false".into(), "true".into()]),
            };
            Some(Axis {
                name: Some(n.to_string()),
                kind,
            })
        })
        .collect()
}

fn parallel_plot(info: &StudyInfo, rows: &[Row<'_>], params: &[Axis]) -> String {
    let height = 440.0;
    let (top, bottom) = (50.0, height - 50.0);
    let complete: Vec<(&Row<'_>, f64)> = rows
        .iter()
        .filter(|r| r.state == TrialState::Complete)
        .filter_map(|r| finite(r.rec.value).map(|v| (r, v)))
        .collect();
    let (lo, hi) = complete
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    let objective = Axis {
        name: None,
        kind: AxisKind::Num(Scale::new(lo, hi, false, 0.0, 1.0)),
    };
    let axes: Vec<&Axis> = std::iter::once(&objective).chain(params).collect();
    let n_axes = axes.len();
    let (left, right) = (70.0, WIDTH - 70.0);
    let ax_x = |i: usize| {
        if n_axes <= 1 {
            (left + right) / 2.0
        } else {
            left + (right - left) * i as f64 / (n_axes - 1) as f64
        }
    };
    let ax_y = |u: f64| bottom - (bottom - top) * u;
    let mut out = svg_open("parallel", height, "parallel coordinates");
    // Worst first, so the best lines are drawn on top.
    let mut order: Vec<&(&Row<'_>, f64)> = complete.iter().collect();
    order.sort_by(|a, b| {
        info.direction
            .compare(b.1, a.1)
            .then(b.0.rec.number.cmp(&a.0.rec.number))
    });
    let n = order.len();
    out.push_str("<g class=\"pc\">\n");
    for (rank, (row, v)) in order.iter().enumerate() {
        // rank n-1 is the best: darkest.
        let t = if n <= 1 {
            0.0
        } else {
            1.0 - rank as f64 / (n - 1) as f64
        };
        let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut open = false;
        for (i, axis) in axes.iter().enumerate() {
            let u = match &axis.name {
                None => objective.unit(&ParamValue::Float(*v)),
                Some(name) => row
                    .rec
                    .params
                    .iter()
                    .find(|p| &p.name == name)
                    .and_then(|p| axis.unit(&p.value)),
            };
            match u {
                Some(u) => {
                    let pt = (ax_x(i), ax_y(u));
                    match segments.last_mut() {
                        Some(s) if open => s.push(pt),
                        _ => segments.push(vec![pt]),
                    }
                    open = true;
                }
                None => open = false,
            }
        }
        let mut d = String::new();
        for s in &segments {
            for (j, (x, y)) in s.iter().enumerate() {
                let _ = write!(d, "{}{} {}", if j == 0 { "M" } else { "L" }, px(*x), px(*y));
            }
            if s.len() == 1 {
                d.push_str("l0 0");
            }
        }
        let params: Vec<String> = row
            .rec
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        let width = if rank + 1 == n {
            " stroke-width=\"2.5\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<path d=\"{d}\" stroke=\"{}\"{width}><title>trial {}: {} = {}; {}</title></path>",
            viridis(t * 0.9),
            row.rec.number,
            esc(&info.objective),
            num(*v),
            esc(&params.join(", "))
        );
    }
    out.push_str("</g>\n");
    for (i, axis) in axes.iter().enumerate() {
        let x = px(ax_x(i));
        let _ = writeln!(
            out,
            "<line class=\"ax\" x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\"/>",
            px(top),
            px(bottom)
        );
        let ticks: Vec<(f64, String)> = match &axis.kind {
            AxisKind::Num(s) => s.ticks().into_iter().map(|t| (s.unit(t), num(t))).collect(),
            AxisKind::Cat(opts) => opts
                .iter()
                .enumerate()
                .map(|(j, o)| {
                    let u = if opts.len() <= 1 {
                        0.5
                    } else {
                        j as f64 / (opts.len() - 1) as f64
                    };
                    (u, o.clone())
                })
                .collect(),
        };
        for (u, label) in ticks {
            let y = ax_y(u);
            let _ = writeln!(
                out,
                "<line class=\"ax\" x1=\"{x}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                px(ax_x(i) - 4.0),
                px(ax_x(i) - 6.0),
                px(y + 4.0),
                esc(&label),
                y = px(y)
            );
        }
        let title = axis.name.as_deref().unwrap_or(&info.objective);
        let present = match &axis.name {
            None => complete.len(),
            Some(name) => complete
                .iter()
                .filter(|(r, _)| r.rec.params.iter().any(|p| &p.name == name))
                .count(),
        };
        let mut note = match &axis.kind {
            AxisKind::Num(s) if s.log => "log".to_string(),
            _ => String::new(),
        };
        if present < complete.len() {
            if !note.is_empty() {
                note.push_str(", ");
            }
            note.push_str(&format!("in {present} of {}", complete.len()));
        }
        let _ = writeln!(
            out,
            "<text class=\"name\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(top - 18.0),
            esc(title),
            px(bottom + 20.0),
            esc(&note)
        );
    }
    out.push_str("</svg>");
    out
}

fn importance_plot(importance: &[Importance], seeds: u64) -> String {
    let row_h = 26.0;
    let height = 40.0 + row_h * importance.len().max(1) as f64;
    let mut out = svg_open("importance", height, "hyperparameter importance");
    if importance.is_empty() {
        out.push_str("<text x=\"20\" y=\"30\">no complete trial: nothing to measure</text></svg>");
        return out;
    }
    let (x0, x1) = (180.0, WIDTH - 260.0);
    let s = Scale::new(0.0, 1.0, false, x0, x1);
    for t in s.ticks() {
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{p}\" x2=\"{p}\" y1=\"10\" y2=\"{}\"/>\
             <text x=\"{p}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(height - 24.0),
            px(height - 8.0),
            num(t),
            p = px(s.px(t))
        );
    }
    for (i, imp) in importance.iter().enumerate() {
        let y = 14.0 + row_h * i as f64;
        let (lo, hi) = ((imp.mean - imp.sd).max(0.0), (imp.mean + imp.sd).min(1.0));
        let _ = writeln!(
            out,
            "<text class=\"name\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">\
             <title>{}: {} (mean {} ± {} over {seeds} seeds, {} trials)</title></rect>\
             <path class=\"err\" d=\"M{} {}H{}M{} {}v8M{} {}v8\"/>\
             <text x=\"{}\" y=\"{}\">{:.3} ({:.3} ± {:.3}; {} trials)</text>",
            px(x0 - 8.0),
            px(y + 13.0),
            esc(&imp.name),
            px(x0),
            px(y + 3.0),
            px(s.px(imp.importance) - x0),
            px(row_h - 8.0),
            esc(&imp.name),
            num(imp.importance),
            num(imp.mean),
            num(imp.sd),
            imp.trials,
            px(s.px(lo)),
            px(y + 9.0),
            px(s.px(hi)),
            px(s.px(lo)),
            px(y + 5.0),
            px(s.px(hi)),
            px(y + 5.0),
            px(x1 + 10.0),
            px(y + 13.0),
            imp.importance,
            imp.mean,
            imp.sd,
            imp.trials
        );
    }
    out.push_str("</svg>");
    out
}

fn intermediate_plot(info: &StudyInfo, rows: &[Row<'_>]) -> String {
    let height = 360.0;
    let with: Vec<&Row<'_>> = rows
        .iter()
        .filter(|r| r.rec.intermediate.values().any(|v| v.is_finite()))
        .collect();
    let mut out = svg_open("intermediate", height, "intermediate values");
    if with.is_empty() {
        out.push_str("<text x=\"20\" y=\"30\">no trial reported intermediate values</text></svg>");
        return out;
    }
    let (mut lo, mut hi, mut max_step) = (f64::INFINITY, f64::NEG_INFINITY, 0u64);
    for r in &with {
        for (s, v) in &r.rec.intermediate {
            if v.is_finite() {
                lo = lo.min(*v);
                hi = hi.max(*v);
                max_step = max_step.max(*s);
            }
        }
    }
    let x = Scale::new(0.0, (max_step as f64).max(1.0), false, 70.0, WIDTH - 20.0);
    let y = Scale::new(lo, hi, false, height - 50.0, 15.0);
    frame(&mut out, &x, &y, true, "step", &info.objective);
    // Complete trials underneath, then failed and running, pruned on top.
    let layer = |s: TrialState| match s {
        TrialState::Complete => 0,
        TrialState::Failed | TrialState::Running | TrialState::Preempted => 1,
        TrialState::Pruned => 2,
    };
    let mut order = with.clone();
    order.sort_by_key(|r| (layer(r.state), r.rec.number));
    out.push_str("<g class=\"trials\">\n");
    for r in order {
        let class = match r.state {
            TrialState::Complete => "ic",
            TrialState::Pruned => "ip",
            TrialState::Failed => "if",
            TrialState::Running | TrialState::Preempted => "ir",
        };
        let pts: Vec<(f64, f64)> = r
            .rec
            .intermediate
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(s, v)| (x.px(*s as f64), y.px(*v)))
            .collect();
        let mut d = String::new();
        for (j, (a, b)) in pts.iter().enumerate() {
            let _ = write!(d, "{}{} {}", if j == 0 { "M" } else { "L" }, px(*a), px(*b));
        }
        if pts.len() == 1 {
            d.push_str("l0 0");
        }
        let last = r.rec.intermediate.keys().next_back().copied().unwrap_or(0);
        if r.state == TrialState::Pruned {
            if let Some((a, b)) = pts.last() {
                let _ = write!(d, "M{} {}l6 6m0 -6l-6 6", px(a - 3.0), px(b - 3.0));
            }
        }
        let _ = writeln!(
            out,
            "<path class=\"{class}\" d=\"{d}\"><title>trial {} ({}{}), {} steps</title></path>",
            r.rec.number,
            r.state,
            if r.state == TrialState::Pruned {
                format!(" at step {last}")
            } else {
                String::new()
            },
            r.rec.intermediate.len()
        );
    }
    out.push_str("</g>\n</svg>");
    out
}

fn trial_table(info: &StudyInfo, rows: &[Row<'_>], best: Option<u64>) -> String {
    let mut names: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.rec.params.iter().map(|p| p.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let with_epochs = rows.iter().any(|r| r.rec.plan.max_epochs().is_some());
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"trials\">\n<thead><tr><th>#</th><th>state</th>",
    );
    let _ = write!(out, "<th>{}</th><th>duration</th>", esc(&info.objective));
    if with_epochs {
        out.push_str("<th>epochs</th>");
    }
    for n in &names {
        let _ = write!(out, "<th>{}</th>", esc(n));
    }
    out.push_str("<th>steps</th><th>note</th></tr></thead>\n<tbody>\n");
    for r in rows {
        let rec = r.rec;
        let class = if Some(rec.number) == best {
            " class=\"best\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr id=\"trial-{n}\"{class}><td>{n}</td><td>{}</td><td>{}</td><td>{}</td>",
            r.state,
            rec.value
                .map(|v| format!("{v:.6}"))
                .unwrap_or_else(|| "-".into()),
            r.duration
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            n = rec.number
        );
        if with_epochs {
            let _ = write!(
                out,
                "<td>{}</td>",
                rec.plan
                    .max_epochs()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into())
            );
        }
        for n in &names {
            let v = rec
                .params
                .iter()
                .find(|p| p.name == *n)
                .map(|p| p.value.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, "<td>{}</td>", esc(&v));
        }
        let note: String = rec
            .error
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let _ = writeln!(
            out,
            "<td>{}</td><td class=\"note\">{}</td></tr>",
            rec.intermediate.len(),
            esc(&note)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}
