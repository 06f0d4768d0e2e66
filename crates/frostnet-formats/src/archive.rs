//! Keras 3 `.keras` archives: a zip holding `metadata.json`, `config.json`
//! and `model.weights.h5` (plus `assets/` for layers that have assets).

use std::io::{Cursor, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::{read_file, Origin, Result};
use crate::h5::H5;
use crate::{keras3, KerasArchive, Limits};

/// The zip local file header signature, which every zip starts with.
pub(crate) const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";

/// Reads a `.keras` archive: its config, its metadata and its weights, with
/// the layers in `model.layers` order (taken from the config).
pub fn read_keras_archive(path: impl AsRef<Path>) -> Result<KerasArchive> {
    let path = path.as_ref();
    parse(read_file(path)?, path, &Limits::default())
}

type Zip = zip::ZipArchive<Cursor<Vec<u8>>>;

fn open(bytes: Vec<u8>, o: &Origin) -> Result<(Zip, u64)> {
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(o.unknown("no zip signature (a .keras file is a zip archive)"));
    }
    let len = bytes.len() as u64;
    let zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| o.invalid("zip directory", format!("cannot open zip archive: {e}")))?;
    Ok((zip, len))
}

fn config(zip: &mut Zip, o: &Origin, len: u64, limits: &Limits) -> Result<Value> {
    let config = member(zip, o, len, "config.json", limits.max_json_bytes)?
        .ok_or_else(|| o.missing("zip directory", "member config.json"))?;
    serde_json::from_slice(&config)
        .map_err(|e| o.invalid("config.json", format!("invalid JSON: {e}")))
}

/// Only `config.json`, for [`crate::read_config`].
pub(crate) fn config_only(bytes: Vec<u8>, path: &Path, limits: &Limits) -> Result<Value> {
    let o = Origin::new(path, "");
    let (mut zip, len) = open(bytes, &o)?;
    config(&mut zip, &o, len, limits)
}

pub(crate) fn parse(bytes: Vec<u8>, path: &Path, limits: &Limits) -> Result<KerasArchive> {
    let o = Origin::new(path, "");
    let (mut zip, len) = open(bytes, &o)?;
    let config = config(&mut zip, &o, len, limits)?;
    let metadata = match member(&mut zip, &o, len, "metadata.json", limits.max_json_bytes)? {
        None => None,
        Some(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| o.invalid("metadata.json", format!("invalid JSON: {e}")))?,
        ),
    };
    let weights = member(
        &mut zip,
        &o,
        len,
        "model.weights.h5",
        limits.max_weights_member_bytes,
    )?
    .ok_or_else(|| o.missing("zip directory", "member model.weights.h5"))?;
    let h5 = H5::open(weights, Origin::new(path, "model.weights.h5:"))?
        .limit_datasets(limits.max_dataset_bytes);
    let weights = keras3::parse(&h5, Some(&config))?;
    Ok(KerasArchive {
        config,
        metadata,
        weights,
    })
}

/// Reads the zip member `name`, or returns `None` if there is none.
///
/// The member's declared size is checked before allocating: a stored member
/// cannot be larger than the archive, and a compressed one not larger than
/// deflate's maximum ratio allows. The read is also capped at the declared
/// size plus one byte (so that the zip reader reaches the end and checks the
/// CRC), so a member that lies about its size cannot grow past the check.
/// `cap` is the caller's own limit for this member (see [`Limits`]).
fn member(
    zip: &mut Zip,
    o: &Origin,
    archive_len: u64,
    name: &str,
    cap: u64,
) -> Result<Option<Vec<u8>>> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(o.invalid(name, format!("cannot open zip member: {e}"))),
    };
    let size = file.size();
    let limit = if file.compression() == zip::CompressionMethod::Stored {
        archive_len
    } else {
        file.compressed_size().saturating_mul(1100)
    };
    if size > limit {
        return Err(o.invalid(
            name,
            format!("zip member declares {size} bytes, more than the archive can hold ({limit})"),
        ));
    }
    if size > cap {
        return Err(o.invalid(
            name,
            format!("zip member declares {size} bytes, more than the {cap} allowed for it"),
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    file.take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| o.invalid(name, format!("cannot read zip member: {e}")))?;
    if out.len() as u64 != size {
        return Err(o.invalid(
            name,
            format!(
                "zip member holds {} bytes, not the {size} it declares",
                out.len()
            ),
        ));
    }
    Ok(Some(out))
}
