//! Glob patterns over function names (`myapp::db::*`, `handle_?`), and the closest names to
//! suggest when a pattern matches nothing.

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
