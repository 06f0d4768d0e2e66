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

/// Reads one `.npy` array.
pub fn read_npy(path: &str) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let arr = npyz::NpyFile::new(&bytes[..]).map_err(|e| file_err(path, e))?;
    to_tensor(path, arr)
}

/// Reads every array of an `.npz` archive, keyed by name.
pub fn read_npz(path: &str) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let mut npz =
        npyz::npz::NpzArchive::new(std::io::BufReader::new(file)).map_err(|e| file_err(path, e))?;
    let names: Vec<String> = npz.array_names().map(|s| s.to_string()).collect();
    let mut out = HashMap::new();
    for name in names {
        let arr = npz
            .by_name(&name)
            .map_err(|e| file_err(path, e))?
            .ok_or_else(|| file_err(path, format!("missing array {name}")))?;
        out.insert(name, to_tensor(path, arr)?);
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
