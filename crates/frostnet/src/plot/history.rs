//! Training curves: the loss and every metric over the epochs, each with its `val_` twin, one
//! panel each — from a [`History`], from a [`CsvLogger`](crate::training::CsvLogger) file, or
//! redrawn after every epoch by the [`HistoryPlotter`] callback.
//!
//! Hand-written SVG rather than `plotters`: the pictures are a few polylines and axes, and the
//! elements carry what they show (`data-series`, `data-value`) so tests read them back.

use super::svg::{esc, num, text, text_width};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::training::{Callback, History, Logs};

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 280.0;
/// Plot area inside a panel: room for the title, tick labels and the legend.
const PLOT_LEFT: f64 = 64.0;
const PLOT_RIGHT: f64 = 16.0;
const PLOT_TOP: f64 = 34.0;
const PLOT_BOTTOM: f64 = 44.0;
const MARGIN: f64 = 12.0;
const TRAIN_COLOUR: &str = "#1f77b4";
const VAL_COLOUR: &str = "#ff7f0e";

/// Reads a file written by [`CsvLogger`](crate::training::CsvLogger) (`epoch,` then one column
/// per logged name; Keras's `CSVLogger` writes the same layout) into a [`History`]. Empty
/// cells (a name missing in some epoch) and `nan`/`inf` are kept as NaN.
pub fn read_history_csv(path: &str) -> Result<History> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    parse_history_csv(&text).map_err(|message| Error::File {
        path: path.into(),
        message,
    })
}

fn parse_history_csv(text: &str) -> std::result::Result<History, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("empty file: no header line")?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    if names.first() != Some(&"epoch") || names.len() < 2 {
        return Err(format!(
            "line 1: expected a header 'epoch,<name>,...', got '{header}'"
        ));
    }
    let mut history = History::default();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); names.len() - 1];
    let mut last_epoch: Option<f64> = None;
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(format!(
                "line {}: {} values for {} columns",
                i + 1,
                cells.len(),
                names.len()
            ));
        }
        let epoch: f64 = cells[0]
            .parse()
            .map_err(|_| format!("line {}: epoch '{}' is not a number", i + 1, cells[0]))?;
        if last_epoch.is_some_and(|e| epoch <= e) {
            return Err(format!(
                "line {}: epoch {epoch} does not follow epoch {}",
                i + 1,
                last_epoch.unwrap_or_default()
            ));
        }
        last_epoch = Some(epoch);
        for (k, cell) in cells[1..].iter().enumerate() {
            let v = if cell.is_empty() {
                f64::NAN
            } else {
                cell.parse::<f64>().map_err(|_| {
                    format!(
                        "line {}: {} '{}' is not a number",
                        i + 1,
                        names[k + 1],
                        cell
                    )
                })?
            };
            columns[k].push(v);
        }
    }
    for (name, values) in names[1..].iter().zip(columns) {
        history.history.insert(name.to_string(), values);
    }
    Ok(history)
}

/// One panel: a quantity and, if logged, its `val_` twin.
struct Panel<'a> {
    name: &'a str,
    series: Vec<(&'a str, &'a [f64], &'static str, bool)>,
}

/// The panels in display order: `loss` first, then the other names alphabetically; a `val_`
/// name joins its twin's panel (or gets its own when the twin was not logged).
fn panels(history: &History) -> Vec<Panel<'_>> {
    let h = &history.history;
    let mut bases: Vec<&str> = h
        .keys()
        .map(|k| match k.strip_prefix("val_") {
            Some(b) if h.contains_key(b) => b,
            _ => k.as_str(),
        })
        .collect();
    bases.sort_by_key(|b| (*b != "loss", *b));
    bases.dedup();
    bases
        .into_iter()
        .map(|b| {
            let mut series = Vec::new();
            if let Some(v) = h.get(b) {
                let is_val = b.starts_with("val_");
                let colour = if is_val { VAL_COLOUR } else { TRAIN_COLOUR };
                series.push((b, v.as_slice(), colour, is_val));
            }
            let val = format!("val_{b}");
            if let Some((k, v)) = h.get_key_value(&val) {
                series.push((k.as_str(), v.as_slice(), VAL_COLOUR, true));
            }
            Panel { name: b, series }
        })
        .collect()
}

/// "Nice" axis ticks (1, 2, 2.5 or 5 times a power of ten) covering `[lo, hi]` with about
/// `target` intervals.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ticks {
    /// Ticks are `k * step` for `k` in `first..=last`.
    first: i64,
    last: i64,
    step: f64,
    /// Decimals that print every tick exactly.
    decimals: usize,
}

impl Ticks {
    fn new(lo: f64, hi: f64, target: usize) -> Ticks {
        let (lo, hi) = if hi - lo > 1e-12 * hi.abs().max(1.0) {
            (lo, hi)
        } else {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo - pad, hi + pad)
        };
        let raw = (hi - lo) / target as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw * (1.0 - 1e-9))
            .unwrap_or(10.0 * mag);
        let mut decimals = 0;
        while decimals < 12 {
            let scaled = step * 10f64.powi(decimals as i32);
            if (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0) {
                break;
            }
            decimals += 1;
        }
        Ticks {
            first: (lo / step + 1e-9).floor() as i64,
            last: (hi / step - 1e-9).ceil() as i64,
            step,
            decimals,
        }
    }
    /// The `k`-th tick, rounded to its printed precision (so 18 x 0.1 is 1.8, not
    /// 1.8000000000000003).
    fn value(&self, k: i64) -> f64 {
        let p = 10f64.powi(self.decimals as i32);
        ((k as f64 * self.step) * p).round() / p
    }
    fn lo(&self) -> f64 {
        self.value(self.first)
    }
    fn hi(&self) -> f64 {
        self.value(self.last)
    }
    fn label(&self, k: i64) -> String {
        let s = format!("{:.*}", self.decimals, self.value(k));
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    }
}

/// Draws every logged quantity against the epoch (1-based, as the progress bar counts), one
/// panel per quantity with its validation twin, two panels per row.
///
/// Read-back contract: each panel is a `<g class="panel" data-metric="NAME">`; each curve a
/// `<polyline class="series" data-series="NAME">` (split at non-finite values); each axis tick a
/// `<line class="tick" data-axis="x|y" data-value="V">` at the value's position.
pub fn history_to_svg(history: &History) -> Result<String> {
    let panels = panels(history);
    if panels.is_empty() {
        return Err(Error::Data(
            "the history has no logged values to plot".into(),
        ));
    }
    let epochs = history.epochs();
    let cols = panels.len().min(2);
    let rows = panels.len().div_ceil(cols);
    let width = MARGIN * 2.0 + PANEL_W * cols as f64;
    let height = MARGIN * 2.0 + PANEL_H * rows as f64;
    let mut out = String::new();
    super::svg::open(&mut out, width, height);
    for (p, panel) in panels.iter().enumerate() {
        let ox = MARGIN + PANEL_W * (p % cols) as f64;
        let oy = MARGIN + PANEL_H * (p / cols) as f64;
        draw_panel(&mut out, panel, epochs, ox, oy);
    }
    out.push_str("</svg>\n");
    Ok(out)
}

fn draw_panel(out: &mut String, panel: &Panel, epochs: usize, ox: f64, oy: f64) {
    let (px0, py0) = (ox + PLOT_LEFT, oy + PLOT_TOP);
    let (pw, ph) = (
        PANEL_W - PLOT_LEFT - PLOT_RIGHT,
        PANEL_H - PLOT_TOP - PLOT_BOTTOM,
    );
    out.push_str(&format!(
        "<g class=\"panel\" data-metric=\"{}\">\n",
        esc(panel.name)
    ));
    text(
        out,
        ox + PANEL_W / 2.0,
        oy + 18.0,
        13.0,
        "middle",
        "font-weight=\"bold\"",
        panel.name,
    );
    // Axes ranges: epochs 1..=N; values over every finite point of the panel.
    let (x_lo, x_hi) = if epochs <= 1 {
        (0.0, 2.0)
    } else {
        (1.0, epochs as f64)
    };
    let finite = panel
        .series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let yt = Ticks::new(lo, hi, 5);
    let (y_lo, y_hi) = (yt.lo(), yt.hi());
    let sx = |e: f64| px0 + (e - x_lo) / (x_hi - x_lo) * pw;
    let sy = |v: f64| py0 + (y_hi - v) / (y_hi - y_lo) * ph;

    out.push_str(&format!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999999\"/>\n",
        num(px0),
        num(py0),
        num(pw),
        num(ph)
    ));
    // Y ticks with grid lines.
    for k in yt.first..=yt.last {
        let v = yt.value(k);
        let y = sy(v);
        out.push_str(&format!(
            "<line class=\"tick\" data-axis=\"y\" data-value=\"{v}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e6e6e6\"/>\n",
            num(px0),
            num(y),
            num(px0 + pw),
            num(y)
        ));
        text(out, px0 - 6.0, y + 4.0, 11.0, "end", "", &yt.label(k));
    }
    // X ticks: whole epochs.
    let x_step = Ticks::new(x_lo, x_hi, 6).step.max(1.0).round();
    let mut e = x_lo;
    while e <= x_hi + 1e-9 {
        let x = sx(e);
        out.push_str(&format!(
            "<line class=\"tick\" data-axis=\"x\" data-value=\"{e}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999999\"/>\n",
            num(x),
            num(py0 + ph),
            num(x),
            num(py0 + ph + 4.0)
        ));
        text(out, x, py0 + ph + 16.0, 11.0, "middle", "", &format!("{e}"));
        e += x_step;
    }
    text(
        out,
        px0 + pw / 2.0,
        py0 + ph + 32.0,
        11.0,
        "middle",
        "",
        "epoch",
    );
    // Curves, split where a value is not finite.
    for (name, values, colour, is_val) in &panel.series {
        let dash = if *is_val {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, out: &mut String| {
            if run.is_empty() {
                return;
            }
            out.push_str(&format!(
                "<polyline class=\"series\" data-series=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n",
                esc(name),
                run.join(" ")
            ));
            // A lone point is invisible as a line: mark it.
            if run.len() == 1 {
                let (x, y) = run[0].split_once(',').unwrap_or(("0", "0"));
                out.push_str(&format!(
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>\n"
                ));
            }
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            if v.is_finite() {
                run.push(format!("{},{}", num(sx(i as f64 + 1.0)), num(sy(*v))));
            } else {
                flush(&mut run, out);
            }
        }
        flush(&mut run, out);
    }
    // Legend, top right inside the plot.
    let mut ly = py0 + 14.0;
    for (name, _, colour, is_val) in &panel.series {
        let lx = px0 + pw - 8.0 - text_width(name, 11.0, false) - 30.0;
        let dash = if *is_val {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n",
            num(lx),
            num(ly - 4.0),
            num(lx + 24.0),
            num(ly - 4.0)
        ));
        text(out, lx + 30.0, ly, 11.0, "start", "", name);
        ly += 16.0;
    }
    out.push_str("</g>\n");
}

/// Draws `history` to `path` (SVG, or PNG when the name ends in `.png`, at `dpi`).
pub fn plot_history(history: &History, path: &str, dpi: u32) -> Result<()> {
    let svg = history_to_svg(history)?;
    super::raster::write_picture(&svg, path, dpi)
}

/// A callback that redraws the training curves after every epoch, so a picture open in a viewer
/// follows the training. The file is replaced atomically each time.
pub struct HistoryPlotter {
    path: String,
    dpi: u32,
    history: History,
}

impl HistoryPlotter {
    /// Draws to `path` (`.svg` or `.png`).
    pub fn new(path: &str) -> HistoryPlotter {
        HistoryPlotter {
            path: path.into(),
            dpi: 96,
            history: History::default(),
        }
    }
    /// PNG resolution (96 = one SVG pixel per PNG pixel).
    pub fn dpi(mut self, dpi: u32) -> Self {
        self.dpi = dpi;
        self
    }
}

impl Callback for HistoryPlotter {
    fn on_train_begin(&mut self, _model: &mut Model) -> Result<()> {
        self.history = History::default();
        Ok(())
    }
    fn on_epoch_end(&mut self, _model: &mut Model, epoch: usize, logs: &Logs) -> Result<()> {
        for (k, v) in logs {
            let column = self.history.history.entry(k.clone()).or_default();
            // A name first logged late starts with gaps, so every column stays aligned by epoch.
            column.resize(epoch, f64::NAN);
            column.push(*v);
        }
        plot_history(&self.history, &self.path, self.dpi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_data() {
        let t = Ticks::new(0.13, 0.92, 5);
        assert_eq!((t.lo(), t.hi(), t.step, t.decimals), (0.0, 1.0, 0.2, 1));
        assert_eq!(t.label(2), "0.4");
        // A flat curve gets a range around it: 2 +- 10%, in steps of 0.1.
        let t = Ticks::new(2.0, 2.0, 5);
        assert_eq!((t.lo(), t.hi(), t.step), (1.8, 2.2, 0.1));
        let t = Ticks::new(-3.7, 41.0, 5);
        assert_eq!(
            (t.lo(), t.hi(), t.step, t.label(t.first)),
            (-10.0, 50.0, 10.0, "-10".into())
        );
        let t = Ticks::new(0.0, 1.2, 5);
        assert_eq!((t.step, t.label(1)), (0.25, "0.25".into()));
        assert_eq!(t.label(2), "0.50");
    }

    #[test]
    fn bad_csv_is_reported_by_line() {
        let e = parse_history_csv("epoch,loss\n0,1.0\n1,x\n").unwrap_err();
        assert_eq!(e, "line 3: loss 'x' is not a number");
        let e = parse_history_csv("epoch,loss\n0,1.0,2.0\n").unwrap_err();
        assert_eq!(e, "line 2: 3 values for 2 columns");
        let e = parse_history_csv("loss\n1.0\n").unwrap_err();
        assert!(e.starts_with("line 1: expected a header"), "{e}");
        let e = parse_history_csv("epoch,loss\n1,1.0\n0,2.0\n").unwrap_err();
        assert_eq!(e, "line 3: epoch 0 does not follow epoch 1");
        assert!(parse_history_csv("").is_err());
    }

    #[test]
    fn panels_pair_each_metric_with_its_val_twin_loss_first() {
        let mut h = History::default();
        for k in ["accuracy", "loss", "val_accuracy", "val_loss", "val_only"] {
            h.history.insert(k.into(), vec![1.0]);
        }
        let p = panels(&h);
        let names: Vec<(&str, Vec<&str>)> = p
            .iter()
            .map(|p| (p.name, p.series.iter().map(|s| s.0).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("loss", vec!["loss", "val_loss"]),
                ("accuracy", vec!["accuracy", "val_accuracy"]),
                ("val_only", vec!["val_only"]),
            ]
        );
    }
}
