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

/// Reads a file as text.
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.into(),
        source,
    })
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
