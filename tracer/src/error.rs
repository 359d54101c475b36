//! The library's error type: what went wrong, in words a user can act on, and which exit code
//! it deserves (DESIGN.md: 1 runtime failure, 2 bad usage or input, 3 missing privilege or
//! kernel feature).

use std::{io, path::PathBuf};

/// Exit codes of the `koolkit-trace` binary.
pub mod exit_code {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PRIVILEGE: i32 = 3;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no process with pid {pid} (it may have exited)")]
    NoSuchProcess { pid: u32 },

    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not an ELF file", path.display())]
    NotElf { path: PathBuf },

    #[error("{}: malformed ELF: {reason}", path.display())]
    BadElf { path: PathBuf, reason: String },

    #[error("invalid --fn `{spec}`: {reason}")]
    BadFunctionSpec { spec: String, reason: String },

    #[error(
        "no function matches `{pattern}` in {searched}{}",
        suggestions_hint(suggestions)
    )]
    UnknownFunction {
        pattern: String,
        searched: String,
        suggestions: Vec<String>,
    },

    #[error("`{pattern}` matches only undefined or non-function symbols in {searched}")]
    NotAFunction { pattern: String, searched: String },

    #[error(
        "no object mapped by process {pid} matches `{object}`{}",
        candidates_hint(candidates)
    )]
    UnknownObject {
        pid: u32,
        object: String,
        candidates: Vec<String>,
    },

    #[error("{what}: {hint}")]
    Privilege { what: String, hint: String },

    #[error("this kernel cannot {what}: {hint}")]
    KernelFeature { what: String, hint: String },

    #[error("{0}")]
    Usage(String),

    #[error("{context}: {source}")]
    Bpf {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn suggestions_hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; closest names: {}", suggestions.join(", "))
    }
}

fn candidates_hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        String::new()
    } else {
        format!("; it maps: {}", candidates.join(", "))
    }
}

impl Error {
    /// The process exit code this error deserves.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::NoSuchProcess { .. }
            | Self::NotElf { .. }
            | Self::BadElf { .. }
            | Self::BadFunctionSpec { .. }
            | Self::UnknownFunction { .. }
            | Self::NotAFunction { .. }
            | Self::UnknownObject { .. }
            | Self::Usage(_) => exit_code::USAGE,
            Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => exit_code::USAGE,
            Self::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                exit_code::PRIVILEGE
            }
            Self::Privilege { .. } | Self::KernelFeature { .. } => exit_code::PRIVILEGE,
            Self::Io { .. } | Self::Bpf { .. } => exit_code::RUNTIME,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bpf(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Bpf {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
