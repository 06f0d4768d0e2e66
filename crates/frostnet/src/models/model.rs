//! `Model`: a DAG of layer nodes, its executor, and the backward plan.

use super::parallel::{BackTask, Task};
use crate::error::{fmt_batch_shape, Error, Result};
use crate::layers::{
    Activation, ActivationFn, AveragePooling2D, BatchNormalization, Conv2D, ForwardCtx, Layer,
    LayerBase, Mode, ReLU, Shape, Weight, WeightKind,
};
use crate::tensor::conv::EpilogueStep;
use crate::tensor::Tensor;
use rand::rngs::SmallRng;

/// A fused chain from [`Model::plan_fusion`], as node indices: `[AveragePooling2D ->] Conv2D ->
/// BatchNormalization [-> Activation or ReLU]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// An average pooling whose only consumer is the (pointwise, linear) convolution: it runs
    /// after the convolution instead, over its fewer channels.
    pub pool: Option<usize>,
    pub conv: usize,
    pub bn: usize,
    pub act: Option<usize>,
}

impl Chain {
    /// The chain's first node (whose input it reads).
    pub fn first(&self) -> usize {
        self.pool.unwrap_or(self.conv)
    }
    /// The chain's last node (whose value it writes).
    pub fn last(&self) -> usize {
        self.act.unwrap_or(self.bn)
    }
    /// Its nodes, in the order [`run_fused`] takes them: `[pool,] conv, bn[, act]`.
    pub fn nodes(&self) -> impl Iterator<Item = usize> {
        self.pool
            .into_iter()
            .chain([self.conv, self.bn])
            .chain(self.act)
    }
    /// The nodes it runs instead of their own forward passes.
    pub fn skipped(&self) -> impl Iterator<Item = usize> {
        let conv = self.conv;
        self.nodes().filter(move |&k| k != conv)
    }
}

/// One layer of the graph, with its first call (Keras's node 0 of the layer).
///
/// Layers and calls are separate because a layer may be called several times (a shared layer,
/// Keras's node indices): the layer (its weights, its row in `layers()` and in the summary)
/// exists once, in `Model::nodes`; each call beyond the first is a [`Call`] in
/// `Model::extra_calls`. Graph edges name *calls*: call id `i < nodes.len()` is node `i`'s first
/// call, call id `nodes.len() + k` is `extra_calls[k]`. A model without shared layers has no
/// extra calls, so call ids and layer indices coincide.
pub(crate) struct Node {
    pub(crate) layer: Box<dyn Layer>,
    /// Call ids of the outputs that feed this layer's first call, in argument order.
    pub(crate) inbound: Vec<usize>,
    pub(crate) output_shape: Shape,
}

/// A further call of a layer already in the graph (node index >= 1 in Keras's terms).
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The layer called: an index into `Model::nodes`.
    pub(crate) layer: usize,
    /// Call ids of its arguments.
    pub(crate) inbound: Vec<usize>,
    pub(crate) output_shape: Shape,
}

/// What the executor keeps of one call of a shared layer to run its backward pass later.
///
/// A layer keeps what its `backward` needs in its own fields (one cache per layer), so when a
/// layer is called twice, the second forward overwrites the first call's cache. Rather than give
/// every layer one cache slot per call (a change to every layer, built-in and custom), the
/// executor keeps each call's inputs and random seed, and before the backward pass of a call
/// whose cache was overwritten it runs that call's forward again ("replay") with the same
/// inputs, weights, mode and seed, which recreates exactly the cache the first run made (layers
/// are deterministic given those). A replay must not count as a second call: the values of
/// `State` weights (BatchNormalization's moving statistics, a custom layer's counters) are saved
/// before it and restored after it, so a BN layer called twice in training updates its moving
/// statistics twice, once per real call, as in Keras. The price is one extra forward pass per
/// call of a shared layer except the last one, and only when a backward pass goes through it.
struct Replay {
    inputs: Vec<Tensor>,
    mode: Mode,
    keep_inputs_grad: Vec<bool>,
    seed: u64,
}

/// Whether a model was made as a chain (`Sequential`) or as a graph (`Functional`). It changes the
/// class name, whether `layers()` lists the input layer, and the summary's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Sequential,
    Functional,
}

/// A neural network: layers wired as a directed acyclic graph. Build one with
/// [`Sequential`](crate::Sequential) or [`Functional`](crate::Functional).
///
/// A model is itself a [`Layer`], so models nest; `set_trainable` on a model reaches every layer
/// inside it, and a child re-enabled afterwards trains again (Keras 3's rule).
pub struct Model {
    pub(crate) base: LayerBase,
    pub(crate) kind: ModelKind,
    /// In Keras's layer order, which is a topological order.
    pub(crate) nodes: Vec<Node>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    /// Set by `compile`.
    pub(crate) compiled: Option<crate::training::Compiled>,
    /// Set by a callback to end `fit` early, with the reason.
    pub(crate) stop_reason: Option<String>,
    /// Per node: whether the last forward pass planned a backward pass through it.
    plan: Vec<bool>,
    /// Names of the layers that ran backward in the last backward pass, in order.
    pub(crate) backward_profile: Vec<String>,
    /// Whether `run_forward` may fuse Conv2D -> BatchNormalization -> activation chains.
    fuse: bool,
    /// Names of the convolutions the last forward pass ran fused (nested models' included).
    last_fused: Vec<String>,
    /// A custom training step (`set_train_step`), run by `fit` instead of the default one.
    pub(crate) train_step: Option<Box<dyn crate::training::TrainStep>>,
    /// Calls beyond each layer's first one (shared layers), in the order they were made; see
    /// [`Node`] for call ids.
    pub(crate) extra_calls: Vec<Call>,
    /// Calls made with an explicit `training=` argument (Keras's `base(x, training=False)`),
    /// by call id: such a call runs in that mode whatever mode the model runs in.
    pub(crate) training_args: Vec<(usize, bool)>,
    /// The order the calls run in when there are extra calls (Keras's nodes by decreasing depth);
    /// empty when there are none, and then calls run in layer order.
    pub(crate) exec_order: Vec<usize>,
    /// Per call of a shared layer planned for backward in the last forward pass: what a replay
    /// needs (see [`Replay`]).
    replays: Vec<Option<Replay>>,
    /// Per layer: the call whose cache the layer holds now.
    cache_owner: Vec<Option<usize>>,
    /// Keras masks of the outputs of the last forward pass (models/masking.rs).
    pub(crate) output_masks: Vec<Option<Vec<bool>>>,
}

impl Model {
    pub(crate) fn from_parts(
        name: String,
        kind: ModelKind,
        nodes: Vec<Node>,
        inputs: Vec<usize>,
        outputs: Vec<usize>,
    ) -> Model {
        let mut base = LayerBase::with_name(&name);
        base.built = true;
        Model {
            base,
            kind,
            plan: vec![false; nodes.len()],
            nodes,
            inputs,
            outputs,
            compiled: None,
            stop_reason: None,
            backward_profile: Vec::new(),
            fuse: true,
            last_fused: Vec::new(),
            train_step: None,
            extra_calls: Vec::new(),
            training_args: Vec::new(),
            exec_order: Vec::new(),
            replays: Vec::new(),
            cache_owner: Vec::new(),
            output_masks: Vec::new(),
        }
    }

    /// Number of calls (every layer's first call plus the extra calls of shared layers).
    pub(crate) fn call_count(&self) -> usize {
        self.nodes.len() + self.extra_calls.len()
    }

    /// The layer (index into `nodes`) that call `c` calls.
    pub(crate) fn call_layer(&self, c: usize) -> usize {
        match c.checked_sub(self.nodes.len()) {
            None => c,
            Some(k) => self.extra_calls[k].layer,
        }
    }

    /// The call ids feeding call `c`.
    pub(crate) fn call_inbound(&self, c: usize) -> &[usize] {
        match c.checked_sub(self.nodes.len()) {
            None => &self.nodes[c].inbound,
            Some(k) => &self.extra_calls[k].inbound,
        }
    }

    /// The per-sample output shape of call `c`.
    pub(crate) fn call_output_shape(&self, c: usize) -> &Shape {
        match c.checked_sub(self.nodes.len()) {
            None => &self.nodes[c].output_shape,
            Some(k) => &self.extra_calls[k].output_shape,
        }
    }

    /// Keras's node index of call `c`: 0 for a layer's first call, then 1, 2, ... in the order
    /// the calls were made.
    pub(crate) fn call_node_index(&self, c: usize) -> usize {
        match c.checked_sub(self.nodes.len()) {
            None => 0,
            Some(k) => {
                let layer = self.extra_calls[k].layer;
                1 + self.extra_calls[..k]
                    .iter()
                    .filter(|e| e.layer == layer)
                    .count()
            }
        }
    }

    /// The calls of layer `layer`, by node index.
    pub(crate) fn calls_of(&self, layer: usize) -> Vec<usize> {
        let n = self.nodes.len();
        std::iter::once(layer)
            .chain(
                self.extra_calls
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.layer == layer)
                    .map(|(k, _)| n + k),
            )
            .collect()
    }

    /// The `training=` argument call `c` was made with, if any.
    pub(crate) fn call_training(&self, c: usize) -> Option<bool> {
        self.training_args
            .iter()
            .find(|(i, _)| *i == c)
            .map(|&(_, t)| t)
    }

    /// The mode call `c` runs in when the model runs in `mode`.
    pub(crate) fn call_mode(&self, c: usize, mode: Mode) -> Mode {
        match self.call_training(c) {
            Some(true) => Mode::Train,
            Some(false) => Mode::Infer,
            None => mode,
        }
    }

    /// The order the calls run in: a topological order of the call graph.
    fn execution_order(&self) -> Vec<usize> {
        if self.extra_calls.is_empty() {
            (0..self.nodes.len()).collect()
        } else {
            self.exec_order.clone()
        }
    }

    /// Names of the convolutions that the last forward pass ran with a fused BatchNormalization
    /// (and activation), and of the BatchNormalizations it ran with a fused ReLU, nested models'
    /// included, in execution order. See [`set_fusion`](Self::set_fusion).
    pub fn last_fused_layers(&self) -> &[String] {
        &self.last_fused
    }

    /// Turns the executor's convolution fusion on (the default) or off, here and in nested models.
    ///
    /// With fusion on, a `Conv2D` whose only consumer is a `BatchNormalization` that normalises
    /// with its moving statistics (inference, or a frozen BN inside `fit`, as in Keras 3),
    /// optionally followed by the BN's only consumer, an `Activation` or `ReLU`, runs as one
    /// convolution whose output pass applies bias, the BN's scale/shift and the activation,
    /// whenever no backward pass goes through those layers. The fused pass performs the same f32
    /// operations in the same order, so its results are bit-identical; turning it off runs every
    /// layer separately (for per-layer profiling, or to check that claim).
    ///
    /// A `BatchNormalization` outside such a chain whose only consumer is a plain ReLU
    /// (`Activation("relu")` or `ReLU()`) applies it in its own passes, in training too: the
    /// forward pass writes the ReLU's output directly, and the backward pass multiplies the
    /// gradient by the ReLU's derivative inside the BN's own loops, recomputed from the BN's
    /// input, so the ReLU keeps nothing. Also bit-identical.
    ///
    /// One exception: when such a chain's convolution is pointwise and linear (1x1, stride 1, no
    /// activation of its own, fewer filters than input channels) and its input is an
    /// `AveragePooling2D` with stride 1 and `same` padding that feeds nothing else (InceptionV3's
    /// pool branches), the pooling runs after the convolution, over its fewer channels. Both
    /// orders compute the same weighted sums of the same inputs, so the results agree to f32
    /// rounding (about 1e-7 relative), not bit for bit.
    pub fn set_fusion(&mut self, enabled: bool) {
        self.fuse = enabled;
        for n in &mut self.nodes {
            if let Some(m) = n.layer.as_model_mut() {
                m.set_fusion(enabled);
            }
        }
    }

    /// Per node, the nodes that take its value as an input.
    fn consumers(&self) -> Vec<Vec<usize>> {
        let mut consumers = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &j in &node.inbound {
                consumers[j].push(i);
            }
        }
        consumers
    }

    /// The fusable chains for one forward pass, decided from the current flags and mode every
    /// call, so a BN that trains again (or a layer that needs a backward pass) is simply not fused:
    /// nothing is cached that could go stale.
    pub(crate) fn plan_fusion(&self, mode: Mode, plan: &[bool]) -> Vec<Chain> {
        // Fusion is planned on layer indices; a graph with shared layers runs unfused (its nested
        // models still fuse inside).
        if !self.fuse || !self.extra_calls.is_empty() {
            return Vec::new();
        }
        let n = self.nodes.len();
        let consumers = self.consumers();
        let is_output = |i: usize| self.outputs.contains(&i);
        // The single consumer of node i, if it is its only use (not a model output either).
        let sole = |i: usize| match consumers[i][..] {
            [j] if !is_output(i) && self.nodes[j].inbound.len() == 1 => Some(j),
            _ => None,
        };
        let any = |i: usize| self.nodes[i].layer.as_any();
        // A fused node's output is never formed, so a node with an activity penalty is not fused.
        let plain = |i: usize| self.nodes[i].layer.base().rules.activity.is_none();
        let any = |i: usize| any(i).filter(|_| plain(i));
        let mut out = Vec::new();
        for i in 0..n {
            if plan[i] || !any(i).is_some_and(|a| a.is::<Conv2D>()) {
                continue;
            }
            let Some(bn) = sole(i) else { continue };
            let bn_ok = !plan[bn]
                && any(bn)
                    .and_then(|a| a.downcast_ref::<BatchNormalization>())
                    .is_some_and(|b| b.uses_moving_stats(self.call_mode(bn, mode)));
            if !bn_ok {
                continue;
            }
            let act = sole(bn).filter(|&k| {
                !plan[k] && any(k).is_some_and(|a| a.is::<Activation>() || a.is::<ReLU>())
            });
            // Average pooling, then a pointwise linear map (InceptionV3's pool branches: 3x3
            // pooling of 192-2048 channels, then 1x1 to 32-192 filters) equals that map, then
            // the pooling: each output is the same weighted sum of the window's inputs, added
            // in another order. Pooling the convolution's output handles 4-11x fewer values.
            let channels = |k: usize| self.nodes[k].output_shape.last().copied().flatten();
            let pool = Some(self.nodes[i].inbound[0]).filter(|&p| {
                !plan[p]
                    && sole(p) == Some(i)
                    && any(p)
                        .and_then(|a| a.downcast_ref::<AveragePooling2D>())
                        .is_some_and(AveragePooling2D::keeps_size)
                    && any(i)
                        .and_then(|a| a.downcast_ref::<Conv2D>())
                        .is_some_and(Conv2D::is_pointwise_linear)
                    && matches!((channels(i), channels(p)), (Some(f), Some(c)) if f < c)
            });
            out.push(Chain {
                pool,
                conv: i,
                bn,
                act,
            });
        }
        out
    }

    /// The BatchNormalizations (outside `chains`) whose only consumer is a plain ReLU, which the
    /// BN then applies in its own passes, forward and backward (training mode included: the
    /// ReLU's backward becomes the identity and the BN gates its gradient). Bit-identical to
    /// running the two layers. Returns `(bn, relu)` node indices.
    ///
    /// Not with shared layers (planned on layer indices, as [`plan_fusion`](Self::plan_fusion))
    /// nor with Keras masks (computed from each node's own value, which a fused BN never forms).
    pub(crate) fn plan_relu_fusion(&self, chains: &[Chain]) -> Vec<(usize, usize)> {
        if !self.fuse || !self.extra_calls.is_empty() || super::masking::has_mask_source(self) {
            return Vec::new();
        }
        let n = self.nodes.len();
        let consumers = self.consumers();
        let mut in_chain = vec![false; n];
        for k in chains.iter().flat_map(Chain::nodes) {
            in_chain[k] = true;
        }
        let plain = |i: usize| !in_chain[i] && self.nodes[i].layer.base().rules.activity.is_none();
        (0..n)
            .filter(|&i| {
                plain(i)
                    && self.nodes[i]
                        .layer
                        .as_any()
                        .is_some_and(|a| a.is::<BatchNormalization>())
            })
            .filter_map(|bn| match consumers[bn][..] {
                [k] if !self.outputs.contains(&bn)
                    && self.nodes[k].inbound.len() == 1
                    && plain(k)
                    && fused_relu_form(self.nodes[k].layer.as_ref()).is_some() =>
                {
                    Some((bn, k))
                }
                _ => None,
            })
            .collect()
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The index of the first node `layers()` lists: a Sequential hides its input layer.
    fn first_listed(&self) -> usize {
        match self.kind {
            ModelKind::Sequential => self.inputs.len(),
            ModelKind::Functional => 0,
        }
    }

    /// The model's layers in Keras's order (`model.layers`): a Functional model lists its
    /// `InputLayer`s, a Sequential model does not.
    pub fn layers(&self) -> Vec<&dyn Layer> {
        self.nodes[self.first_listed()..]
            .iter()
            .map(|n| n.layer.as_ref())
            .collect()
    }

    /// Number of entries in [`layers`](Self::layers).
    pub fn len(&self) -> usize {
        self.nodes.len() - self.first_listed()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `model.layers[index]`.
    pub fn layer(&self, index: usize) -> Result<&dyn Layer> {
        let i = self.node_index(index)?;
        Ok(self.nodes[i].layer.as_ref())
    }
    /// `model.layers[index]`, to change it (e.g. `set_trainable`).
    pub fn layer_mut(&mut self, index: usize) -> Result<&mut dyn Layer> {
        let i = self.node_index(index)?;
        Ok(self.nodes[i].layer.as_mut())
    }

    fn node_index(&self, index: usize) -> Result<usize> {
        if index >= self.len() {
            return Err(Error::LayerIndex {
                model: self.base.name.clone(),
                index,
                len: self.len(),
            });
        }
        Ok(index + self.first_listed())
    }

    fn find(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.layer.name() == name)
            .ok_or_else(|| Error::UnknownLayer {
                model: self.base.name.clone(),
                name: name.to_string(),
            })
    }

    /// The layer called `name`.
    pub fn get_layer(&self, name: &str) -> Result<&dyn Layer> {
        Ok(self.nodes[self.find(name)?].layer.as_ref())
    }
    pub fn get_layer_mut(&mut self, name: &str) -> Result<&mut dyn Layer> {
        let i = self.find(name)?;
        Ok(self.nodes[i].layer.as_mut())
    }

    /// Freezes (`false`) or unfreezes the layers `layers()[range]`, the classic fine-tuning recipe
    /// (`for layer in model.layers[:249]: layer.trainable = False`).
    pub fn set_trainable_range(
        &mut self,
        range: std::ops::Range<usize>,
        trainable: bool,
    ) -> Result<()> {
        if range.end > self.len() {
            return Err(Error::LayerIndex {
                model: self.base.name.clone(),
                index: range.end,
                len: self.len(),
            });
        }
        let first = self.first_listed();
        for n in &mut self.nodes[first + range.start..first + range.end] {
            n.layer.set_trainable(trainable);
        }
        Ok(())
    }

    /// Per-sample input shapes.
    pub fn input_shapes(&self) -> Vec<Shape> {
        self.inputs
            .iter()
            .map(|&i| self.nodes[i].output_shape.clone())
            .collect()
    }
    /// Per-sample output shapes.
    pub fn output_shapes(&self) -> Vec<Shape> {
        self.outputs
            .iter()
            .map(|&i| self.call_output_shape(i).clone())
            .collect()
    }

    /// Names of the layers that computed anything in the last backward pass, in execution order
    /// (nested models' layers included). A frozen prefix never appears.
    pub fn last_backward_profile(&self) -> &[String] {
        &self.backward_profile
    }

    /// Checks a batch of inputs against the model's input shapes.
    fn check_inputs(&self, xs: &[&Tensor]) -> Result<()> {
        if xs.len() != self.inputs.len() {
            return Err(Error::InvalidConfig(format!(
                "model '{}' has {} input(s), got {}",
                self.base.name,
                self.inputs.len(),
                xs.len()
            )));
        }
        for (&i, x) in self.inputs.iter().zip(xs) {
            let want = &self.nodes[i].output_shape;
            let dims = x.shape();
            let ok = dims.len() == want.len() + 1
                && want
                    .iter()
                    .zip(&dims[1..])
                    .all(|(w, d)| w.is_none_or(|w| w == *d));
            if !ok {
                return Err(Error::IncompatibleShape {
                    layer: self.nodes[i].layer.name().to_string(),
                    expected: fmt_batch_shape(want),
                    got: crate::error::fmt_dims(dims),
                });
            }
        }
        Ok(())
    }

    /// Runs the graph. With `keep`, plans a backward pass: a node keeps its activations only if
    /// some node at or upstream of it has trainable weights (or an input that needs a gradient),
    /// so a frozen prefix runs forward only and keeps nothing.
    ///
    /// Works on calls (see [`Node`]): a shared layer runs once per call, and for each of its
    /// calls planned for backward the executor keeps a [`Replay`].
    ///
    /// Public (with [`run_backward`](Self::run_backward) and
    /// [`clear_caches`](Self::clear_caches)) so that custom training loops run exactly the
    /// passes `fit` runs; inside `fit`, a custom [`TrainStep`](crate::training::TrainStep) gets
    /// them through its [`StepContext`](crate::training::StepContext). `rng` seeds each layer's
    /// randomness (Dropout) in node order; `input_needs_grad` asks for input gradients.
    pub fn run_forward(
        &mut self,
        xs: &[&Tensor],
        mode: Mode,
        keep: bool,
        input_needs_grad: &[bool],
        rng: &mut SmallRng,
    ) -> Result<Vec<Tensor>> {
        self.run_forward_cut(xs, mode, keep, input_needs_grad, rng, None)
    }

    /// [`run_forward`](Self::run_forward) with `fit`'s frozen-prefix cache
    /// (`training/prefix_cache.rs`): `cut` either captures the frontier node's output or
    /// supplies it, skipping every node up to it (each still draws its random seed).
    pub(crate) fn run_forward_cut(
        &mut self,
        xs: &[&Tensor],
        mode: Mode,
        keep: bool,
        input_needs_grad: &[bool],
        rng: &mut SmallRng,
        cut: Option<&mut crate::training::Cut>,
    ) -> Result<Vec<Tensor>> {
        crate::tensor::isa::on_worker(|| {
            self.run_forward_here(xs, mode, keep, input_needs_grad, rng, cut)
        })
    }

    /// [`run_forward_cut`](Self::run_forward_cut) on the calling thread.
    fn run_forward_here(
        &mut self,
        xs: &[&Tensor],
        mode: Mode,
        keep: bool,
        input_needs_grad: &[bool],
        rng: &mut SmallRng,
        mut cut: Option<&mut crate::training::Cut>,
    ) -> Result<Vec<Tensor>> {
        self.check_inputs(xs)?;
        let n = self.call_count();
        let order = self.execution_order();
        let shared = self.shared_layers();
        let mut plan = vec![false; n];
        for &i in &order {
            let layer = &self.nodes[self.call_layer(i)].layer;
            plan[i] = keep
                && (match self.inputs.iter().position(|&k| k == i) {
                    Some(k) => input_needs_grad.get(k).copied().unwrap_or(false),
                    None => false,
                } || (layer.weights().iter().any(|w| w.is_trainable()))
                    || self.call_inbound(i).iter().any(|&j| plan[j]));
        }
        // Consumers left per node, so activations are freed as soon as nobody needs them.
        let mut remaining = vec![0usize; n];
        for &i in &order {
            for &j in self.call_inbound(i) {
                remaining[j] += 1;
            }
        }
        for &o in &self.outputs {
            remaining[o] += 1;
        }
        let mut values: Vec<Option<Tensor>> = vec![None; n];
        for (k, &i) in self.inputs.iter().enumerate() {
            values[i] = Some(xs[k].clone());
        }
        // Fused chains: the convolution's node computes the last node's value; the nodes in
        // between never run (their values would only feed the next node of the chain).
        self.last_fused.clear();
        let mut fused_at: Vec<Option<Chain>> = vec![None; n];
        let mut skip = vec![false; n];
        let chains = self.plan_fusion(mode, &plan);
        for &chain in &chains {
            if cut
                .as_ref()
                .is_some_and(|c| c.splits(chain.first(), chain.last()))
            {
                continue;
            }
            fused_at[chain.conv] = Some(chain);
            for k in chain.skipped() {
                skip[k] = true;
            }
        }
        // BatchNormalization nodes that run their ReLU consumer too, and write its value.
        let mut relu_at: Vec<Option<usize>> = vec![None; n];
        for (bn, k) in self.plan_relu_fusion(&chains) {
            if !cut.as_ref().is_some_and(|c| c.splits(bn, k)) {
                relu_at[bn] = Some(k);
                skip[k] = true;
            }
        }
        if let Some(c) = cut.as_deref() {
            remaining[c.node] += 1; // kept for the capture (or supplied by it)
        }
        self.replays = (0..n).map(|_| None).collect();
        self.cache_owner = vec![None; self.nodes.len()];
        // Keras masks beside the values, only in models with a mask source.
        let mut masks: Option<Vec<super::masking::Mask>> =
            super::masking::has_mask_source(self).then(|| vec![None; n]);
        // No masks, no shared layers (whose calls' caches are replayed): independent branches
        // may run side by side (models/parallel.rs).
        if masks.is_none()
            && cut.is_none()
            && self.extra_calls.is_empty()
            && rayon::current_num_threads() > 1
        {
            let mut tasks: Vec<Task> = order
                .iter()
                .filter(|&&i| !self.inputs.contains(&i) && !skip[i])
                .map(|&i| match fused_at[i] {
                    Some(chain) => Task {
                        node: i,
                        fused: Some(chain),
                        relu: None,
                        inputs: vec![self.nodes[chain.first()].inbound[0]],
                        output: chain.last(),
                        mode,
                        keep: false,
                        seed: 0,
                    },
                    None => Task {
                        node: i,
                        fused: None,
                        relu: relu_at[i],
                        inputs: self.call_inbound(i).to_vec(),
                        output: relu_at[i].unwrap_or(i),
                        mode: self.call_mode(i, mode),
                        keep: plan[i],
                        seed: 0,
                    },
                })
                .collect();
            if super::parallel::has_branches(tasks.iter().map(|t| &t.inputs), n) {
                // The seeds the sequential loop below draws: one per node in order, whether it
                // runs, is fused or is skipped.
                let mut next = tasks.iter_mut().peekable();
                for &i in order.iter().filter(|i| !self.inputs.contains(i)) {
                    let seed: u64 = rand::Rng::random(rng);
                    if let Some(t) = next.next_if(|t| t.node == i) {
                        t.seed = seed;
                    }
                }
                let done =
                    super::parallel::run(&mut self.nodes, &tasks, &plan, values, &self.outputs)?;
                self.last_fused = done.fused_names;
                for t in tasks.iter().filter(|t| t.fused.is_none()) {
                    self.cache_owner[t.node] = Some(t.node);
                }
                self.plan = plan;
                self.output_masks = Vec::new();
                return Ok(self
                    .outputs
                    .iter()
                    .map(|&o| done.values[o].clone().expect("outputs are kept"))
                    .collect());
            }
        }
        for &i in &order {
            if self.inputs.contains(&i) {
                continue;
            }
            if let Some(ms) = masks.as_mut() {
                super::masking::before_call(self, i, ms, mode)?;
                ms[i] = super::masking::after_call(self, i, ms, &values, false)?;
            }
            if let Some(c) = cut
                .as_deref_mut()
                .filter(|c| c.resume.is_some() && i <= c.node)
            {
                let _: u64 = rand::Rng::random(rng);
                if i == c.node {
                    values[i] = c.resume.take();
                }
                continue;
            }
            if skip[i] || fused_at[i].is_some() {
                // Draw the seed the node's own forward pass would have drawn, so layers after a
                // fused chain (Dropout) see the same random stream as without fusion.
                let _: u64 = rand::Rng::random(rng);
            }
            if skip[i] {
                continue;
            }
            if let Some(chain) = fused_at[i] {
                let j = self.nodes[chain.first()].inbound[0];
                let y = {
                    let x = values[j].as_ref().expect("topological order");
                    run_fused(x, &chain, &mut chain_nodes(&mut self.nodes, &chain))?
                };
                self.last_fused.push(self.nodes[i].layer.name().to_string());
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    values[j] = None;
                }
                values[chain.last()] = Some(y);
                continue;
            }
            let inbound = self.call_inbound(i).to_vec();
            let l = self.call_layer(i);
            let seed: u64 = rand::Rng::random(rng);
            let call_mode = self.call_mode(i, mode);
            let mut ctx = ForwardCtx {
                mode: call_mode,
                keep: plan[i],
                input_needs_grad: inbound.iter().map(|&j| plan[j]).collect(),
                rng: rand::SeedableRng::seed_from_u64(seed),
            };
            let y = {
                let args: Vec<&Tensor> = inbound
                    .iter()
                    .map(|&j| values[j].as_ref().expect("topological order"))
                    .collect();
                if shared[l] {
                    self.rebuild_for_call(i)?;
                    if plan[i] {
                        self.replays[i] = Some(Replay {
                            inputs: args.iter().map(|&t| t.clone()).collect(),
                            mode: call_mode,
                            keep_inputs_grad: ctx.input_needs_grad.clone(),
                            seed,
                        });
                    }
                }
                match relu_at[i] {
                    Some(k) => {
                        self.last_fused.push(self.nodes[i].layer.name().to_string());
                        let [bn, act] = self.nodes.get_disjoint_mut([i, k]).expect("a pair");
                        run_bn_relu(bn, act, args[0], &mut ctx)?
                    }
                    None => self.nodes[l].layer.forward(&args, &mut ctx)?,
                }
            };
            self.cache_owner[l] = Some(i);
            if let Some(m) = self.nodes[l].layer.as_model() {
                self.last_fused.extend(m.last_fused.iter().cloned());
            }
            crate::regularizers::record_activity(self.nodes[l].layer.as_mut(), &y, plan[i])?;
            for &j in &inbound {
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    values[j] = None;
                }
            }
            values[relu_at[i].unwrap_or(i)] = Some(y);
            if let Some(ms) = masks.as_mut() {
                ms[i] = super::masking::after_call(self, i, ms, &values, true)?;
            }
        }
        self.plan = plan;
        self.output_masks = match masks {
            Some(ms) => self
                .outputs
                .iter()
                .map(|&o| ms[o].as_deref().cloned())
                .collect(),
            None => Vec::new(),
        };
        if let Some(c) = cut {
            c.captured = values[c.node].take();
        }
        Ok(self
            .outputs
            .iter()
            .map(|&o| values[o].clone().expect("outputs are kept"))
            .collect())
    }

    /// Per layer, whether it is called more than once.
    fn shared_layers(&self) -> Vec<bool> {
        let mut shared = vec![false; self.nodes.len()];
        for e in &self.extra_calls {
            shared[e.layer] = true;
        }
        shared
    }

    /// A layer built for one call's input shapes checks its inputs against them at run time; when
    /// a shared layer's calls have different (compatible) shapes, it is built again for each
    /// call's shapes before that call runs (building a built layer creates no weights).
    fn rebuild_for_call(&mut self, c: usize) -> Result<()> {
        let l = self.call_layer(c);
        let shapes_of = |m: &Model, c: usize| -> Vec<Shape> {
            m.call_inbound(c)
                .iter()
                .map(|&j| m.call_output_shape(j).clone())
                .collect()
        };
        let mine = shapes_of(self, c);
        if self
            .calls_of(l)
            .iter()
            .all(|&other| shapes_of(self, other) == mine)
        {
            return Ok(());
        }
        self.nodes[l].layer.build(&mine)?;
        Ok(())
    }

    /// Runs call `c` of a shared layer forward again from its [`Replay`], so that the layer holds
    /// that call's cache; `State` weights are restored afterwards.
    fn replay(&mut self, c: usize) -> Result<()> {
        let l = self.call_layer(c);
        let r = self.replays[c].take().ok_or_else(|| {
            Error::State(format!(
                "layer '{}': backward of call {} without a forward pass that kept it",
                self.nodes[l].layer.name(),
                self.call_node_index(c)
            ))
        })?;
        self.rebuild_for_call(c)?;
        let layer = &mut self.nodes[l].layer;
        let state: Vec<Option<Tensor>> = layer
            .weights()
            .iter()
            .map(|w| (w.kind() == WeightKind::State).then(|| w.value().clone()))
            .collect();
        let mut ctx = ForwardCtx {
            mode: r.mode,
            keep: true,
            input_needs_grad: r.keep_inputs_grad,
            rng: rand::SeedableRng::seed_from_u64(r.seed),
        };
        let args: Vec<&Tensor> = r.inputs.iter().collect();
        layer.forward(&args, &mut ctx)?;
        for (w, v) in layer.weights_mut().into_iter().zip(state) {
            if let Some(v) = v {
                w.assign(v)?;
            }
        }
        self.cache_owner[l] = Some(c);
        Ok(())
    }

    /// Backpropagates output gradients through the nodes planned by the last `run_forward`.
    /// Returns the gradient for each model input that needed one. Weight gradients are left on
    /// the trainable weights ([`Weight::grad`]); public for custom training loops, see
    /// [`run_forward`](Self::run_forward).
    ///
    /// A shared layer's weight gradients are the sum over its calls: each call's backward stores
    /// its own gradients, which are added to those of the calls already done.
    pub fn run_backward(&mut self, grads: Vec<Tensor>) -> Result<Vec<Option<Tensor>>> {
        let n = self.call_count();
        let shared = self.shared_layers();
        // No shared layers (whose calls replay caches): independent branches may run side by
        // side (models/parallel.rs), bit-identical to the loop below.
        if self.extra_calls.is_empty() && rayon::current_num_threads() > 1 {
            let tasks: Vec<BackTask> = self
                .execution_order()
                .into_iter()
                .rev()
                .filter(|&i| self.plan[i] && !self.inputs.contains(&i))
                .map(|i| {
                    let inbound = self.call_inbound(i).to_vec();
                    let need = inbound.iter().map(|&j| self.plan[j]).collect();
                    BackTask {
                        node: i,
                        inbound,
                        need,
                    }
                })
                .collect();
            if super::parallel::has_branches(tasks.iter().map(|t| &t.inbound), n) {
                let seeds = self.outputs.iter().copied().zip(grads).collect();
                let (mut sums, names) =
                    super::parallel::backward(&mut self.nodes, &tasks, &self.plan, seeds)?;
                self.backward_profile = names;
                return Ok(self.inputs.iter().map(|&i| sums[i].take()).collect());
            }
        }
        let mut started = vec![false; self.nodes.len()];
        let mut acc: Vec<Option<Tensor>> = vec![None; n];
        for (&o, g) in self.outputs.iter().zip(grads) {
            accumulate(&mut acc[o], g)?;
        }
        self.backward_profile.clear();
        for &i in self.execution_order().iter().rev() {
            if !self.plan[i] || self.inputs.contains(&i) {
                continue;
            }
            let l = self.call_layer(i);
            let layer = self.nodes[l].layer.as_mut();
            if let Some(g) = crate::regularizers::take_activity_grad(layer) {
                accumulate(&mut acc[i], g)?;
            }
            let Some(g) = acc[i].take() else { continue };
            let inbound = self.call_inbound(i).to_vec();
            let need: Vec<bool> = inbound.iter().map(|&j| self.plan[j]).collect();
            let l = self.call_layer(i);
            let mut earlier: Vec<Option<Tensor>> = Vec::new();
            if shared[l] {
                if self.cache_owner[l] != Some(i) {
                    self.replay(i)?;
                }
                // The gradients of this layer's calls already back-propagated in this pass.
                earlier = self.nodes[l]
                    .layer
                    .weights_mut()
                    .into_iter()
                    .map(|w| {
                        if started[l] {
                            w.grad.take()
                        } else {
                            w.grad = None;
                            None
                        }
                    })
                    .collect();
                started[l] = true;
            }
            let node = &mut self.nodes[l];
            let dxs = node.layer.backward(&g, &need)?;
            if shared[l] {
                self.cache_owner[l] = None;
                self.replays[i] = None;
                for (w, e) in node.layer.weights_mut().into_iter().zip(earlier) {
                    if let Some(e) = e {
                        match w.grad.as_mut() {
                            Some(g) => g.add_assign(&e)?,
                            None => w.grad = Some(e),
                        }
                    }
                }
            }
            match node.layer.as_model() {
                Some(m) => self
                    .backward_profile
                    .extend(m.backward_profile.iter().cloned()),
                None => self.backward_profile.push(node.layer.name().to_string()),
            }
            for (&j, dx) in inbound.iter().zip(dxs) {
                if let Some(dx) = dx {
                    if self.plan[j] {
                        accumulate(&mut acc[j], dx)?;
                    }
                }
            }
        }
        Ok(self.inputs.iter().map(|&i| acc[i].take()).collect())
    }

    /// Drops every activation kept for backward (a custom loop calls it after each step).
    pub fn clear_caches(&mut self) {
        for n in &mut self.nodes {
            n.layer.clear_cache();
        }
        self.replays.clear();
        self.cache_owner.clear();
    }

    /// Runs the model on one batch in inference mode.
    pub fn call(&mut self, x: &Tensor) -> Result<Tensor> {
        let mut rng = crate::tensor::random::rng(Some(0));
        let mut out = self.run_forward(&[x], Mode::Infer, false, &[], &mut rng)?;
        Ok(out.remove(0))
    }

    /// Predicts in batches of `batch_size` (inference mode: Dropout off, BN on moving statistics).
    /// `None` means Keras's default of 32: `predict(&x, 64)` and `predict(&x, None)` both work.
    pub fn predict(&mut self, x: &Tensor, batch_size: impl Into<Option<usize>>) -> Result<Tensor> {
        let batch_size = batch_size
            .into()
            .unwrap_or(crate::training::DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
        }
        if x.shape().is_empty() || x.batch() == 0 {
            return Err(Error::Data("predict got an empty data set".into()));
        }
        let mut parts = Vec::new();
        let n = x.batch();
        let mut start = 0;
        while start < n {
            let end = (start + batch_size).min(n);
            parts.push(self.call(&x.slice_batch(start, end))?);
            start = end;
        }
        Tensor::concat_batch(&parts)
    }

    /// Sets every weight from arrays in Keras's `get_weights()` order.
    pub fn set_weights(&mut self, values: Vec<Tensor>) -> Result<()> {
        Layer::set_weights(self, values)
    }
    /// All weight values in Keras's `get_weights()` order.
    pub fn get_weights(&self) -> Vec<Tensor> {
        Layer::get_weights(self)
    }

    /// Every weight with its Keras 3 path (`dense/kernel`; nested: `base/conv/kernel`).
    pub fn named_weights(&self) -> Vec<(String, &Weight)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            match n.layer.as_model() {
                Some(m) => out.extend(
                    m.named_weights()
                        .into_iter()
                        .map(|(p, w)| (format!("{}/{p}", m.name()), w)),
                ),
                None => out.extend(
                    n.layer
                        .weights()
                        .into_iter()
                        .map(|w| (format!("{}/{}", n.layer.name(), w.name()), w)),
                ),
            }
        }
        out
    }

    pub(crate) fn listed_nodes(&self) -> std::ops::Range<usize> {
        self.first_listed()..self.nodes.len()
    }
}

pub(super) fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    match slot {
        Some(acc) => acc.add_assign(&g)?,
        None => *slot = Some(g),
    }
    Ok(())
}

impl Layer for Model {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn mult_adds(&self, _output: &Shape) -> Option<u64> {
        Model::mult_adds(self, 1)
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &str {
        match self.kind {
            ModelKind::Sequential => "Sequential",
            ModelKind::Functional => "Functional",
        }
    }

    fn build(&mut self, inputs: &[Shape]) -> Result<Shape> {
        let want = self.input_shapes();
        if inputs.len() != want.len() {
            return Err(Error::InvalidConfig(format!(
                "model '{}' has {} input(s), got {}",
                self.base.name,
                want.len(),
                inputs.len()
            )));
        }
        for (w, g) in want.iter().zip(inputs) {
            let ok = w.len() == g.len() && w.iter().zip(g).all(|(a, b)| a.is_none() || a == b);
            if !ok {
                return Err(Error::IncompatibleShape {
                    layer: self.base.name.clone(),
                    expected: fmt_batch_shape(w),
                    got: fmt_batch_shape(g),
                });
            }
        }
        let outs = self.output_shapes();
        if outs.len() != 1 {
            return Err(Error::InvalidConfig(format!(
                "model '{}' has {} outputs; only single-output models can be used as layers",
                self.base.name,
                outs.len()
            )));
        }
        Ok(outs[0].clone())
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: &mut ForwardCtx) -> Result<Tensor> {
        let need = ctx.input_needs_grad.clone();
        let mut out = self.run_forward(inputs, ctx.mode, ctx.keep, &need, &mut ctx.rng)?;
        Ok(out.remove(0))
    }

    fn backward(&mut self, grad: &Tensor, _need_dx: &[bool]) -> Result<Vec<Option<Tensor>>> {
        self.run_backward(vec![grad.clone()])
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({"name": self.base.name, "trainable": self.base.trainable})
    }

    fn clear_cache(&mut self) {
        self.clear_caches();
    }

    /// Keras 3: sets the flag on the model, its weights and, recursively, every layer inside.
    fn set_trainable(&mut self, trainable: bool) {
        self.base.trainable = trainable;
        for n in &mut self.nodes {
            n.layer.set_trainable(trainable);
        }
    }

    fn weights(&self) -> Vec<&Weight> {
        self.nodes.iter().flat_map(|n| n.layer.weights()).collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.nodes
            .iter_mut()
            .flat_map(|n| n.layer.weights_mut())
            .collect()
    }

    fn as_model(&self) -> Option<&Model> {
        Some(self)
    }

    /// Checks count and every shape first (naming weights by their Keras paths), so a failed call
    /// changes nothing.
    fn set_weights(&mut self, values: Vec<Tensor>) -> Result<()> {
        let named = self.named_weights();
        if named.len() != values.len() {
            return Err(Error::WeightCount {
                target: format!("model '{}'", self.base.name),
                expected: named.len(),
                got: values.len(),
            });
        }
        for ((path, w), v) in named.iter().zip(&values) {
            if w.shape() != v.shape() {
                return Err(Error::WeightShape {
                    weight: path.clone(),
                    expected: crate::error::fmt_dims(w.shape()),
                    got: crate::error::fmt_dims(v.shape()),
                });
            }
        }
        for (w, v) in self.weights_mut().into_iter().zip(values) {
            w.assign(v)?;
        }
        Ok(())
    }
    fn as_model_mut(&mut self) -> Option<&mut Model> {
        Some(self)
    }
}

/// Runs a fused chain from [`Model::plan_fusion`] on its first node's input `x`; `nodes` are
/// the chain's nodes in [`Chain::nodes`]'s order.
pub(super) fn run_fused(x: &Tensor, chain: &Chain, nodes: &mut [&mut Node]) -> Result<Tensor> {
    let (pool, rest) = match chain.pool {
        Some(_) => nodes
            .split_first_mut()
            .map(|(p, r)| (Some(p), r))
            .expect("a chain"),
        None => (None, nodes),
    };
    let [conv, bn, act @ ..] = rest else {
        unreachable!("a chain has a convolution and a BatchNormalization")
    };
    let act = act.first_mut();
    let bn_layer = bn
        .layer
        .as_any()
        .and_then(|a| a.downcast_ref::<BatchNormalization>())
        .expect("planned");
    let (scale, shift) = bn_layer.inference_affine();
    let filters = scale.len();
    type RowFn = Box<dyn Fn(&mut [f32]) + Sync>;
    // `None` inside: plain relu, which the epilogue runs as its own vectorised step.
    let act_fn: Option<Option<RowFn>> = act.as_ref().map(|k| {
        let a = k.layer.as_any().expect("planned");
        match a.downcast_ref::<Activation>().map(Activation::function) {
            Some(ActivationFn::Relu) => None,
            Some(f) => Some(Box::new(move |v: &mut [f32]| f.apply(v, filters)) as RowFn),
            None => {
                Some(Box::new(a.downcast_ref::<ReLU>().expect("planned").in_place_fn()) as RowFn)
            }
        }
    });
    let mut steps = vec![EpilogueStep::Affine {
        scale: &scale,
        shift: &shift,
    }];
    match &act_fn {
        Some(Some(f)) => steps.push(EpilogueStep::Map(f.as_ref())),
        Some(None) => steps.push(EpilogueStep::Relu),
        None => {}
    }
    bn.layer.clear_cache();
    if let Some(a) = act {
        a.layer.clear_cache();
    }
    let conv_layer = conv
        .layer
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<Conv2D>())
        .expect("planned");
    let Some(pool) = pool else {
        return conv_layer.forward_fused(x, &steps);
    };
    // The convolution (with its bias) first, then the pooling, then the rest of the epilogue.
    let y = conv_layer.forward_fused(x, &[])?;
    let pool_layer = pool
        .layer
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<AveragePooling2D>())
        .expect("planned");
    let mut z = pool_layer.pool(&y)?;
    drop(y);
    crate::tensor::conv::apply_epilogue(z.data_mut(), filters, &steps);
    Ok(z)
}

/// A chain's nodes, as [`run_fused`] takes them.
pub(super) fn chain_nodes<'a>(nodes: &'a mut [Node], chain: &Chain) -> Vec<&'a mut Node> {
    let want: Vec<usize> = chain.nodes().collect();
    let mut found: Vec<(usize, &mut Node)> = nodes
        .iter_mut()
        .enumerate()
        .filter(|(k, _)| want.contains(k))
        .collect();
    found.sort_by_key(|(k, _)| want.iter().position(|w| w == k));
    found.into_iter().map(|(_, n)| n).collect()
}

/// The form in which a BatchNormalization applies `layer`, when it is a ReLU it can fuse (see
/// [`Model::plan_relu_fusion`]).
fn fused_relu_form(layer: &dyn Layer) -> Option<crate::tensor::norm::FusedRelu> {
    let a = layer.as_any()?;
    match a.downcast_ref::<Activation>() {
        Some(act) => act.fused_form(),
        None => a.downcast_ref::<ReLU>()?.fused_form(),
    }
}

/// Runs a BatchNormalization node and the ReLU node that consumes it as one (see
/// [`Model::plan_relu_fusion`]) on the BN's input `x`: returns the ReLU's output.
pub(super) fn run_bn_relu(
    bn: &mut Node,
    act: &mut Node,
    x: &Tensor,
    ctx: &mut ForwardCtx,
) -> Result<Tensor> {
    let form = fused_relu_form(act.layer.as_ref()).expect("planned");
    let keep = ctx.keep;
    let y = bn
        .layer
        .as_any_mut()
        .and_then(|a| a.downcast_mut::<BatchNormalization>())
        .expect("planned")
        .forward_relu(x, ctx, form)?;
    let a = act.layer.as_any_mut().expect("planned");
    match a.downcast_mut::<Activation>() {
        Some(act) => act.pass_through(keep),
        None => a
            .downcast_mut::<ReLU>()
            .expect("planned")
            .pass_through(keep),
    }
    Ok(y)
}
