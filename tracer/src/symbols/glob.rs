//! Glob patterns over function names, as a shell reads them: `*` (any run), `?` (any one
//! character), `[abc]`, `[a-z]` and `[!0-9]` (one character of a class, or not of it), `{a,b}`
//! (either alternative), and `\` before any of these to take it literally. Also the closest
//! names to suggest when a pattern matches nothing.
//!
//! Names hold brackets of their own (`foo[abi:cxx11]`, `<[T]>::len`): a pattern equal to a name
//! always matches it, so exact names never need escaping.

/// Alternatives a pattern's braces may expand to, at most: `{a,b}{c,d}{e,f}...` stays cheap.
const MAX_ALTERNATIVES: usize = 256;

/// Whether `pattern` has glob syntax (`*`, `?`, a closed `[...]` class, a `{...,...}` group).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
        || pattern
            .find('[')
            .is_some_and(|open| pattern[open + 1..].contains(']'))
        || pattern
            .find('{')
            .is_some_and(|open| pattern[open..].contains(',') && pattern[open..].contains('}'))
}

/// Matches `name` against the glob `pattern` (see the module's syntax).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    expand_braces(pattern)
        .iter()
        .any(|alternative| match_chars(&alternative.chars().collect::<Vec<_>>(), &name))
}

/// The patterns `{a,b}` groups expand to (`x{a,b}y` → `xay`, `xby`); nested groups expand
/// too. Unclosed braces and escaped ones stay literal.
fn expand_braces(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let Some((open, close, parts)) = first_group(&chars) else {
        return vec![pattern.to_string()];
    };
    let head: String = chars[..open].iter().collect();
    let tail: String = chars[close + 1..].iter().collect();
    let mut out = Vec::new();
    for part in parts {
        for expanded in expand_braces(&format!("{head}{part}{tail}")) {
            if out.len() == MAX_ALTERNATIVES {
                return out;
            }
            out.push(expanded);
        }
    }
    out
}

/// The first top-level `{...}` group with a comma: its bounds and its comma-separated parts.
/// Groups without a comma (`{{closure}}`) and unclosed ones stay literal; the search goes on
/// past them.
fn first_group(chars: &[char]) -> Option<(usize, usize, Vec<String>)> {
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '{' => match group_at(chars, i) {
                Some((close, parts)) if parts.len() > 1 => return Some((i, close, parts)),
                Some((close, _)) => i = close + 1,
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    None
}

/// The `{...}` group opening at `chars[open]`: where it closes and its top-level parts.
fn group_at(chars: &[char], open: usize) -> Option<(usize, Vec<String>)> {
    let mut depth = 0;
    let mut parts = vec![String::new()];
    let mut j = open;
    while j < chars.len() {
        let c = chars[j];
        match c {
            '\\' if j + 1 < chars.len() => {
                let last = parts.last_mut().expect("one part");
                last.push(c);
                last.push(chars[j + 1]);
                j += 2;
                continue;
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((j, parts));
                }
            }
            ',' if depth == 1 => {
                parts.push(String::new());
                j += 1;
                continue;
            }
            _ => {}
        }
        if j > open {
            parts.last_mut().expect("one part").push(c);
        }
        j += 1;
    }
    None
}

/// One pattern element.
enum Element {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// `[...]` at `chars[start]` as a class, and where it ends; `None` when it does not close.
fn class_at(chars: &[char], start: usize) -> Option<(Element, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let first = i;
    while i < chars.len() {
        let c = chars[i];
        // A `]` first in the class is a member, not its end.
        if c == ']' && i > first {
            return Some((Element::Class { negated, ranges }, i + 1));
        }
        let (low, next) = if c == '\\' && i + 1 < chars.len() {
            (chars[i + 1], i + 2)
        } else {
            (c, i + 1)
        };
        if chars.get(next) == Some(&'-') && chars.get(next + 1).is_some_and(|&c| c != ']') {
            ranges.push((low, chars[next + 1]));
            i = next + 2;
        } else {
            ranges.push((low, low));
            i = next;
        }
    }
    None
}

fn elements(pattern: &[char]) -> Vec<Element> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        let c = pattern[i];
        match c {
            '*' => {
                out.push(Element::AnyRun);
                i += 1;
            }
            '?' => {
                out.push(Element::AnyOne);
                i += 1;
            }
            '\\' if i + 1 < pattern.len() => {
                out.push(Element::Literal(pattern[i + 1]));
                i += 2;
            }
            '[' => match class_at(pattern, i) {
                Some((class, next)) => {
                    out.push(class);
                    i = next;
                }
                None => {
                    out.push(Element::Literal('['));
                    i += 1;
                }
            },
            _ => {
                out.push(Element::Literal(c));
                i += 1;
            }
        }
    }
    out
}

impl Element {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Self::Literal(l) => *l == c,
            Self::AnyOne => true,
            Self::AnyRun => false,
            Self::Class { negated, ranges } => {
                ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated
            }
        }
    }
}

/// Matches with backtracking to the last `*` (linear in practice, like a shell's).
fn match_chars(pattern: &[char], name: &[char]) -> bool {
    let p = elements(pattern);
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` and the name index it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ni < name.len() {
        match p.get(pi) {
            Some(Element::AnyRun) => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(element) if element.matches_one(name[ni]) => {
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
    p[pi..].iter().all(|e| matches!(e, Element::AnyRun))
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
    fn classes_braces_and_escapes() {
        for n in 0..=5 {
            assert!(glob_match("handler_[0-5]", &format!("handler_{n}")));
        }
        assert!(!glob_match("handler_[0-5]", "handler_6"));
        assert!(glob_match("handler_[!0-5]", "handler_7"));
        assert!(!glob_match("handler_[^0-5]", "handler_3"));
        assert!(glob_match("[ab]*", "beta"));
        assert!(glob_match("[]x]", "]"));
        assert!(glob_match("{get,put}_item", "get_item"));
        assert!(glob_match("{get,put}_item", "put_item"));
        assert!(!glob_match("{get,put}_item", "del_item"));
        assert!(glob_match("db::{read,write{,_all}}", "db::write_all"));
        assert!(glob_match("db::{read,write{,_all}}", "db::write"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("f[", "f["), "an unclosed class is literal");
        assert!(glob_match("{x", "{x"), "an unclosed group is literal");
        // Rust closures: a group without a comma is literal, and later groups still expand.
        assert!(glob_match(
            "app::{{closure}}::{poll,call}",
            "app::{{closure}}::call"
        ));
        assert!(glob_match("a{b}c{d,e}", "a{b}ce"));
        assert!(is_glob("handler_[0-5]") && is_glob("{a,b}") && is_glob("x*"));
        assert!(!is_glob("foo[abi") && !is_glob("{solo}") && !is_glob("plain"));
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
