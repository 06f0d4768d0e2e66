//! Small helpers for writing SVG by hand: escaping, number formatting, text width estimates.

/// Escapes text for SVG content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with at most two decimals and no trailing zeros (keeps files small and exact
/// enough: a hundredth of a pixel).
pub(crate) fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    let r = if r == 0.0 { 0.0 } else { r }; // no "-0"
    let s = format!("{r:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The font every picture uses: DejaVu Sans is what the rasteriser finds on most Linux systems;
/// browsers fall back to Helvetica/Arial, which are narrower, so the estimates below stay safe.
pub(crate) const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

/// An upper estimate of the width of `text` at `size` px in DejaVu Sans (its widest common glyphs
/// are digits and capitals, ~0.64-0.77 em; bold adds ~10%).
pub(crate) fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            ' ' => 0.32,
            '.' | ',' | ':' | ';' | '(' | ')' | '[' | ']' | '|' | '\'' | 'i' | 'l' | 'j' => 0.40,
            'm' | 'w' | 'M' | 'W' => 0.95,
            c if c.is_ascii_uppercase() => 0.74,
            c if c.is_ascii_digit() => 0.64,
            c if c.is_ascii() => 0.62,
            _ => 1.0,
        })
        .sum();
    em * size * if bold { 1.1 } else { 1.0 }
}

/// Writes an SVG document header with a white background.
pub(crate) fn open(out: &mut String, width: f64, height: f64) {
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\">\n\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
        w = num(width),
        h = num(height),
    ));
}

/// A `<text>` element.
pub(crate) fn text(
    out: &mut String,
    x: f64,
    y: f64,
    size: f64,
    anchor: &str,
    attrs: &str,
    content: &str,
) {
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{anchor}\"{}{}>{}</text>\n",
        num(x),
        num(y),
        num(size),
        if attrs.is_empty() { "" } else { " " },
        attrs,
        esc(content)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_never_negative_zero() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(-2.5), "-2.5");
    }

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
