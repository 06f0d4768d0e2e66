//! The frozen-prefix cache of `fit` (issue #10 point 4): frozen layers are pure functions, so
//! when the same samples come back every epoch, each sample's output of a deterministic frozen
//! prefix is computed once and reused in later epochs.
//!
//! The prefix is a cut of the graph: nodes `0..=frontier` in the model's (topological) node
//! order, every one of them a built-in layer with no trainable weight that computes the same in
//! training mode as in inference (a frozen BatchNormalization normalises with its moving
//! statistics; Dropout and noise layers are random and end the prefix before them), all model
//! inputs inside it, and the frontier the only prefix node the rest of the graph reads. Anything
//! else (a branch that skips the frontier, an unknown or custom layer, a dataset whose batches may
//! change) means no cache, and verbose output says why.
//!
//! Exactness: the cached path gives weights bit-identical to the uncached one.
//! - The first time a batch is seen, the whole model runs as usual and the frontier's output is
//!   copied out, so a cached row is what the plain path computed.
//! - A sample's prefix output depends on the batch size the kernels saw (matmul blocking, for
//!   one), not on its batch-mates, so each cached row remembers the batch size it was computed
//!   at and is reused only for batches of that size; other batches recompute (at most the last,
//!   smaller batch of an epoch).
//! - The skipped prefix nodes still draw their random seeds, so layers after the cut (Dropout in
//!   the head) see the same random stream.
//! - Before every forward pass the prefix is fingerprinted: each layer's flag and each weight's
//!   identity, trainable flag and [`version`](crate::layers::Weight::version), which changes on
//!   any write to the value (`set_weights`, loading, an optimizer step). Any change (a callback
//!   that unfreezes or reassigns a prefix weight, a custom step that does) drops the cache, and
//!   the prefix is planned again from the new flags.

use crate::error::Result;
use crate::layers::{Layer, Mode};
use crate::models::Model;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;

/// What a forward pass does at the cut: capture the frontier's output, or start from it.
pub(crate) struct Cut {
    /// The frontier node.
    pub(crate) node: usize,
    /// `Some`: the frontier's output for this batch; nodes `..=node` are skipped.
    pub(crate) resume: Option<Tensor>,
    /// Filled by a capturing pass with the frontier's output.
    pub(crate) captured: Option<Tensor>,
}

impl Cut {
    /// Whether a fused chain from `first` to `last` crosses the cut (it must then run unfused).
    pub(crate) fn splits(&self, first: usize, last: usize) -> bool {
        first <= self.node && last > self.node
    }
}

/// Per-fit counters, reported in [`History::prefix_cache`](super::History::prefix_cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixCacheReport {
    /// The layer whose output was cached last (the frontier), if a cache was ever planned.
    pub frontier: Option<String>,
    /// Batches whose prefix output came from the cache.
    pub hits: usize,
    /// Batches that ran the prefix (and filled the cache where they could).
    pub misses: usize,
    /// Times a prefix weight or flag changed and the cache was dropped.
    pub invalidations: usize,
    /// Why no cache was used, if none was (or why it stopped).
    pub off_reason: Option<String>,
}

/// The cache of one `fit` call.
pub(crate) struct PrefixCache {
    samples: usize,
    full_batch: usize,
    budget: usize,
    verbose: bool,
    active: Option<Active>,
    pub(crate) report: PrefixCacheReport,
}

/// A planned cut and its rows.
struct Active {
    frontier: usize,
    fingerprint: Vec<u64>,
    /// Per-sample shape of the frontier's output.
    sample_shape: Vec<usize>,
    sample_len: usize,
    /// `samples * sample_len` values, allocated at the first store.
    rows: Vec<f32>,
    /// Per sample, the batch size its row was computed at (0: not cached).
    computed_at: Vec<usize>,
}

/// The cache and the current batch's sample indices, handed to a training step.
pub(crate) struct PrefixHook<'a> {
    pub(crate) cache: &'a mut PrefixCache,
    pub(crate) rows: &'a [usize],
}

/// The built-in classes that, with no trainable weight, compute a pure function of their
/// input in training mode. BatchNormalization qualifies only when its layer flag is off (see
/// [`deterministic`]); Dropout, GaussianNoise, GaussianDropout, SpatialDropout2D and any class
/// not listed here (custom layers, random augmentation) do not.
const PURE_WHEN_FROZEN: &[&str] = &[
    "InputLayer",
    "Dense",
    "Conv1D",
    "Conv2D",
    "Conv2DTranspose",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "Identity",
    "Normalization",
    "LayerNormalization",
    "UnitNormalization",
    "GroupNormalization",
    "Embedding",
    "Flatten",
    "Permute",
    "RepeatVector",
    "UpSampling2D",
    "Cropping2D",
    "Reshape",
    "Rescaling",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "MaxPooling1D",
    "AveragePooling1D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Concatenate",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
];

/// Why `layer` is not a pure function in training mode now, or `None` if it is.
fn impure_reason(layer: &dyn Layer) -> Option<String> {
    if let Some(m) = layer.as_model() {
        if !m.extra_calls.is_empty() {
            return Some(format!("'{}' calls a layer more than once", layer.name()));
        }
        return m.nodes.iter().find_map(|n| impure_reason(n.layer.as_ref()));
    }
    if layer.base().rules.activity.is_some() {
        // Its penalty is part of every step's loss, so it must run every step.
        return Some(format!("'{}' has an activity regularizer", layer.name()));
    }
    let class = layer.class_name();
    if layer.weights().iter().any(|w| w.is_trainable()) {
        return Some(format!("'{}' trains", layer.name()));
    }
    if !PURE_WHEN_FROZEN.contains(&class) {
        return Some(format!(
            "'{}' ({class}) is random in training or not a built-in layer",
            layer.name()
        ));
    }
    if class == "BatchNormalization" && layer.is_trainable() {
        return Some(format!(
            "BatchNormalization '{}' uses batch statistics (its layer is trainable)",
            layer.name()
        ));
    }
    None
}

/// Appends what the prefix's outputs depend on besides the input: per layer its flag, per
/// weight its identity, flag and version.
fn fingerprint_into(layer: &dyn Layer, out: &mut Vec<u64>) {
    out.push(layer.is_trainable() as u64);
    match layer.as_model() {
        Some(m) => {
            for n in &m.nodes {
                fingerprint_into(n.layer.as_ref(), out);
            }
        }
        None => {
            for w in layer.weights() {
                out.extend([w.id(), w.version(), w.is_trainable() as u64]);
            }
        }
    }
}

fn fingerprint(model: &Model, frontier: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for n in &model.nodes[..=frontier] {
        fingerprint_into(n.layer.as_ref(), &mut out);
    }
    out
}

/// The largest valid frontier of `model`'s graph now, or why there is none.
fn plan(model: &Model) -> std::result::Result<usize, String> {
    if !model.extra_calls.is_empty() {
        return Err("the graph calls a layer more than once (shared layers)".into());
    }
    let n = model.nodes.len();
    // The prefix cannot extend past the first layer that is not a pure function now.
    let mut first_impure = n;
    let mut why = None;
    for (i, node) in model.nodes.iter().enumerate() {
        if let Some(r) = impure_reason(node.layer.as_ref()) {
            first_impure = i;
            why = Some(r);
            break;
        }
    }
    // An edge k -> j (k < j) rules out every frontier f with k < f < j: the rest of the graph
    // would read a prefix node other than the frontier.
    let mut crossing = vec![0i64; n + 1];
    for (j, node) in model.nodes.iter().enumerate() {
        for &k in &node.inbound {
            if k + 1 < j {
                crossing[k + 1] += 1;
                crossing[j] -= 1;
            }
        }
    }
    let last_input = model.inputs.iter().copied().max().unwrap_or(0);
    let first_output = model.outputs.iter().copied().min().unwrap_or(0);
    let mut open = 0i64;
    let mut best = None;
    for (f, c) in crossing
        .iter()
        .enumerate()
        .take(first_impure.min(first_output))
    {
        open += c;
        if f > last_input && open == 0 {
            best = Some(f);
        }
    }
    best.ok_or_else(|| match why {
        Some(r) if first_impure <= last_input + 1 => {
            format!("no frozen layer before the first that is not a pure function: {r}")
        }
        Some(r) => format!(
            "the frozen layers before {r} do not form a prefix that the rest reads through one \
             tensor"
        ),
        None => "nothing after the frozen layers trains".to_string(),
    })
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl PrefixCache {
    /// Plans a cache for `samples` training samples in batches of `full_batch`, or explains why
    /// not (printed when `verbose`, only for models that have frozen layers at all). Returns
    /// `None` when no cache will run.
    pub(crate) fn start(
        model: &Model,
        samples: usize,
        full_batch: usize,
        epochs: usize,
        budget: usize,
        verbose: bool,
        dataset: bool,
    ) -> (Option<PrefixCache>, PrefixCacheReport) {
        let frozen_any = model
            .weights()
            .iter()
            .any(|w| w.kind() == crate::layers::WeightKind::Param && !w.is_trainable());
        let mut cache = PrefixCache {
            samples,
            full_batch,
            budget,
            verbose: verbose && frozen_any,
            active: None,
            report: PrefixCacheReport::default(),
        };
        let off = if !frozen_any {
            Some("no frozen weights".to_string())
        } else if budget == 0 {
            Some("disabled (prefix_cache_bytes = 0)".to_string())
        } else if dataset {
            Some("the data is a dataset, whose batches may differ between epochs".to_string())
        } else if epochs < 2 {
            Some("a single epoch reuses nothing".to_string())
        } else {
            None
        };
        if let Some(reason) = off {
            cache.off(reason);
            let report = cache.report.clone();
            return (None, report);
        }
        cache.replan(model);
        let report = cache.report.clone();
        if cache.active.is_none() {
            return (None, report);
        }
        (Some(cache), report)
    }

    fn say(&self, msg: &str) {
        if self.verbose {
            println!("prefix cache: {msg}");
        }
    }

    fn off(&mut self, reason: String) {
        self.say(&format!("off ({reason})"));
        self.active = None;
        self.report.off_reason = Some(reason);
    }

    /// Plans the cut from the model's current flags, with an empty cache.
    fn replan(&mut self, model: &Model) {
        let frontier = match plan(model) {
            Ok(f) => f,
            Err(reason) => return self.off(reason),
        };
        let shape = model.call_output_shape(frontier);
        let Some(sample_shape) = shape.iter().copied().collect::<Option<Vec<usize>>>() else {
            return self.off("the frontier's output shape is not fully known".into());
        };
        let sample_len: usize = sample_shape.iter().product();
        let bytes = sample_len
            .checked_mul(self.samples)
            .and_then(|v| v.checked_mul(std::mem::size_of::<f32>()));
        let name = model.nodes[frontier].layer.name().to_string();
        match bytes {
            Some(b) if b <= self.budget => {
                self.say(&format!(
                    "caching the output of '{name}' (the frozen prefix of {} layer(s)) for {} \
                     samples: {} of the {} budget; later epochs skip the prefix",
                    frontier + 1,
                    self.samples,
                    mib(b),
                    mib(self.budget)
                ));
                self.report.frontier = Some(name);
                self.report.off_reason = None;
                self.active = Some(Active {
                    frontier,
                    fingerprint: fingerprint(model, frontier),
                    sample_shape,
                    sample_len,
                    rows: Vec::new(),
                    computed_at: vec![0; self.samples],
                });
            }
            _ => self.off(format!(
                "the output of '{name}' for {} samples needs {}, over the budget of {} \
                 (FitOptions::prefix_cache_bytes); the prefix is recomputed every epoch",
                self.samples,
                bytes.map_or("more than usize::MAX bytes".into(), mib),
                mib(self.budget)
            )),
        }
    }

    /// Drops the cache if anything it depends on changed, and plans again.
    fn validate(&mut self, model: &Model) {
        let Some(a) = &self.active else { return };
        if fingerprint(model, a.frontier) == a.fingerprint {
            return;
        }
        self.report.invalidations += 1;
        self.say("invalidated (a weight or flag of the frozen prefix changed); planning again");
        self.active = None;
        self.replan(model);
    }
}

impl PrefixHook<'_> {
    /// The training-mode forward pass of a `fit` step, through the cache when it can serve.
    pub(crate) fn forward(
        &mut self,
        model: &mut Model,
        x: &Tensor,
        keep: bool,
        rng: &mut SmallRng,
    ) -> Result<Vec<Tensor>> {
        self.cache.validate(model);
        let Some(a) = self.cache.active.as_mut() else {
            return model.run_forward(&[x], Mode::Train, keep, &[false], rng);
        };
        let b = self.rows.len();
        if !a.rows.is_empty() && self.rows.iter().all(|&r| a.computed_at[r] == b) {
            let mut data = Vec::with_capacity(b * a.sample_len);
            for &r in self.rows {
                data.extend_from_slice(&a.rows[r * a.sample_len..(r + 1) * a.sample_len]);
            }
            let mut shape = vec![b];
            shape.extend_from_slice(&a.sample_shape);
            let mut cut = Cut {
                node: a.frontier,
                resume: Some(Tensor::from_vec(&shape, data)?),
                captured: None,
            };
            self.cache.report.hits += 1;
            return model.run_forward_cut(&[x], Mode::Train, keep, &[false], rng, Some(&mut cut));
        }
        let mut cut = Cut {
            node: a.frontier,
            resume: None,
            captured: None,
        };
        let out = model.run_forward_cut(&[x], Mode::Train, keep, &[false], rng, Some(&mut cut))?;
        self.cache.report.misses += 1;
        if let Some(v) = cut.captured.filter(|v| v.len() == b * a.sample_len) {
            if a.rows.is_empty() {
                // Size checked against the budget when the cut was planned.
                a.rows = vec![0.0; self.cache.samples * a.sample_len];
            }
            let full = self.cache.full_batch;
            for (k, &r) in self.rows.iter().enumerate() {
                // Rows computed in a full batch are kept over those of the smaller last batch,
                // so most batches find theirs.
                if a.computed_at[r] == 0 || (b == full && a.computed_at[r] != full) {
                    a.rows[r * a.sample_len..(r + 1) * a.sample_len]
                        .copy_from_slice(&v.data()[k * a.sample_len..(k + 1) * a.sample_len]);
                    a.computed_at[r] = b;
                }
            }
        }
        Ok(out)
    }
}
