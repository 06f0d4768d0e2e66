//! The classic (tf-keras / Keras 2) summary table: fixed character positions, cells cut at the
//! column edge and continued on the next line.

use super::model::Model;
use super::summary::readable_size;
use crate::layers::Layer;

/// Prints `fields` at `positions` the way tf-keras's `print_row` does, continuing cut cells on
/// following lines.
fn print_row(out: &mut String, fields: &[String], positions: &[usize]) {
    let mut left: Vec<Vec<char>> = fields.iter().map(|f| f.chars().collect()).collect();
    while left.iter().any(|f| !f.is_empty()) {
        let mut line: Vec<char> = Vec::new();
        for col in 0..left.len() {
            let start = if col > 0 { positions[col - 1] } else { 0 };
            let end = positions[col];
            let last = col == positions.len() - 1;
            let space = if last { 0 } else { 2 };
            let mut cutoff = (end - start).saturating_sub(space);
            if !last {
                cutoff = cutoff.saturating_sub(1);
            }
            let mut fit: Vec<char> = left[col].iter().take(cutoff).copied().collect();
            // Prefer breaking after the end of a tuple/list element.
            let s: String = fit.iter().collect();
            let candidates: Vec<usize> = ["),", "},", "],", "',"]
                .iter()
                .filter_map(|p| s.find(p).map(|i| s[..i].chars().count() + 2))
                .collect();
            if let Some(&c) = candidates.iter().min() {
                cutoff = c;
                fit.truncate(c);
            }
            if col == 0 {
                line.push(' ');
            }
            line.extend(&fit);
            line.extend(std::iter::repeat_n(' ', space));
            let consumed = cutoff.min(left[col].len());
            left[col].drain(..consumed);
            let target = positions[col];
            if line.len() < target {
                line.extend(std::iter::repeat_n(' ', target - line.len()));
            }
        }
        out.extend(line);
        out.push('\n');
    }
}

/// Python's `str()` of a list of strings: `['a[0][0]', 'b[0][0]']`.
fn py_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub(crate) fn render(model: &Model, show_trainable: bool) -> String {
    let sequential_like = model.is_sequential_like();
    let (mut line_length, mut positions, mut header): (usize, Vec<usize>, Vec<&str>) =
        if sequential_like {
            let l = 65;
            (
                l,
                [0.45, 0.85, 1.0]
                    .iter()
                    .map(|p| (l as f64 * p) as usize)
                    .collect(),
                vec!["Layer (type)", "Output Shape", "Param #"],
            )
        } else {
            let l = 98;
            (
                l,
                [0.3, 0.6, 0.70, 1.0]
                    .iter()
                    .map(|p| (l as f64 * p) as usize)
                    .collect(),
                vec!["Layer (type)", "Output Shape", "Param #", "Connected to"],
            )
        };
    if show_trainable {
        line_length += 11;
        positions.push(line_length);
        header.push("Trainable");
    }
    let mut out = format!("Model: \"{}\"\n", model.name());
    out += &"_".repeat(line_length);
    out.push('\n');
    print_row(
        &mut out,
        &header.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &positions,
    );
    out += &"=".repeat(line_length);
    out.push('\n');
    for r in model.summary_rows() {
        let shape = if r.is_input {
            format!("[{}]", r.output_shape_classic)
        } else {
            r.output_shape_classic
        };
        let mut fields = vec![
            format!("{} ({})", r.name, r.class),
            shape,
            r.params.to_string(),
        ];
        if !sequential_like {
            fields.push(py_list(&r.connected_to));
        }
        if show_trainable {
            fields.push(if r.trainable { "Y".into() } else { "N".into() });
        }
        print_row(&mut out, &fields, &positions);
        out += &" ".repeat(line_length);
        out.push('\n');
    }
    out += &"=".repeat(line_length);
    out.push('\n');
    let c = model.counts();
    let total = c.trainable + c.non_trainable;
    out += &format!(
        "Total params: {} ({})\n",
        total,
        readable_size((total * 4) as f64, "Byte")
    );
    out += &format!(
        "Trainable params: {} ({})\n",
        c.trainable,
        readable_size((c.trainable * 4) as f64, "Byte")
    );
    out += &format!(
        "Non-trainable params: {} ({})\n",
        c.non_trainable,
        readable_size((c.non_trainable * 4) as f64, "Byte")
    );
    out += &"_".repeat(line_length);
    out.push('\n');
    out
}
