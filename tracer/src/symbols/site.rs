//! What resolution produces: probe sites (one function in one object, where its entry probe
//! goes, what DWARF says of it) and the objects they are in.

use std::path::PathBuf;

use super::{dwarf::FunctionDebug, placement::CostClass};

/// An object file probes go into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeObject {
    /// The path users know it by (the process's view, or the path they gave).
    pub path: String,
    /// The path that opens it from here; uprobes are attached through it.
    pub open_path: PathBuf,
}

impl ProbeObject {
    /// Whether this is a copy of a replaced file that processes still run (its path is the
    /// file's, marked ` (deleted)`).
    pub fn is_replaced_copy(&self) -> bool {
        self.path.ends_with(crate::target::DELETED_SUFFIX)
    }

    pub fn file_name(&self) -> &str {
        file_name(&self.path)
    }
}

/// Where a function is in its source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: u64,
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A place to put a probe: one function in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSite {
    /// The function's name as shown to the user (demangled, without hashes).
    pub function: String,
    /// The symbol as the symbol table has it (mangled).
    pub symbol: String,
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
    /// Bytes the instructions before the entry probe took off the stack pointer: the return
    /// address is this far above it there (only with probes on the ways out).
    pub entry_sp_adjust: u64,
    /// Where the function is defined, from DWARF.
    pub source: Option<SourceLocation>,
    /// Parameters and types from DWARF, when resolved for tracing.
    pub debug: Option<FunctionDebug>,
    /// The object's GNU build-id, in hex.
    pub build_id: Option<String>,
    /// How returns are probed.
    pub returns: ReturnProbes,
    /// Why they are probed so (`a leaf: nothing unwinds through it`).
    pub returns_why: String,
    /// A Go function (paired by goroutine, its arguments by Go's register ABI).
    pub go: bool,
    /// A Go function's: where its goroutine's id is, as an offset into the `runtime.g` that
    /// R14 points at (None: not Go, or a Go release whose layout is not known).
    pub goroutine_id_offset: Option<i32>,
    /// A Go function's: its program's `runtime.types` (file address), which the names of
    /// dynamic types in interfaces count from.
    pub go_types: Option<u64>,
}

impl ProbeSite {
    /// The file's address of the entry probe.
    pub fn probe_address(&self) -> u64 {
        self.address
            .wrapping_add(self.probe_offset.wrapping_sub(self.file_offset))
    }
}

/// How the returns of a function are probed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReturnProbes {
    /// A uretprobe: the kernel swaps the return address for its trampoline. Cheapest, but
    /// an unwinder stops at that foreign address, and Go's runtime crashes on it.
    #[default]
    Uretprobe,
    /// A uprobe on every way out of the body: each `ret`, and the jumps that leave it (tail
    /// calls). The return address is never touched.
    AtExits(Vec<ExitProbe>),
}

impl ReturnProbes {
    /// The name `list` and the docs use.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Uretprobe => "uretprobe",
            Self::AtExits(_) => "ret-sites",
        }
    }
}

/// A way out of a function, probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitProbe {
    /// File offset of the instruction.
    pub offset: u64,
    /// For a conditional tail call, the condition under which it leaves
    /// ([`tracer_ebpf::exit_condition`]); 0: always.
    pub condition: u8,
    /// A jump to another function (a tail call), not a `ret`.
    pub tail_call: bool,
}

/// How to probe returns (`--returns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnChoice {
    /// Probes on the ways out wherever an exception or panic may unwind through the function,
    /// a uretprobe where nothing can (C, Rust with `panic=abort`, leaf functions). Go always
    /// gets probes on its ways out.
    #[default]
    Auto,
    RetSites,
    Uretprobe,
}

impl ProbeSite {
    /// A site known only by name, with no object file behind it: for trace files made
    /// elsewhere, tests and benchmarks.
    pub fn named(function: &str, object: &str) -> Self {
        Self {
            function: function.into(),
            symbol: function.into(),
            object: ProbeObject {
                path: object.into(),
                open_path: object.into(),
            },
            address: 0,
            size: 0,
            file_offset: 0,
            probe_offset: 0,
            cost: CostClass::Unknown,
            probe_instruction: String::new(),
            entry_sp_adjust: 0,
            source: None,
            debug: None,
            build_id: None,
            returns: ReturnProbes::Uretprobe,
            returns_why: String::new(),
            go: false,
            goroutine_id_offset: None,
            go_types: None,
        }
    }
}

/// The last component of `path`, e.g. `libc.so.6`: how objects are named to users.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
