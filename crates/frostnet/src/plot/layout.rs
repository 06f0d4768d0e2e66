//! A layered ("Sugiyama") layout for directed acyclic graphs, enough for model graphs: no Graphviz.
//!
//! 1. Layers by longest path from the sources, so every edge points down.
//! 2. Edges spanning several layers get one dummy node per layer crossed, so they are routed
//!    through reserved gaps and never through a box.
//! 3. Order within layers by barycentre sweeps (down, up), keeping the order with the fewest
//!    crossings; members of one group (a nested model) are kept contiguous.
//! 4. Positions along a layer: each node pulled to the mean of its neighbours, then the least-squares
//!    placement that keeps the order and the minimum separations (isotonic regression by pool
//!    adjacent violators), so chains run straight and boxes never overlap.
//!
//! Coordinates are abstract: `order` runs along a layer, `rank` from layer to layer. The caller maps
//! them to x/y for top-to-bottom or left-to-right drawings.

/// What the layout needs to know about one node.
#[derive(Clone, Debug)]
pub(crate) struct NodeSpec {
    /// Size along a layer.
    pub(crate) breadth: f64,
    /// Size across layers.
    pub(crate) depth: f64,
    /// The groups (nested models) the node is in, outermost first.
    pub(crate) groups: Vec<usize>,
}

/// Spacing parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spacing {
    /// Between neighbouring boxes in a layer.
    pub(crate) node_gap: f64,
    /// Between layers.
    pub(crate) rank_gap: f64,
    /// Around a group's members (and the room for its label across layers).
    pub(crate) group_pad: f64,
    /// Breadth reserved for an edge passing through a layer.
    pub(crate) dummy_breadth: f64,
}

/// The result: a centre per node, a route per edge.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// `(order, rank)` centre of every node.
    pub(crate) centres: Vec<(f64, f64)>,
    /// Per input edge, the polyline from the source box's far side to the target box's near side.
    pub(crate) routes: Vec<Vec<(f64, f64)>>,
    /// The extent `(min_order, max_order, max_rank)` of everything placed (minimum rank is 0).
    pub(crate) extent: (f64, f64, f64),
}

struct Work<'a> {
    specs: &'a [NodeSpec],
    /// Real nodes first, then dummies: (breadth, groups).
    breadth: Vec<f64>,
    groups: Vec<Vec<usize>>,
    layer: Vec<usize>,
    preds: Vec<Vec<usize>>,
    succs: Vec<Vec<usize>>,
}

/// Lays out `specs` with `edges` (`(from, to)` indices). The graph must be acyclic; edges whose
/// target does not come after their source in a topological sense are reported as an error
/// message.
pub(crate) fn layout(
    specs: &[NodeSpec],
    edges: &[(usize, usize)],
    sp: Spacing,
) -> Result<Layout, String> {
    let n = specs.len();
    for &(a, b) in edges {
        if a >= n || b >= n {
            return Err(format!("edge ({a}, {b}) names a node past {n}"));
        }
    }
    let layer = longest_path_layers(n, edges)?;
    let mut w = Work {
        specs,
        breadth: specs.iter().map(|s| s.breadth).collect(),
        groups: specs.iter().map(|s| s.groups.clone()).collect(),
        layer,
        preds: vec![Vec::new(); n],
        succs: vec![Vec::new(); n],
    };
    // Chains of dummies: chain[e] = the nodes an edge passes through, endpoints included.
    let mut chains = Vec::with_capacity(edges.len());
    for &(a, b) in edges {
        let mut chain = vec![a];
        let common = common_prefix(&w.groups[a], &w.groups[b]);
        for l in w.layer[a] + 1..w.layer[b] {
            let d = w.breadth.len();
            w.breadth.push(sp.dummy_breadth);
            w.groups.push(common.clone());
            w.layer.push(l);
            w.preds.push(Vec::new());
            w.succs.push(Vec::new());
            chain.push(d);
        }
        chain.push(b);
        for pair in chain.windows(2) {
            w.succs[pair[0]].push(pair[1]);
            w.preds[pair[1]].push(pair[0]);
        }
        chains.push(chain);
    }
    let layers = order_layers(&w);
    let order_pos = place_along_layers(&w, &layers, sp);

    // Across layers: each layer's thickness is its deepest box; gaps grow where groups open or
    // close so their labels and padding have room.
    let nl = layers.len();
    let mut thickness = vec![0f64; nl];
    for (l, members) in layers.iter().enumerate() {
        for &v in members {
            if v < n {
                thickness[l] = thickness[l].max(specs[v].depth);
            }
        }
    }
    let mut group_span: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
    for (v, spec) in specs.iter().enumerate() {
        for &g in &spec.groups {
            let e = group_span.entry(g).or_insert((w.layer[v], w.layer[v]));
            e.0 = e.0.min(w.layer[v]);
            e.1 = e.1.max(w.layer[v]);
        }
    }
    let mut top = vec![0f64; nl];
    let mut y = 0.0;
    for l in 0..nl {
        let opening = group_span.values().filter(|s| s.0 == l).count() as f64;
        let closing_before = if l > 0 {
            group_span.values().filter(|s| s.1 == l - 1).count() as f64
        } else {
            0.0
        };
        if l > 0 {
            y += sp.rank_gap;
        }
        y += sp.group_pad * (opening + closing_before);
        top[l] = y;
        y += thickness[l];
    }
    let closing_last = group_span.values().filter(|s| s.1 + 1 == nl).count() as f64;
    let max_rank = y + sp.group_pad * closing_last;

    let centres: Vec<(f64, f64)> = (0..n)
        .map(|v| (order_pos[v], top[w.layer[v]] + thickness[w.layer[v]] / 2.0))
        .collect();
    let routes = chains
        .iter()
        .map(|chain| {
            let (a, b) = (chain[0], chain[chain.len() - 1]);
            let la = w.layer[a];
            let lb = w.layer[b];
            let mut pts = vec![
                (order_pos[a], centres[a].1 + specs[a].depth / 2.0),
                (order_pos[a], top[la] + thickness[la]),
            ];
            for &d in &chain[1..chain.len() - 1] {
                let l = w.layer[d];
                pts.push((order_pos[d], top[l]));
                pts.push((order_pos[d], top[l] + thickness[l]));
            }
            pts.push((order_pos[b], top[lb]));
            pts.push((order_pos[b], centres[b].1 - specs[b].depth / 2.0));
            pts.dedup_by(|p, q| (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9);
            pts
        })
        .collect();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (v, &x) in order_pos.iter().enumerate() {
        let depth = w.groups[v].len() as f64;
        lo = lo.min(x - w.breadth[v] / 2.0 - sp.group_pad * depth);
        hi = hi.max(x + w.breadth[v] / 2.0 + sp.group_pad * depth);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 0.0);
    }
    Ok(Layout {
        centres,
        routes,
        extent: (lo, hi, max_rank),
    })
}

fn common_prefix(a: &[usize], b: &[usize]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| *x)
        .collect()
}

/// Layer = length of the longest path from a source (Kahn's order; a cycle is an error).
fn longest_path_layers(n: usize, edges: &[(usize, usize)]) -> Result<Vec<usize>, String> {
    let mut indeg = vec![0usize; n];
    let mut out = vec![Vec::new(); n];
    for &(a, b) in edges {
        indeg[b] += 1;
        out[a].push(b);
    }
    let mut layer = vec![0usize; n];
    let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut seen = 0;
    while let Some(v) = queue.pop_front() {
        seen += 1;
        for &s in &out[v] {
            layer[s] = layer[s].max(layer[v] + 1);
            indeg[s] -= 1;
            if indeg[s] == 0 {
                queue.push_back(s);
            }
        }
    }
    if seen != n {
        return Err("the graph has a cycle".into());
    }
    Ok(layer)
}

/// Barycentre ordering. Returns the members of every layer in order.
fn order_layers(w: &Work) -> Vec<Vec<usize>> {
    let nl = w.layer.iter().max().map_or(0, |m| m + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); nl];
    // Initial order: creation order, which is the model's (topological) layer order, with dummies
    // after the real nodes; then grouped.
    for v in 0..w.layer.len() {
        layers[w.layer[v]].push(v);
    }
    let mut pos = vec![0f64; w.layer.len()];
    let refresh = |layers: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for members in layers {
            for (i, &v) in members.iter().enumerate() {
                pos[v] = i as f64;
            }
        }
    };
    refresh(&layers, &mut pos);
    let mut best = layers.clone();
    let mut best_crossings = crossings(w, &layers, &pos);
    for sweep in 0..8 {
        let down = sweep % 2 == 0;
        let range: Vec<usize> = if down {
            (1..nl).collect()
        } else {
            (0..nl.saturating_sub(1)).rev().collect()
        };
        for l in range {
            let bary: Vec<f64> = layers[l]
                .iter()
                .map(|&v| {
                    let nb = if down { &w.preds[v] } else { &w.succs[v] };
                    if nb.is_empty() {
                        pos[v]
                    } else {
                        nb.iter().map(|&u| pos[u]).sum::<f64>() / nb.len() as f64
                    }
                })
                .collect();
            layers[l] = grouped_order(w, &layers[l], &bary);
            for (i, &v) in layers[l].iter().enumerate() {
                pos[v] = i as f64;
            }
        }
        let c = crossings(w, &layers, &pos);
        if c < best_crossings {
            best_crossings = c;
            best = layers.clone();
        }
    }
    best
}

/// Sorts a layer by barycentre, keeping each group's members together: a group sorts by the mean
/// barycentre of its members in this layer.
fn grouped_order(w: &Work, members: &[usize], bary: &[f64]) -> Vec<usize> {
    use std::collections::HashMap;
    let mut sums: HashMap<usize, (f64, usize)> = HashMap::new();
    for (k, &v) in members.iter().enumerate() {
        for &g in &w.groups[v] {
            let e = sums.entry(g).or_insert((0.0, 0));
            e.0 += bary[k];
            e.1 += 1;
        }
    }
    // Key: per group level (mean, group id, 0), then (own barycentre, node id, 1).
    let keys: Vec<Vec<(f64, usize, u8)>> = members
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let mut key: Vec<(f64, usize, u8)> = w.groups[v]
                .iter()
                .map(|g| {
                    let (s, c) = sums[g];
                    (s / c as f64, *g, 0)
                })
                .collect();
            key.push((bary[k], v, 1));
            key
        })
        .collect();
    let mut idx: Vec<usize> = (0..members.len()).collect();
    idx.sort_by(|&i, &j| {
        for (a, b) in keys[i].iter().zip(&keys[j]) {
            let o = a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)).then(a.1.cmp(&b.1));
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        keys[i].len().cmp(&keys[j].len())
    });
    idx.into_iter().map(|i| members[i]).collect()
}

/// Edge crossings between consecutive layers.
fn crossings(w: &Work, layers: &[Vec<usize>], pos: &[f64]) -> usize {
    let mut total = 0;
    for members in layers {
        let mut es: Vec<(f64, f64)> = Vec::new();
        for &v in members {
            for &s in &w.succs[v] {
                es.push((pos[v], pos[s]));
            }
        }
        for i in 0..es.len() {
            for j in i + 1..es.len() {
                let (a, b) = (es[i], es[j]);
                if (a.0 - b.0) * (a.1 - b.1) < 0.0 {
                    total += 1;
                }
            }
        }
    }
    total
}

/// Minimum distance between the centres of two neighbours in a layer.
fn separation(w: &Work, a: usize, b: usize, sp: Spacing) -> f64 {
    let common = common_prefix(&w.groups[a], &w.groups[b]).len();
    let boundaries = (w.groups[a].len() - common) + (w.groups[b].len() - common);
    (w.breadth[a] + w.breadth[b]) / 2.0 + sp.node_gap + sp.group_pad * boundaries as f64
}

/// Positions along the layers.
fn place_along_layers(w: &Work, layers: &[Vec<usize>], sp: Spacing) -> Vec<f64> {
    let mut x = vec![0f64; w.layer.len()];
    // Offsets: the packed position of each member relative to the first.
    let offsets: Vec<Vec<f64>> = layers
        .iter()
        .map(|m| {
            let mut off = vec![0.0; m.len()];
            for i in 1..m.len() {
                off[i] = off[i - 1] + separation(w, m[i - 1], m[i], sp);
            }
            off
        })
        .collect();
    for (m, off) in layers.iter().zip(&offsets) {
        let centre = off.last().copied().unwrap_or(0.0) / 2.0;
        for (i, &v) in m.iter().enumerate() {
            x[v] = off[i] - centre;
        }
    }
    let nl = layers.len();
    for sweep in 0..12 {
        let down = sweep % 2 == 0;
        let range: Vec<usize> = if down {
            (1..nl).collect()
        } else {
            (0..nl.saturating_sub(1)).rev().collect()
        };
        for l in range {
            let m = &layers[l];
            // Desired position: the mean of the neighbours on both sides, weighting the side of
            // the sweep; a node without neighbours stays.
            let desired: Vec<f64> = m
                .iter()
                .map(|&v| {
                    let (first, second) = if down {
                        (&w.preds[v], &w.succs[v])
                    } else {
                        (&w.succs[v], &w.preds[v])
                    };
                    let nb: Vec<usize> = if first.is_empty() {
                        second.clone()
                    } else {
                        first.clone()
                    };
                    if nb.is_empty() {
                        x[v]
                    } else {
                        nb.iter().map(|&u| x[u]).sum::<f64>() / nb.len() as f64
                    }
                })
                .collect();
            let placed = isotonic_with_gaps(&desired, &offsets[l]);
            for (i, &v) in m.iter().enumerate() {
                x[v] = placed[i];
            }
        }
    }
    let _ = w.specs;
    x
}

/// The least-squares positions `p` closest to `desired` with `p[i+1] - p[i] >= off[i+1] - off[i]`:
/// substitute `q = p - off`, then `q` must be non-decreasing — isotonic regression, solved by
/// pooling adjacent violators.
fn isotonic_with_gaps(desired: &[f64], off: &[f64]) -> Vec<f64> {
    let targets: Vec<f64> = desired.iter().zip(off).map(|(d, o)| d - o).collect();
    // Blocks of (mean, count).
    let mut blocks: Vec<(f64, usize)> = Vec::new();
    for &t in &targets {
        blocks.push((t, 1));
        while blocks.len() >= 2 {
            let (m2, c2) = blocks[blocks.len() - 1];
            let (m1, c1) = blocks[blocks.len() - 2];
            if m1 <= m2 {
                break;
            }
            blocks.pop();
            let last = blocks.len() - 1;
            blocks[last] = (
                (m1 * c1 as f64 + m2 * c2 as f64) / (c1 + c2) as f64,
                c1 + c2,
            );
        }
    }
    let mut out = Vec::with_capacity(desired.len());
    for (m, c) in blocks {
        for _ in 0..c {
            out.push(m);
        }
    }
    out.iter().zip(off).map(|(q, o)| q + o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(b: f64) -> NodeSpec {
        NodeSpec {
            breadth: b,
            depth: 20.0,
            groups: vec![],
        }
    }
    const SP: Spacing = Spacing {
        node_gap: 10.0,
        rank_gap: 30.0,
        group_pad: 8.0,
        dummy_breadth: 4.0,
    };

    #[test]
    fn isotonic_keeps_gaps_and_is_least_squares() {
        // Both want 0; with a gap of 10 the least-squares answer is -5 and 5.
        let p = isotonic_with_gaps(&[0.0, 0.0], &[0.0, 10.0]);
        assert_eq!(p, vec![-5.0, 5.0]);
        // Already feasible: unchanged.
        let p = isotonic_with_gaps(&[0.0, 50.0], &[0.0, 10.0]);
        assert_eq!(p, vec![0.0, 50.0]);
    }

    #[test]
    fn a_chain_runs_straight_and_a_skip_edge_gets_a_dummy() {
        // 0 -> 1 -> 2 and 0 -> 2: the skip edge passes layer 1 through a dummy.
        let specs = vec![spec(100.0), spec(60.0), spec(100.0)];
        let l = layout(&specs, &[(0, 1), (1, 2), (0, 2)], SP).unwrap();
        // One layer each, top to bottom, on one vertical line.
        assert!(l.centres[0].1 < l.centres[1].1 && l.centres[1].1 < l.centres[2].1);
        assert_eq!(l.centres[0].0, l.centres[2].0);
        // Out of 0's bottom, down through the dummy's band (its top and bottom), into 2's top;
        // every box fills its band, so the band edges and box edges coincide.
        assert_eq!(l.routes[2].len(), 4);
        assert_eq!(l.routes[2][1].0, l.routes[2][2].0);
        // The dummy does not overlap node 1.
        let dummy_x = l.routes[2][1].0;
        assert!((dummy_x - l.centres[1].0).abs() >= 30.0 + 2.0 + 10.0 - 1e-9);
    }

    #[test]
    fn a_cycle_is_an_error() {
        let specs = vec![spec(10.0), spec(10.0)];
        assert!(layout(&specs, &[(0, 1), (1, 0)], SP).is_err());
    }
}
