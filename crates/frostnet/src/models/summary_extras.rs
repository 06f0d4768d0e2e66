//! Summary extras that no Keras summary prints: the mult-adds of every layer for a batch size,
//! memory for inference and for one training step, and a `Trainable` column that says `Partial`
//! for a partly frozen nested model (Keras says `Y` or `N` and so hides exactly the case this
//! project is about). Opt-in: [`Model::summary`] stays byte-identical to Keras.

use super::model::Model;
use super::summary::{draw_table, fmt_thousands, readable_size, Justify};
use crate::layers::{Layer, Mode, Shape, WeightKind};

const F32: u64 = 4;

/// Bytes one step of a model needs, by what holds them (f32 everywhere). From
/// [`Model::memory_estimate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Every weight, trainable or not.
    pub params: u64,
    /// One gradient per trainable weight (training only).
    pub gradients: u64,
    /// The optimizer's slots (Adam: two per trainable weight), if the model is compiled.
    pub optimizer_state: u64,
    /// What the layers that backward goes through keep from the forward pass for it (each
    /// layer says what: Dense and the convolutions their input and output, BatchNormalization
    /// the standardised input, pooling indices or nothing). A frozen prefix keeps none.
    pub activations_kept: u64,
    /// The most activation memory alive at once during an inference forward pass, each
    /// activation freed after its last consumer as the executor does, fused Conv2D ->
    /// BatchNormalization -> activation chains writing one output (as does a BatchNormalization
    /// outside such a chain that applies the plain ReLU after it).
    pub inference_activations: u64,
    /// A training step's transient activations: what its forward or backward pass holds at its
    /// peak beyond the activations kept for backward (fewer chains fuse: a BN that trains does
    /// not). Kept activations build up through the forward pass, so the forward peak is the
    /// largest sum of what was kept so far and what is live at one moment; layers keep their
    /// inputs by sharing the executor's buffers, not copies. In the backward pass each layer's
    /// output and input gradients come on top of what the layers not yet back-propagated keep.
    pub training_activations: u64,
}

impl MemoryEstimate {
    /// Parameters plus the forward pass's peak activations.
    pub fn inference(&self) -> u64 {
        self.params + self.inference_activations
    }
    /// Parameters, gradients, optimizer state, the activations kept for backward and the
    /// training forward pass's transient peak.
    pub fn training_step(&self) -> u64 {
        self.params
            + self.gradients
            + self.optimizer_state
            + self.activations_kept
            + self.training_activations
    }
}

fn elements(shape: &Shape) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, d| Some(acc * (*d)? as u64))
}

impl Model {
    /// Multiply-accumulate operations of one forward pass over `batch_size` samples (see
    /// [`Layer::mult_adds`] for what counts); a shared layer counts once per call. `None` when an
    /// input dimension is not fixed.
    pub fn mult_adds(&self, batch_size: usize) -> Option<u64> {
        (0..self.call_count()).try_fold(0u64, |acc, c| {
            let layer = &self.nodes[self.call_layer(c)].layer;
            Some(acc + layer.mult_adds(self.call_output_shape(c))? * batch_size as u64)
        })
    }

    /// What one inference or training step over `batch_size` samples holds in memory; `None`
    /// when an input dimension is not fixed.
    pub fn memory_estimate(&self, batch_size: usize) -> Option<MemoryEstimate> {
        let trainable: u64 = self
            .trainable_weights()
            .iter()
            .map(|w| w.len() as u64)
            .sum();
        let slots = self
            .compiled
            .as_ref()
            .map_or(0, |c| c.optimizer.slots_per_weight() as u64);
        let kept = self.activations_kept(batch_size as u64, false)?;
        let training_peak = self.activations_peak(batch_size as u64, Mode::Train, false)?;
        Some(MemoryEstimate {
            params: self.weights().iter().map(|w| w.len() as u64).sum::<u64>() * F32,
            gradients: trainable * F32,
            optimizer_state: trainable * slots * F32,
            activations_kept: kept,
            inference_activations: self.activations_peak(batch_size as u64, Mode::Infer, false)?,
            training_activations: training_peak.saturating_sub(kept),
        })
    }

    fn node_bytes(&self, i: usize, batch: u64) -> Option<u64> {
        Some(elements(&self.nodes[i].output_shape)? * batch * F32)
    }

    /// The most live activation bytes of a step: the larger of [`Self::step_peaks`].
    fn activations_peak(&self, batch: u64, mode: Mode, upstream_trains: bool) -> Option<u64> {
        let (forward, backward) = self.step_peaks(batch, mode, upstream_trains)?;
        Some(forward.max(backward))
    }

    /// The most live activation bytes of the forward pass and of the backward pass (0 in
    /// inference). Forward: inputs are copied in, every output lives until its last consumer
    /// ran (the model's outputs to the end), a fused chain (or a BatchNormalization with its
    /// ReLU) writes one output, and a nested model adds its own peak while it runs; in training,
    /// what each layer on the backward path keeps adds up as the pass goes (`upstream_trains` as
    /// in [`Self::activations_kept`]). Backward: the gradients come on top of what the layers
    /// not yet back-propagated still keep.
    fn step_peaks(&self, batch: u64, mode: Mode, upstream_trains: bool) -> Option<(u64, u64)> {
        let n = self.nodes.len();
        let plan = match mode {
            Mode::Train => self.backward_plan(upstream_trains),
            Mode::Infer => vec![false; n],
        };
        let mut skip = vec![false; n];
        let mut writes = (0..n).collect::<Vec<usize>>();
        // What each node reads: a fused chain reads its first node's input.
        let mut reads = (0..n).collect::<Vec<usize>>();
        // A chain that pools its convolution's output holds that output beside the pooled one.
        let mut twice = vec![false; n];
        let chains = self.plan_fusion(mode, &plan);
        for chain in &chains {
            writes[chain.conv] = chain.last();
            reads[chain.conv] = chain.first();
            twice[chain.conv] = chain.pool.is_some();
            for k in chain.skipped() {
                skip[k] = true;
            }
        }
        for (bn, relu) in self.plan_relu_fusion(&chains) {
            writes[bn] = relu;
            skip[relu] = true;
        }
        let mut remaining = vec![0usize; n];
        for node in &self.nodes {
            for &j in &node.inbound {
                remaining[j] += 1;
            }
        }
        for &o in &self.outputs {
            remaining[o] += 1;
        }
        let mut live = 0u64;
        for &i in &self.inputs {
            live += self.node_bytes(i, batch)?;
        }
        let mut peak = live;
        for i in 0..n {
            if self.inputs.contains(&i) || skip[i] {
                continue;
            }
            let out = self.node_bytes(writes[i], batch)?;
            let node = &self.nodes[i];
            let upstream = node.inbound.iter().any(|&j| plan[j]);
            let inside = match node.layer.as_model() {
                Some(m) => m.step_peaks(batch, mode, upstream)?.0,
                None => 0,
            };
            let transient = if twice[i] { out } else { 0 };
            peak = peak.max(live + out + inside + transient);
            live += out;
            if plan[i] {
                live += self.node_kept(i, batch, upstream)?;
            }
            for &j in &self.nodes[reads[i]].inbound {
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    live -= self.node_bytes(j, batch)?;
                }
            }
        }
        let mut backward = 0u64;
        if mode == Mode::Train {
            // In reverse order: a node's output gradient and the gradients it passes to its
            // inputs live beside what the nodes not yet back-propagated keep. A node's kept bytes
            // go once its backward ran, a gradient once its producer's did (a second contribution
            // to a value is added into the first). A ReLU that its BatchNormalization applied
            // passes its gradient on as it is (skipped here).
            let mut held: Vec<Option<u64>> = vec![None; n];
            let mut grads = 0u64;
            for &o in &self.outputs {
                if plan[o] && held[o].is_none() {
                    let b = self.node_bytes(o, batch)?;
                    held[o] = Some(b);
                    grads += b;
                }
            }
            for i in (0..n).rev() {
                if self.inputs.contains(&i) || skip[i] || !plan[i] {
                    continue;
                }
                let node = &self.nodes[i];
                let mut passed = 0u64;
                for &j in node.inbound.iter().filter(|&&j| plan[j]) {
                    if held[j].is_none() {
                        let b = self.node_bytes(j, batch)?;
                        held[j] = Some(b);
                        passed += b;
                    }
                }
                let upstream = node.inbound.iter().any(|&j| plan[j]);
                let kept = self.node_kept(i, batch, upstream)?;
                let out_grad = held[writes[i]].take().unwrap_or(0);
                let here = match node.layer.as_model() {
                    // Its own backward peak holds what it keeps and its output's and inputs'
                    // gradients.
                    Some(m) => {
                        live - kept + grads - out_grad + m.step_peaks(batch, mode, upstream)?.1
                    }
                    None => live + grads + passed,
                };
                backward = backward.max(here);
                live -= kept;
                grads = grads + passed - out_grad;
            }
        }
        Some((peak, backward))
    }

    /// Per node: whether a training step's backward pass goes through it (it has trainable
    /// weights, or something before it has), as `run_forward` plans it.
    fn backward_plan(&self, upstream_trains: bool) -> Vec<bool> {
        let mut planned = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            planned[i] = if self.inputs.contains(&i) {
                upstream_trains
            } else {
                let trains = node.layer.is_trainable()
                    && node.layer.weights().iter().any(|w| w.is_trainable());
                trains || node.inbound.iter().any(|&j| planned[j])
            };
        }
        planned
    }

    /// Bytes the layers that backward goes through keep for it (a ReLU that the
    /// BatchNormalization before it applies keeps nothing: see `Model::plan_relu_fusion`).
    fn activations_kept(&self, batch: u64, upstream_trains: bool) -> Option<u64> {
        let planned = self.backward_plan(upstream_trains);
        let mut fused_relu = vec![false; self.nodes.len()];
        for (_, relu) in self.plan_relu_fusion(&self.plan_fusion(Mode::Train, &planned)) {
            fused_relu[relu] = true;
        }
        let mut kept = 0u64;
        for (i, node) in self.nodes.iter().enumerate() {
            if self.inputs.contains(&i) || !planned[i] || fused_relu[i] {
                continue;
            }
            kept += self.node_kept(i, batch, node.inbound.iter().any(|&j| planned[j]))?;
        }
        Some(kept)
    }

    /// Bytes node `i` keeps for backward (a nested model: all its layers on the backward path;
    /// `upstream_trains` whether something before it trains).
    fn node_kept(&self, i: usize, batch: u64, upstream_trains: bool) -> Option<u64> {
        let node = &self.nodes[i];
        match node.layer.as_model() {
            Some(m) => m.activations_kept(batch, upstream_trains),
            None => {
                let inputs: Option<Vec<u64>> = node
                    .inbound
                    .iter()
                    .map(|&j| Some(elements(&self.nodes[j].output_shape)? * batch))
                    .collect();
                let output = elements(&node.output_shape)? * batch;
                Some(node.layer.kept_for_backward(&inputs?, output))
            }
        }
    }

    /// Keras 3's table with two more columns, `Mult-Adds` (for `batch_size` samples) and
    /// `Trainable` (`Y`, `N`, or `Partial` for a nested model with both), and under the totals
    /// the mult-adds and the memory of an inference and of a training step:
    ///
    /// ```
    /// use frostnet::layers::{Dense, Input};
    /// use frostnet::Sequential;
    /// let mut m = Sequential::new();
    /// m.add(Input::new(&[8])).unwrap();
    /// m.add(Dense::new(4)).unwrap();
    /// let text = m.summary_extras(32, None);
    /// // 8 x 4 products per sample.
    /// assert!(text.contains(" Mult-adds (batch 32): 1,024\n"), "{text}");
    /// ```
    pub fn summary_extras(&self, batch_size: usize, console_width: Option<usize>) -> String {
        let sequential_like = self.is_sequential_like();
        use Justify::{Center, Left, Right};
        let (line_length, positions, header, justify): (usize, &[f64], &[&str], &[Justify]) =
            if sequential_like {
                (
                    116,
                    &[0.34, 0.60, 0.74, 0.89, 1.0],
                    &[
                        "Layer (type)",
                        "Output Shape",
                        "Param #",
                        "Mult-Adds",
                        "Trainable",
                    ],
                    &[Left, Left, Right, Right, Center],
                )
            } else {
                (
                    136,
                    &[0.24, 0.44, 0.56, 0.70, 0.9, 1.0],
                    &[
                        "Layer (type)",
                        "Output Shape",
                        "Param #",
                        "Mult-Adds",
                        "Connected to",
                        "Trainable",
                    ],
                    &[Left, Left, Right, Right, Left, Center],
                )
            };
        let rows: Vec<Vec<String>> = self
            .listed_nodes()
            .zip(self.summary_rows())
            .map(|(i, r)| {
                let layer = self.nodes[i].layer.as_ref();
                let mult_adds = layer
                    .mult_adds(&self.nodes[i].output_shape)
                    .map_or("?".to_string(), |m| {
                        fmt_thousands((m * batch_size as u64) as usize)
                    });
                let connected = r.connected_cell();
                let mut cells = vec![
                    format!("{} ({})", r.name, r.class),
                    r.output_shape,
                    fmt_thousands(r.params),
                    mult_adds,
                ];
                if !sequential_like {
                    cells.push(connected);
                }
                cells.push(trainable_cell(layer).into());
                cells
            })
            .collect();
        let mut out = format!("Model: \"{}\"\n", self.name());
        out += &draw_table(
            header,
            justify,
            positions,
            line_length,
            console_width,
            &rows,
        );
        out += &self.param_totals();
        let batch = format!("batch {batch_size}");
        match self.mult_adds(batch_size) {
            Some(m) => out += &format!(" Mult-adds ({batch}): {}\n", fmt_thousands(m as usize)),
            None => out += &format!(" Mult-adds ({batch}): unknown (input size not fixed)\n"),
        }
        match self.memory_estimate(batch_size) {
            Some(mem) => {
                let size = |b: u64| readable_size(b as f64, "B");
                out += &format!(
                    " Memory, inference ({batch}): {} = params {} + activations {} (peak)\n",
                    size(mem.inference()),
                    size(mem.params),
                    size(mem.inference_activations)
                );
                out += &format!(
                    " Memory, training step ({batch}): {} = params {} + gradients {} + optimizer \
                     state {} + activations kept for backward {} + transient {}\n",
                    size(mem.training_step()),
                    size(mem.params),
                    size(mem.gradients),
                    size(mem.optimizer_state),
                    size(mem.activations_kept),
                    size(mem.training_activations)
                );
            }
            None => out += &format!(" Memory ({batch}): unknown (input size not fixed)\n"),
        }
        out
    }
}

/// `-` without weights, `Y`/`N` as Keras, `Partial` for a model with trainable and frozen
/// learnable weights (its state, which never trains, does not make it partial).
fn trainable_cell(layer: &dyn Layer) -> &'static str {
    let weights = layer.weights();
    if weights.is_empty() {
        return "-";
    }
    if !layer.is_trainable() {
        return "N";
    }
    if layer.as_model().is_some() {
        let trains = weights.iter().any(|w| w.is_trainable());
        let frozen = weights
            .iter()
            .any(|w| w.kind() == WeightKind::Param && !w.is_trainable());
        return match (trains, frozen) {
            (true, true) => "Partial",
            (true, false) => "Y",
            (false, _) => "N",
        };
    }
    "Y"
}
