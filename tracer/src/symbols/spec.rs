//! The `--fn` grammar (DESIGN.md): `[OBJECT:]PATTERN` or `SOURCE_FILE:LINE`. `::` never
//! splits, so Rust and C++ paths pass through whole. PATTERN is a glob (`*`, `?`) and also
//! matches exact names. Also the glob matcher itself, and "did you mean" suggestions.

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

/// Whether `pattern` has glob metacharacters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Matches `name` against a glob of `*` (any run) and `?` (any one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` and the name index it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((star_pi, star_ni)) => {
                    pi = star_pi + 1;
                    ni = star_ni + 1;
                    star = Some((star_pi, star_ni + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Up to `limit` names closest to `wanted`: those containing it first, then by similarity.
pub fn closest_names<'a>(
    wanted: &str,
    names: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<String> {
    let core = wanted.trim_matches(['*', '?']);
    let mut scored: Vec<(f64, &str)> = names
        .into_iter()
        .filter_map(|name| {
            let similarity = strsim::jaro_winkler(core, name);
            let contains = !core.is_empty() && name.contains(core);
            let score = if contains {
                1.0 + similarity
            } else {
                similarity
            };
            (score >= 0.8).then_some((score, name))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.len().cmp(&b.1.len())));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(limit)
        .map(|(_, name)| name.to_string())
        .collect()
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

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("myapp::db::*", "myapp::db::query"));
        assert!(!glob_match("myapp::db::*", "myapp::http::serve"));
        assert!(glob_match("*Handler*", "net::HttpHandler::run"));
        assert!(glob_match("com?ute", "compute"));
        assert!(!glob_match("com?ute", "commute2"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("*aab", "aaab"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn suggests_close_names() {
        let names = ["compute", "compute_slow", "sleepy", "main", "_start"];
        let got = closest_names("comptue", names, 3);
        assert_eq!(got[0], "compute");
        assert!(!got.contains(&"main".to_string()));
        assert_eq!(closest_names("sleep", names, 3), vec!["sleepy"]);
        assert!(closest_names("zzzzzz", names, 3).is_empty());
    }
}
