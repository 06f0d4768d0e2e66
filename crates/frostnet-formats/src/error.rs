use std::path::{Path, PathBuf};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading a Keras file.
///
/// Every variant names the file, and all but [`Error::Io`] say where inside
/// it the problem is (`location`). A location inside an HDF5 file is an HDF5
/// path such as `/model_weights/conv/conv/kernel:0`; inside a `.keras` zip it
/// is prefixed with the member name, as in
/// `model.weights.h5:/layers/dense/vars/0`.
///
/// The reader returns one of these for any file it cannot make sense of:
/// truncated, corrupt or hostile files never make it panic or allocate more
/// than the file could hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read from disk.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a format this crate knows: wrong magic bytes, or an
    /// HDF5 file laid out like neither a Keras 3 weights file nor a legacy
    /// Keras file.
    #[error("{}: not a Keras file: {reason}", file.display())]
    UnknownFormat {
        /// The file.
        file: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// Something required is absent: a zip member, a group, an attribute or
    /// a dataset.
    #[error("{}: {location}: missing {what}", file.display())]
    Missing {
        /// The file.
        file: PathBuf,
        /// Where it was looked for.
        location: String,
        /// What was looked for.
        what: String,
    },
    /// A weight is stored with an element type this crate does not convert.
    /// Only 32-bit IEEE floats are read, because that is what Keras writes
    /// for float32 models and converting anything else would hide a lossy
    /// step from the caller.
    #[error("{}: {location}: unsupported dtype {dtype} (only 32-bit floats, and integers a 32-bit float holds exactly, are read)", file.display())]
    UnsupportedDtype {
        /// The file.
        file: PathBuf,
        /// The dataset.
        location: String,
        /// The stored element type.
        dtype: String,
    },
    /// A dataset declares more data than the file could possibly hold. This
    /// is checked before anything is allocated.
    #[error(
        "{}: {location}: dataset of shape {} needs {needed} bytes, \
         but only {available} bytes are left in the file for it",
        file.display(), short_shape(shape)
    )]
    TooLarge {
        /// The file.
        file: PathBuf,
        /// The dataset.
        location: String,
        /// The declared shape.
        shape: Vec<u64>,
        /// Bytes the declared shape needs (saturated at `u64::MAX`).
        needed: u64,
        /// Bytes the file still has to offer.
        available: u64,
    },
    /// The file is present and of a known format, but its contents are
    /// malformed: corrupt HDF5 structures, invalid JSON, a zip that does not
    /// open, names that break the Keras layout, and so on.
    #[error("{}: {location}: {reason}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Where the problem is.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Error::Io { file, .. }
            | Error::UnknownFormat { file, .. }
            | Error::Missing { file, .. }
            | Error::UnsupportedDtype { file, .. }
            | Error::TooLarge { file, .. }
            | Error::Invalid { file, .. } => file,
        }
    }
}

/// The file and the prefix of every location inside it, so that errors are
/// built in one place.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub(crate) file: PathBuf,
    /// `""` for a file on its own, `"model.weights.h5:"` for a zip member.
    pub(crate) prefix: &'static str,
}

impl Origin {
    pub(crate) fn new(file: &Path, prefix: &'static str) -> Origin {
        Origin {
            file: file.to_path_buf(),
            prefix,
        }
    }

    fn loc(&self, location: &str) -> String {
        format!("{}{}", self.prefix, location)
    }

    pub(crate) fn missing(&self, location: &str, what: impl Into<String>) -> Error {
        Error::Missing {
            file: self.file.clone(),
            location: self.loc(location),
            what: what.into(),
        }
    }

    pub(crate) fn invalid(&self, location: &str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file.clone(),
            location: self.loc(location),
            reason: reason.into(),
        }
    }

    pub(crate) fn unknown(&self, reason: impl Into<String>) -> Error {
        Error::UnknownFormat {
            file: self.file.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn dtype(&self, location: &str, dtype: impl Into<String>) -> Error {
        Error::UnsupportedDtype {
            file: self.file.clone(),
            location: self.loc(location),
            dtype: dtype.into(),
        }
    }

    pub(crate) fn too_large(
        &self,
        location: &str,
        shape: &[u64],
        needed: u64,
        available: u64,
    ) -> Error {
        Error::TooLarge {
            file: self.file.clone(),
            location: self.loc(location),
            shape: shape.to_vec(),
            needed,
            available,
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// A shape for a one-line message: `(33000, 33000)`, with the middle of a long one elided so a
/// hostile file cannot make the message long.
pub(crate) fn short_shape(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    if dims.len() > 8 {
        format!(
            "({}, ... {} more ..., {})",
            dims[..3].join(", "),
            dims.len() - 5,
            dims[dims.len() - 2..].join(", ")
        )
    } else if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}
