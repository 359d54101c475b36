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

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not an ELF file", path.display())]
    NotElf { path: PathBuf },

    /// The ELF file or its DWARF does not parse.
    #[error("{}: malformed ELF: {reason}", path.display())]
    BadElf { path: PathBuf, reason: String },

    /// A target this version cannot trace (another machine, a Go program).
    #[error("{0}")]
    Unsupported(String),

    /// A file given as a trace file that is not one, or is damaged beyond reading.
    #[error("{}: {reason}", path.display())]
    BadTraceFile { path: PathBuf, reason: String },

    #[error("invalid --fn `{spec}`: {reason}")]
    BadFunctionSpec { spec: String, reason: String },

    #[error(
        "no function matches `{pattern}` in {searched}{}{}",
        suggestions_hint(suggestions),
        notes.iter().map(|n| format!("; {n}")).collect::<String>()
    )]
    UnknownFunction {
        pattern: String,
        searched: String,
        suggestions: Vec<String>,
        /// Why the search may have come up short (a stripped binary, ...).
        notes: Vec<String>,
    },

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

    /// Bad usage or input that no more specific variant names.
    #[error("{0}")]
    Usage(String),

    /// A fault of koolkit-trace itself, not of its input: a bug or a broken build.
    #[error("internal error: {0}")]
    Internal(String),

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
            | Self::UnknownObject { .. }
            | Self::Unsupported(_)
            | Self::BadTraceFile { .. }
            | Self::Usage(_) => exit_code::USAGE,
            Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => exit_code::USAGE,
            Self::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                exit_code::PRIVILEGE
            }
            Self::Privilege { .. } | Self::KernelFeature { .. } => exit_code::PRIVILEGE,
            Self::Io { .. } | Self::Write { .. } | Self::Bpf { .. } | Self::Internal(_) => {
                exit_code::RUNTIME
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn internal(what: impl Into<String>) -> Self {
        Self::Internal(what.into())
    }

    pub(crate) fn bad_trace_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::BadTraceFile {
            path: path.into(),
            reason: reason.into(),
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

/// A line about the tool itself for stderr: `koolkit-trace: {label}{message}` (`label` is
/// `"error: "`, `"warning: "` or empty). Every such line is made here.
pub fn tool_line(label: &str, message: impl std::fmt::Display) -> String {
    format!("koolkit-trace: {label}{message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_exit_code() {
        let missing = || io::Error::from(io::ErrorKind::NotFound);
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let cases = [
            (Error::internal("a bug"), exit_code::RUNTIME),
            (
                Error::write("t.kt", io::Error::other("disk full")),
                exit_code::RUNTIME,
            ),
            (Error::io("x", io::Error::other("odd")), exit_code::RUNTIME),
            (Error::io("x", missing()), exit_code::USAGE),
            (Error::io("x", denied()), exit_code::PRIVILEGE),
            (
                Error::bad_trace_file("t.kt", "not a trace"),
                exit_code::USAGE,
            ),
            (Error::Unsupported("Go".into()), exit_code::USAGE),
            (Error::Usage("bad".into()), exit_code::USAGE),
            (Error::NoSuchProcess { pid: 1 }, exit_code::USAGE),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
        assert_eq!(
            Error::bad_trace_file("t.kt", "not a koolkit-trace file").to_string(),
            "t.kt: not a koolkit-trace file"
        );
        assert!(
            Error::internal("x")
                .to_string()
                .starts_with("internal error")
        );
    }
}
