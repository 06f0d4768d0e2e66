//! `frostnet-bench profile WORKLOAD`: where a workload's step spends its time, by layer class.
//!
//! The model is run layer by layer — `model.layer_mut(i).forward(..)` on the real activations, in
//! the model's (topological) layer order, then for training `backward` in reverse order with the
//! gradients accumulated as the model's executor does — and each call is timed in process CPU
//! time (both threads' work; wall time on a shared 2-core machine mostly measures the other
//! jobs), so a layer's "ms" is CPU ms and GF/s is per CPU-second. Times are summed
//! by layer class (Conv2D split by kernel shape), the median over the reps is reported, next to
//! the end-to-end time of the real workload measured in the same process just before. The
//! layers run unfused: the inference and frozen workloads' real executor folds each
//! BatchNormalization (and its activation) into the convolution before it, so for those the
//! BN and Activation rows are what that fusion removes.
//!
//! The graph's wiring is not public API, so it is read from the model's classic (tf-keras)
//! summary, whose "Connected to" column names each layer's inputs. The chain workloads
//! (mlp_train, cnn_train) are profiled on the same layers built as a Functional chain.

use crate::workloads::{
    self, chain_data, chain_loss, chain_model, inception_base, inception_with_top, labels, randn,
    HEAD_CLASSES, INCEPTION_TRAIN_BATCH, SIDE,
};
use crate::{median, time_reps, Args, Res};
use frostnet::layers::{Dense, ForwardCtx, Weight};
use frostnet::training::{Adam, Loss, Optimizer};
use frostnet::{Layer, Mode, Model, SummaryOptions, SummaryStyle, Tensor};
use std::collections::BTreeMap;

/// One listed layer: its inputs (indices into `model.layers()`).
struct Wiring {
    inbound: Vec<usize>,
}

/// Reads each layer's inputs from the classic summary of a Functional model (fixed columns:
/// name at 1..27, "Connected to" from 68 on; long cells continue on the next lines).
fn wiring(model: &Model) -> Res<Vec<Wiring>> {
    let text = model.summary_with(&SummaryOptions {
        show_trainable: false,
        style: SummaryStyle::Classic,
        ..Default::default()
    });
    let names: Vec<String> = model
        .layers()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    // A chain prints no "Connected to" column: each layer takes the previous one.
    let chain = !text.contains("Connected to");
    let mut lines = text.lines().skip_while(|l| !l.starts_with('='));
    lines.next();
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in lines {
        if line.starts_with('=') {
            break;
        }
        if line.trim().is_empty() {
            if let Some(b) = cur.take() {
                blocks.push(b);
            }
            continue;
        }
        let col = |a: usize, b: usize| line.get(a.min(line.len())..b.min(line.len())).unwrap_or("");
        let b = cur.get_or_insert_with(Default::default);
        b.0.push_str(col(1, 29).trim_end());
        b.1.push_str(col(68, usize::MAX).trim_end());
    }
    if blocks.len() != names.len() {
        return Err(format!(
            "summary parse: {} rows for {} layers",
            blocks.len(),
            names.len()
        )
        .into());
    }
    let mut out = Vec::new();
    for (i, (name_cell, conn)) in blocks.iter().enumerate() {
        let want = format!("{} (", names[i]);
        if !name_cell.starts_with(&want) && !name_cell.starts_with(names[i].as_str()) {
            return Err(format!("summary parse: row {i} is '{name_cell}', expected {want}").into());
        }
        let mut inbound = Vec::new();
        if chain && i > 0 {
            inbound.push(i - 1);
        }
        for piece in conn.split("[0][0]").filter(|_| !chain) {
            let n = piece
                .trim_matches(|c: char| c == '[' || c == ']' || c == '\'' || c == ',' || c == ' ');
            if n.is_empty() {
                continue;
            }
            let j = *index
                .get(n)
                .ok_or_else(|| format!("summary parse: unknown input '{n}' of '{}'", names[i]))?;
            if j >= i {
                return Err(
                    format!("summary parse: '{}' fed by later layer '{n}'", names[i]).into(),
                );
            }
            inbound.push(j);
        }
        out.push(Wiring { inbound });
    }
    Ok(out)
}

/// The bucket a layer's time goes to: its class, Conv2D split by kernel and stride.
fn bucket(layer: &dyn Layer) -> String {
    let class = layer.class_name().to_string();
    if class != "Conv2D" {
        return class;
    }
    let cfg = layer.config();
    let k = &cfg["kernel_size"];
    let s = &cfg["strides"];
    let (kh, kw) = (k[0].as_u64().unwrap_or(0), k[1].as_u64().unwrap_or(0));
    let stride = s[0].as_u64().unwrap_or(1);
    let shape = match (kh, kw) {
        (1, 1) => "1x1".to_string(),
        (1, 7) | (7, 1) => "1x7/7x1".to_string(),
        (1, 3) | (3, 1) => "1x3/3x1".to_string(),
        (a, b) => format!("{a}x{b}"),
    };
    if stride > 1 {
        format!("Conv2D {shape} s{stride}")
    } else {
        format!("Conv2D {shape}")
    }
}

/// Multiply-add FLOPs of a Conv2D forward call (2 per MAC), from its input and output.
fn conv_flops(layer: &dyn Layer, x: &Tensor, y: &Tensor) -> f64 {
    if layer.class_name() != "Conv2D" {
        return 0.0;
    }
    let cfg = layer.config();
    let k = &cfg["kernel_size"];
    let taps = k[0].as_u64().unwrap_or(0) * k[1].as_u64().unwrap_or(0);
    let cin = *x.shape().last().unwrap_or(&0) as f64;
    2.0 * y.len() as f64 * taps as f64 * cin
}

#[derive(Default, Clone)]
struct Acc {
    count: usize,
    fwd: Vec<f64>,
    bwd: Vec<f64>,
    flops_fwd: f64,
    flops_bwd: f64,
}

/// Per-rep timings of one layer-by-layer pass.
struct Pass {
    by_bucket: BTreeMap<String, (f64, f64)>,
    by_layer: Vec<(f64, f64)>,
    /// Each layer's input and output shape (`[64, 17, 17, 768] -> [.., 192]`).
    shapes: Vec<String>,
    other: BTreeMap<&'static str, f64>,
}

/// What the pass runs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Infer,
    Frozen,
    Finetune,
    /// A chain model (mlp_train, cnn_train), everything trained.
    Chain,
}

struct Setup {
    model: Model,
    wiring: Vec<Wiring>,
    head: Option<Dense>,
    head_opt: Adam,
    base_opt: Adam,
    x: Tensor,
    y: Tensor,
    loss: Loss,
    kind: Kind,
}

/// A process CPU-time stamp (ms, both threads' work summed): on a shared machine CPU time
/// moves far less with other jobs' load than wall time does.
fn now() -> f64 {
    crate::sys::process_cpu_ms()
}

/// CPU milliseconds since the stamp `t`.
fn ms(t: f64) -> f64 {
    now() - t
}

fn add(map: &mut BTreeMap<String, (f64, f64)>, key: &str, fwd: f64, bwd: f64) {
    let e = map.entry(key.to_string()).or_insert((0.0, 0.0));
    e.0 += fwd;
    e.1 += bwd;
}

/// Runs one step layer by layer. Also returns conv FLOPs per layer (fwd, bwd) on the first call.
fn pass(s: &mut Setup, flops: &mut Option<Vec<(f64, f64)>>) -> Res<Pass> {
    let n = s.wiring.len();
    let train = s.kind != Kind::Infer;
    let keep = matches!(s.kind, Kind::Finetune | Kind::Chain);
    let mut values: Vec<Option<Tensor>> = vec![None; n];
    let mut remaining = vec![0usize; n];
    for w in &s.wiring {
        for &j in &w.inbound {
            remaining[j] += 1;
        }
    }
    remaining[n - 1] += 1;
    let mut by_layer = vec![(0.0, 0.0); n];
    let mut shapes = vec![String::new(); n];
    let mut fl = vec![(0.0, 0.0); n];
    let mut by_bucket = BTreeMap::new();
    let mut other = BTreeMap::new();
    values[0] = Some(s.x.clone());
    for i in 1..n {
        let inbound = &s.wiring[i].inbound;
        let mut ctx = ForwardCtx::infer();
        ctx.mode = if train { Mode::Train } else { Mode::Infer };
        ctx.keep = keep;
        ctx.input_needs_grad = inbound.iter().map(|&j| keep && j != 0).collect();
        let layer = s.model.layer_mut(i)?;
        let args: Vec<&Tensor> = inbound
            .iter()
            .map(|&j| values[j].as_ref().expect("topological order"))
            .collect();
        let t = now();
        let y = layer.forward(&args, &mut ctx)?;
        let dt = ms(t);
        fl[i].0 = conv_flops(layer, args[0], &y);
        // Backward: dW and, unless the input is the image, dX — each as many FLOPs as forward.
        fl[i].1 = fl[i].0 * if inbound == &[0] { 1.0 } else { 2.0 };
        by_layer[i].0 = dt;
        shapes[i] = format!("{:?} -> {:?}", args[0].shape(), y.shape());
        add(&mut by_bucket, &bucket(layer), dt, 0.0);
        for &j in inbound {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                values[j] = None;
            }
        }
        values[i] = Some(y);
    }
    let feats = values[n - 1].take().expect("the output is kept");
    if !train {
        return finish(flops, fl, by_bucket, by_layer, shapes, other);
    }
    let mut head = s.head.take();
    let pred = match head.as_mut() {
        Some(head) => {
            let mut ctx = ForwardCtx::infer();
            ctx.mode = Mode::Train;
            ctx.keep = true;
            ctx.input_needs_grad = vec![keep];
            let t = now();
            let logits = head.forward(&[&feats], &mut ctx)?;
            add(&mut by_bucket, "Dense (head)", ms(t), 0.0);
            logits
        }
        None => feats,
    };
    let t = now();
    let (loss, g) = s.loss.compute(&pred, &s.y)?;
    other.insert("loss", ms(t));
    if !loss.is_finite() {
        return Err(format!("non-finite loss {loss}").into());
    }
    let g = match head.as_mut() {
        Some(head) => {
            let t = now();
            let dxs = head.backward(&g, &[keep])?;
            add(&mut by_bucket, "Dense (head)", 0.0, ms(t));
            dxs.into_iter().next().flatten()
        }
        None => Some(g),
    };
    if keep {
        backward(
            s,
            g.ok_or("head gave no dx")?,
            &mut by_layer,
            &mut by_bucket,
        )?;
    }
    let t = now();
    if let Some(head) = head.as_mut() {
        let mut ws: Vec<&mut Weight> = head.weights_mut();
        s.head_opt.apply(&mut ws);
    }
    if keep {
        let mut ws: Vec<&mut Weight> = s
            .model
            .weights_mut()
            .into_iter()
            .filter(|w| w.is_trainable())
            .collect();
        s.base_opt.apply(&mut ws);
    }
    other.insert("Adam update", ms(t));
    let t = now();
    if let Some(head) = head.as_mut() {
        head.clear_cache();
    }
    s.model.clear_cache();
    other.insert("clear caches", ms(t));
    s.head = head;
    finish(flops, fl, by_bucket, by_layer, shapes, other)
}

fn finish(
    flops: &mut Option<Vec<(f64, f64)>>,
    fl: Vec<(f64, f64)>,
    by_bucket: BTreeMap<String, (f64, f64)>,
    by_layer: Vec<(f64, f64)>,
    shapes: Vec<String>,
    other: BTreeMap<&'static str, f64>,
) -> Res<Pass> {
    if flops.is_none() {
        *flops = Some(fl);
    }
    Ok(Pass {
        by_bucket,
        by_layer,
        shapes,
        other,
    })
}

/// Reverse pass over the base, accumulating gradients per node like the model's executor.
fn backward(
    s: &mut Setup,
    g_out: Tensor,
    by_layer: &mut [(f64, f64)],
    by_bucket: &mut BTreeMap<String, (f64, f64)>,
) -> Res<()> {
    let n = s.wiring.len();
    let mut acc: Vec<Option<Tensor>> = vec![None; n];
    acc[n - 1] = Some(g_out);
    for i in (1..n).rev() {
        let Some(g) = acc[i].take() else { continue };
        let inbound = s.wiring[i].inbound.clone();
        let need: Vec<bool> = inbound.iter().map(|&j| j != 0).collect();
        let layer = s.model.layer_mut(i)?;
        let t = now();
        let dxs = layer.backward(&g, &need)?;
        let dt = ms(t);
        by_layer[i].1 = dt;
        add(by_bucket, &bucket(layer), 0.0, dt);
        let t = now();
        for (&j, dx) in inbound.iter().zip(dxs) {
            if let (Some(dx), true) = (dx, j != 0) {
                match acc[j].as_mut() {
                    Some(a) => a.add_assign(&dx).expect("fan-out gradients share a shape"),
                    None => acc[j] = Some(dx),
                }
            }
        }
        add(by_bucket, "(gradient accumulation)", 0.0, ms(t));
    }
    Ok(())
}

pub(crate) fn run(args: &Args) -> Res<()> {
    let kind = match args.workload.as_str() {
        "inception_infer" => Kind::Infer,
        "inception_frozen" => Kind::Frozen,
        "inception_finetune" => Kind::Finetune,
        "mlp_train" | "cnn_train" => Kind::Chain,
        "image_pipeline" => return crate::pipeline_profile::run(args),
        other => return Err(format!("no layer profile for '{other}' (one matmul)").into()),
    };
    // 1. The real workload, end to end, in this process.
    let (e2e, e2e_cpu) = {
        let mut w = workloads::build(&args.workload)?;
        time_reps(args.warmup.min(1), args.reps, &mut *w.step)?
    };
    // 2. The same model, layer by layer.
    let (model, batch) = match kind {
        Kind::Chain => (chain_model(&args.workload, true)?, 0),
        Kind::Infer => (inception_with_top()?, 1),
        Kind::Frozen | Kind::Finetune => {
            let mut base = inception_base()?;
            base.set_trainable(kind == Kind::Finetune);
            (base, INCEPTION_TRAIN_BATCH)
        }
    };
    let head = if matches!(kind, Kind::Infer | Kind::Chain) {
        None
    } else {
        let mut d = Dense::new(HEAD_CLASSES).seed(7);
        d.build(&[vec![Some(2048)]])?;
        Some(d)
    };
    let (x, y, loss) = if kind == Kind::Chain {
        let (x, y) = chain_data(&args.workload)?;
        (x, y, chain_loss(&args.workload))
    } else {
        (
            randn(40, &[batch, SIDE, SIDE, 3])?,
            labels(41, batch, HEAD_CLASSES)?,
            Loss::SparseCategoricalCrossentropy { from_logits: true },
        )
    };
    let wiring = wiring(&model)?;
    let mut s = Setup {
        wiring,
        model,
        head,
        head_opt: Adam::new(1e-3),
        base_opt: Adam::new(1e-3),
        x,
        y,
        loss,
        kind,
    };
    let mut flops = None;
    for _ in 0..args.warmup.min(1) {
        pass(&mut s, &mut flops)?;
    }
    let mut passes = Vec::new();
    let mut pass_ms = Vec::new();
    for _ in 0..args.reps {
        let t = now();
        passes.push(pass(&mut s, &mut flops)?);
        pass_ms.push(ms(t));
    }
    let flops = flops.unwrap_or_default();
    report(args, &s, &passes, &pass_ms, &flops, &e2e, &e2e_cpu);
    Ok(())
}

fn report(
    args: &Args,
    s: &Setup,
    passes: &[Pass],
    pass_ms: &[f64],
    flops: &[(f64, f64)],
    e2e: &[f64],
    e2e_cpu: &[f64],
) {
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    for (i, l) in s.model.layers().iter().enumerate().skip(1) {
        let a = acc.entry(bucket(*l)).or_default();
        a.count += 1;
        a.flops_fwd += flops.get(i).map_or(0.0, |f| f.0);
        a.flops_bwd += flops.get(i).map_or(0.0, |f| f.1);
    }
    for p in passes {
        for (k, (f, b)) in &p.by_bucket {
            let a = acc.entry(k.clone()).or_default();
            a.fwd.push(*f);
            a.bwd.push(*b);
        }
        for (k, v) in &p.other {
            let a = acc.entry(format!("({k})")).or_default();
            a.fwd.push(*v);
        }
    }
    if acc.contains_key("Dense (head)") {
        acc.get_mut("Dense (head)").expect("present").count = 1;
    }
    let train = matches!(s.kind, Kind::Finetune | Kind::Chain);
    let mut rows: Vec<(String, usize, f64, f64, f64, f64)> = acc
        .iter()
        .map(|(k, a)| {
            let f = median(&a.fwd);
            let b = if a.bwd.is_empty() {
                0.0
            } else {
                median(&a.bwd)
            };
            let fwd_g = if f > 0.0 {
                a.flops_fwd / (f * 1e-3) / 1e9
            } else {
                0.0
            };
            let bwd_g = if train && b > 0.0 {
                a.flops_bwd / (b * 1e-3) / 1e9
            } else {
                0.0
            };
            (k.clone(), a.count, f, b, fwd_g, bwd_g)
        })
        .collect();
    rows.sort_by(|a, b| (b.2 + b.3).total_cmp(&(a.2 + a.3)));
    let total: f64 = rows.iter().map(|r| r.2 + r.3).sum();
    println!(
        "profile {} (batch {}, {} threads, {} reps): end-to-end median {:.1} ms (cpu {:.1} ms); \
         layer-by-layer pass median {:.1} cpu ms, sum of medians {:.1} cpu ms \
         (per-layer times below are process CPU ms; GF/s = GFLOP per CPU-second)",
        args.workload,
        s.x.batch(),
        args.threads,
        passes.len(),
        median(e2e),
        median(e2e_cpu),
        median(pass_ms),
        total
    );
    println!(
        "{:<26} {:>5} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9}",
        "bucket", "n", "fwd ms", "bwd ms", "total ms", "share", "fwd GF/s", "bwd GF/s"
    );
    for (k, n, f, b, fg, bg) in &rows {
        let gf = |g: &f64| {
            if *g > 0.0 {
                format!("{g:.1}")
            } else {
                "-".into()
            }
        };
        println!(
            "{:<26} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>6.1}% {:>9} {:>9}",
            k,
            n,
            f,
            b,
            f + b,
            100.0 * (f + b) / total,
            gf(fg),
            gf(bg)
        );
    }
    let conv_flops: f64 = flops.iter().map(|f| f.0).sum();
    println!(
        "conv forward GFLOP per step: {:.2} (backward {:.2})",
        conv_flops / 1e9,
        flops.iter().map(|f| f.1).sum::<f64>() / 1e9
    );
    // The slowest single layers (median over reps).
    let layers = s.model.layers();
    let mut per: Vec<(usize, f64, f64)> = (1..layers.len())
        .map(|i| {
            let f: Vec<f64> = passes.iter().map(|p| p.by_layer[i].0).collect();
            let b: Vec<f64> = passes.iter().map(|p| p.by_layer[i].1).collect();
            (i, median(&f), median(&b))
        })
        .collect();
    per.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
    // `PROFILE_TOP=N` lists N layers (default 12).
    let top = std::env::var("PROFILE_TOP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    println!("slowest layers:");
    for (i, f, b) in per.iter().take(top) {
        let l = layers[*i];
        let gf = if flops[*i].0 > 0.0 && *f > 0.0 {
            format!(" {:.1} GF/s fwd", flops[*i].0 / (f * 1e-3) / 1e9)
        } else {
            String::new()
        };
        println!(
            "  {:<28} {:<18} fwd {:>8.1} ms  bwd {:>8.1} ms{gf}  {}",
            l.name(),
            bucket(l),
            f,
            b,
            passes.first().map_or("", |p| p.shapes[*i].as_str())
        );
    }
}
