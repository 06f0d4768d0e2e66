//! `summary()`: Keras 3's table (and the classic Keras 2 one, in `summary_classic.rs`), byte for
//! byte.
//!
//! Keras 3 draws its table with `rich`; this file reproduces the parts of rich's layout that the
//! summary uses: fixed column widths shrunk evenly to fit the table width, word wrapping with
//! ellipsis for words that do not fit, and left/right/center justification.

use super::model::{Model, ModelKind};
use crate::layers::Layer;

/// Which table to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SummaryStyle {
    /// Keras 3 (`keras.Model.summary()`).
    #[default]
    Keras3,
    /// tf-keras / Keras 2, the underscored table.
    Classic,
}

/// Options for [`Model::summary_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SummaryOptions {
    /// Adds the "Trainable" column (`summary(show_trainable=True)`).
    pub show_trainable: bool,
    pub style: SummaryStyle,
    /// The width of the terminal the Keras 3 table is printed on. Keras's table is as wide as its
    /// `line_length` (88, 100, 108 or 120) but never wider than the terminal minus 4 columns, its
    /// columns shrunk in proportion. `None` is a terminal wide enough for `line_length`: the
    /// canonical table. [`terminal_width`] reads the width as Keras does.
    pub console_width: Option<usize>,
}

/// The terminal width Keras's summary would see (`shutil.get_terminal_size`): `COLUMNS` if set,
/// else the width of the terminal on stdout, else `None`. Not a terminal is where frostnet differs
/// on purpose: Keras assumes 80 columns and narrows a summary piped to a file to 76; frostnet
/// prints the canonical table there, because a file has no width to fit.
pub fn terminal_width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(cols);
    }
    let term = console::Term::stdout();
    if !term.is_term() {
        return None;
    }
    term.size_checked().map(|(_rows, cols)| cols as usize)
}

impl Row {
    /// The `Connected to` cell: the inbound calls, or `-` for an input.
    pub(crate) fn connected_cell(&self) -> String {
        if self.connected_to.is_empty() {
            "-".into()
        } else {
            self.connected_to.join(", ")
        }
    }
}

/// One row of the summary, independent of the style.
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) class: String,
    pub(crate) output_shape: String,
    pub(crate) output_shape_classic: String,
    pub(crate) is_input: bool,
    pub(crate) params: usize,
    pub(crate) connected_to: Vec<String>,
    pub(crate) has_weights: bool,
    pub(crate) trainable: bool,
}

/// Parameter counts as both styles print them.
pub(crate) struct Counts {
    pub(crate) trainable: usize,
    pub(crate) non_trainable: usize,
}

impl Model {
    /// The Keras 3 summary, exactly as Keras prints it.
    pub fn summary(&self) -> String {
        self.summary_with(&SummaryOptions::default())
    }

    /// The summary in a chosen style, optionally with the "Trainable" column.
    pub fn summary_with(&self, opts: &SummaryOptions) -> String {
        match opts.style {
            SummaryStyle::Keras3 => self.keras3_summary(opts.show_trainable, opts.console_width),
            SummaryStyle::Classic => super::summary_classic::render(self, opts.show_trainable),
        }
    }

    /// One row per layer (a shared layer once). `Connected to` lists the inputs of every call
    /// of the layer, each as `layer[node index][tensor index]`; the output shape is the last
    /// call's, as Keras 3 prints it (`output_shape_classic` is tf-keras's: `multiple` when the
    /// calls' shapes differ).
    pub(crate) fn summary_rows(&self) -> Vec<Row> {
        self.listed_nodes()
            .map(|i| {
                let layer = self.nodes[i].layer.as_ref();
                let calls = self.calls_of(i);
                let shapes: Vec<&crate::layers::Shape> =
                    calls.iter().map(|&c| self.call_output_shape(c)).collect();
                let last = crate::error::fmt_batch_shape(shapes[shapes.len() - 1]);
                Row {
                    name: layer.name().to_string(),
                    class: layer.class_name().to_string(),
                    output_shape_classic: if shapes.iter().all(|s| *s == shapes[0]) {
                        last.clone()
                    } else {
                        "multiple".into()
                    },
                    output_shape: last,
                    is_input: layer.is_input(),
                    params: layer.count_params(),
                    connected_to: calls
                        .iter()
                        .flat_map(|&c| self.call_inbound(c))
                        .map(|&j| {
                            let from = self.nodes[self.call_layer(j)].layer.name();
                            format!("{from}[{}][0]", self.call_node_index(j))
                        })
                        .collect(),
                    has_weights: !layer.weights().is_empty(),
                    trainable: layer.is_trainable(),
                }
            })
            .collect()
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            trainable: self.trainable_weights().iter().map(|w| w.len()).sum(),
            non_trainable: self.non_trainable_weights().iter().map(|w| w.len()).sum(),
        }
    }

    /// Keras prints a graph as a plain list when every depth holds one node with at most one
    /// input and no layer is called twice: a chain.
    pub(crate) fn is_sequential_like(&self) -> bool {
        self.kind == ModelKind::Sequential
            || (self.inputs.len() == 1
                && self.extra_calls.is_empty()
                && self.outputs.len() == 1
                && self.nodes.iter().all(|n| n.inbound.len() <= 1)
                && (1..self.nodes.len()).all(|i| self.nodes[i].inbound == [i - 1]))
    }

    /// Keras 3's lines under the table: total, trainable, non-trainable (and optimizer) params.
    pub(crate) fn param_totals(&self) -> String {
        let c = self.counts();
        let opt = self.optimizer_footprint();
        let (opt_params, opt_bytes) = opt.unwrap_or_default();
        let total = c.trainable + c.non_trainable + opt_params;
        // Keras stores Normalization's `count` as int64: 8 bytes where frostnet's f32 has 4.
        let int64_values: usize = self
            .non_trainable_weights()
            .iter()
            .filter(|w| w.name() == "count" && w.value().shape().is_empty())
            .count();
        let total_bytes = (c.trainable + c.non_trainable + int64_values) * 4 + opt_bytes;
        let mut out = format!(
            " Total params: {} ({})\n",
            fmt_thousands(total),
            readable_size(total_bytes as f64, "B")
        );
        out += &format!(
            " Trainable params: {} ({})\n",
            fmt_thousands(c.trainable),
            readable_size((c.trainable * 4) as f64, "B")
        );
        out += &format!(
            " Non-trainable params: {} ({})\n",
            fmt_thousands(c.non_trainable),
            readable_size(((c.non_trainable + int64_values) * 4) as f64, "B")
        );
        if opt.is_some() {
            out += &format!(
                " Optimizer params: {} ({})\n",
                fmt_thousands(opt_params),
                readable_size(opt_bytes as f64, "B")
            );
        }
        out
    }

    fn keras3_summary(&self, show_trainable: bool, console_width: Option<usize>) -> String {
        let sequential_like = self.is_sequential_like();
        let (mut line_length, mut positions, mut header, mut justify): (
            usize,
            Vec<f64>,
            Vec<&str>,
            Vec<Justify>,
        ) = if sequential_like {
            (
                88,
                vec![0.45, 0.80, 1.0],
                vec!["Layer (type)", "Output Shape", "Param #"],
                vec![Justify::Left, Justify::Left, Justify::Right],
            )
        } else {
            (
                108,
                vec![0.3, 0.56, 0.74, 1.0],
                vec!["Layer (type)", "Output Shape", "Param #", "Connected to"],
                vec![Justify::Left, Justify::Left, Justify::Right, Justify::Left],
            )
        };
        if show_trainable {
            line_length += 12;
            positions = positions.iter().map(|p| p * 0.90).chain([1.0]).collect();
            header.push("Trainable");
            justify.push(Justify::Center);
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        for r in self.summary_rows() {
            let connected = r.connected_cell();
            let mut cells = vec![
                format!("{} ({})", r.name, r.class),
                r.output_shape,
                fmt_thousands(r.params),
            ];
            if !sequential_like {
                cells.push(connected);
            }
            if show_trainable {
                cells.push(match (r.has_weights, r.trainable) {
                    (false, _) => "-".into(),
                    (true, true) => "Y".into(),
                    (true, false) => "N".into(),
                });
            }
            rows.push(cells);
        }

        let mut out = format!("Model: \"{}\"\n", self.name());
        out += &draw_table(
            &header,
            &justify,
            &positions,
            line_length,
            console_width,
            &rows,
        );
        out += &self.param_totals();
        out
    }
}

/// Keras 3's rich table: columns at `positions` (fractions of `line_length`), shrunk to the
/// console, a rule under the header and between rows.
pub(crate) fn draw_table(
    header: &[&str],
    justify: &[Justify],
    positions: &[f64],
    line_length: usize,
    console_width: Option<usize>,
    rows: &[Vec<String>],
) -> String {
    // Keras: `line_length = min(line_length, terminal columns - 4)`, then the columns at their
    // positions of it (Keras raises "Insufficient console width" below 4 columns each; here the
    // table stops shrinking there instead).
    let min_length = positions
        .iter()
        .map(|p| (4.0 / p).ceil() as usize)
        .max()
        .unwrap_or(0)
        .max(4 * positions.len());
    let line_length = match console_width {
        Some(w) => line_length.min(w.saturating_sub(4)).max(min_length),
        None => line_length,
    };
    let mut widths = Vec::new();
    let mut current = 0usize;
    for p in positions {
        let w = ((p * line_length as f64) as usize).saturating_sub(current);
        widths.push(w + 2); // rich adds one space of padding on each side
        current += w;
    }
    let widths = shrink_evenly(widths, line_length.saturating_sub(header.len() + 1));
    let rule = |l: char, fill: char, mid: char, r: char| {
        let mut s = String::new();
        s.push(l);
        for (i, w) in widths.iter().enumerate() {
            s.extend(std::iter::repeat_n(fill, *w));
            s.push(if i + 1 == widths.len() { r } else { mid });
        }
        s.push('\n');
        s
    };
    let header_cells: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let mut out = rule('┏', '━', '┳', '┓');
    out += &render_row(&header_cells, &widths, justify, '┃', true);
    out += &rule('┡', '━', '╇', '┩');
    for (i, cells) in rows.iter().enumerate() {
        if i > 0 {
            out += &rule('├', '─', '┼', '┤');
        }
        out += &render_row(cells, &widths, justify, '│', false);
    }
    out += &rule('└', '─', '┴', '┘');
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Justify {
    Left,
    Right,
    Center,
}

/// rich's last-resort fit: take the excess off every column in turn, `round(excess_left /
/// columns_left)` each (Python rounds half to even).
fn shrink_evenly(widths: Vec<usize>, max_width: usize) -> Vec<usize> {
    let total: usize = widths.iter().sum();
    if total <= max_width {
        return widths;
    }
    let mut remaining = (total - max_width) as f64;
    let mut ratio_left = widths.len() as f64;
    widths
        .iter()
        .map(|&w| {
            let cut = ((remaining / ratio_left).round_ties_even()).min(w as f64);
            remaining -= cut;
            ratio_left -= 1.0;
            w - cut as usize
        })
        .collect()
}

/// One table row: every cell wrapped to its column, padded with a space each side. Header cells
/// sit at the bottom of a wrapped header row (rich's header alignment), body cells at the top.
fn render_row(
    cells: &[String],
    widths: &[usize],
    justify: &[Justify],
    border: char,
    bottom: bool,
) -> String {
    let wrapped: Vec<Vec<String>> = cells
        .iter()
        .zip(widths)
        .zip(justify)
        .map(|((c, &w), &j)| wrap_cell(c, w.saturating_sub(2), j))
        .collect();
    let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
    let wrapped: Vec<Vec<String>> = if bottom {
        wrapped
            .into_iter()
            .zip(widths)
            .map(|(lines, w)| {
                let blank =
                    std::iter::repeat_n(" ".repeat(w.saturating_sub(2)), height - lines.len());
                blank.chain(lines).collect()
            })
            .collect()
    } else {
        wrapped
    };
    let mut out = String::new();
    for line in 0..height {
        out.push(border);
        for (col, lines) in wrapped.iter().enumerate() {
            let inner = widths[col].saturating_sub(2);
            let text = lines
                .get(line)
                .cloned()
                .unwrap_or_else(|| " ".repeat(inner));
            out.push(' ');
            out += &text;
            out.push(' ');
            out.push(border);
        }
        out.push('\n');
    }
    out
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// rich's word wrap without folding: a word that does not fit the rest of a line starts a new
/// line; a word longer than a whole line stays whole and is cut with an ellipsis.
fn wrap_cell(text: &str, width: usize, justify: Justify) -> Vec<String> {
    // Words are `\s*\S+\s*`: leading spaces (first word only) and trailing spaces included.
    let mut words: Vec<(usize, &str)> = Vec::new();
    let bytes = text.as_bytes();
    let mut pos = 0;
    while pos < text.len() {
        let start = pos;
        while pos < text.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        while pos < text.len() && bytes[pos] != b' ' {
            pos += 1;
        }
        while pos < text.len() && bytes[pos] == b' ' {
            pos += 1;
        }
        words.push((start, &text[start..pos]));
    }
    let mut breaks = Vec::new();
    let mut offset = 0usize;
    for &(start, word) in &words {
        let word_len = char_len(word.trim_end());
        let remaining = width as isize - offset as isize;
        if remaining >= word_len as isize {
            offset += char_len(word);
        } else if word_len > width {
            if start > 0 {
                breaks.push(start);
            }
            offset = char_len(word);
        } else if offset > 0 && start > 0 {
            breaks.push(start);
            offset = char_len(word);
        }
    }
    let mut lines = Vec::new();
    let mut prev = 0;
    for b in breaks.into_iter().chain([text.len()]) {
        lines.push(text[prev..b].to_string());
        prev = b;
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
        .into_iter()
        .map(|l| justify_line(&l, width, justify))
        .collect()
}

/// Cuts to `width` with an ellipsis when too long.
fn truncate(line: &str, width: usize) -> String {
    if char_len(line) <= width {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

fn justify_line(line: &str, width: usize, justify: Justify) -> String {
    match justify {
        Justify::Left => {
            // rich drops trailing spaces past the width, then pads.
            let t = truncate(line.trim_end(), width);
            let pad = width - char_len(&t);
            t + &" ".repeat(pad)
        }
        Justify::Right => {
            let t = truncate(line.trim_end(), width);
            " ".repeat(width - char_len(&t)) + &t
        }
        Justify::Center => {
            let t = truncate(line.trim_end(), width);
            let excess = width - char_len(&t);
            let left = excess / 2;
            " ".repeat(left) + &t + &" ".repeat(excess - left)
        }
    }
}

/// `1234567` -> `"1,234,567"` (Python's `{:,}`).
pub(crate) fn fmt_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Keras's readable byte size: `4.10 KB`; the byte unit is `B` in Keras 3 and `Byte` in tf-keras.
pub(crate) fn readable_size(mut bytes: f64, byte_unit: &str) -> String {
    let units = [byte_unit, "KB", "MB", "GB", "TB", "PB"];
    for unit in units {
        if bytes / 1024.0 < 1.0 {
            return format!("{bytes:.2} {unit}");
        }
        bytes /= 1024.0;
    }
    format!("{bytes:.2} PB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_like_rich() {
        // 88 columns, positions .45/.80/1.0 -> 39/31/18 (+2 padding) shrunk to fit 84.
        assert_eq!(shrink_evenly(vec![41, 33, 20], 84), vec![38, 29, 17]);
        assert_eq!(shrink_evenly(vec![42, 34, 20, 12], 95), vec![39, 31, 16, 9]);
    }

    #[test]
    fn wraps_like_rich() {
        assert_eq!(
            wrap_cell(
                "batch_normalization (BatchNormalization)",
                36,
                Justify::Left
            ),
            vec![
                format!("{:36}", "batch_normalization"),
                format!("{:36}", "(BatchNormalization)")
            ]
        );
        assert_eq!(
            wrap_cell("batch_normalization_10[0][0]", 26, Justify::Left),
            vec!["batch_normalization_10[0]…".to_string()]
        );
        assert_eq!(
            wrap_cell("Trainable", 7, Justify::Center),
            vec!["Traina…".to_string()]
        );
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(fmt_thousands(23851784), "23,851,784");
        assert_eq!(fmt_thousands(0), "0");
        assert_eq!(readable_size(4200.0, "B"), "4.10 KB");
        assert_eq!(readable_size(160.0, "Byte"), "160.00 Byte");
    }
}
