//! koolkit-trace: zero-instrumentation function tracing with eBPF uprobes.
//!
//! The modules follow the path of one request (`../shared/DESIGN.md`, `docs/architecture.md`):
//! [`target`] → [`symbols`] → [`plan`] (and [`predicate`]) → [`probes`] → kernel (`tracer-ebpf`) → [`events`] →
//! [`sinks`] and [`record`]. [`session`] runs that path for a live trace; [`cli`] is the
//! command line on top; [`error`] and [`sys`] serve every stage.

// Unsafe code only in the rooms that need it: the syscall wrappers (`sys`, and
// `probes::uprobe_multi`); the event ABI's layouts live in `tracer-ebpf`.
#![deny(unsafe_code)]

pub mod error;
#[allow(unsafe_code)]
pub(crate) mod sys;

// The stages, in path order (one group each, so rustfmt keeps the order): each imports only
// those above it.
pub(crate) mod target;

pub(crate) mod symbols;

pub(crate) mod plan;

pub(crate) mod predicate;

pub(crate) mod probes;

pub(crate) mod events;

pub(crate) mod sinks;

pub mod record;

pub(crate) mod session;

pub mod cli;

#[cfg(test)]
mod test_support;

// The library's public face: what the binary, the benchmarks and the end-to-end tests use.
// Everything else is crate-private, so the compiler sees dead code.
pub use error::{Error, Result};
pub use events::{CallEvent, probe_table::ProbeTable};
pub use plan::raw_register_args;
pub use probes::features::multi_link_fires_in_a_new_thread;
pub use sinks::{
    clock::WallClock,
    line::{HumanLines, Style, json_line},
};
pub use symbols::{
    ProbeSite,
    dwarf::DebugInfo,
    elf::ElfFile,
    go_runtime::{goroutine_id_offset, module_types_offset},
    object_files::{go_types_address, go_types_without_symbols},
};
/// A channel to a CRI socket, for tests that run pods through the runtime themselves.
pub use target::cri::channel as cri_channel;
