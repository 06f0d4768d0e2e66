//! The functional API: call layers on symbolic tensors, then make a model from inputs and outputs.

use super::model::{Model, ModelKind, Node};
use crate::error::{Error, Result};
use crate::layers::{naming, InputLayer, Layer};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_GRAPH: AtomicU64 = AtomicU64::new(1);

/// The output of a layer call in a [`Functional`] graph under construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolicTensor {
    graph: u64,
    node: usize,
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
pub struct Functional {
    id: u64,
    nodes: Vec<Node>,
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
            nodes: Vec::new(),
        }
    }

    /// Reopens a built model's graph to extend it, Keras's `Model(base.input, new_output)`: the
    /// returned graph holds the model's layers (not a nested model), so the new model lists them
    /// inline and `layers()[i]` indexes them directly. Returns the graph with the model's input
    /// and output symbolic tensors.
    pub fn from_model(model: Model) -> (Functional, Vec<SymbolicTensor>, Vec<SymbolicTensor>) {
        let Model {
            nodes,
            inputs,
            outputs,
            ..
        } = model;
        let g = Functional::new();
        let sym = |node| SymbolicTensor { graph: g.id, node };
        let ins = inputs.into_iter().map(sym).collect();
        let outs = outputs.into_iter().map(sym).collect();
        (Functional { id: g.id, nodes }, ins, outs)
    }

    /// Adds a model input.
    pub fn input(&mut self, input: InputLayer) -> SymbolicTensor {
        let shape = input.shape().clone();
        self.nodes.push(Node {
            layer: Box::new(input),
            inbound: Vec::new(),
            output_shape: shape,
        });
        SymbolicTensor {
            graph: self.id,
            node: self.nodes.len() - 1,
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

    /// [`call`](Self::call) for a boxed layer (for example a nested [`Model`]).
    pub fn call_boxed(
        &mut self,
        mut layer: Box<dyn Layer>,
        inputs: &[SymbolicTensor],
    ) -> Result<SymbolicTensor> {
        for t in inputs {
            self.check(t)?;
        }
        if self.nodes.iter().any(|n| n.layer.name() == layer.name()) {
            return Err(Error::DuplicateLayerName {
                model: "functional graph".into(),
                name: layer.name().to_string(),
            });
        }
        let shapes: Vec<_> = inputs
            .iter()
            .map(|t| self.nodes[t.node].output_shape.clone())
            .collect();
        let out = layer.build(&shapes)?;
        self.nodes.push(Node {
            layer,
            inbound: inputs.iter().map(|t| t.node).collect(),
            output_shape: out,
        });
        Ok(SymbolicTensor {
            graph: self.id,
            node: self.nodes.len() - 1,
        })
    }

    /// The per-sample shape of a symbolic tensor.
    pub fn shape(&self, t: SymbolicTensor) -> Result<&crate::layers::Shape> {
        self.check(&t)?;
        Ok(&self.nodes[t.node].output_shape)
    }

    fn check(&self, t: &SymbolicTensor) -> Result<()> {
        if t.graph != self.id || t.node >= self.nodes.len() {
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
        let input_nodes: Vec<usize> = inputs.iter().map(|t| t.node).collect();
        for &i in &input_nodes {
            if !self.nodes[i].layer.is_input() {
                return Err(Error::Graph(format!(
                    "model '{name}': input '{}' is not an Input",
                    self.nodes[i].layer.name()
                )));
            }
        }
        let order = keras_layer_order(
            &self.nodes,
            &input_nodes,
            &outputs.iter().map(|t| t.node).collect::<Vec<_>>(),
        )
        .map_err(|unreached| {
            Error::Graph(format!(
                "model '{name}' is disconnected: its outputs depend on input '{}', which is not \
                     among the model's inputs",
                self.nodes[unreached].layer.name()
            ))
        })?;
        // Renumber the kept nodes into Keras's order.
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        for (k, &old) in order.iter().enumerate() {
            new_index[old] = k;
        }
        let mut slots: Vec<Option<Node>> = self.nodes.into_iter().map(Some).collect();
        let nodes: Vec<Node> = order
            .iter()
            .map(|&old| {
                let mut n = slots[old].take().expect("each node once");
                n.inbound = n.inbound.iter().map(|&j| new_index[j]).collect();
                n
            })
            .collect();
        let ins = input_nodes.iter().map(|&i| new_index[i]).collect();
        let outs = outputs.iter().map(|t| new_index[t.node]).collect();
        Ok(Model::from_parts(
            name.to_string(),
            ModelKind::Functional,
            nodes,
            ins,
            outs,
        ))
    }
}

/// Orders the nodes the outputs depend on as Keras's `map_graph` does: a depth-first walk from each
/// output records first-visit order; a node's depth is its longest distance to an output; layers
/// are listed by decreasing depth, ties broken by visit order. Fails with the index of an input
/// layer that is reached but was not declared a model input.
fn keras_layer_order(
    nodes: &[Node],
    inputs: &[usize],
    outputs: &[usize],
) -> std::result::Result<Vec<usize>, usize> {
    let n = nodes.len();
    let mut visit_index = vec![i64::MAX; n];
    let mut finished = vec![false; n];
    let mut post_order = Vec::new();
    let mut visited = 0;
    for &o in outputs {
        // Iterative DFS with an explicit stack of (node, next inbound to visit).
        let mut stack = vec![(o, 0usize)];
        while let Some(top) = stack.len().checked_sub(1) {
            let (v, next) = stack[top];
            if next == 0 {
                if finished[v] {
                    stack.pop();
                    continue;
                }
                if visit_index[v] == i64::MAX {
                    visit_index[v] = visited;
                    visited += 1;
                }
                if nodes[v].inbound.is_empty() && !inputs.contains(&v) {
                    return Err(v);
                }
            }
            if !inputs.contains(&v) && next < nodes[v].inbound.len() {
                stack[top].1 += 1;
                stack.push((nodes[v].inbound[next], 0));
            } else {
                if !finished[v] {
                    finished[v] = true;
                    post_order.push(v);
                }
                stack.pop();
            }
        }
    }
    // Depths, walking from the outputs toward the inputs.
    let mut depth = vec![0usize; n];
    for &v in post_order.iter().rev() {
        for &p in &nodes[v].inbound {
            depth[p] = depth[p].max(depth[v] + 1);
        }
    }
    // Inputs connected to no output still belong to the model: depth 0, first among equals (Keras
    // gives them traversal index -1).
    let mut listed = post_order;
    for &i in inputs {
        if !finished[i] {
            visit_index[i] = -1;
            listed.push(i);
        }
    }
    listed.sort_by(|&a, &b| {
        depth[b]
            .cmp(&depth[a])
            .then(visit_index[a].cmp(&visit_index[b]))
    });
    Ok(listed)
}
