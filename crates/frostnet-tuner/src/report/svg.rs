//! The few drawing helpers the report's inline SVG needs: escaping, scales, ticks, colours.
//! Written here rather than through a plotting crate: the report draws five simple pictures, and
//! its SVG must hold one element per trial with the trial's data (a plotting crate's output
//! would not), in a file that works offline.

use crate::space::plain_float;

/// Escapes text for an XML/HTML text node or a double- or single-quoted attribute.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 documents.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A number as a user writes it (4 significant digits).
pub(crate) fn num(v: f64) -> String {
    plain_float(v)
}

/// A pixel coordinate, rounded to 0.1 px (smaller files, no visible difference).
pub(crate) fn px(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A map from data to pixels along one axis, linear or logarithmic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    /// Pixel of `lo` and of `hi`.
    pub a: f64,
    pub b: f64,
}

impl Scale {
    /// A scale over `[lo, hi]` (widened when empty, so every value has a place).
    pub(crate) fn new(lo: f64, hi: f64, log: bool, a: f64, b: f64) -> Scale {
        let log = log && lo > 0.0 && hi > 0.0;
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi <= lo {
            if log {
                lo /= 2.0;
                hi *= 2.0;
            } else {
                let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
                lo -= pad;
                hi += pad;
            }
        }
        Scale { lo, hi, log, a, b }
    }

    /// Where `v` falls in `[0, 1]` of the range (outside values clamp).
    pub(crate) fn unit(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    pub(crate) fn px(&self, v: f64) -> f64 {
        self.a + (self.b - self.a) * self.unit(v)
    }

    /// Tick values: decades (with 2 and 5 when fewer than three decades) on a log scale, 1-2-5
    /// steps on a linear one.
    pub(crate) fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().floor() as i32,
                self.hi.log10().ceil() as i32,
            );
            let mults: &[f64] = if b - a < 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let mut v = Vec::new();
            for e in a..=b {
                for m in mults {
                    let t = m * 10f64.powi(e);
                    if t >= self.lo * (1.0 - 1e-9) && t <= self.hi * (1.0 + 1e-9) {
                        v.push(t);
                    }
                }
            }
            if v.len() < 2 {
                v = vec![self.lo, self.hi];
            }
            return v;
        }
        let raw = (self.hi - self.lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let mut v = Vec::new();
        let mut k = (self.lo / step).ceil();
        while k * step <= self.hi + step * 1e-9 && v.len() < 50 {
            // `k * step` rather than repeated additions: no drift, and zero prints as 0.
            let t = k * step;
            v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
            k += 1.0;
        }
        v
    }
}

/// A colour for `t` in `[0, 1]` from the viridis palette (dark purple at 0, yellow at 1), which
/// reads in grey scale and for colour-blind readers.
pub(crate) fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let c = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let s = Scale::new(0.13, 0.97, false, 0.0, 100.0);
        let labels: Vec<String> = s.ticks().into_iter().map(num).collect();
        assert_eq!(labels, ["0.2", "0.4", "0.6", "0.8"]);
        let l = Scale::new(1e-4, 1e-1, true, 0.0, 100.0);
        assert_eq!(l.ticks(), vec![1e-4, 1e-3, 1e-2, 1e-1]);
        assert!((l.px(1e-2) - 200.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b & \"c\" 'd'"),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;"
        );
    }
}
