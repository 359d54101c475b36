//! One object file opened for resolution, with everything that names its functions: its own
//! `.symtab` and `.dynsym`, its MiniDebugInfo, and a separate debug file (build-id or
//! debuglink) found inside the target's root. Each source is read on first use only.

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use super::{
    debug_file,
    elf::{ElfFile, FunctionKind, FunctionSymbol, SymbolSource},
    go_runtime, gopclntab,
    site::{ProbeObject, SourceLocation},
};
use crate::error::{Error, Result};

/// The functions `.gopclntab` lists (a Go build's own table, there when its symbol table
/// was stripped), at their addresses in the file.
pub fn pclntab_functions(elf: &ElfFile) -> Vec<gopclntab::GoFunction> {
    let Some(section) = elf.go_pclntab_section() else {
        return Vec::new();
    };
    let Ok(Some(table)) = elf.section(section) else {
        return Vec::new();
    };
    let module_text = match (elf.section(".go.module"), elf.section_address(section)) {
        (Ok(Some(module)), Some(table_address)) => gopclntab::module_text(module, table_address),
        _ => None,
    };
    let text_base = module_text
        .or_else(|| elf.section_address(".text"))
        .unwrap_or(0);
    gopclntab::functions(table, text_base)
}

/// Where a Go program's type descriptors start (`runtime.types`): its symbol; else the
/// module data's `types` (`.go.module` from Go 1.26, found in `.noptrdata` before); else the
/// section the linker puts them first in (`.data.rel.ro` in a PIE, whose module data the
/// dynamic loader fills in, `.rodata` otherwise). The Go tests check the fallbacks against
/// the symbol for every fixture release, PIE and not.
pub fn go_types_address(elf: &ElfFile, version: &str) -> Option<u64> {
    if let Some(types) = elf.symbol_address("runtime.types") {
        return Some(types);
    }
    go_types_without_symbols(elf, version)
}

/// [`go_types_address`] for a binary without a symbol table (`-ldflags=-s`).
pub fn go_types_without_symbols(elf: &ElfFile, version: &str) -> Option<u64> {
    let table = elf.section_address(elf.go_pclntab_section()?)?;
    let from_module = [".go.module", ".noptrdata"].into_iter().find_map(|name| {
        let data = elf.section(name).ok()??;
        go_runtime::module_types(go_runtime::find_module(data, table)?, table, version)
    });
    from_module.or_else(|| {
        let section = if elf.is_position_independent() && elf.has_section(".data.rel.ro") {
            ".data.rel.ro"
        } else {
            ".rodata"
        };
        elf.section_address(section)
    })
}

/// An object file and its symbol sources.
pub struct ObjectFiles {
    pub object: ProbeObject,
    /// The Go release that built it (`go1.19.8`), for a Go program.
    pub go: Option<String>,
    /// A Go program's `runtime.types` (file address), which the names of its dynamic types
    /// count from; None where it cannot be found.
    pub go_types: Option<u64>,
    /// The root the target sees (`/proc/PID/root`, or `/`): where debug files are searched.
    root: PathBuf,
    elf: ElfFile,
    /// (device, inode): what uprobes key on; two paths to one file are one object.
    pub identity: (u64, u64),
    functions: OnceCell<Vec<FunctionSymbol>>,
    debug_file: OnceCell<Option<ElfFile>>,
    /// Where `.gopclntab` says its Go functions are defined, by address.
    go_sources: OnceCell<HashMap<u64, SourceLocation>>,
    /// Why an exception or panic may unwind through this object's functions, if it may.
    unwinding: OnceCell<Option<&'static str>>,
    /// The `.cold` parts the compiler split off functions, by the function's symbol.
    cold_parts: OnceCell<HashMap<String, FunctionSymbol>>,
    /// Whether a traced process runs it as its program (not a library it loaded).
    pub is_program: bool,
}

impl std::fmt::Debug for ObjectFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectFiles")
            .field("object", &self.object)
            .finish()
    }
}

impl ObjectFiles {
    /// Opens `object`, refusing what cannot be traced safely.
    pub fn open(object: ProbeObject, root: &Path) -> Result<Self> {
        let elf = ElfFile::open(&object.open_path)?;
        let go = if elf.is_go() {
            let version = elf.go_version();
            match version.as_deref().and_then(super::elf::go_release) {
                Some(release) if release >= (1, 17) => version,
                Some(_) => {
                    return Err(Error::Unsupported(format!(
                        "{} was built by {}, which passes arguments on the stack: koolkit-trace \
                         traces Go 1.17 and newer (the register ABI)",
                        object.path,
                        version.unwrap_or_default()
                    )));
                }
                None => {
                    return Err(Error::Unsupported(format!(
                        "{} is a Go program whose build info does not say its Go release",
                        object.path
                    )));
                }
            }
        } else {
            None
        };
        let meta = std::fs::metadata(&object.open_path)
            .map_err(|source| Error::io(&object.open_path, source))?;
        let go_types = go
            .as_deref()
            .and_then(|version| go_types_address(&elf, version));
        Ok(Self {
            object,
            go,
            go_types,
            root: root.to_path_buf(),
            elf,
            identity: (meta.dev(), meta.ino()),
            functions: OnceCell::new(),
            debug_file: OnceCell::new(),
            go_sources: OnceCell::new(),
            unwinding: OnceCell::new(),
            cold_parts: OnceCell::new(),
            is_program: false,
        })
    }

    /// Why an exception or a panic may unwind through the functions of this object (a frame
    /// whose return address a uretprobe replaced stops the unwinder: the program aborts);
    /// None for code nothing unwinds through: C without exception tables, Rust built with
    /// `panic=abort`.
    pub fn unwinding(&self) -> Option<&'static str> {
        *self.unwinding.get_or_init(|| {
            // What the symbols say, in one pass over both tables.
            let (mut cpp, mut rust, mut panic_abort, mut panic_unwind, mut unwinder) =
                (false, false, false, false, false);
            let contains = |name: &[u8], part: &[u8]| name.windows(part.len()).any(|w| w == part);
            self.elf.for_each_symbol_name(|name| match name {
                b"__gxx_personality_v0" | b"__cxa_throw" | b"__cxa_begin_catch" => cpp = true,
                b"rust_eh_personality" => rust = true,
                b"_Unwind_Resume" | b"_Unwind_RaiseException" => unwinder = true,
                _ => {
                    panic_abort |= contains(name, b"panic_abort");
                    panic_unwind |= contains(name, b"panic_unwind");
                }
            });
            if cpp {
                return Some("C++ exceptions may unwind through it");
            }
            if rust {
                // The panic runtime linked in decides: panic_abort never unwinds.
                if panic_abort && !panic_unwind {
                    return None;
                }
                return Some("Rust panics may unwind through it");
            }
            if unwinder || self.elf.has_section(".gcc_except_table") {
                return Some("its object has exception tables: an exception may unwind through it");
            }
            None
        })
    }

    /// The `.cold` part of the function whose symbol is `name` (GCC moves unlikely paths
    /// there: `f.cold`), if it has one.
    pub fn cold_part(&self, name: &str) -> Option<&FunctionSymbol> {
        self.cold_parts
            .get_or_init(|| {
                let Ok(functions) = self.functions() else {
                    return HashMap::new();
                };
                functions
                    .iter()
                    .filter_map(|f| {
                        let parent = f.name.strip_suffix(".cold")?;
                        Some((parent.to_string(), f.clone()))
                    })
                    .collect()
            })
            .get(name)
    }

    /// The binary itself: file offsets and code bytes always come from it.
    pub fn elf(&self) -> &ElfFile {
        &self.elf
    }

    /// The separate debug file, if one is installed for this binary.
    pub fn debug_file(&self) -> Option<&ElfFile> {
        self.debug_file
            .get_or_init(|| {
                if self.elf.has_dwarf() && self.elf.has_section(".symtab") {
                    return None;
                }
                debug_file::find_debug_file(&self.elf, &self.object.path, &self.root)
            })
            .as_ref()
    }

    /// Why few functions may be found here: the binary is stripped and no debug information
    /// was found for it (with the paths looked at).
    pub fn stripped_note(&self) -> Option<String> {
        if self.elf.has_section(".symtab") || self.debug_file().is_some() {
            return None;
        }
        if self.elf.mini_debuginfo().is_ok_and(|mini| mini.is_some()) {
            return None;
        }
        let looked: Vec<String> = debug_file::candidates(&self.elf, &self.object.path, &self.root)
            .iter()
            .map(|path| {
                let seen = path.strip_prefix(&self.root).unwrap_or(path);
                format!("/{}", seen.display())
            })
            .collect();
        let looked = if looked.is_empty() {
            "it has no build-id or debuglink to find one by".to_string()
        } else {
            format!("none at {}", looked.join(", "))
        };
        Some(format!(
            "{} is stripped (no symbol table) and has no debug file ({looked}): only the \
             functions it exports can be traced; install its debug symbols (the -dbgsym or \
             -debuginfo package) or trace a build with them",
            self.object.path
        ))
    }

    /// The file whose DWARF describes this object: itself or its debug file.
    pub fn dwarf_file(&self) -> Option<&ElfFile> {
        if self.elf.has_dwarf() {
            Some(&self.elf)
        } else {
            self.debug_file().filter(|debug| debug.has_dwarf())
        }
    }

    /// The Go functions of `.gopclntab`, for Go builds stripped of their symbol table. Of a
    /// function listed twice (its ABIInternal body and the ABI0 wrapper that calls it), the
    /// body.
    fn go_functions(&self) -> Vec<FunctionSymbol> {
        let mut sources = HashMap::new();
        let functions: Vec<FunctionSymbol> = pclntab_functions(&self.elf)
            .into_iter()
            .map(|f| {
                if let Some((file, line)) = f.source {
                    let line = u64::from(line);
                    sources.insert(f.address, SourceLocation { file, line });
                }
                FunctionSymbol {
                    name: f.name,
                    address: f.address,
                    size: f.size,
                    kind: FunctionKind::Function,
                    source: SymbolSource::Pclntab,
                }
            })
            .collect();
        let _ = self.go_sources.set(sources);
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, f) in functions.iter().enumerate() {
            by_name.entry(f.name.as_str()).or_default().push(i);
        }
        let wrappers: HashSet<usize> = by_name
            .values()
            .filter(|twins| twins.len() > 1)
            .flat_map(|twins| {
                twins.iter().copied().filter(|&i| {
                    twins
                        .iter()
                        .any(|&j| j != i && self.calls(&functions[i], functions[j].address))
                })
            })
            .collect();
        drop(by_name);
        functions
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !wrappers.contains(i))
            .map(|(_, f)| f)
            .collect()
    }

    /// Where `.gopclntab` says the Go function at `address` is defined (for builds without
    /// DWARF); known once [`Self::functions`] has read the table.
    pub fn go_source(&self, address: u64) -> Option<SourceLocation> {
        self.go_sources.get()?.get(&address).cloned()
    }

    /// Whether the body of `function` calls or jumps to `target`.
    fn calls(&self, function: &FunctionSymbol, target: u64) -> bool {
        let Ok(Some(offset)) = self.elf.file_offset(function.address) else {
            return false;
        };
        let code = self.elf.bytes_at(offset, function.size.min(4096) as usize);
        super::placement::branches_to(code, function.address, target)
    }

    /// Every function symbol from every source, each (name, address) once: the binary's
    /// `.symtab` and `.dynsym`, then the debug file's and the MiniDebugInfo's tables for
    /// what a stripped binary lacks.
    pub fn functions(&self) -> Result<&[FunctionSymbol]> {
        if let Some(functions) = self.functions.get() {
            return Ok(functions);
        }
        let mut functions = self.elf.functions()?;
        let mut extra_sources = Vec::new();
        if let Some(debug) = self.debug_file() {
            extra_sources.push(debug.functions());
        }
        match self.elf.mini_debuginfo() {
            Ok(Some(mini)) => extra_sources.push(mini.functions()),
            Ok(None) => {}
            Err(err) => log::warn!("{}: {err}", self.object.path),
        }
        if self.go.is_some() {
            extra_sources.push(Ok(self.go_functions()));
        }
        if !extra_sources.is_empty() {
            let mut seen: HashSet<(u64, String)> = functions
                .iter()
                .map(|f| (f.address, f.name.clone()))
                .collect();
            for source in extra_sources {
                match source {
                    Ok(more) => functions.extend(
                        more.into_iter()
                            .filter(|f| seen.insert((f.address, f.name.clone()))),
                    ),
                    Err(err) => log::warn!("{}: {err}", self.object.path),
                }
            }
        }
        Ok(self.functions.get_or_init(|| functions))
    }
}
