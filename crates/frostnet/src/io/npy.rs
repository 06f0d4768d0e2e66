//! NumPy `.npy` and `.npz` files through the `npyz` crate. Only f32 (and f64, converted) arrays
//! are supported, which is what models consume and produce.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use npyz::WriterBuilder;
use std::collections::HashMap;
use std::io::Read;

/// `npyz`'s header errors quote the parser's state over several lines; one short line is
/// kept (the start says where, the end what went wrong).
fn file_err(path: &str, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_string(),
        message: crate::error::elide(&message.to_string(), crate::error::MAX_MESSAGE_CHARS),
    }
}

fn to_tensor<R: Read>(path: &str, arr: npyz::NpyFile<R>) -> Result<Tensor> {
    let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
    if arr.order() == npyz::Order::Fortran {
        return Err(file_err(path, "Fortran-ordered arrays are not supported"));
    }
    let n: usize = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| file_err(path, "absurd shape"))?;
    let dtype = arr.dtype();
    let data: Vec<f32> = match dtype {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            arr.into_vec::<f32>().map_err(|e| file_err(path, e))?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            arr.into_vec::<f64>()
                .map_err(|e| file_err(path, e))?
                .into_iter()
                .map(|v| v as f32)
                .collect()
        }
        other => {
            return Err(file_err(
                path,
                format!("unsupported dtype {}", other.descr()),
            ))
        }
    };
    if data.len() != n {
        return Err(file_err(path, "array data is shorter than its shape"));
    }
    Tensor::from_vec(&shape, data)
}

/// Deepest bracket nesting in the header of an array this module reads:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` nests 2.
const MAX_HEADER_DEPTH: usize = 2;

/// Refuses two headers npyz would choke on, both found by cargo-fuzz (docs/FUZZING.md):
/// - one longer than the bytes the file has: npyz allocates the declared length (up to 4 GiB
///   in a version 2 or 3 header) before reading it, 1.8 GB for a 29-byte file;
/// - one that nests brackets deeper than a plain array's: npyz parses the header with a
///   backtracking grammar that takes exponential time on nested brackets (a 153-byte file,
///   `{{{...` inside the header, ran for minutes).
fn check_header(path: &str, bytes: &[u8]) -> Result<()> {
    let (start, len) = match (bytes.get(6), bytes.get(8..12)) {
        (Some(1), Some(b)) => (10, u16::from_le_bytes([b[0], b[1]]) as usize),
        (Some(2 | 3), Some(b)) => (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        _ => return Ok(()), // not a header npyz accepts either; it reports the problem
    };
    let rest = bytes.len().saturating_sub(start);
    if len > rest {
        return Err(file_err(
            path,
            format!("header declares {len} bytes but only {rest} follow"),
        ));
    }
    let header = &bytes[start..start + len];
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &c in header {
        match c {
            b'{' | b'(' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_HEADER_DEPTH {
        return Err(file_err(
            path,
            format!("header nests brackets {deepest} deep; a plain f32/f64 array's nests {MAX_HEADER_DEPTH}"),
        ));
    }
    Ok(())
}

/// Reads one `.npy` array.
pub fn read_npy(path: &str) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    check_header(path, &bytes)?;
    let arr = npyz::NpyFile::new(&bytes[..]).map_err(|e| file_err(path, e))?;
    to_tensor(path, arr)
}

/// Largest `.npz` member read (4 GiB): checked while reading, so a member that inflates past it
/// is an error, not an allocation of whatever size it declares.
const MAX_NPZ_MEMBER: u64 = 4 << 30;

/// Reads every array of an `.npz` archive, keyed by name (without `.npy`, as NumPy's `np.load`).
///
/// Each member is read through the zip reader with a size cap and its header checked for
/// length and nesting before npyz parses it, exactly as [`read_npy`] does for a single file.
pub fn read_npz(path: &str) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| file_err(path, e))?;
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let member = zip.by_index(i).map_err(|e| file_err(path, e))?;
        let name = member.name().map_err(|e| file_err(path, e))?.to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let place = format!("{path} ({name})");
        let mut bytes = Vec::new();
        member
            .take(MAX_NPZ_MEMBER + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| file_err(&place, e))?;
        if bytes.len() as u64 > MAX_NPZ_MEMBER {
            return Err(file_err(
                &place,
                format!("member inflates past {MAX_NPZ_MEMBER} bytes"),
            ));
        }
        check_header(&place, &bytes)?;
        let arr = npyz::NpyFile::new(&bytes[..]).map_err(|e| file_err(&place, e))?;
        out.insert(key.to_string(), to_tensor(&place, arr)?);
    }
    Ok(out)
}

/// Writes a tensor as a `.npy` file (f32, C order), by the rules of
/// [`write_output`](crate::saving::write_output): a regular file is replaced atomically, a
/// device or FIFO is written through.
pub fn write_npy(path: &str, t: &Tensor) -> Result<()> {
    crate::saving::write_output(path, |f| {
        let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(f)
            .begin_nd()?;
        w.extend(t.data().iter().copied())?;
        w.finish()
    })
}
