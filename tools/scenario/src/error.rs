//! Errors of the scenario tool: every one names the file (and, for validation, the field) it
//! is about, because the person reading it has to go and fix that file.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Lists everything that can go wrong between reading a scenario and writing its boot files.
#[derive(Debug)]
pub enum Error {
    /// The scenario file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// The scenario file is not valid TOML or does not match the schema (unknown or missing
    /// field, wrong type); `message` is toml's, which carries line and column.
    Parse { path: PathBuf, message: String },
    /// The scenario parsed but a field has a value the tool refuses.
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// Reading an input or writing an output file failed.
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// An external tool (QEMU, dtc) is missing or failed.
    Tool { tool: &'static str, message: String },
}

impl Error {
    /// Builds a validation error for `field` of the scenario at `path`.
    pub(crate) fn invalid(
        path: &std::path::Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            path: path.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            Error::Parse { path, message } => {
                write!(f, "{}: {}", path.display(), message.trim_end())
            }
            Error::Invalid {
                path,
                field,
                message,
            } => {
                write!(f, "{}: {field}: {message}", path.display())
            }
            Error::Io { path, what, source } => {
                write!(f, "{}: cannot {what}: {source}", path.display())
            }
            Error::Tool { tool, message } => write!(f, "{tool}: {}", message.trim_end()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
