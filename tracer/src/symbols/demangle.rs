//! Symbol names as developers write them: Rust (legacy and v0) and C++ (Itanium) demangling,
//! and matching `--fn` patterns against both the mangled and the readable forms.
//!
//! Demangling every symbol of a large binary is the slow part of a glob over it, so patterns
//! first filter mangled names by the identifiers they must contain (mangling keeps
//! identifiers verbatim), and only the survivors are demangled.

use super::glob::{glob_match, is_glob};

/// A symbol's readable forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demangled {
    /// The path without hashes, parameters or return type: `shop::Cart::add`.
    pub path: String,
    /// For C++, the full signature `shop::Cart::add(int, char const*)`; else the path.
    pub signature: String,
}

/// Whether `name` looks like a Rust symbol: v0 (`_R...`) or legacy with its hash
/// (`_ZN...17h<16 hex>E`). Legacy Rust mangling is also valid C++ mangling, so the hash is
/// what tells them apart.
fn is_rust(name: &str) -> bool {
    if name.starts_with("_R") {
        return true;
    }
    let Some(body) = name.strip_prefix("_ZN") else {
        return false;
    };
    // "17h", 16 hex digits and `E` end the path; a suffix may follow (`.llvm.1234`). Not
    // the first `.`: generic arguments spell `::` as `..` (`_$LT$core..slice..Iter...`).
    body.match_indices("17h").any(|(at, _)| {
        let rest = &body.as_bytes()[at + 3..];
        rest.len() >= 17
            && rest[..16].iter().all(u8::is_ascii_hexdigit)
            && rest[16] == b'E'
            && rest.get(17).is_none_or(|&next| next == b'.')
    })
}

/// Demangles `name`; `None` when it is not a mangled Rust or C++ name.
pub fn demangle(name: &str) -> Option<Demangled> {
    if is_rust(name) {
        let symbol = rustc_demangle::try_demangle(name).ok()?;
        let path = format!("{symbol:#}");
        return Some(Demangled {
            signature: path.clone(),
            path,
        });
    }
    if name.starts_with("_Z") {
        let symbol = cpp_demangle::Symbol::new(name.as_bytes()).ok()?;
        let signature = symbol.demangle().ok()?;
        let options = cpp_demangle::DemangleOptions::new()
            .no_params()
            .no_return_type();
        let path = without_abi_tags(&symbol.demangle_with_options(&options).ok()?);
        return Some(Demangled { path, signature });
    }
    None
}

/// A C++ path without its ABI tags: `title[abi:cxx11]` (a function returning a
/// `std::string` of the C++11 ABI) is `title` as its developer wrote it.
fn without_abi_tags(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find("[abi:") {
        out.push_str(&rest[..at]);
        match rest[at..].find(']') {
            Some(end) => rest = &rest[at + end + 1..],
            None => {
                rest = &rest[at..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `pattern` without its `[...]` classes and `{...}` groups (each replaced by `*`).
fn without_groups(pattern: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in pattern.chars() {
        match c {
            '[' | '{' => {
                if depth == 0 {
                    out.push('*');
                }
                depth += 1;
            }
            ']' | '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// A compiled `--fn` pattern over symbol names.
#[derive(Debug, Clone)]
pub struct NamePattern {
    pattern: String,
    glob: bool,
    /// Identifiers every matching mangled name contains (the pattern's literal pieces).
    required: Vec<String>,
}

impl NamePattern {
    pub fn new(pattern: &str) -> Self {
        // Parameter types are encoded (`int` is `i`), so only the path before `(` counts.
        let path = pattern.split('(').next().unwrap_or(pattern);
        // Classes and alternatives say nothing certain about the name's letters.
        let literal = without_groups(path);
        let required = literal
            .split(['*', '?', '<', '>', ' ', '&', '\\'])
            .flat_map(|piece| piece.split("::"))
            .filter(|piece| piece.len() >= 2)
            .map(str::to_string)
            .collect();
        Self {
            pattern: pattern.to_string(),
            glob: is_glob(pattern),
            required,
        }
    }

    fn matches_text(&self, text: &str) -> bool {
        // Names hold brackets of their own (`[abi:cxx11]`): an equal name always matches.
        self.pattern == text || (self.glob && glob_match(&self.pattern, text))
    }

    /// Matches `name` (as in the symbol table) and its demangled forms; returns the readable
    /// name to show, or `None`.
    pub fn matches(&self, name: &str) -> Option<String> {
        if self.matches_text(name) {
            return Some(demangle(name).map_or_else(|| name.to_string(), |d| d.path));
        }
        // Cheap filter before demangling: mangling keeps identifiers verbatim.
        if !name.starts_with("_Z") && !name.starts_with("_R") {
            return None;
        }
        if !self
            .required
            .iter()
            .all(|piece| name.contains(piece.as_str()))
        {
            return None;
        }
        let demangled = demangle(name)?;
        if self.matches_text(&demangled.path) || self.matches_text(&demangled.signature) {
            Some(demangled.path)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST_LEGACY: &str = "_ZN6tracer7symbols3elf7ElfFile4open17h0123456789abcdefE";
    const RUST_V0: &str = "_RNvNtCs1234_6tracer7symbols7resolve";
    const CPP_METHOD: &str = "_ZN4shop4Cart3addEiPKc";
    const CPP_OVERLOAD: &str = "_ZN4shop4Cart3addEd";

    #[test]
    fn demangles_rust_without_hashes() {
        let d = demangle(RUST_LEGACY).unwrap();
        assert_eq!(d.path, "tracer::symbols::elf::ElfFile::open");
        assert_eq!(demangle(RUST_V0).unwrap().path, "tracer::symbols::resolve");
        // With an LLVM suffix.
        let suffixed = format!("{RUST_LEGACY}.llvm.123");
        assert_eq!(
            demangle(&suffixed).unwrap().path,
            "tracer::symbols::elf::ElfFile::open"
        );
        // A trait impl of a generic type: `..` stands for `::` in its arguments.
        let implementation = "_ZN91_$LT$core..slice..iter..Iter$LT$T$GT$$u20$as$u20$core..iter..\
                              traits..iterator..Iterator$GT$4next17hec7eb6b7c6e7a184E";
        assert_eq!(
            demangle(implementation).unwrap().path,
            "<core::slice::iter::Iter<T> as core::iter::traits::iterator::Iterator>::next"
        );
        assert_eq!(
            demangle(&format!("{implementation}.llvm.42")).unwrap().path,
            "<core::slice::iter::Iter<T> as core::iter::traits::iterator::Iterator>::next"
        );
    }

    #[test]
    fn demangles_cpp_with_and_without_parameters() {
        let d = demangle(CPP_METHOD).unwrap();
        assert_eq!(d.path, "shop::Cart::add");
        assert_eq!(d.signature, "shop::Cart::add(int, char const*)");
        assert!(!is_rust(CPP_METHOD));
    }

    #[test]
    fn plain_and_broken_names_are_left_alone() {
        assert_eq!(demangle("main"), None);
        assert_eq!(demangle("_Z"), None);
        assert_eq!(demangle("_ZN3foo"), None);
        assert_eq!(demangle("_R"), None);
        for garbage in ["_ZNZZZZ", "_RNvC", "_ZN99999999999999999999a"] {
            let _ = demangle(garbage);
        }
    }

    #[test]
    fn patterns_match_mangled_and_readable_names() {
        let exact = NamePattern::new("tracer::symbols::elf::ElfFile::open");
        assert_eq!(
            exact.matches(RUST_LEGACY).as_deref(),
            Some("tracer::symbols::elf::ElfFile::open")
        );
        assert_eq!(
            NamePattern::new(RUST_LEGACY)
                .matches(RUST_LEGACY)
                .as_deref(),
            Some("tracer::symbols::elf::ElfFile::open")
        );
        let glob = NamePattern::new("tracer::symbols::*");
        assert!(glob.matches(RUST_LEGACY).is_some());
        assert!(glob.matches(RUST_V0).is_some());
        assert!(NamePattern::new("shop::*").matches(RUST_LEGACY).is_none());
        assert_eq!(
            NamePattern::new("main").matches("main").as_deref(),
            Some("main")
        );
        assert!(NamePattern::new("mai").matches("main").is_none());
    }

    #[test]
    fn cpp_abi_tags_are_not_part_of_the_path() {
        // std::string title(int): `title[abi:cxx11](int)`.
        let demangled = demangle("_Z5titleB5cxx11i").unwrap();
        assert_eq!(demangled.path, "title");
        assert_eq!(
            NamePattern::new("title")
                .matches("_Z5titleB5cxx11i")
                .as_deref(),
            Some("title")
        );
        assert_eq!(without_abi_tags("a[abi:x]::b[abi:y]"), "a::b");
    }

    #[test]
    fn cpp_overloads_are_told_apart_by_signature() {
        let both = NamePattern::new("shop::Cart::add");
        assert!(both.matches(CPP_METHOD).is_some() && both.matches(CPP_OVERLOAD).is_some());
        let int_only = NamePattern::new("shop::Cart::add(int*");
        assert!(int_only.matches(CPP_METHOD).is_some());
        assert!(int_only.matches(CPP_OVERLOAD).is_none());
    }
}
