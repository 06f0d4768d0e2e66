//! The functional API: call layers on symbolic tensors, then make a model from inputs and outputs.

use super::model::{Call, Model, ModelKind, Node};
use crate::error::{Error, Result};
use crate::layers::{naming, InputLayer, Layer, Shape};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_GRAPH: AtomicU64 = AtomicU64::new(1);

/// The output of a layer call in a [`Functional`] graph under construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolicTensor {
    graph: u64,
    node: usize,
}

/// A layer added to a [`Functional`] graph, to call it (again) with [`Functional::apply`]: a
/// shared layer, Keras's `shared = Dense(4); a = shared(x1); b = shared(x2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerHandle {
    graph: u64,
    layer: usize,
}

/// One call of a layer in a graph under construction (Keras's node).
struct GraphCall {
    layer: usize,
    inbound: Vec<usize>,
    output_shape: Shape,
    training: Option<bool>,
}

/// A graph under construction (Keras's functional API).
///
/// Layers are added by calling them on earlier symbolic tensors, so a cycle cannot be built.
/// [`build`](Functional::build) keeps what the outputs depend on and orders the layers exactly as
/// Keras does, so `model.layers()[i]` is Keras's `model.layers[i]`.
///
/// ```
/// use frostnet::{Functional, layers::{Input, Dense, ActivationFn}};
/// let mut g = Functional::new();
/// let x = g.input(Input::new(&[8]));
/// let h = g.call(Dense::new(4).activation(ActivationFn::Relu), &[x])?;
/// let y = g.call(Dense::new(1), &[h])?;
/// let model = g.build(&[x], &[y])?;
/// assert_eq!(model.layers().len(), 3); // input_layer, dense, dense_1
/// # Ok::<(), frostnet::Error>(())
/// ```
///
/// A layer can be called more than once (a shared layer: one set of weights, gradients summed
/// over the calls, Keras's node indices `shared[1][0]` in the summary and the saved config):
///
/// ```
/// use frostnet::{Functional, layers::{Input, Dense, Layer, Subtract}};
/// let mut g = Functional::new();
/// let a = g.input(Input::new(&[5]));
/// let b = g.input(Input::new(&[5]));
/// let shared = g.add(Dense::new(4))?;
/// let ea = g.apply(shared, &[a])?;
/// let eb = g.apply(shared, &[b])?;
/// let d = g.call(Subtract::new(), &[ea, eb])?;
/// let model = g.build(&[a, b], &[d])?;
/// assert_eq!(model.layers().len(), 4); // two inputs, dense, subtract
/// assert_eq!(model.count_params(), 24); // the Dense counted once
/// # Ok::<(), frostnet::Error>(())
/// ```
pub struct Functional {
    id: u64,
    /// Every layer added, in the order added (`None` only while being moved out in `build`).
    layers: Vec<Box<dyn Layer>>,
    /// Every call, in the order made; a symbolic tensor is the output of one call.
    calls: Vec<GraphCall>,
}

impl Default for Functional {
    fn default() -> Self {
        Self::new()
    }
}

impl Functional {
    pub fn new() -> Functional {
        Functional {
            id: NEXT_GRAPH.fetch_add(1, Ordering::Relaxed),
            layers: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// Reopens a built model's graph to extend it, Keras's `Model(base.input, new_output)`: the
    /// returned graph holds the model's layers (not a nested model), so the new model lists them
    /// inline and `layers()[i]` indexes them directly. Returns the graph with the model's input
    /// and output symbolic tensors.
    pub fn from_model(model: Model) -> (Functional, Vec<SymbolicTensor>, Vec<SymbolicTensor>) {
        let training: Vec<Option<bool>> = (0..model.call_count())
            .map(|c| model.call_training(c))
            .collect();
        let Model {
            nodes,
            inputs,
            outputs,
            extra_calls,
            ..
        } = model;
        let mut g = Functional::new();
        // Call ids stay as they were: first calls, then the extra calls in the order made.
        for (i, node) in nodes.into_iter().enumerate() {
            g.layers.push(node.layer);
            g.calls.push(GraphCall {
                layer: i,
                inbound: node.inbound,
                output_shape: node.output_shape,
                training: training[i],
            });
        }
        let n = g.layers.len();
        for (k, c) in extra_calls.into_iter().enumerate() {
            g.calls.push(GraphCall {
                layer: c.layer,
                inbound: c.inbound,
                output_shape: c.output_shape,
                training: training[n + k],
            });
        }
        let sym = |node| SymbolicTensor { graph: g.id, node };
        let ins = inputs.into_iter().map(sym).collect();
        let outs = outputs.into_iter().map(sym).collect();
        (g, ins, outs)
    }

    /// Adds a model input.
    pub fn input(&mut self, input: InputLayer) -> SymbolicTensor {
        let shape = input.shape().clone();
        self.layers.push(Box::new(input));
        self.calls.push(GraphCall {
            layer: self.layers.len() - 1,
            inbound: Vec::new(),
            output_shape: shape,
            training: None,
        });
        SymbolicTensor {
            graph: self.id,
            node: self.calls.len() - 1,
        }
    }

    /// Calls `layer` on `inputs`: builds it from their shapes (reporting incompatible shapes with
    /// the layer's name) and returns its symbolic output.
    pub fn call(
        &mut self,
        layer: impl Layer + 'static,
        inputs: &[SymbolicTensor],
    ) -> Result<SymbolicTensor> {
        self.call_boxed(Box::new(layer), inputs)
    }

    /// [`call`](Self::call) for a boxed layer (for example a nested [`Model`], which stays one
    /// layer of the new model: see [`add_boxed`](Self::add_boxed)).
    pub fn call_boxed(
        &mut self,
        layer: Box<dyn Layer>,
        inputs: &[SymbolicTensor],
    ) -> Result<SymbolicTensor> {
        for t in inputs {
            self.check(t)?;
        }
        let h = self.add_boxed(layer)?;
        self.apply(h, inputs).inspect_err(|_| {
            // A layer whose first call failed is not part of the graph.
            self.layers.pop();
        })
    }

    /// Adds a layer without calling it yet, to call it (once or several times) with
    /// [`apply`](Self::apply). Its name must be new in the graph.
    pub fn add(&mut self, layer: impl Layer + 'static) -> Result<LayerHandle> {
        self.add_boxed(Box::new(layer))
    }

    /// [`add`](Self::add) for a boxed layer. A [`Model`] added this way stays one nested layer
    /// (Keras's `x = base_model(inputs, training=False)`): one row in the summary, reachable with
    /// `get_layer(name)`, where `set_trainable(false)` freezes every weight inside it; unlike
    /// [`from_model`](Self::from_model), which inlines the model's layers.
    pub fn add_boxed(&mut self, layer: Box<dyn Layer>) -> Result<LayerHandle> {
        if self.layers.iter().any(|l| l.name() == layer.name()) {
            return Err(Error::DuplicateLayerName {
                model: "functional graph".into(),
                name: layer.name().to_string(),
            });
        }
        self.layers.push(layer);
        Ok(LayerHandle {
            graph: self.id,
            layer: self.layers.len() - 1,
        })
    }

    /// Calls a layer added with [`add`](Self::add) (or the layer behind
    /// [`layer_of`](Self::layer_of)) on `inputs`. Every call shares the layer's weights; the
    /// first call builds it, later calls must have compatible shapes.
    pub fn apply(
        &mut self,
        layer: LayerHandle,
        inputs: &[SymbolicTensor],
    ) -> Result<SymbolicTensor> {
        self.apply_with(layer, inputs, None)
    }

    /// [`apply`](Self::apply) with Keras's `training=` call argument: `Some(false)` runs this
    /// call in inference mode even inside `fit` (a BatchNormalization in it normalises with its
    /// moving statistics and does not update them, a Dropout drops nothing), as
    /// `base_model(inputs, training=False)` does in Keras's transfer-learning recipe.
    pub fn apply_with(
        &mut self,
        layer: LayerHandle,
        inputs: &[SymbolicTensor],
        training: Option<bool>,
    ) -> Result<SymbolicTensor> {
        if layer.graph != self.id || layer.layer >= self.layers.len() {
            return Err(Error::Graph(
                "a layer handle from another graph was used".into(),
            ));
        }
        for t in inputs {
            self.check(t)?;
        }
        if self.layers[layer.layer].is_input() {
            return Err(Error::Graph(format!(
                "input '{}' cannot be called",
                self.layers[layer.layer].name()
            )));
        }
        let shapes: Vec<_> = inputs
            .iter()
            .map(|t| self.calls[t.node].output_shape.clone())
            .collect();
        let out = self.layers[layer.layer].build(&shapes)?;
        self.calls.push(GraphCall {
            layer: layer.layer,
            inbound: inputs.iter().map(|t| t.node).collect(),
            output_shape: out,
            training,
        });
        Ok(SymbolicTensor {
            graph: self.id,
            node: self.calls.len() - 1,
        })
    }

    /// The layer whose call produced `t`, to call it again.
    pub fn layer_of(&self, t: SymbolicTensor) -> Result<LayerHandle> {
        self.check(&t)?;
        Ok(LayerHandle {
            graph: self.id,
            layer: self.calls[t.node].layer,
        })
    }

    /// The per-sample shape of a symbolic tensor.
    pub fn shape(&self, t: SymbolicTensor) -> Result<&crate::layers::Shape> {
        self.check(&t)?;
        Ok(&self.calls[t.node].output_shape)
    }

    fn check(&self, t: &SymbolicTensor) -> Result<()> {
        if t.graph != self.id || t.node >= self.calls.len() {
            return Err(Error::Graph(
                "a symbolic tensor from another graph was used".into(),
            ));
        }
        Ok(())
    }

    /// A model named `functional` (`functional_1`, ...), as Keras 3 names `Model(inputs, outputs)`.
    pub fn build(self, inputs: &[SymbolicTensor], outputs: &[SymbolicTensor]) -> Result<Model> {
        self.build_named(&naming::unique_name("functional"), inputs, outputs)
    }

    /// A model with a given name.
    pub fn build_named(
        self,
        name: &str,
        inputs: &[SymbolicTensor],
        outputs: &[SymbolicTensor],
    ) -> Result<Model> {
        for t in inputs.iter().chain(outputs) {
            self.check(t)?;
        }
        if outputs.is_empty() {
            return Err(Error::Graph(format!("model '{name}' has no outputs")));
        }
        let input_calls: Vec<usize> = inputs.iter().map(|t| t.node).collect();
        for &i in &input_calls {
            if !self.layers[self.calls[i].layer].is_input() {
                return Err(Error::Graph(format!(
                    "model '{name}': input '{}' is not an Input",
                    self.layers[self.calls[i].layer].name()
                )));
            }
        }
        let order = keras_graph_order(
            &self.calls,
            self.layers.len(),
            &input_calls,
            &outputs.iter().map(|t| t.node).collect::<Vec<_>>(),
        )
        .map_err(|unreached| {
            Error::Graph(format!(
                "model '{name}' is disconnected: its outputs depend on input '{}', which is not \
                     among the model's inputs",
                self.layers[self.calls[unreached].layer].name()
            ))
        })?;
        // Renumber into the model's call ids: the kept layers' first kept calls in Keras's layer
        // order, then the other kept calls in the order they were made.
        let mut new_layer = vec![usize::MAX; self.layers.len()];
        for (k, &l) in order.layers.iter().enumerate() {
            new_layer[l] = k;
        }
        let n = order.layers.len();
        let mut new_call = vec![usize::MAX; self.calls.len()];
        let mut first_call = vec![usize::MAX; n];
        let mut extra_old = Vec::new();
        for (c, call) in self.calls.iter().enumerate() {
            if !order.kept[c] {
                continue;
            }
            let l = new_layer[call.layer];
            if first_call[l] == usize::MAX {
                first_call[l] = c;
                new_call[c] = l;
            } else {
                new_call[c] = n + extra_old.len();
                extra_old.push(c);
            }
        }
        let mut training_args = Vec::new();
        for (c, call) in self.calls.iter().enumerate() {
            if let (true, Some(t)) = (order.kept[c], call.training) {
                training_args.push((new_call[c], t));
            }
        }
        let remap = |v: &[usize]| v.iter().map(|&j| new_call[j]).collect::<Vec<_>>();
        let extra_calls: Vec<Call> = extra_old
            .iter()
            .map(|&c| Call {
                layer: new_layer[self.calls[c].layer],
                inbound: remap(&self.calls[c].inbound),
                output_shape: self.calls[c].output_shape.clone(),
            })
            .collect();
        let exec_order = if extra_calls.is_empty() {
            Vec::new()
        } else {
            remap(&order.calls)
        };
        let mut slots: Vec<Option<Box<dyn Layer>>> = self.layers.into_iter().map(Some).collect();
        let nodes: Vec<Node> = order
            .layers
            .iter()
            .enumerate()
            .map(|(k, &old)| {
                let c = &self.calls[first_call[k]];
                Node {
                    layer: slots[old].take().expect("each layer once"),
                    inbound: remap(&c.inbound),
                    output_shape: c.output_shape.clone(),
                }
            })
            .collect();
        let ins = input_calls.iter().map(|&i| new_call[i]).collect();
        let outs = outputs.iter().map(|t| new_call[t.node]).collect();
        let mut model =
            Model::from_parts(name.to_string(), ModelKind::Functional, nodes, ins, outs);
        model.extra_calls = extra_calls;
        model.training_args = training_args;
        model.exec_order = exec_order;
        Ok(model)
    }
}

/// What [`keras_graph_order`] finds.
struct GraphOrder {
    /// The layers the outputs depend on (and the inputs), in Keras's `model.layers` order.
    layers: Vec<usize>,
    /// Per call, whether the model keeps it.
    kept: Vec<bool>,
    /// The kept calls in the order Keras runs them (`_nodes_by_depth`, deepest first).
    calls: Vec<usize>,
}

/// Orders layers and calls as Keras's `map_graph` does. A depth-first walk from each output
/// records, in post-order, the calls the outputs depend on, and each layer's first-visit index.
/// Walking that list backwards (outputs first), a call's depth is at least the largest depth of a
/// call it feeds plus one and at least its layer's depth so far; its layer's depth becomes that
/// (a shared layer's depth is the deepest of its calls). Layers are listed by decreasing depth,
/// ties broken by visit order; calls run by decreasing depth, ties broken by the order their
/// depth was first recorded. Without shared layers a layer's depth is its longest distance to an
/// output. Fails with the call of an input layer that is reached but was not declared a model
/// input.
fn keras_graph_order(
    calls: &[GraphCall],
    n_layers: usize,
    inputs: &[usize],
    outputs: &[usize],
) -> std::result::Result<GraphOrder, usize> {
    let n = calls.len();
    let mut visit_index = vec![i64::MAX; n_layers];
    let mut finished = vec![false; n];
    let mut post_order = Vec::new();
    let mut visited = 0;
    for &o in outputs {
        // Iterative DFS with an explicit stack of (call, next inbound to visit).
        let mut stack = vec![(o, 0usize)];
        while let Some(top) = stack.len().checked_sub(1) {
            let (v, next) = stack[top];
            if next == 0 {
                if finished[v] {
                    stack.pop();
                    continue;
                }
                let l = calls[v].layer;
                if visit_index[l] == i64::MAX {
                    visit_index[l] = visited;
                    visited += 1;
                }
                if calls[v].inbound.is_empty() && !inputs.contains(&v) {
                    return Err(v);
                }
            }
            if !inputs.contains(&v) && next < calls[v].inbound.len() {
                stack[top].1 += 1;
                stack.push((calls[v].inbound[next], 0));
            } else {
                if !finished[v] {
                    finished[v] = true;
                    post_order.push(v);
                }
                stack.pop();
            }
        }
    }
    // Depths, walking from the outputs toward the inputs. `recorded` is the order in which calls
    // first got a depth (Python's dict insertion order in Keras).
    let mut depth: Vec<Option<usize>> = vec![None; n];
    let mut layer_depth: Vec<Option<usize>> = vec![None; n_layers];
    let mut recorded = Vec::new();
    for &v in post_order.iter().rev() {
        let d = match depth[v] {
            Some(d) => d,
            None => {
                recorded.push(v);
                0
            }
        };
        let l = calls[v].layer;
        let d = d.max(layer_depth[l].unwrap_or(0));
        layer_depth[l] = Some(d);
        depth[v] = Some(d);
        if !inputs.contains(&v) {
            for &p in &calls[v].inbound {
                match depth[p] {
                    Some(old) => depth[p] = Some(old.max(d + 1)),
                    None => {
                        depth[p] = Some(d + 1);
                        recorded.push(p);
                    }
                }
            }
        }
    }
    let mut kept = finished;
    // Inputs connected to no output still belong to the model: depth 0, first among equals (Keras
    // gives them traversal index -1).
    for &i in inputs {
        if !kept[i] {
            kept[i] = true;
            let l = calls[i].layer;
            visit_index[l] = -1;
            layer_depth[l] = Some(0);
            depth[i] = Some(0);
            recorded.push(i);
        }
    }
    let mut layers: Vec<usize> = (0..n_layers)
        .filter(|&l| layer_depth[l].is_some())
        .collect();
    layers.sort_by(|&a, &b| {
        layer_depth[b]
            .cmp(&layer_depth[a])
            .then(visit_index[a].cmp(&visit_index[b]))
    });
    let mut order: Vec<usize> = recorded;
    // A stable sort keeps the recorded order within one depth.
    order.sort_by_key(|&c| std::cmp::Reverse(depth[c]));
    Ok(GraphOrder {
        layers,
        kept,
        calls: order,
    })
}
