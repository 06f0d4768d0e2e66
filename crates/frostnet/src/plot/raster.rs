//! SVG to PNG through `resvg` (pure Rust, no Graphviz or Cairo), with the system's fonts.

use crate::error::{Error, Result};

/// The largest picture we rasterise: 100 megapixels (400 MB of RGBA). A 313-layer graph at 96 dpi
/// is about 25.
pub const MAX_PIXELS: u64 = 100_000_000;

/// Renders an SVG document to PNG bytes at `dpi` (96 = one SVG pixel per PNG pixel).
///
/// Needs the crate's `png` feature (the `frostnet` command has it); without it this returns an
/// error saying so.
#[cfg(not(feature = "png"))]
pub fn svg_to_png(_svg: &str, _dpi: u32) -> Result<Vec<u8>> {
    Err(Error::InvalidConfig(
        "PNG output needs frostnet's `png` feature (SVG works without it)".into(),
    ))
}

/// Renders an SVG document to PNG bytes at `dpi` (96 = one SVG pixel per PNG pixel).
#[cfg(feature = "png")]
pub fn svg_to_png(svg: &str, dpi: u32) -> Result<Vec<u8>> {
    if dpi == 0 || dpi > 2400 {
        return Err(Error::InvalidConfig(format!(
            "dpi must be between 1 and 2400, got {dpi}"
        )));
    }
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::InvalidConfig(format!("cannot render the SVG: {e}")))?;
    let scale = dpi as f32 / 96.0;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).ceil() as u64,
        (size.height() * scale).ceil() as u64,
    );
    if w == 0 || h == 0 || w * h > MAX_PIXELS {
        return Err(Error::InvalidConfig(format!(
            "a {w}x{h} PNG is outside 1 .. {MAX_PIXELS} pixels; lower the dpi or write SVG"
        )));
    }
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w as u32, h as u32)
        .ok_or_else(|| Error::InvalidConfig(format!("cannot allocate a {w}x{h} picture")))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::InvalidConfig(format!("cannot encode the PNG: {e}")))
}

/// Writes `svg` to `path`: as SVG text, or rasterised when the path ends in `.png`.
pub(crate) fn write_picture(svg: &str, path: &str, dpi: u32) -> Result<()> {
    let lower = path.to_ascii_lowercase();
    let bytes = if lower.ends_with(".png") {
        svg_to_png(svg, dpi)?
    } else if lower.ends_with(".svg") {
        svg.as_bytes().to_vec()
    } else {
        return Err(Error::File {
            path: path.into(),
            message: "unknown picture format: the name must end in .svg or .png".into(),
        });
    };
    // Written beside and renamed into place, so a viewer refreshing the file (the history
    // callback redraws it every epoch) never sees half a picture.
    let tmp = format!("{path}.tmp");
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
