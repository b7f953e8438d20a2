//! Files people write by hand (`lcs.toml`, scenario files) and what is wrong with them.
//!
//! Both kinds of file fail the same three ways, and a user needs the same three things from the
//! message: which file, which line or field, and what to do. One error type keeps the messages
//! alike everywhere.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A hand-written file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong name or type; the message has line and column.
    #[error("{}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and the offending text.
        message: String,
    },
    /// Larger than any file of this kind can sensibly be (`/dev/zero`, a log given by mistake).
    #[error("{}: larger than {limit} bytes, the limit for this file; is it the right file?", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A value that cannot work.
    #[error("{}: field `{field}`: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `connection[1].port`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The largest hand-written file read (`lcs.toml`, a scenario): hundreds of times any real one.
pub const MAX_HAND_WRITTEN: u64 = 4 * 1024 * 1024;

/// Reads a hand-written file as text, at most [`MAX_HAND_WRITTEN`] bytes.
pub fn read(path: &Path) -> Result<String, FileError> {
    read_capped(path, MAX_HAND_WRITTEN)
}

/// Reads a file as text, refusing one larger than `limit` bytes without reading past it (a
/// device such as `/dev/zero` never ends, and its metadata says nothing).
pub fn read_capped(path: &Path, limit: u64) -> Result<String, FileError> {
    use std::io::Read;
    let io = |source| FileError::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.into(),
            limit,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Parses TOML read from `path` (used in messages).
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError::Parse {
        path: path.into(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// An [`FileError::Invalid`] for `path`.
pub fn invalid(path: &Path, field: impl Into<String>, message: impl Into<String>) -> FileError {
    FileError::Invalid {
        path: path.into(),
        field: field.into(),
        message: message.into(),
    }
}
