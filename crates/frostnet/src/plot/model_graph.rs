//! `plot_model`: a model's graph as SVG (or PNG), like `keras.utils.plot_model`, drawn by our own
//! layered layout so no Graphviz binary is needed.
//!
//! With `show_trainable`, what trains is visible at a glance: each box's header and status cell
//! are green (trainable), red (non-trainable: frozen), or orange (a nested model only partly
//! trainable), and layers holding State weights (BatchNormalization's moving statistics, which no
//! optimizer ever updates) carry a purple "State" cell. A legend explains the colours.

use super::layout::{layout, NodeSpec, Spacing};
use super::svg::{esc, num, text, text_width};
use crate::error::{fmt_batch_shape, Error, Result};
use crate::layers::{Layer, WeightKind};
use crate::models::Model;

/// Direction of the graph (Graphviz's `rankdir`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RankDir {
    /// Top to bottom.
    #[default]
    TB,
    /// Left to right.
    LR,
}

/// `plot_model`'s options, with `keras.utils.plot_model`'s names and defaults except `dpi`.
#[derive(Clone, Copy, Debug)]
pub struct PlotOptions {
    /// Input and output shapes in every box.
    pub show_shapes: bool,
    /// `name (Class)` instead of the class alone.
    pub show_layer_names: bool,
    /// Colours by what trains, a status cell per box and a legend.
    pub show_trainable: bool,
    /// Draw nested models' layers inside a box instead of one box per nested model.
    pub expand_nested: bool,
    pub rankdir: RankDir,
    /// Resolution of a PNG (96 = one SVG pixel per PNG pixel). Keras's default, 200, makes
    /// InceptionV3's graph a ~100-megapixel image, so ours is 96.
    pub dpi: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            show_shapes: false,
            show_layer_names: false,
            show_trainable: false,
            expand_nested: false,
            rankdir: RankDir::TB,
            dpi: 96,
        }
    }
}

/// What training does to a layer's weights, as the picture shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainStatus {
    /// No weights at all.
    NoWeights,
    /// Every learnable weight trains.
    Trainable,
    /// Nothing trains (frozen, or State weights only).
    NonTrainable,
    /// Some learnable weights train and some do not: a partly frozen nested model.
    Partial,
}

impl TrainStatus {
    /// Of a layer (nested models included), by Keras 3's `trainable_weights` rule.
    pub fn of(layer: &dyn Layer) -> TrainStatus {
        if layer.weights().is_empty() {
            return TrainStatus::NoWeights;
        }
        let trains = !layer.trainable_weights().is_empty();
        let frozen = layer
            .non_trainable_weights()
            .iter()
            .any(|w| w.kind() == WeightKind::Param);
        match (trains, frozen) {
            (true, false) => TrainStatus::Trainable,
            (true, true) => TrainStatus::Partial,
            (false, _) => TrainStatus::NonTrainable,
        }
    }
    fn key(self) -> &'static str {
        match self {
            TrainStatus::NoWeights => "none",
            TrainStatus::Trainable => "trainable",
            TrainStatus::NonTrainable => "frozen",
            TrainStatus::Partial => "partial",
        }
    }
    fn label(self) -> &'static str {
        match self {
            TrainStatus::NoWeights => "",
            TrainStatus::Trainable => "Trainable",
            TrainStatus::NonTrainable => "Non-trainable",
            TrainStatus::Partial => "Partly trainable",
        }
    }
    /// Keras's colours (forestgreen, firebrick), and dark orange for the state Keras cannot show.
    fn colour(self) -> &'static str {
        match self {
            TrainStatus::NoWeights => "#333333",
            TrainStatus::Trainable => "#228b22",
            TrainStatus::NonTrainable => "#b22222",
            TrainStatus::Partial => "#d2691e",
        }
    }
}

const STATE_COLOUR: &str = "#6a3d9a";
const TITLE_SIZE: f64 = 13.0;
const LINE_SIZE: f64 = 11.0;
const TITLE_ROW: f64 = 22.0;
const LINE_ROW: f64 = 16.0;
const STATUS_ROW: f64 = 18.0;
const PAD_X: f64 = 8.0;
const MARGIN: f64 = 16.0;
const GROUP_LABEL: f64 = 14.0;

/// One box of the drawing.
struct VNode {
    /// Unique path (`base/conv2d`).
    path: String,
    class: String,
    title: String,
    lines: Vec<String>,
    status: Option<TrainStatus>,
    state: bool,
    groups: Vec<usize>,
    width: f64,
    height: f64,
}

/// A nested model drawn as a box around its layers.
struct Group {
    path: String,
    label: String,
    status: TrainStatus,
}

struct Builder<'o> {
    opts: &'o PlotOptions,
    nodes: Vec<VNode>,
    edges: Vec<(usize, usize)>,
    groups: Vec<Group>,
}

impl Builder<'_> {
    /// Adds `model`'s nodes; returns, per model node, the box an edge into it goes to (per
    /// argument) and the box an edge out of it leaves from.
    fn add_model(&mut self, model: &Model, prefix: &str, groups: &[usize]) -> (Vec<usize>, usize) {
        // For each node: (entry boxes by argument, exit box).
        let mut ends: Vec<(Vec<usize>, usize)> = Vec::with_capacity(model.nodes.len());
        for (i, node) in model.nodes.iter().enumerate() {
            let layer = node.layer.as_ref();
            let path = format!("{prefix}{}", layer.name());
            let nested = layer.as_model().filter(|_| self.opts.expand_nested);
            let (entries, exit) = match nested {
                Some(inner) => {
                    let g = self.groups.len();
                    self.groups.push(Group {
                        path: path.clone(),
                        label: format!("{} ({})", layer.name(), layer.class_name()),
                        status: TrainStatus::of(layer),
                    });
                    let mut inner_groups = groups.to_vec();
                    inner_groups.push(g);
                    let inner_ends = self.add_model(inner, &format!("{path}/"), &inner_groups);
                    (inner_ends.0, inner_ends.1)
                }
                None => {
                    let v = self.add_node(model, i, path, groups);
                    (vec![v; node.inbound.len().max(1)], v)
                }
            };
            for (k, &j) in node.inbound.iter().enumerate() {
                // Edges name calls; a shared layer's later call may feed a layer listed earlier
                // (drawn below, once every box exists).
                let Some(from) = ends.get(model.call_layer(j)).map(|e| e.1) else {
                    continue;
                };
                let to = entries.get(k).copied().unwrap_or(entries[0]);
                self.edges.push((from, to));
            }
            ends.push((entries, exit));
        }
        // Shared layers: the edges of calls beyond each layer's first, and first-call edges from
        // a layer listed later.
        for c in 0..model.call_count() {
            let l = model.call_layer(c);
            for (k, &j) in model.call_inbound(c).iter().enumerate() {
                let p = model.call_layer(j);
                if c < model.nodes.len() && p < l {
                    continue; // drawn above
                }
                let to = ends[l].0.get(k).copied().unwrap_or(ends[l].0[0]);
                self.edges.push((ends[p].1, to));
            }
        }
        let entries = model.inputs.iter().map(|&i| ends[i].1).collect();
        let exit = model
            .outputs
            .first()
            .map_or(0, |&o| ends[model.call_layer(o)].1);
        (entries, exit)
    }

    fn add_node(&mut self, model: &Model, i: usize, path: String, groups: &[usize]) -> usize {
        let node = &model.nodes[i];
        let layer = node.layer.as_ref();
        let class = layer.class_name().to_string();
        let title = if self.opts.show_layer_names {
            format!("{} ({class})", layer.name())
        } else {
            class.clone()
        };
        let mut lines = Vec::new();
        if self.opts.show_shapes {
            let ins: Vec<String> = node
                .inbound
                .iter()
                .map(|&j| fmt_batch_shape(model.call_output_shape(j)))
                .collect();
            match ins.len() {
                0 => {}
                1 => lines.push(format!("Input shape: {}", ins[0])),
                _ => {
                    lines.push("Input shapes:".to_string());
                    lines.extend(ins.into_iter().map(|s| format!("  {s}")));
                }
            }
            lines.push(format!(
                "Output shape: {}",
                fmt_batch_shape(&node.output_shape)
            ));
        }
        let status = TrainStatus::of(layer);
        let state = layer
            .weights()
            .iter()
            .any(|w| w.kind() == WeightKind::State);
        let show_status = self.opts.show_trainable && status != TrainStatus::NoWeights;
        let mut width = text_width(&title, TITLE_SIZE, true);
        for l in &lines {
            width = width.max(text_width(l, LINE_SIZE, false));
        }
        if show_status {
            let cells = text_width(status.label(), LINE_SIZE, true)
                + if state {
                    text_width("State", LINE_SIZE, true) + 2.0 * PAD_X
                } else {
                    0.0
                };
            width = width.max(cells);
        }
        let width = (width + 2.0 * PAD_X).max(90.0).ceil();
        let height = TITLE_ROW
            + LINE_ROW * lines.len() as f64
            + if lines.is_empty() { 0.0 } else { 4.0 }
            + if show_status { STATUS_ROW } else { 0.0 };
        self.nodes.push(VNode {
            path,
            class,
            title,
            lines,
            status: show_status.then_some(status),
            state: show_status && state,
            groups: groups.to_vec(),
            width,
            height,
        });
        self.nodes.len() - 1
    }
}

/// Draws `model` as an SVG document.
///
/// The SVG is made to be read back: every box is a `<g class="node" data-name="PATH"
/// data-status="trainable|frozen|partial|none">` holding a `<rect class="box">`, every edge a
/// `<polyline class="edge" data-from="PATH" data-to="PATH">`, every nested model drawn expanded a
/// `<g class="group" data-name="PATH">`.
pub fn model_to_svg(model: &Model, opts: &PlotOptions) -> Result<String> {
    let mut b = Builder {
        opts,
        nodes: Vec::new(),
        edges: Vec::new(),
        groups: Vec::new(),
    };
    b.add_model(model, "", &[]);
    let Builder {
        nodes,
        edges,
        groups,
        ..
    } = b;
    let lr = opts.rankdir == RankDir::LR;
    let specs: Vec<NodeSpec> = nodes
        .iter()
        .map(|n| NodeSpec {
            breadth: if lr { n.height } else { n.width },
            depth: if lr { n.width } else { n.height },
            groups: n.groups.clone(),
        })
        .collect();
    let spacing = Spacing {
        node_gap: if lr { 14.0 } else { 18.0 },
        rank_gap: if lr { 48.0 } else { 30.0 },
        group_pad: 16.0,
        dummy_breadth: 6.0,
    };
    let lay = layout(&specs, &edges, spacing)
        .map_err(|e| Error::Graph(format!("model '{}': {e}", model.name())))?;

    // Header: a title, and the legend when colours mean something.
    let counts = model.counts();
    let title = format!(
        "{} ({})  ·  Total params: {}  ·  Trainable: {}  ·  Non-trainable: {}",
        model.name(),
        model.class_name(),
        thousands(counts.trainable + counts.non_trainable),
        thousands(counts.trainable),
        thousands(counts.non_trainable)
    );
    let legend = legend_items(opts, &nodes, &groups);
    let legend_width: f64 = legend
        .iter()
        .map(|(_, t)| 26.0 + text_width(t, LINE_SIZE, false) + 18.0)
        .sum();
    let header = 30.0 + if legend.is_empty() { 0.0 } else { 26.0 };

    let (lo, hi, ranks) = lay.extent;
    let map = |(o, r): (f64, f64)| -> (f64, f64) {
        if lr {
            (MARGIN + r, header + MARGIN + (o - lo))
        } else {
            (MARGIN + (o - lo), header + MARGIN + r)
        }
    };
    let (graph_w, graph_h) = if lr {
        (ranks, hi - lo)
    } else {
        (hi - lo, ranks)
    };
    let width = (graph_w + 2.0 * MARGIN)
        .max(text_width(&title, TITLE_SIZE, true) + 2.0 * MARGIN)
        .max(legend_width + 2.0 * MARGIN)
        .ceil();
    let height = (graph_h + header + 2.0 * MARGIN).ceil();

    let mut out = String::new();
    super::svg::open(&mut out, width, height);
    out.push_str(concat!(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" ",
        "markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">",
        "<path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555555\"/></marker></defs>\n"
    ));
    text(
        &mut out,
        MARGIN,
        MARGIN + 8.0,
        TITLE_SIZE,
        "start",
        "font-weight=\"bold\"",
        &title,
    );
    let mut x = MARGIN;
    for (swatch, label) in &legend {
        let y = MARGIN + 26.0;
        out.push_str(&format!("<g class=\"legend-item\">{}", swatch.draw(x, y)));
        text(&mut out, x + 24.0, y + 11.0, LINE_SIZE, "start", "", label);
        out.push_str("</g>\n");
        x += 26.0 + text_width(label, LINE_SIZE, false) + 18.0;
    }

    // Boxes of nested models: around their members (and the routes of their inner edges), wider
    // the further out the group is.
    for (g, group) in groups.iter().enumerate() {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (v, n) in nodes.iter().enumerate() {
            let Some(level) = n.groups.iter().position(|&h| h == g) else {
                continue;
            };
            let pad = spacing.group_pad * (n.groups.len() - level) as f64 - 4.0;
            let (cx, cy) = map(lay.centres[v]);
            x0 = x0.min(cx - n.width / 2.0 - pad);
            x1 = x1.max(cx + n.width / 2.0 + pad);
            y0 = y0.min(cy - n.height / 2.0 - pad);
            y1 = y1.max(cy + n.height / 2.0 + pad);
        }
        if x0 > x1 {
            continue;
        }
        // A band above the members for the label, so it sits clear of the first box.
        y0 -= GROUP_LABEL;
        let colour = if opts.show_trainable {
            group.status.colour()
        } else {
            "#555555"
        };
        out.push_str(&format!(
            "<g class=\"group\" data-name=\"{}\" data-status=\"{}\">\
             <rect class=\"group-box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\" \
             fill=\"#fafafa\" stroke=\"{colour}\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/>",
            esc(&group.path),
            group.status.key(),
            num(x0),
            num(y0),
            num(x1 - x0),
            num(y1 - y0),
        ));
        let label = if opts.show_trainable && group.status != TrainStatus::NoWeights {
            format!("{} · {}", group.label, group.status.label())
        } else {
            group.label.clone()
        };
        text(
            &mut out,
            x0 + 6.0,
            y0 + 11.0,
            10.0,
            "start",
            &format!("fill=\"{colour}\" font-weight=\"bold\""),
            &label,
        );
        out.push_str("</g>\n");
    }

    for (e, &(a, b)) in edges.iter().enumerate() {
        let pts: Vec<String> = lay.routes[e]
            .iter()
            .map(|&p| {
                let (x, y) = map(p);
                format!("{},{}", num(x), num(y))
            })
            .collect();
        out.push_str(&format!(
            "<polyline class=\"edge\" data-from=\"{}\" data-to=\"{}\" points=\"{}\" \
             fill=\"none\" stroke=\"#555555\" stroke-width=\"1.2\" marker-end=\"url(#arrow)\"/>\n",
            esc(&nodes[a].path),
            esc(&nodes[b].path),
            pts.join(" ")
        ));
    }

    for (v, n) in nodes.iter().enumerate() {
        let (cx, cy) = map(lay.centres[v]);
        draw_node(&mut out, n, cx - n.width / 2.0, cy - n.height / 2.0);
    }
    out.push_str("</svg>\n");
    Ok(out)
}

fn draw_node(out: &mut String, n: &VNode, x: f64, y: f64) {
    let header = n.status.map_or("#333333", TrainStatus::colour);
    out.push_str(&format!(
        "<g class=\"node\" data-name=\"{}\" data-class=\"{}\" data-status=\"{}\" data-state=\"{}\">\
         <rect class=\"box\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#ffffff\" \
         stroke=\"{header}\" stroke-width=\"1.2\"/>\
         <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{header}\"/>",
        esc(&n.path),
        esc(&n.class),
        n.status.map_or("none", TrainStatus::key),
        n.state,
        num(x),
        num(y),
        num(n.width),
        num(n.height),
        num(x),
        num(y),
        num(n.width),
        num(TITLE_ROW),
    ));
    text(
        out,
        x + n.width / 2.0,
        y + 15.5,
        TITLE_SIZE,
        "middle",
        "fill=\"#ffffff\" font-weight=\"bold\"",
        &n.title,
    );
    let mut ly = y + TITLE_ROW + 2.0;
    for l in &n.lines {
        text(
            out,
            x + PAD_X,
            ly + 12.0,
            LINE_SIZE,
            "start",
            "xml:space=\"preserve\"",
            l,
        );
        ly += LINE_ROW;
    }
    if let Some(status) = n.status {
        let sy = y + n.height - STATUS_ROW;
        let state_w = if n.state {
            text_width("State", LINE_SIZE, true) + 2.0 * PAD_X
        } else {
            0.0
        };
        let status_w = n.width - state_w;
        out.push_str(&format!(
            "<rect class=\"status\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
            num(x),
            num(sy),
            num(status_w),
            num(STATUS_ROW),
            status.colour()
        ));
        text(
            out,
            x + status_w / 2.0,
            sy + 13.0,
            LINE_SIZE,
            "middle",
            "fill=\"#ffffff\" font-weight=\"bold\"",
            status.label(),
        );
        if n.state {
            out.push_str(&format!(
                "<rect class=\"state\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{STATE_COLOUR}\"/>",
                num(x + status_w),
                num(sy),
                num(state_w),
                num(STATUS_ROW),
            ));
            text(
                out,
                x + status_w + state_w / 2.0,
                sy + 13.0,
                LINE_SIZE,
                "middle",
                "fill=\"#ffffff\" font-weight=\"bold\"",
                "State",
            );
        }
    }
    out.push_str("</g>\n");
}

/// A legend swatch.
enum Swatch {
    Fill(&'static str),
    Group,
}

impl Swatch {
    fn draw(&self, x: f64, y: f64) -> String {
        match self {
            Swatch::Fill(c) => format!(
                "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"14\" fill=\"{c}\"/>",
                num(x),
                num(y)
            ),
            Swatch::Group => format!(
                "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"14\" rx=\"3\" fill=\"#fafafa\" \
                 stroke=\"#555555\" stroke-dasharray=\"4 2\"/>",
                num(x),
                num(y)
            ),
        }
    }
}

/// The legend entries for what the picture actually shows.
fn legend_items(opts: &PlotOptions, nodes: &[VNode], groups: &[Group]) -> Vec<(Swatch, String)> {
    let mut items = Vec::new();
    if !opts.show_trainable {
        if !groups.is_empty() {
            items.push((Swatch::Group, "nested model".to_string()));
        }
        return items;
    }
    let present = |s: TrainStatus| {
        nodes.iter().any(|n| n.status == Some(s)) || groups.iter().any(|g| g.status == s)
    };
    for (s, text) in [
        (
            TrainStatus::Trainable,
            "Trainable: updated by the optimizer",
        ),
        (
            TrainStatus::NonTrainable,
            "Non-trainable: frozen, never changes",
        ),
        (TrainStatus::Partial, "Partly trainable nested model"),
    ] {
        if present(s) {
            items.push((Swatch::Fill(s.colour()), text.to_string()));
        }
    }
    if nodes.iter().any(|n| n.state) {
        items.push((
            Swatch::Fill(STATE_COLOUR),
            "State: moving statistics, never trained".to_string(),
        ));
    }
    if !groups.is_empty() {
        items.push((Swatch::Group, "nested model".to_string()));
    }
    items
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Draws `model` to `path`: SVG, or PNG when the name ends in `.png` (at `opts.dpi`).
///
/// ```
/// use frostnet::{Sequential, layers::{Input, Dense, BatchNormalization, Layer, LayerOptions}};
/// use frostnet::plot::{plot_model, PlotOptions};
/// let mut model = Sequential::new();
/// model.add(Input::new(&[100]))?;
/// model.add(Dense::new(10).trainable(false))?;
/// model.add(BatchNormalization::new())?;
/// let path = std::env::temp_dir().join("frostnet_doc_plot_model.svg");
/// let opts = PlotOptions { show_shapes: true, show_trainable: true, ..Default::default() };
/// plot_model(&model, path.to_str().unwrap(), &opts)?;
/// # Ok::<(), frostnet::Error>(())
/// ```
pub fn plot_model(model: &Model, path: &str, opts: &PlotOptions) -> Result<()> {
    let svg = model_to_svg(model, opts)?;
    super::raster::write_picture(&svg, path, opts.dpi)
}
