//! `explain()`: where a model's non-trainable parameters come from — what no Keras summary says.
//!
//! A weight is non-trainable for one of two reasons: its layer (or a model around it) was frozen,
//! or it is state that never trains (BatchNormalization's moving mean and variance). The
//! explanation splits the count by those causes and names the layers: frozen weights, the state of
//! frozen layers, and the state of layers that still train (whose statistics keep moving in
//! training), one line each when there is more than one.

use super::model::Model;
use super::summary::fmt_thousands;
use crate::layers::{Layer, WeightKind};

/// How many frozen layers to name before summarising the rest.
const MAX_NAMED: usize = 5;

impl Model {
    /// A short text that accounts for every non-trainable parameter. With one cause it is one
    /// line, e.g. for InceptionV3
    ///
    /// ```text
    /// Non-trainable params: 34,432 = BatchNormalization moving statistics in 94 layers (2 x channels each)
    /// ```
    ///
    /// and with several causes (a partly frozen network) one indented line per cause:
    ///
    /// ```text
    /// Non-trainable params: 21
    ///   15 frozen weights (dense: 15)
    ///   6 BatchNormalization moving statistics in 1 training layer (2 x channels each)
    /// ```
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
        let mut acc = Accounts::default();
        let whole_model_frozen = !self.is_trainable();
        for layer in self.layers() {
            acc.collect(layer, whole_model_frozen);
        }
        let lines = acc.lines();
        let total = fmt_thousands(c.non_trainable);
        if let [only] = lines.as_slice() {
            // "40 = 40 frozen weights" says the number twice.
            let only = only.strip_prefix(&format!("{total} ")).unwrap_or(only);
            out += &format!("Non-trainable params: {total} = {only}\n");
        } else {
            out += &format!("Non-trainable params: {total}\n");
            for line in lines {
                out += &format!("  {line}\n");
            }
        }
        out
    }
}

/// Non-trainable parameters sorted by cause.
#[derive(Default)]
struct Accounts {
    /// Frozen top-level layers and their frozen learnable weights (`Param`s).
    frozen: Vec<(String, usize)>,
    /// State (never learnable) inside frozen layers, per kind: (description, params, layers).
    frozen_state: Vec<(String, usize, usize)>,
    /// State inside layers that train, per kind: (description, params, layers, per-layer note).
    training_state: Vec<(String, usize, usize, &'static str)>,
}

impl Accounts {
    fn collect(&mut self, layer: &dyn Layer, inside_frozen: bool) {
        let weights = layer.weights();
        if weights.is_empty() {
            return;
        }
        if inside_frozen || !layer.is_trainable() {
            // Keras 3 counts a frozen layer's weights as non-trainable, except children re-enabled
            // inside a frozen model, which count as trainable in the outer model.
            let frozen_params: usize = weights
                .iter()
                .filter(|w| w.kind() == WeightKind::Param)
                .filter(|w| layer.as_model().is_none() || !w.is_trainable())
                .map(|w| w.len())
                .sum();
            if frozen_params > 0 {
                self.frozen.push((layer.name().to_string(), frozen_params));
            }
            self.collect_frozen_state(layer);
            return;
        }
        if let Some(m) = layer.as_model() {
            for l in m.layers() {
                self.collect(l, false);
            }
            return;
        }
        let n_state = state_len(layer);
        if n_state > 0 {
            let (what, each) = layer.state_description();
            match self.training_state.iter_mut().find(|s| s.0 == what) {
                Some(s) => {
                    s.1 += n_state;
                    s.2 += 1;
                }
                None => self.training_state.push((what, n_state, 1, each)),
            }
        }
    }

    /// State of a frozen layer, described by the leaf layers that own it.
    fn collect_frozen_state(&mut self, layer: &dyn Layer) {
        if let Some(m) = layer.as_model() {
            for l in m.layers() {
                self.collect_frozen_state(l);
            }
            return;
        }
        let n_state = state_len(layer);
        if n_state > 0 {
            let (what, _) = layer.state_description();
            match self.frozen_state.iter_mut().find(|s| s.0 == what) {
                Some(s) => {
                    s.1 += n_state;
                    s.2 += 1;
                }
                None => self.frozen_state.push((what, n_state, 1)),
            }
        }
    }

    /// One text per cause, in the order frozen weights, frozen state, training state.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.frozen.is_empty() {
            let total: usize = self.frozen.iter().map(|f| f.1).sum();
            let mut named: Vec<String> = self
                .frozen
                .iter()
                .take(MAX_NAMED)
                .map(|(name, n)| format!("{name}: {}", fmt_thousands(*n)))
                .collect();
            if self.frozen.len() > MAX_NAMED {
                named.push(format!("and {} more layers", self.frozen.len() - MAX_NAMED));
            }
            let in_layers = match self.frozen.len() {
                1 => String::new(),
                n => format!(" in {n} layers"),
            };
            lines.push(format!(
                "{} frozen weights{in_layers} ({})",
                fmt_thousands(total),
                named.join(", ")
            ));
        }
        for (what, params, layers) in &self.frozen_state {
            lines.push(format!(
                "{} {what} in {layers} frozen {}",
                fmt_thousands(*params),
                plural(*layers)
            ));
        }
        let anything_frozen = !self.frozen.is_empty() || !self.frozen_state.is_empty();
        for (what, params, layers, each) in &self.training_state {
            // "training" only where it tells these apart from the frozen layers' statistics.
            let training = if anything_frozen { "training " } else { "" };
            lines.push(format!(
                "{} {what} in {layers} {training}{}{each}",
                fmt_thousands(*params),
                plural(*layers)
            ));
        }
        lines
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "layer"
    } else {
        "layers"
    }
}

fn state_len(layer: &dyn Layer) -> usize {
    layer
        .weights()
        .iter()
        .filter(|w| w.kind() == WeightKind::State)
        .map(|w| w.len())
        .sum()
}
