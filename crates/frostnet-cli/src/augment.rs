//! `frostnet fit --augment SPEC`: Keras's data-augmentation recipe as a `Sequential` named
//! `data_augmentation` of preprocessing layers, placed in front of the base so the saved `.keras`
//! carries it (random in training, passed through at inference).
//!
//! SPEC is a comma-separated list, applied in order: `flip` (left-right; or
//! `flip=horizontal|vertical|horizontal_and_vertical`), `rotation=F` (a fraction of a full turn),
//! `zoom=F`, `translation=F` (a fraction of the height and of the width), `contrast=F`,
//! `brightness=F` (a fraction of the 0..255 pixel range).

use frostnet::layers::{
    FlipMode, Input, Layer, RandomBrightness, RandomContrast, RandomFlip, RandomRotation,
    RandomTranslation, RandomZoom,
};
use frostnet::{Model, Sequential};

/// The accepted items, for error messages.
pub const USAGE: &str = "flip[=horizontal|vertical|horizontal_and_vertical], rotation=F, \
                         zoom=F, translation=F, contrast=F, brightness=F";

/// One parsed item of the spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Augment {
    Flip(FlipMode),
    Rotation(f64),
    Zoom(f64),
    Translation(f64),
    Contrast(f64),
    Brightness(f64),
}

/// Parses SPEC; errors are one line naming the item and what is accepted.
pub fn parse(spec: &str) -> Result<Vec<Augment>, String> {
    let bad =
        |item: &str, why: &str| format!("--augment {spec}: '{item}' {why} (accepted: {USAGE})");
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(bad(item, "is empty"));
        }
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        let number = |lo: f64, hi: f64, range: &str| -> Result<f64, String> {
            let v = value.ok_or_else(|| bad(item, "needs a value, as in rotation=0.1"))?;
            match v.parse::<f64>() {
                Ok(f) if f > lo && f <= hi => Ok(f),
                _ => Err(bad(item, &format!("needs a number in {range}"))),
            }
        };
        out.push(match key {
            "flip" => Augment::Flip(match value {
                None => FlipMode::Horizontal,
                Some(m) => m.parse().map_err(|_| bad(item, "is not a flip mode"))?,
            }),
            "rotation" => Augment::Rotation(number(0.0, 1.0, "(0, 1]")?),
            "zoom" => Augment::Zoom(number(0.0, 1.0, "(0, 1]")?),
            "translation" => Augment::Translation(number(0.0, 1.0, "(0, 1]")?),
            "contrast" => Augment::Contrast(number(0.0, 1.0, "(0, 1]")?),
            "brightness" => Augment::Brightness(number(0.0, 1.0, "(0, 1]")?),
            _ => return Err(bad(item, "is not an augmentation")),
        });
    }
    Ok(out)
}

/// The `data_augmentation` Sequential for `size x size x 3` images; layer `i` is seeded with
/// `seed + i` so a run repeats.
pub fn model(items: &[Augment], size: usize, seed: u64) -> frostnet::Result<Model> {
    let mut m = Sequential::named("data_augmentation");
    m.add(Input::new(&[size, size, 3]))?;
    for (i, item) in items.iter().enumerate() {
        let s = seed.wrapping_add(i as u64);
        let layer: Box<dyn Layer> = match *item {
            Augment::Flip(mode) => Box::new(RandomFlip::new(mode).seed(s)),
            Augment::Rotation(f) => Box::new(RandomRotation::new(f).seed(s)),
            Augment::Zoom(f) => Box::new(RandomZoom::new(f).seed(s)),
            Augment::Translation(f) => Box::new(RandomTranslation::new(f, f).seed(s)),
            Augment::Contrast(f) => Box::new(RandomContrast::new(f).seed(s)),
            Augment::Brightness(f) => Box::new(RandomBrightness::new(f).seed(s)),
        };
        m.add_boxed(layer)?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_recipe_and_refuses_nonsense() {
        assert_eq!(
            parse("flip,rotation=0.1,zoom=0.1").unwrap(),
            vec![
                Augment::Flip(FlipMode::Horizontal),
                Augment::Rotation(0.1),
                Augment::Zoom(0.1)
            ]
        );
        assert_eq!(
            parse("flip=vertical, contrast=0.2 ,brightness=0.3,translation=0.05").unwrap(),
            vec![
                Augment::Flip(FlipMode::Vertical),
                Augment::Contrast(0.2),
                Augment::Brightness(0.3),
                Augment::Translation(0.05)
            ]
        );
        for (spec, needle) in [
            ("shear=0.1", "'shear=0.1' is not an augmentation"),
            ("rotation", "needs a value"),
            ("rotation=abc", "needs a number"),
            ("zoom=1.5", "needs a number in (0, 1]"),
            ("flip=diagonal", "is not a flip mode"),
            ("flip,,zoom=0.1", "is empty"),
        ] {
            let e = parse(spec).unwrap_err();
            assert!(e.contains(needle) && !e.contains('\n'), "{spec}: {e}");
            assert!(e.starts_with(&format!("--augment {spec}:")), "{e}");
        }
    }

    #[test]
    fn builds_a_sequential_of_the_layers() {
        let m = model(&parse("flip,rotation=0.1,zoom=0.2").unwrap(), 32, 5).unwrap();
        let classes: Vec<&str> = m.layers().iter().map(|l| l.class_name()).collect();
        assert_eq!(classes, ["RandomFlip", "RandomRotation", "RandomZoom"]);
        assert_eq!(m.name(), "data_augmentation");
    }
}
