//! Independent branches of a model's graph at the same time: forward passes of models without
//! masks or shared layers, and backward passes of models without shared layers.
//!
//! Why: at batch 1 InceptionV3's layers are too small to keep two threads busy one layer at a
//! time (one image: 78 ms on one thread, 60 ms on two), but each of its blocks has three or
//! four branches that are independent until their Concatenate. Here every node whose inputs
//! are ready is a task on rayon's pool, so the branches run side by side while each kernel
//! still splits its own work across the threads that are idle.
//!
//! The result is bit-identical to the sequential executor: every node computes exactly what it
//! would there (kernels do not depend on which thread runs them), with the random seed it would
//! have drawn there (drawn in execution order before anything runs), and activations are freed
//! after their last reader as before.

use super::model::{run_bn_relu, run_fused, Chain, Node};
use crate::error::Result;
use crate::layers::{ForwardCtx, Mode};
use crate::tensor::isa::{self, Isa};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One node to run.
pub(super) struct Task {
    /// The node (a call id equal to its layer's index: models with shared layers do not come
    /// here).
    pub node: usize,
    /// The fused chain `node` (its convolution) runs, if any.
    pub fused: Option<Chain>,
    /// The ReLU node that BatchNormalization `node` runs too, if any (`Model::plan_relu_fusion`).
    pub relu: Option<usize>,
    /// The values it reads, in argument order (a value is named by the node that produced it).
    pub inputs: Vec<usize>,
    /// The value it writes (a fused chain writes its last node's).
    pub output: usize,
    pub mode: Mode,
    /// Whether the layer keeps what its backward pass needs.
    pub keep: bool,
    pub seed: u64,
}

/// What a finished run leaves behind.
pub(super) struct Finished {
    /// The values still held: the model's outputs (and its inputs when nothing read them).
    pub values: Vec<Option<Tensor>>,
    /// The fused convolutions' names, nested models' included, in task order.
    pub fused_names: Vec<String>,
}

/// Whether running nodes side by side can gain anything: some value (of `values`) feeds two of
/// them (`inputs`: each node's inputs).
pub(super) fn has_branches<'a>(
    inputs: impl IntoIterator<Item = &'a Vec<usize>>,
    values: usize,
) -> bool {
    let mut readers = vec![0usize; values];
    inputs.into_iter().flatten().any(|&v| {
        readers[v] += 1;
        readers[v] == 2
    })
}

/// Shared state of one run.
struct Run<'a> {
    tasks: &'a [Task],
    /// Per value: whether a gradient will flow back into it (the backward plan).
    plan: &'a [bool],
    /// Per task, the nodes it needs (its own, then a fused chain's), taken when it runs.
    nodes: Vec<Mutex<Vec<&'a mut Node>>>,
    values: Vec<Mutex<Option<Tensor>>>,
    /// Per task, inputs not yet produced.
    pending: Vec<AtomicUsize>,
    /// Per value, reads still to come (plus one for a model output, which is never freed).
    left: Vec<AtomicUsize>,
    /// Per value, the tasks reading it (once per argument).
    readers: Vec<Vec<usize>>,
    fused_names: Vec<Mutex<Vec<String>>>,
    failure: Failure,
    /// The caller's kernel level (`isa::with_forced` is per thread): every task runs at it.
    level: Isa,
}

/// Runs `tasks` (in a valid execution order) over `nodes`, with `values` holding the model's
/// inputs and `plan` the backward plan; `keep` lists the values to keep to the end (the model's
/// outputs).
pub(super) fn run(
    nodes: &mut [Node],
    tasks: &[Task],
    plan: &[bool],
    values: Vec<Option<Tensor>>,
    keep: &[usize],
) -> Result<Finished> {
    let n = values.len();
    let mut produced = vec![false; n];
    let mut readers = vec![Vec::new(); n];
    for (t, task) in tasks.iter().enumerate() {
        produced[task.output] = true;
        for &v in &task.inputs {
            readers[v].push(t);
        }
    }
    let pending = tasks
        .iter()
        .map(|t| AtomicUsize::new(t.inputs.iter().filter(|&&v| produced[v]).count()))
        .collect();
    let left = (0..n)
        .map(|v| AtomicUsize::new(readers[v].len() + keep.iter().filter(|&&k| k == v).count()))
        .collect();
    // Hand each task the nodes it touches (disjoint: a node belongs to one task).
    let mut slots: Vec<Option<&mut Node>> = nodes.iter_mut().map(Some).collect();
    let mut take = |i: usize| slots[i].take().expect("a node belongs to one task");
    let task_nodes = tasks
        .iter()
        .map(|t| {
            let mine = match t.fused {
                Some(c) => c.nodes().map(&mut take).collect(),
                None => [t.node].into_iter().chain(t.relu).map(&mut take).collect(),
            };
            Mutex::new(mine)
        })
        .collect();
    let run = Run {
        tasks,
        plan,
        nodes: task_nodes,
        values: values.into_iter().map(Mutex::new).collect(),
        pending,
        left,
        readers,
        fused_names: tasks.iter().map(|_| Mutex::new(Vec::new())).collect(),
        failure: Failure::default(),
        level: isa::active(),
    };
    // The tasks ready at the start, chosen before any runs: a task spawned early can finish and
    // bring a later one's count to zero, and the later one must then not be spawned twice.
    let ready: Vec<usize> = (0..tasks.len())
        .filter(|&t| run.pending[t].load(Ordering::Acquire) == 0)
        .collect();
    rayon::scope(|s| {
        for t in ready {
            let run = &run;
            s.spawn(move |s| run.task(t, s));
        }
    });
    run.failure.result()?;
    Ok(Finished {
        values: run
            .values
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect(),
        fused_names: run
            .fused_names
            .into_iter()
            .flat_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect(),
    })
}

/// The first error of a run; once there is one, tasks not yet started do not run.
#[derive(Default)]
struct Failure {
    error: Mutex<Option<crate::error::Error>>,
    happened: AtomicBool,
}

impl Failure {
    fn happened(&self) -> bool {
        self.happened.load(Ordering::Acquire)
    }
    fn record(&self, e: crate::error::Error) {
        lock(&self.error).get_or_insert(e);
        self.happened.store(true, Ordering::Release);
    }
    fn result(&self) -> Result<()> {
        lock(&self.error).take().map_or(Ok(()), Err)
    }
}

/// Locks `m`, carrying on after a panic elsewhere (every update below is a single assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> Run<'a> {
    /// Runs task `t`, then spawns the readers it made ready.
    fn task<'s>(&'s self, t: usize, s: &rayon::Scope<'s>)
    where
        'a: 's,
    {
        if self.failure.happened() {
            return;
        }
        let task = &self.tasks[t];
        // Shares of the inputs (a clone shares the buffer); the slot may be freed meanwhile.
        let args: Vec<Tensor> = task
            .inputs
            .iter()
            .map(|&v| lock(&self.values[v]).clone().expect("inputs are ready"))
            .collect();
        let mut mine = std::mem::take(&mut *lock(&self.nodes[t]));
        match isa::with_forced(self.level, || self.compute(task, &mut mine, &args)) {
            Ok((y, names)) => {
                *lock(&self.fused_names[t]) = names;
                *lock(&self.values[task.output]) = Some(y);
            }
            Err(e) => return self.failure.record(e),
        }
        drop(args);
        for &v in &task.inputs {
            if self.left[v].fetch_sub(1, Ordering::AcqRel) == 1 {
                *lock(&self.values[v]) = None;
            }
        }
        for &r in &self.readers[task.output] {
            if self.pending[r].fetch_sub(1, Ordering::AcqRel) == 1 {
                s.spawn(move |s| self.task(r, s));
            }
        }
    }

    /// The value task `task` produces and the fused convolutions it ran.
    fn compute(
        &self,
        task: &Task,
        mine: &mut [&mut Node],
        args: &[Tensor],
    ) -> Result<(Tensor, Vec<String>)> {
        if let Some(chain) = &task.fused {
            let y = run_fused(&args[0], chain, mine)?;
            // The convolution comes after the pooling, if any.
            let conv = usize::from(chain.pool.is_some());
            return Ok((y, vec![mine[conv].layer.name().to_string()]));
        }
        let mut ctx = ForwardCtx {
            mode: task.mode,
            keep: task.keep,
            input_needs_grad: task.inputs.iter().map(|&v| self.plan[v]).collect(),
            rng: rand::SeedableRng::seed_from_u64(task.seed),
        };
        if task.relu.is_some() {
            let [bn, act] = mine else {
                unreachable!("a BatchNormalization and its ReLU")
            };
            let y = run_bn_relu(bn, act, &args[0], &mut ctx)?;
            return Ok((y, vec![bn.layer.name().to_string()]));
        }
        let node = &mut mine[0];
        let refs: Vec<&Tensor> = args.iter().collect();
        let y = node.layer.forward(&refs, &mut ctx)?;
        let names = node
            .layer
            .as_model()
            .map(|m| m.last_fused_layers().to_vec())
            .unwrap_or_default();
        crate::regularizers::record_activity(node.layer.as_mut(), &y, task.keep)?;
        Ok((y, names))
    }
}

/// One node's backward pass, as [`backward`] needs it.
pub(super) struct BackTask {
    pub node: usize,
    /// Its inputs (value ids, argument order) and whether each wants a gradient.
    pub inbound: Vec<usize>,
    pub need: Vec<bool>,
}

/// A gradient contribution to a value, with the position it has in the sequential sum.
type Part = ((usize, usize), Tensor);

/// The backward pass over `tasks` (the planned nodes in the order the sequential executor runs
/// them: reverse execution order), each node as soon as every node reading its output has
/// passed its gradient back. `seeds` are the gradients of the model's outputs; `plan[v]` says
/// whether value `v` takes a gradient. Returns every value's summed gradient (the caller keeps
/// the inputs') and the names of the layers run, in the sequential order.
///
/// Bit-identical to the sequential loop: a value's contributions are summed in the order that
/// loop adds them (its seed, then the readers in the order they ran, arguments in order),
/// whatever order the threads deliver them in.
pub(super) fn backward(
    nodes: &mut [Node],
    tasks: &[BackTask],
    plan: &[bool],
    seeds: Vec<(usize, Tensor)>,
) -> Result<(Vec<Option<Tensor>>, Vec<String>)> {
    let n = plan.len();
    let mut task_of = vec![None; n];
    let mut readers = vec![0usize; n];
    // Per task, the values it passes a gradient to, each once.
    let mut reads: Vec<Vec<usize>> = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        task_of[task.node] = Some(t);
        let mut mine: Vec<usize> = task.inbound.iter().copied().filter(|&v| plan[v]).collect();
        mine.sort_unstable();
        mine.dedup();
        for &v in &mine {
            readers[v] += 1;
        }
        reads.push(mine);
    }
    let mut parts: Vec<Vec<Part>> = (0..n).map(|_| Vec::new()).collect();
    for (v, g) in seeds {
        parts[v].push(((0, 0), g));
    }
    let mut slots: Vec<Option<&mut Node>> = nodes.iter_mut().map(Some).collect();
    let back = Back {
        tasks,
        plan,
        task_of,
        reads,
        nodes: tasks
            .iter()
            .map(|t| Mutex::new(slots[t.node].take()))
            .collect(),
        parts: parts.into_iter().map(Mutex::new).collect(),
        pending: readers.into_iter().map(AtomicUsize::new).collect(),
        names: tasks.iter().map(|_| Mutex::new(Vec::new())).collect(),
        failure: Failure::default(),
        level: isa::active(),
    };
    // Chosen before any task runs, as in `run`.
    let ready: Vec<usize> = (0..tasks.len())
        .filter(|&t| back.pending[tasks[t].node].load(Ordering::Acquire) == 0)
        .collect();
    rayon::scope(|s| {
        for t in ready {
            let back = &back;
            s.spawn(move |s| back.task(t, s));
        }
    });
    back.failure.result()?;
    let mut sums = Vec::with_capacity(n);
    for p in back.parts {
        sums.push(sum(p.into_inner().unwrap_or_else(|e| e.into_inner()))?);
    }
    let names = back
        .names
        .into_iter()
        .flat_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect();
    Ok((sums, names))
}

/// Contributions summed in their sequential order.
fn sum(mut parts: Vec<Part>) -> Result<Option<Tensor>> {
    parts.sort_by_key(|(key, _)| *key);
    let mut acc = None;
    for (_, g) in parts {
        super::model::accumulate(&mut acc, g)?;
    }
    Ok(acc)
}

/// Shared state of one backward run.
struct Back<'a> {
    tasks: &'a [BackTask],
    plan: &'a [bool],
    task_of: Vec<Option<usize>>,
    /// Per task, the values it passes a gradient to, each once.
    reads: Vec<Vec<usize>>,
    nodes: Vec<Mutex<Option<&'a mut Node>>>,
    /// Per value, the gradient contributions delivered so far.
    parts: Vec<Mutex<Vec<Part>>>,
    /// Per value, readers whose backward has not run yet.
    pending: Vec<AtomicUsize>,
    names: Vec<Mutex<Vec<String>>>,
    failure: Failure,
    /// As [`Run::level`].
    level: Isa,
}

impl<'a> Back<'a> {
    /// Runs node task `t`'s backward, then spawns the inputs whose readers are now all done.
    fn task<'s>(&'s self, t: usize, s: &rayon::Scope<'s>)
    where
        'a: 's,
    {
        if self.failure.happened() {
            return;
        }
        let task = &self.tasks[t];
        let node = lock(&self.nodes[t]).take().expect("each task runs once");
        match isa::with_forced(self.level, || self.step(t, task, node)) {
            Ok(dxs) => {
                for (k, (&j, dx)) in task.inbound.iter().zip(dxs).enumerate() {
                    if let Some(dx) = dx.filter(|_| self.plan[j]) {
                        lock(&self.parts[j]).push(((1 + t, k), dx));
                    }
                }
            }
            Err(e) => return self.failure.record(e),
        }
        for &j in &self.reads[t] {
            if self.pending[j].fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(r) = self.task_of[j] {
                    s.spawn(move |s| self.task(r, s));
                }
            }
        }
    }

    /// Runs node `task`'s backward on its summed gradient (nothing when no gradient reached
    /// it) and returns its inputs' gradients.
    fn step(&self, t: usize, task: &BackTask, node: &mut Node) -> Result<Vec<Option<Tensor>>> {
        let mut g = sum(std::mem::take(&mut *lock(&self.parts[task.node])))?;
        if let Some(a) = crate::regularizers::take_activity_grad(node.layer.as_mut()) {
            super::model::accumulate(&mut g, a)?;
        }
        let Some(g) = g else {
            return Ok(Vec::new());
        };
        let dxs = node.layer.backward(&g, &task.need)?;
        *lock(&self.names[t]) = match node.layer.as_model() {
            Some(m) => m.backward_profile.clone(),
            None => vec![node.layer.name().to_string()],
        };
        Ok(dxs)
    }
}
