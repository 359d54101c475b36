//! koolkit-trace: zero-instrumentation function tracing with eBPF uprobes.
//!
//! The path of one request (DESIGN.md): [`target`] → [`symbols`] → [`plan`] → [`probes`] →
//! kernel (`tracer-ebpf`) → [`events`] → sinks ([`format`], [`summary`]). [`session`] runs
//! that path for a live trace; [`cli`] is the command line on top.

pub mod abi;
pub mod cli;
pub mod error;
pub mod events;
pub mod format;
pub mod listing;
pub mod plan;
pub mod probe_table;
pub mod probes;
pub mod record;
pub mod review;
pub mod session;
pub mod stats;
pub mod summary;
pub mod symbols;
pub mod sys;
pub mod target;
pub mod values;

pub use error::{Error, Result};
