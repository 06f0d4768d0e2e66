//! Model files: frostnet's native format (`native.rs`: safetensors weights + JSON), and Keras's.

mod native;

pub use native::{load_weights, save_weights};

use crate::error::{Error, Result};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash never leaves a half-written file where a good one was.
pub(crate) fn write_atomic(path: &str, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_string(),
        source: e,
    };
    let p = Path::new(path);
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = p.file_name().ok_or_else(|| Error::File {
        path: path.into(),
        message: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
