//! The thin layer between the Keras readers and `hdf5-pure`.
//!
//! `hdf5-pure` does the HDF5 parsing. This module adds what a reader of
//! untrusted files needs on top: every error names the file and the HDF5
//! path, every dataset's declared size is checked against what the file can
//! hold before anything is allocated, only 32-bit floats are accepted, and
//! group walks are bounded so a file whose links form a cycle ends in an error
//! rather than a hang.

use std::cell::Cell;
use std::collections::HashMap;

use hdf5_pure::{AttrValue, DType, Datatype, DatatypeByteOrder, Layout};

use crate::error::{Origin, Result};
use crate::Weight;

/// How much larger than the file the decompressed data of chunked
/// (possibly deflated) datasets may be in total. Deflate cannot expand data
/// by more than about 1032:1, so anything past this is a lie.
const MAX_COMPRESSION_RATIO: u64 = 1100;

/// An open HDF5 file plus the limits that keep reading it bounded.
pub(crate) struct H5 {
    pub(crate) file: hdf5_pure::File,
    pub(crate) origin: Origin,
    /// Bytes still available for the data of uncompressed datasets. Each
    /// such dataset's bytes live in the file, so together they cannot exceed
    /// its length; a file that references the same data many times (hard
    /// links, repeated names) runs out of this and gets an error.
    plain_budget: Cell<u64>,
    /// The same for chunked datasets, whose data may be compressed.
    chunked_budget: Cell<u64>,
    /// Groups that a walk may still open. Every real group costs at least an
    /// object header of a few dozen bytes, so a file cannot hold more than
    /// `len / 16` of them; more means the walk is going around a cycle.
    groups_budget: Cell<u64>,
    /// The caller's cap on one dataset's bytes ([`crate::Limits::max_dataset_bytes`]).
    max_dataset_bytes: u64,
}

/// The HDF5 format signature.
pub(crate) const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Whether `bytes` is an HDF5 file: the signature sits at offset 0, or at
/// 512, 1024, 2048, ... when the file has a user block.
pub(crate) fn has_signature(bytes: &[u8]) -> bool {
    let mut offset = 0usize;
    loop {
        match bytes.get(offset..offset.saturating_add(8)) {
            Some(s) if s == SIGNATURE => return true,
            Some(_) => {}
            None => return false,
        }
        offset = if offset == 0 { 512 } else { offset * 2 };
    }
}

impl H5 {
    /// Parses `bytes` as HDF5. The bytes must already have passed
    /// [`has_signature`], or the error will say so.
    pub(crate) fn open(bytes: Vec<u8>, origin: Origin) -> Result<H5> {
        if !has_signature(&bytes) {
            return Err(origin.unknown("no HDF5 signature"));
        }
        let len = bytes.len() as u64;
        let file = hdf5_pure::File::from_bytes(bytes)
            .map_err(|e| origin.invalid("/", format!("cannot open HDF5 file: {e}")))?;
        Ok(H5 {
            file,
            origin,
            plain_budget: Cell::new(len),
            chunked_budget: Cell::new(len.saturating_mul(MAX_COMPRESSION_RATIO)),
            groups_budget: Cell::new(len / 16 + 64),
            max_dataset_bytes: u64::MAX,
        })
    }

    /// Refuses, before reading it, any dataset whose data needs more than `max` bytes.
    pub(crate) fn limit_datasets(mut self, max: u64) -> H5 {
        self.max_dataset_bytes = max;
        self
    }

    pub(crate) fn root(&self) -> hdf5_pure::Group {
        self.file.root()
    }

    /// Opens the child group `name` of `parent` (whose path is
    /// `parent_path`), counting it against the group budget.
    pub(crate) fn group(
        &self,
        parent: &hdf5_pure::Group,
        parent_path: &str,
        name: &str,
    ) -> Result<hdf5_pure::Group> {
        let path = join(parent_path, name);
        let left = self.groups_budget.get();
        if left == 0 {
            return Err(self.origin.invalid(
                &path,
                "too many groups for the file's size (do links form a cycle?)",
            ));
        }
        self.groups_budget.set(left - 1);
        parent
            .group(name)
            .map_err(|e| self.origin.missing(&path, format!("group ({e})")))
    }

    /// Names of the groups directly inside `group`.
    pub(crate) fn group_names(&self, group: &hdf5_pure::Group, path: &str) -> Result<Vec<String>> {
        group.groups().map_err(|e| {
            self.origin
                .invalid(path, format!("cannot list groups: {e}"))
        })
    }

    /// Names of the datasets directly inside `group`.
    pub(crate) fn dataset_names(
        &self,
        group: &hdf5_pure::Group,
        path: &str,
    ) -> Result<Vec<String>> {
        group.datasets().map_err(|e| {
            self.origin
                .invalid(path, format!("cannot list datasets: {e}"))
        })
    }

    /// All attributes of `group` that `hdf5-pure` can decode.
    pub(crate) fn attrs(
        &self,
        group: &hdf5_pure::Group,
        path: &str,
    ) -> Result<HashMap<String, AttrValue>> {
        group.attrs().map_err(|e| {
            self.origin
                .invalid(path, format!("cannot read attributes: {e}"))
        })
    }

    /// The error for a string-list attribute `name` that [`H5::attrs`] did not
    /// return: either it is not there, or `hdf5-pure` has no decoding for its
    /// type, which the two cases' messages tell apart.
    pub(crate) fn missing_attr(
        &self,
        group: &hdf5_pure::Group,
        path: &str,
        name: &str,
    ) -> crate::Error {
        let types = group.attr_datatypes().unwrap_or_default();
        match types.get(name).or_else(|| types.get(&format!("{name}0"))) {
            Some(dt) => self.origin.invalid(
                path,
                format!("attribute {name} has an undecodable type: {dt:?}"),
            ),
            None => self.origin.missing(path, format!("attribute {name}")),
        }
    }

    /// Reads the dataset at `name` (a path relative to `group`, which is at
    /// `group_path`) as 32-bit floats. 32- and 64-bit integer datasets (Keras's
    /// int64 Normalization `count`) are accepted when every value is an integer
    /// a 32-bit float holds exactly (magnitude at most 2^24); any other is an
    /// unsupported-dtype error rather than a silently rounded value.
    ///
    /// Before reading, checks that the element type is a 4-byte IEEE float,
    /// that the shape's byte count does not overflow, and that the file has
    /// that many bytes left for it (see [`H5::plain_budget`]).
    pub(crate) fn read_f32(
        &self,
        group: &hdf5_pure::Group,
        group_path: &str,
        name: &str,
    ) -> Result<Weight> {
        let path = join(group_path, name);
        let o = &self.origin;
        let ds = group
            .dataset(name)
            .map_err(|e| o.missing(&path, format!("dataset ({e})")))?;
        let dtype = ds
            .dtype()
            .map_err(|e| o.invalid(&path, format!("cannot read datatype: {e}")))?;
        // Keras stores a few integer variables (Normalization's int64 `count`); they are read
        // into f32 when every value is an integer f32 holds exactly (|v| <= 2^24).
        let (elem, big_endian) = match (&dtype, ds.datatype()) {
            (
                DType::F32 | DType::I64 | DType::I32,
                Ok(
                    Datatype::FloatingPoint {
                        size, byte_order, ..
                    }
                    | Datatype::FixedPoint {
                        size, byte_order, ..
                    },
                ),
            ) if size as usize == elem_size(&dtype) => {
                let big = match byte_order {
                    DatatypeByteOrder::LittleEndian => false,
                    DatatypeByteOrder::BigEndian => true,
                    other => {
                        return Err(o.dtype(&path, format!("{dtype} with {other:?} byte order")))
                    }
                };
                (elem_size(&dtype), big)
            }
            (DType::F32 | DType::I64 | DType::I32, Ok(other)) => {
                return Err(o.dtype(&path, format!("{other:?}")))
            }
            (DType::F32 | DType::I64 | DType::I32, Err(e)) => {
                return Err(o.invalid(&path, format!("cannot read datatype: {e}")))
            }
            (other, _) => return Err(o.dtype(&path, other.to_string())),
        };
        let shape = ds
            .shape()
            .map_err(|e| o.invalid(&path, format!("cannot read shape: {e}")))?;
        let count = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= usize::MAX as u64 / 8);
        let needed = count.map_or(u64::MAX, |n| n * elem as u64);
        let layout = ds
            .layout()
            .map_err(|e| o.invalid(&path, format!("cannot read storage layout: {e}")))?;
        let budget = match &layout {
            Layout::Compact { .. } | Layout::Contiguous { .. } => &self.plain_budget,
            Layout::Chunked { .. } => &self.chunked_budget,
            other => return Err(o.invalid(&path, format!("unsupported storage layout {other:?}"))),
        };
        if needed > self.max_dataset_bytes {
            return Err(o.invalid(
                &path,
                format!(
                    "shape {} is {needed} bytes, larger than any weight of the model ({})",
                    crate::error::short_shape(&shape),
                    self.max_dataset_bytes
                ),
            ));
        }
        if needed > budget.get() {
            return Err(o.too_large(&path, &shape, needed, budget.get()));
        }
        match layout {
            Layout::Compact { size } | Layout::Contiguous { size, .. } if size != needed => {
                return Err(o.invalid(
                    &path,
                    format!(
                        "storage holds {size} bytes, but shape {} needs {needed}",
                        crate::error::short_shape(&shape)
                    ),
                ));
            }
            Layout::Contiguous {
                address: Some(address),
                size,
            } if address
                .checked_add(size)
                .is_none_or(|end| end > self.file.file_size()) =>
            {
                return Err(o.invalid(
                    &path,
                    format!(
                        "data at {address}+{size} lies past the end of the file ({} bytes)",
                        self.file.file_size()
                    ),
                ));
            }
            _ => {}
        }
        budget.set(budget.get() - needed);
        let raw = ds
            .read_raw()
            .map_err(|e| o.invalid(&path, format!("cannot read data: {e}")))?;
        if raw.len() as u64 != needed {
            return Err(o.invalid(
                &path,
                format!(
                    "read {} bytes, but shape {} needs {needed}",
                    raw.len(),
                    crate::error::short_shape(&shape)
                ),
            ));
        }
        let data = match dtype {
            DType::F32 => raw
                .chunks_exact(4)
                .map(|b| {
                    let b = [b[0], b[1], b[2], b[3]];
                    if big_endian {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    }
                })
                .collect(),
            _ => {
                let ints: Vec<i64> = raw
                    .chunks_exact(elem)
                    .map(|b| match *b {
                        [a, b, c, d] if big_endian => i32::from_be_bytes([a, b, c, d]) as i64,
                        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as i64,
                        [a, b, c, d, e, f, g, h] if big_endian => {
                            i64::from_be_bytes([a, b, c, d, e, f, g, h])
                        }
                        [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
                        _ => unreachable!("chunks_exact(elem) with elem 4 or 8"),
                    })
                    .collect();
                if let Some(v) = ints.iter().find(|v| v.unsigned_abs() > 1 << 24) {
                    return Err(o.dtype(
                        &path,
                        format!("{dtype} holding {v}, which a 32-bit float cannot hold exactly"),
                    ));
                }
                ints.into_iter().map(|v| v as f32).collect()
            }
        };
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                o.invalid(
                    &path,
                    format!(
                        "shape {} does not fit in usize",
                        crate::error::short_shape(&shape)
                    ),
                )
            })?;
        Ok(Weight {
            name: name.to_string(),
            shape,
            data,
        })
    }
}

/// Joins HDF5 path components without doubling slashes.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The value of a string attribute, or a list of them.
///
/// Keras writes these three ways: variable-length UTF-8 or ASCII strings (h5py
/// 3), fixed-length byte strings (h5py 2 and the keras-applications weight
/// files), and, for an empty list, a float64 array of shape (0,) because
/// `np.asarray([])` is float64. A scalar string counts as a one-element list.
///
/// Returns `None` when the value is of some other type.
pub(crate) fn attr_strings(value: &AttrValue) -> Option<Vec<String>> {
    use AttrValue as A;
    let trim = |s: &String| s.trim_end_matches('\0').to_string();
    Some(match value {
        A::String(s) | A::AsciiString(s) | A::VarLenString(s) | A::VarLenAsciiString(s) => {
            vec![trim(s)]
        }
        A::StringSized { value, .. } | A::AsciiStringSized { value, .. } => vec![trim(value)],
        A::StringArray(v)
        | A::AsciiStringArray(v)
        | A::VarLenStringArray(v)
        | A::VarLenAsciiStringArray(v)
        | A::VarLenAsciiCharArray(v) => v.iter().map(trim).collect(),
        A::StringArraySized { values, .. } | A::AsciiStringArraySized { values, .. } => {
            values.iter().map(trim).collect()
        }
        A::F64Array(v) if v.is_empty() => Vec::new(),
        A::F32Array(v) if v.is_empty() => Vec::new(),
        _ => return None,
    })
}

/// Reads a list-of-strings attribute the way tf-keras's
/// `load_attributes_from_hdf5_group` does: `name` itself if present,
/// otherwise the concatenation of `name0`, `name1`, ... that tf-keras writes
/// when the list is longer than an HDF5 object header allows.
///
/// Returns `Ok(None)` when neither form is present.
pub(crate) fn chunked_strings(
    h5: &H5,
    attrs: &HashMap<String, AttrValue>,
    path: &str,
    name: &str,
) -> Result<Option<Vec<String>>> {
    let decode = |key: &str, value: &AttrValue| {
        attr_strings(value).ok_or_else(|| {
            h5.origin.invalid(
                path,
                format!(
                    "attribute {key} is not a list of strings: {}",
                    describe(value)
                ),
            )
        })
    };
    if let Some(value) = attrs.get(name) {
        return decode(name, value).map(Some);
    }
    let mut out = Vec::new();
    let mut i = 0usize;
    loop {
        let key = format!("{name}{i}");
        match attrs.get(&key) {
            Some(value) => out.extend(decode(&key, value)?),
            None if i == 0 => return Ok(None),
            None => return Ok(Some(out)),
        }
        i += 1;
    }
}

/// A short description of an attribute value for error messages: its
/// variant, cut so a huge value does not flood the message.
pub(crate) fn describe(value: &AttrValue) -> String {
    let s = format!("{value:?}");
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// Bytes per element of the dtypes [`H5::read_f32`] accepts.
fn elem_size(dtype: &DType) -> usize {
    match dtype {
        DType::I64 => 8,
        _ => 4,
    }
}
