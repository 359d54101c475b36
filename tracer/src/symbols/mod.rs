//! From what the user typed (`--fn`) to probe sites: which object, which functions, which file
//! offsets.
//!
//! Grammar (DESIGN.md): `[OBJECT:]PATTERN` or `SOURCE_FILE:LINE`. `::` never splits, so Rust
//! and C++ paths pass through whole. PATTERN is a glob (`*`, `?`) and also matches exact
//! names. Aliases at one address (`malloc`/`__libc_malloc`) become one site.

pub mod elf;
pub mod x86;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    str::FromStr,
};

use crate::{
    error::{Error, Result},
    target::{MappedObject, Target, mapped_objects},
};
use elf::{ElfFile, FunctionKind, FunctionSymbol};
use x86::{CostClass, place_entry_probe};

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

/// An object file probes go into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeObject {
    /// The path users know it by (the process's view, or the path they gave).
    pub path: String,
    /// The path that opens it from here; uprobes are attached through it.
    pub open_path: PathBuf,
}

impl ProbeObject {
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A place to put a probe: one function in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSite {
    /// The function's name as shown to the user.
    pub function: String,
    pub object: ProbeObject,
    /// Virtual address of the function in the object.
    pub address: u64,
    /// Size of the function in bytes (0 when the symbol does not say).
    pub size: u64,
    /// File offset of the function's first instruction.
    pub file_offset: u64,
    /// File offset the probes are attached at: the entry, or the first instruction the kernel
    /// emulates when only side-effect-free instructions precede it (see [`x86`]).
    pub probe_offset: u64,
    /// What one hit of the entry probe costs.
    pub cost: CostClass,
    /// The instruction at the probe site.
    pub probe_instruction: String,
}

/// The objects a spec may search, in search order.
fn candidate_objects(
    target: &Target,
    object: Option<&str>,
    mapped: &[MappedObject],
) -> Result<Vec<ProbeObject>> {
    let from_mapped = |o: &MappedObject| ProbeObject {
        path: o.path.clone(),
        open_path: o.open_path.clone(),
    };
    match (target, object) {
        (Target::Process { .. }, None) => Ok(mapped.iter().map(from_mapped).collect()),
        (Target::Process { pid }, Some(wanted)) => {
            let matching: Vec<ProbeObject> = mapped
                .iter()
                .filter(|o| object_matches(wanted, &o.path))
                .map(from_mapped)
                .collect();
            if matching.is_empty() {
                return Err(Error::UnknownObject {
                    pid: *pid,
                    object: wanted.to_string(),
                    candidates: mapped.iter().map(|o| o.file_name().to_string()).collect(),
                });
            }
            Ok(matching)
        }
        (Target::Binary { path }, wanted) => {
            let own = ProbeObject {
                path: path.display().to_string(),
                open_path: path.clone(),
            };
            match wanted {
                None => Ok(vec![own]),
                Some(wanted) if object_matches(wanted, &own.path) => Ok(vec![own]),
                Some(wanted) if wanted.contains('/') => Ok(vec![ProbeObject {
                    path: wanted.to_string(),
                    open_path: PathBuf::from(wanted),
                }]),
                Some(wanted) => Err(Error::Usage(format!(
                    "`{wanted}` is not {}; with --binary, OBJECT must name that binary or be \
                     the path of another object file",
                    own.path
                ))),
            }
        }
    }
}

/// Whether `wanted` names the object at `path`: the same path, the same file name, or the
/// file name's stem before `.so` (`libc` for `libc.so.6`).
fn object_matches(wanted: &str, path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    wanted == path
        || wanted == name
        || name
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with(".so") || rest.starts_with('-'))
}

/// Turns the `--fn` specs into probe sites for `target`.
pub fn resolve(target: &Target, specs: &[FunctionSpec]) -> Result<Vec<ProbeSite>> {
    target.check()?;
    let mapped = match target {
        Target::Process { pid } => mapped_objects(*pid)?,
        Target::Binary { .. } => Vec::new(),
    };
    let mut cache: HashMap<PathBuf, (ElfFile, Vec<FunctionSymbol>)> = HashMap::new();
    let mut sites: Vec<ProbeSite> = Vec::new();
    for spec in specs {
        let (object, pattern) = match spec {
            FunctionSpec::Symbol { object, pattern } => (object.as_deref(), pattern.as_str()),
            FunctionSpec::Line { .. } => {
                return Err(Error::Usage(format!(
                    "--fn {spec}: source positions need the DWARF line tables, which this \
                     version does not read yet; name the function instead"
                )));
            }
        };
        let objects = candidate_objects(target, object, &mapped)?;
        let found = resolve_in_objects(pattern, object.is_none(), &objects, &mut cache)?;
        for site in found {
            let duplicate = sites.iter().any(|s| {
                s.object.open_path == site.object.open_path && s.file_offset == site.file_offset
            });
            if !duplicate {
                sites.push(site);
            }
        }
    }
    Ok(sites)
}

/// Resolves one pattern in `objects`. When `first_hit_only`, objects are searched in order and
/// the first that defines a match wins (the main executable before its libraries).
fn resolve_in_objects(
    pattern: &str,
    first_hit_only: bool,
    objects: &[ProbeObject],
    cache: &mut HashMap<PathBuf, (ElfFile, Vec<FunctionSymbol>)>,
) -> Result<Vec<ProbeSite>> {
    let mut sites = Vec::new();
    let mut ifuncs = Vec::new();
    for object in objects {
        if !cache.contains_key(&object.open_path) {
            let elf = match ElfFile::open(&object.open_path) {
                Ok(elf) => elf,
                // A library that cannot be read should not hide a match in the others.
                Err(err) if objects.len() > 1 => {
                    log::warn!("skipping {}: {err}", object.path);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let functions = elf.functions()?;
            cache.insert(object.open_path.clone(), (elf, functions));
        }
        let (elf, functions) = &cache[&object.open_path];
        // file offset → chosen symbol; BTreeMap keeps sites in address order.
        let mut by_offset: BTreeMap<u64, &FunctionSymbol> = BTreeMap::new();
        for function in functions.iter().filter(|f| name_matches(pattern, &f.name)) {
            if function.kind == FunctionKind::Ifunc {
                ifuncs.push(format!("{} in {}", function.name, object.file_name()));
                continue;
            }
            let Some(offset) = elf.file_offset(function.address)? else {
                log::warn!(
                    "{}: {} at {:#x} is outside every executable segment; skipped",
                    object.path,
                    function.name,
                    function.address
                );
                continue;
            };
            by_offset
                .entry(offset)
                .and_modify(|chosen| {
                    if preferred_alias(pattern, function, chosen) {
                        *chosen = function;
                    }
                })
                .or_insert(function);
        }
        let found = !by_offset.is_empty();
        sites.extend(by_offset.into_iter().map(|(file_offset, f)| {
            let whole_body = f.size > 0;
            let code = elf.bytes_at(file_offset, if whole_body { f.size as usize } else { 16 });
            let placement = place_entry_probe(code, f.address, whole_body);
            ProbeSite {
                function: f.name.clone(),
                object: object.clone(),
                address: f.address,
                size: f.size,
                file_offset,
                probe_offset: file_offset + placement.skip,
                cost: placement.cost,
                probe_instruction: placement.instruction,
            }
        }));
        if found && first_hit_only {
            break;
        }
    }
    if !sites.is_empty() {
        return Ok(sites);
    }
    let searched = match objects {
        [one] => one.path.clone(),
        many => format!("{} objects ({})", many.len(), describe_objects(many)),
    };
    if !ifuncs.is_empty() {
        return Err(Error::Usage(format!(
            "`{pattern}` is only an IFUNC resolver ({}); the implementation is picked at load \
             time: trace the implementation instead (e.g. `--fn '*{}*'` lists the variants \
             in its name)",
            ifuncs.join(", "),
            pattern.trim_matches('*')
        )));
    }
    let names = objects
        .iter()
        .filter_map(|o| cache.get(&o.open_path))
        .flat_map(|(_, functions)| functions.iter().map(|f| f.name.as_str()));
    Err(Error::UnknownFunction {
        pattern: pattern.to_string(),
        searched,
        suggestions: closest_names(pattern, names, 5),
    })
}

fn describe_objects(objects: &[ProbeObject]) -> String {
    const SHOWN: usize = 4;
    let mut names: Vec<&str> = objects
        .iter()
        .take(SHOWN)
        .map(ProbeObject::file_name)
        .collect();
    if objects.len() > SHOWN {
        names.push("...");
    }
    names.join(", ")
}

fn name_matches(pattern: &str, name: &str) -> bool {
    pattern == name || (is_glob(pattern) && glob_match(pattern, name))
}

/// Of two symbols at one address, whether `candidate` is a better name to show than `chosen`:
/// the exact name asked for, else a public-looking name, else the shorter.
fn preferred_alias(pattern: &str, candidate: &FunctionSymbol, chosen: &FunctionSymbol) -> bool {
    let rank = |f: &FunctionSymbol| (f.name != pattern, f.name.starts_with('_'), f.name.len());
    rank(candidate) < rank(chosen)
}

/// Probe sites grouped by object, in first-seen order: one attach call per object.
pub fn group_by_object(sites: &[ProbeSite]) -> Vec<(&ProbeObject, Vec<usize>)> {
    let mut groups: Vec<(&ProbeObject, Vec<usize>)> = Vec::new();
    for (index, site) in sites.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(o, _)| o.open_path == site.object.open_path)
        {
            Some((_, members)) => members.push(index),
            None => groups.push((&site.object, vec![index])),
        }
    }
    groups
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

    #[test]
    fn objects_match_by_path_name_or_stem() {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        assert!(object_matches(libc, libc));
        assert!(object_matches("libc.so.6", libc));
        assert!(object_matches("libc", libc));
        assert!(!object_matches("lib", libc));
        assert!(!object_matches("libc.so.7", libc));
        assert!(object_matches(
            "libpython3.11",
            "/usr/lib/libpython3.11.so.1.0"
        ));
    }

    #[test]
    fn prefers_the_exact_then_public_name_for_aliases() {
        let f = |name: &str| FunctionSymbol {
            name: name.into(),
            address: 1,
            size: 1,
            kind: FunctionKind::Function,
            source: elf::SymbolSource::Dynsym,
        };
        assert!(preferred_alias(
            "__libc_malloc",
            &f("__libc_malloc"),
            &f("malloc")
        ));
        assert!(preferred_alias(
            "*malloc",
            &f("malloc"),
            &f("__libc_malloc")
        ));
        assert!(!preferred_alias(
            "*malloc",
            &f("__libc_malloc"),
            &f("malloc")
        ));
    }

    #[test]
    fn resolves_in_own_process_and_suggests_on_typo() {
        let target = Target::Process {
            pid: std::process::id(),
        };
        let sites = resolve(&target, &["libc.so.6:malloc".parse().unwrap()]).unwrap();
        assert_eq!(sites.len(), 1, "{sites:?}");
        assert_eq!(sites[0].function, "malloc");
        assert_eq!(sites[0].object.file_name(), "libc.so.6");

        let err = resolve(&target, &["libc.so.6:mallok".parse().unwrap()]).unwrap_err();
        let Error::UnknownFunction { suggestions, .. } = &err else {
            panic!("{err}")
        };
        assert!(suggestions.iter().any(|s| s == "malloc"), "{suggestions:?}");

        let err = resolve(&target, &["libnothere.so:f".parse().unwrap()]).unwrap_err();
        assert!(matches!(err, Error::UnknownObject { .. }), "{err}");
    }
}
