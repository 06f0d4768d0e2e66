//! The pictures read back: the SVG parsed as XML (boxes, edges, statuses), the PNG decoded.
//! Inside the crate so the graph's edges can be compared with the model's own inbound lists.

use super::*;
use crate::applications::{inception_v3, ApplicationOptions};
use crate::layers::{BatchNormalization, Dense, Input, LayerOptions};
use crate::models::Model;
use crate::{Functional, Sequential};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
    /// Whether the segment p-q passes through the rectangle's interior (shrunk by a hair so a
    /// segment ending on its border does not count).
    fn crossed_by(&self, p: (f64, f64), q: (f64, f64)) -> bool {
        let (x0, y0, x1, y1) = (
            self.x + 0.01,
            self.y + 0.01,
            self.x + self.w - 0.01,
            self.y + self.h - 0.01,
        );
        // Liang-Barsky clipping.
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let mut t0: f64 = 0.0;
        let mut t1: f64 = 1.0;
        for (pk, qk) in [
            (-dx, p.0 - x0),
            (dx, x1 - p.0),
            (-dy, p.1 - y0),
            (dy, y1 - p.1),
        ] {
            if pk == 0.0 {
                if qk < 0.0 {
                    return false;
                }
            } else {
                let t = qk / pk;
                if pk < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
        t0 < t1
    }
}

/// An edge: from, to, its polyline.
type Edge = (String, String, Vec<(f64, f64)>);

struct Parsed {
    width: f64,
    height: f64,
    /// path -> (box, status, state)
    nodes: BTreeMap<String, (Rect, String, bool)>,
    edges: Vec<Edge>,
    groups: BTreeMap<String, (Rect, String)>,
    legend: Vec<String>,
}

fn f(n: roxmltree::Node, a: &str) -> f64 {
    n.attribute(a).unwrap().parse().unwrap()
}

fn rect_of(n: roxmltree::Node) -> Rect {
    Rect {
        x: f(n, "x"),
        y: f(n, "y"),
        w: f(n, "width"),
        h: f(n, "height"),
    }
}

fn parse(svg: &str) -> Parsed {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let mut p = Parsed {
        width: f(root, "width"),
        height: f(root, "height"),
        nodes: BTreeMap::new(),
        edges: Vec::new(),
        groups: BTreeMap::new(),
        legend: Vec::new(),
    };
    for n in doc.descendants() {
        match n.attribute("class") {
            Some("node") => {
                let rect = n
                    .children()
                    .find(|c| c.attribute("class") == Some("box"))
                    .unwrap();
                let name = n.attribute("data-name").unwrap().to_string();
                let old = p.nodes.insert(
                    name.clone(),
                    (
                        rect_of(rect),
                        n.attribute("data-status").unwrap().to_string(),
                        n.attribute("data-state") == Some("true"),
                    ),
                );
                assert!(old.is_none(), "two boxes named {name}");
            }
            Some("edge") => {
                let pts = n
                    .attribute("points")
                    .unwrap()
                    .split(' ')
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                p.edges.push((
                    n.attribute("data-from").unwrap().to_string(),
                    n.attribute("data-to").unwrap().to_string(),
                    pts,
                ));
            }
            Some("group") => {
                let rect = n
                    .children()
                    .find(|c| c.attribute("class") == Some("group-box"))
                    .unwrap();
                p.groups.insert(
                    n.attribute("data-name").unwrap().to_string(),
                    (rect_of(rect), n.attribute("data-status").unwrap().into()),
                );
            }
            Some("legend-item") => {
                let t = n.children().find(|c| c.has_tag_name("text")).unwrap();
                p.legend.push(t.text().unwrap().to_string());
            }
            _ => {}
        }
    }
    p
}

/// Every box inside the picture, no two overlapping, every edge leaving its source on the side
/// facing the next layer and arriving on the target's facing side, and no edge crossing a box.
fn check_geometry(p: &Parsed, dir: RankDir) {
    let boxes: Vec<(&String, &Rect)> = p.nodes.iter().map(|(k, v)| (k, &v.0)).collect();
    for (name, r) in &boxes {
        assert!(
            r.x >= 0.0 && r.y >= 0.0 && r.x + r.w <= p.width && r.y + r.h <= p.height,
            "{name} {r:?} outside {}x{}",
            p.width,
            p.height
        );
    }
    for i in 0..boxes.len() {
        for j in i + 1..boxes.len() {
            assert!(
                !boxes[i].1.overlaps(boxes[j].1),
                "{} {:?} overlaps {} {:?}",
                boxes[i].0,
                boxes[i].1,
                boxes[j].0,
                boxes[j].1
            );
        }
    }
    for (from, to, pts) in &p.edges {
        let a = p.nodes[from].0;
        let b = p.nodes[to].0;
        let (s, e) = (pts[0], pts[pts.len() - 1]);
        let near = |u: f64, v: f64| (u - v).abs() < 0.02;
        match dir {
            RankDir::TB => {
                assert!(
                    near(s.1, a.y + a.h) && s.0 > a.x && s.0 < a.x + a.w,
                    "{from}->{to} starts at {s:?}, box {a:?}"
                );
                assert!(
                    near(e.1, b.y) && e.0 > b.x && e.0 < b.x + b.w,
                    "{from}->{to} ends at {e:?}, box {b:?}"
                );
            }
            RankDir::LR => {
                assert!(
                    near(s.0, a.x + a.w) && s.1 > a.y && s.1 < a.y + a.h,
                    "{from}->{to} starts at {s:?}, box {a:?}"
                );
                assert!(
                    near(e.0, b.x) && e.1 > b.y && e.1 < b.y + b.h,
                    "{from}->{to} ends at {e:?}, box {b:?}"
                );
            }
        }
        for seg in pts.windows(2) {
            for (name, r) in &boxes {
                assert!(
                    !r.crossed_by(seg[0], seg[1]),
                    "edge {from}->{to} segment {:?}-{:?} crosses {name} {r:?}",
                    seg[0],
                    seg[1]
                );
            }
        }
    }
}

/// The model's own edges, by box path (nested models not expanded).
fn model_edges(model: &Model) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for node in &model.nodes {
        for &j in &node.inbound {
            out.insert((
                model.nodes[j].layer.name().to_string(),
                node.layer.name().to_string(),
            ));
        }
    }
    out
}

fn all_on() -> PlotOptions {
    PlotOptions {
        show_shapes: true,
        show_layer_names: true,
        show_trainable: true,
        ..Default::default()
    }
}

#[test]
fn inception_v3_is_readable_and_shows_the_layers_249_recipe() {
    let mut model = inception_v3(&ApplicationOptions::default()).unwrap();
    model.set_trainable_range(0..249, false).unwrap();
    for dir in [RankDir::TB, RankDir::LR] {
        let opts = PlotOptions {
            rankdir: dir,
            ..all_on()
        };
        let p = parse(&model_to_svg(&model, &opts).unwrap());
        // One box per layer (Keras's 313, the input layer included), one edge per connection.
        assert_eq!(p.nodes.len(), 313);
        assert_eq!(p.nodes.len(), model.layers().len());
        let drawn: Vec<(String, String)> = p
            .edges
            .iter()
            .map(|(a, b, _)| (a.clone(), b.clone()))
            .collect();
        let drawn_set: BTreeSet<_> = drawn.iter().cloned().collect();
        assert_eq!(drawn.len(), drawn_set.len());
        assert_eq!(drawn_set, model_edges(&model));
        check_geometry(&p, dir);
        // Keras's recipe: layers[:249] frozen, the rest trains; BN boxes show their State.
        for (i, layer) in model.layers().iter().enumerate() {
            let (_, status, state) = &p.nodes[layer.name()];
            let want = match (layer.weights().is_empty(), i < 249) {
                (true, _) => "none",
                (false, true) => "frozen",
                (false, false) => "trainable",
            };
            assert_eq!(status, want, "layer {i} {}", layer.name());
            assert_eq!(*state, layer.class_name() == "BatchNormalization");
        }
        assert_eq!(
            p.legend,
            [
                "Trainable: updated by the optimizer",
                "Non-trainable: frozen, never changes",
                "State: moving statistics, never trained"
            ]
        );
    }
}

/// base = Sequential(Input(8), Dense(4) frozen, BatchNormalization); outer: input -> base -> head.
fn nested_model() -> Model {
    let mut base = Sequential::named("base");
    base.add(Input::new(&[8])).unwrap();
    base.add(Dense::new(4).named("inner_dense").trainable(false))
        .unwrap();
    base.add(BatchNormalization::new().named("inner_bn"))
        .unwrap();
    let mut g = Functional::new();
    let x = g.input(Input::new(&[8]).named("pixels"));
    let h = g.call_boxed(Box::new(base), &[x]).unwrap();
    let y = g.call(Dense::new(1).named("head"), &[h]).unwrap();
    g.build(&[x], &[y]).unwrap()
}

#[test]
fn a_partly_frozen_nested_model_is_one_orange_box_or_a_group() {
    let model = nested_model();
    let p = parse(&model_to_svg(&model, &all_on()).unwrap());
    assert_eq!(p.nodes["base"].1, "partial");
    assert_eq!(p.nodes["head"].1, "trainable");
    assert!(p
        .legend
        .contains(&"Partly trainable nested model".to_string()));
    check_geometry(&p, RankDir::TB);

    let opts = PlotOptions {
        expand_nested: true,
        ..all_on()
    };
    let p = parse(&model_to_svg(&model, &opts).unwrap());
    let (group, status) = &p.groups["base"];
    assert_eq!(status, "partial");
    let inner: Vec<&String> = p.nodes.keys().filter(|k| k.starts_with("base/")).collect();
    assert_eq!(inner.len(), 3, "{inner:?}"); // the inner input layer, dense and bn
    for k in &inner {
        let r = p.nodes[*k].0;
        assert!(
            r.x > group.x
                && r.y > group.y
                && r.x + r.w < group.x + group.w
                && r.y + r.h < group.y + group.h,
            "{k} {r:?} outside the group {group:?}"
        );
    }
    for k in ["pixels", "head"] {
        assert!(!p.nodes[k].0.overlaps(group), "{k} inside the group");
    }
    assert_eq!(p.nodes["base/inner_dense"].1, "frozen");
    assert_eq!(p.nodes["base/inner_bn"].1, "trainable");
    assert!(p.nodes["base/inner_bn"].2);
    let edges: BTreeSet<(&str, &str)> = p
        .edges
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    let first_inner = p
        .nodes
        .keys()
        .find(|k| k.starts_with("base/") && !k.contains("inner"))
        .unwrap();
    let want: BTreeSet<(&str, &str)> = [
        ("pixels", first_inner.as_str()),
        (first_inner.as_str(), "base/inner_dense"),
        ("base/inner_dense", "base/inner_bn"),
        ("base/inner_bn", "head"),
    ]
    .into();
    assert_eq!(edges, want);
    check_geometry(&p, RankDir::TB);
}

#[test]
fn without_show_trainable_nothing_is_coloured_and_there_is_no_legend() {
    let model = nested_model();
    let svg = model_to_svg(&model, &PlotOptions::default()).unwrap();
    let p = parse(&svg);
    assert!(p.nodes.values().all(|(_, s, state)| s == "none" && !state));
    assert!(p.legend.is_empty());
    // Keras's default label is the class name alone.
    assert!(svg.contains(">Dense</text>") && !svg.contains("head (Dense)"));
}

#[test]
#[cfg_attr(
    not(feature = "png"),
    ignore = "PNG needs the `png` feature (--all-features)"
)]
fn the_png_has_the_svg_size_times_dpi_and_the_colours_of_the_boxes() {
    let model = nested_model();
    let opts = all_on();
    let svg = model_to_svg(&model, &opts).unwrap();
    let p = parse(&svg);
    for dpi in [96u32, 192] {
        let png = svg_to_png(&svg, dpi).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let scale = dpi as f64 / 96.0;
        assert_eq!(info.width as f64, (p.width * scale).ceil());
        assert_eq!(info.height as f64, (p.height * scale).ceil());
        assert_eq!(info.color_type, png::ColorType::Rgba);
        let pixel = |x: f64, y: f64| {
            let (x, y) = ((x * scale) as usize, (y * scale) as usize);
            let i = (y * info.width as usize + x) * 4;
            (buf[i], buf[i + 1], buf[i + 2])
        };
        // The top-left corner of each header: firebrick for frozen, orange for partial,
        // forestgreen for trainable; the background white.
        let inside = |r: &Rect| (r.x + 3.0, r.y + 3.0);
        let (x, y) = inside(&p.nodes["base"].0);
        assert_eq!(pixel(x, y), (0xd2, 0x69, 0x1e));
        let (x, y) = inside(&p.nodes["head"].0);
        assert_eq!(pixel(x, y), (0x22, 0x8b, 0x22));
        assert_eq!(pixel(1.0, p.height - 2.0), (255, 255, 255));
    }
    let dir = std::env::temp_dir().join(format!("frostnet_plot_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("model.gif");
    let err = plot_model(&model, bad.to_str().unwrap(), &opts).unwrap_err();
    assert!(
        err.to_string().contains("must end in .svg or .png"),
        "{err}"
    );
    assert!(svg_to_png(&svg, 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
