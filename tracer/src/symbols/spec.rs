//! The `--fn` grammar (DESIGN.md): `[OBJECT:]PATTERN` or `SOURCE_FILE:LINE`. `::` never
//! splits, so Rust and C++ paths pass through whole. PATTERN is a glob (`*`, `?`) and also
//! matches exact names (the matcher is in `glob`).

use std::str::FromStr;

use crate::error::{Error, Result};

/// One `--fn` argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionSpec {
    /// Functions whose names match `pattern`, in `object` (a file name, soname prefix or path)
    /// or, without it, in the main executable (then its shared libraries).
    Symbol {
        object: Option<String>,
        pattern: String,
    },
    /// The function containing a source line.
    Line { file: String, line: u32 },
}

impl FromStr for FunctionSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::BadFunctionSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.trim().is_empty() {
            return Err(bad("empty"));
        }
        let Some(colon) = last_single_colon(spec) else {
            return Ok(Self::Symbol {
                object: None,
                pattern: spec.to_string(),
            });
        };
        let (left, right) = (&spec[..colon], &spec[colon + 1..]);
        if left.is_empty() {
            return Err(bad(
                "nothing before `:`; expected OBJECT:PATTERN or FILE:LINE",
            ));
        }
        if right.is_empty() {
            return Err(bad(
                "nothing after `:`; expected OBJECT:PATTERN or FILE:LINE",
            ));
        }
        if right.bytes().all(|b| b.is_ascii_digit()) {
            let line = right.parse().map_err(|_| bad("line number too large"))?;
            if line == 0 {
                return Err(bad("line numbers start at 1"));
            }
            return Ok(Self::Line {
                file: left.to_string(),
                line,
            });
        }
        Ok(Self::Symbol {
            object: Some(left.to_string()),
            pattern: right.to_string(),
        })
    }
}

impl std::fmt::Display for FunctionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Symbol {
                object: Some(object),
                pattern,
            } => write!(f, "{object}:{pattern}"),
            Self::Symbol {
                object: None,
                pattern,
            } => f.write_str(pattern),
            Self::Line { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

/// Byte index of the last `:` that is not part of `::`.
fn last_single_colon(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    (0..bytes.len()).rev().find(|&i| {
        bytes[i] == b':'
            && (i == 0 || bytes[i - 1] != b':')
            && bytes.get(i + 1).is_none_or(|&b| b != b':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(object: Option<&str>, pattern: &str) -> FunctionSpec {
        FunctionSpec::Symbol {
            object: object.map(str::to_string),
            pattern: pattern.to_string(),
        }
    }

    #[test]
    fn parses_function_specs() {
        assert_eq!(
            "compute".parse::<FunctionSpec>().unwrap(),
            symbol(None, "compute")
        );
        assert_eq!(
            "libc.so.6:malloc".parse::<FunctionSpec>().unwrap(),
            symbol(Some("libc.so.6"), "malloc")
        );
        assert_eq!(
            "myapp::db::*".parse::<FunctionSpec>().unwrap(),
            symbol(None, "myapp::db::*")
        );
        assert_eq!(
            "libfoo.so:ns::Class::method"
                .parse::<FunctionSpec>()
                .unwrap(),
            symbol(Some("libfoo.so"), "ns::Class::method")
        );
        assert_eq!(
            "/usr/lib/x86_64-linux-gnu/libc.so.6:free"
                .parse::<FunctionSpec>()
                .unwrap(),
            symbol(Some("/usr/lib/x86_64-linux-gnu/libc.so.6"), "free")
        );
        assert_eq!(
            "src/server.c:42".parse::<FunctionSpec>().unwrap(),
            FunctionSpec::Line {
                file: "src/server.c".into(),
                line: 42
            }
        );
        // `::` followed by digits is not a line number.
        assert_eq!(
            "a::42".parse::<FunctionSpec>().unwrap(),
            symbol(None, "a::42")
        );
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "  ",
            ":malloc",
            "libc.so.6:",
            "file.c:0",
            "file.c:99999999999",
        ] {
            let err = bad.parse::<FunctionSpec>().unwrap_err();
            assert!(matches!(err, Error::BadFunctionSpec { .. }), "{bad}: {err}");
            assert_eq!(err.exit_code(), crate::error::exit_code::USAGE);
        }
    }

    #[test]
    fn spec_display_round_trips() {
        for spec in ["compute", "libc.so.6:malloc", "a::b::*", "x.c:12"] {
            assert_eq!(spec.parse::<FunctionSpec>().unwrap().to_string(), spec);
        }
    }
}
