//! `explain()`: where a model's non-trainable parameters come from — what no Keras summary says.
//!
//! A weight is non-trainable for one of two reasons: its layer (or a model around it) was frozen,
//! or it is state that never trains (BatchNormalization's moving mean and variance). The
//! explanation splits the count by those causes and names the layers.

use super::model::Model;
use super::summary::fmt_thousands;
use crate::layers::{Layer, WeightKind};

/// How many frozen layers to name before summarising the rest.
const MAX_NAMED: usize = 5;

impl Model {
    /// A short text that accounts for every non-trainable parameter, e.g.
    ///
    /// ```text
    /// Non-trainable params: 40 = 40 frozen (batch_normalization: 40, of which 20 moving statistics)
    /// ```
    ///
    /// or, for InceptionV3, `34,432 = BatchNormalization moving statistics in 94 layers (2 x
    /// channels each)`.
    pub fn explain(&self) -> String {
        let c = self.counts();
        let mut out = format!(
            "Model \"{}\": {} params\nTrainable params: {}\n",
            self.name(),
            fmt_thousands(c.trainable + c.non_trainable),
            fmt_thousands(c.trainable)
        );
        if c.non_trainable == 0 {
            out += "Non-trainable params: 0 (every weight trains)\n";
            return out;
        }
        // Frozen: per top-level layer, its non-trainable params and how many of them are state.
        let mut frozen: Vec<(String, usize, usize)> = Vec::new();
        // State in trainable layers, per class: (params, layers).
        let mut state: Vec<(String, usize, usize, &str)> = Vec::new();
        let whole_model_frozen = !self.is_trainable();
        for layer in self.layers() {
            collect(layer, whole_model_frozen, &mut frozen, &mut state);
        }
        let mut parts = Vec::new();
        let frozen_total: usize = frozen.iter().map(|f| f.1).sum();
        if frozen_total > 0 {
            let frozen_state: usize = frozen.iter().map(|f| f.2).sum();
            let mut named: Vec<String> = frozen
                .iter()
                .take(MAX_NAMED)
                .map(|(name, n, s)| {
                    if frozen.len() == 1 && *s > 0 {
                        format!(
                            "{name}: {}, of which {} moving statistics",
                            fmt_thousands(*n),
                            fmt_thousands(*s)
                        )
                    } else {
                        format!("{name}: {}", fmt_thousands(*n))
                    }
                })
                .collect();
            if frozen.len() > MAX_NAMED {
                named.push(format!("and {} more layers", frozen.len() - MAX_NAMED));
            }
            let mut text = format!(
                "{} frozen ({})",
                fmt_thousands(frozen_total),
                named.join(", ")
            );
            if frozen.len() > 1 && frozen_state > 0 {
                text += &format!(
                    " in {} layers, of which {} BatchNormalization moving statistics",
                    frozen.len(),
                    fmt_thousands(frozen_state)
                );
            } else if frozen.len() > 1 {
                text += &format!(" in {} layers", frozen.len());
            }
            parts.push(text);
        }
        for (what, params, layers, each) in &state {
            let plural = if *layers == 1 { "layer" } else { "layers" };
            parts.push(format!(
                "{} = {what} in {layers} {plural}{each}",
                fmt_thousands(*params)
            ));
        }
        // "A = B" reads oddly when the only part already starts with the number.
        let text = if frozen_total == 0 && state.len() == 1 {
            parts.remove(0)
        } else {
            format!(
                "{} = {}",
                fmt_thousands(c.non_trainable),
                parts
                    .iter()
                    .map(|p| match p.split_once(" = ") {
                        Some((n, what)) if !p.contains("frozen") => format!("{n} {what}"),
                        _ => p.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" + ")
            )
        };
        out += &format!("Non-trainable params: {text}\n");
        out
    }
}

fn collect(
    layer: &dyn Layer,
    inside_frozen: bool,
    frozen: &mut Vec<(String, usize, usize)>,
    state: &mut Vec<(String, usize, usize, &'static str)>,
) {
    let weights = layer.weights();
    if weights.is_empty() {
        return;
    }
    let n_state: usize = weights
        .iter()
        .filter(|w| w.kind() == WeightKind::State)
        .map(|w| w.len())
        .sum();
    if inside_frozen || !layer.is_trainable() {
        // Keras 3 counts a frozen layer's weights as non-trainable, except children re-enabled
        // inside a frozen model, which count as trainable in the outer model.
        let non_trainable: usize = match layer.as_model() {
            Some(_) => weights
                .iter()
                .filter(|w| !w.is_trainable())
                .map(|w| w.len())
                .sum(),
            None => weights.iter().map(|w| w.len()).sum(),
        };
        if non_trainable > 0 {
            frozen.push((layer.name().to_string(), non_trainable, n_state));
        }
        return;
    }
    if let Some(m) = layer.as_model() {
        for l in m.layers() {
            collect(l, false, frozen, state);
        }
        return;
    }
    if n_state > 0 {
        let (what, each) = layer.state_description();
        match state.iter_mut().find(|s| s.0 == what) {
            Some(s) => {
                s.1 += n_state;
                s.2 += 1;
            }
            None => state.push((what, n_state, 1, each)),
        }
    }
}
