//! The user stacks of `--stack`: each address of a call's stack as `function+offset
//! (object)`, from the object's symbol tables, with a cache per process and address.
//!
//! Addresses are the process's: `/proc/PID/maps` says which file (and where in it) holds
//! each, read once per process and again when an address falls outside every mapping known.
//! Objects are opened through `/proc/PID/root`, so a container's files are its own.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::elf::ElfFile;
use crate::target::parse_maps_line;

/// One frame of a stack, symbolized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: u64,
    /// The function holding the address, and how far into it the address is.
    pub function: Option<(String, u64)>,
    /// The file name of the object mapping the address, and the address in the file's
    /// own terms (what `addr2line -e OBJECT` takes), where known.
    pub object: Option<(String, Option<u64>)>,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some((name, 0)) => write!(f, "{name}")?,
            Some((name, offset)) => write!(f, "{name}+{offset:#x}")?,
            None => write!(f, "{:#x}", self.address)?,
        }
        match (&self.object, &self.function) {
            // No symbol: where in the file, for addr2line or a debug file found later.
            (Some((object, Some(at))), None) => write!(f, " ({object}+{at:#x})"),
            (Some((object, _)), _) => write!(f, " ({object})"),
            (None, _) => Ok(()),
        }
    }
}

/// A file-backed mapping of a process.
#[derive(Debug, Clone)]
struct Mapping {
    start: u64,
    end: u64,
    file_offset: u64,
    path: String,
}

/// An object's functions by address, and its file for offset-to-address sums.
struct ObjectSymbols {
    elf: ElfFile,
    /// (address, size, shown name), sorted by address.
    functions: Vec<(u64, u64, String)>,
}

impl ObjectSymbols {
    fn open(path: &Path) -> Option<Self> {
        let elf = ElfFile::open(path).ok()?;
        // A Go build stripped of its symbol table still names its functions in `.gopclntab`.
        let mut functions: Vec<(u64, u64, String)> = if elf.is_go() && !elf.has_section(".symtab") {
            super::object_files::pclntab_functions(&elf)
                .into_iter()
                .map(|f| (f.address, f.size, f.name))
                .collect()
        } else {
            elf.functions()
                .unwrap_or_default()
                .into_iter()
                .map(|f| {
                    let shown = super::demangle::demangle(&f.name).map_or(f.name, |d| d.path);
                    (f.address, f.size, shown)
                })
                .collect()
        };
        functions.sort_by_key(|f| f.0);
        Some(Self { elf, functions })
    }

    /// The function holding file address `address`, and the offset into it.
    fn function_at(&self, address: u64) -> Option<(&str, u64)> {
        let index = self.functions.partition_point(|f| f.0 <= address);
        let (start, size, name) = self.functions.get(index.checked_sub(1)?)?;
        // A symbol without a size (hand-written assembly) holds what follows it.
        (*size == 0 || address - start < *size).then_some((name.as_str(), address - start))
    }
}

/// Symbolizes addresses of traced processes, remembering each one it has done.
#[derive(Default)]
pub struct Symbolizer {
    maps: HashMap<u32, Vec<Mapping>>,
    objects: HashMap<PathBuf, Option<ObjectSymbols>>,
    frames: HashMap<(u32, u64), Frame>,
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames of a stack of process `pid`, innermost first. Every address but the
    /// first is a return address: it is looked up one byte back, inside the call.
    pub fn frames(&mut self, pid: u32, addresses: &[u64]) -> Vec<Frame> {
        addresses
            .iter()
            .enumerate()
            .map(|(depth, &address)| self.frame(pid, address, depth > 0))
            .collect()
    }

    fn frame(&mut self, pid: u32, address: u64, return_address: bool) -> Frame {
        if let Some(frame) = self.frames.get(&(pid, address)) {
            return frame.clone();
        }
        let lookup = if return_address {
            address.saturating_sub(1)
        } else {
            address
        };
        let frame = self.symbolize(pid, address, lookup);
        self.frames.insert((pid, address), frame.clone());
        frame
    }

    fn symbolize(&mut self, pid: u32, address: u64, lookup: u64) -> Frame {
        let mut mapping = self.mapping(pid, lookup);
        if mapping.is_none() {
            // A library loaded since the maps were read.
            self.maps.remove(&pid);
            mapping = self.mapping(pid, lookup);
        }
        let Some(mapping) = mapping else {
            return Frame {
                address,
                function: None,
                object: None,
            };
        };
        let object = crate::symbols::file_name(&mapping.path).to_string();
        let open = PathBuf::from(format!("/proc/{pid}/root{}", mapping.path));
        let symbols = self
            .objects
            .entry(open.clone())
            .or_insert_with(|| ObjectSymbols::open(&open));
        let file_offset = lookup - mapping.start + mapping.file_offset;
        let file_address = symbols
            .as_ref()
            .and_then(|symbols| symbols.elf.address_of_offset(file_offset));
        let function = symbols
            .as_ref()
            .zip(file_address)
            .and_then(|(symbols, at)| {
                let (name, offset) = symbols.function_at(at)?;
                // The offset of the address shown, not of the byte looked up.
                Some((name.to_string(), offset + (address - lookup)))
            });
        Frame {
            address,
            function,
            object: Some((object, file_address.map(|at| at + (address - lookup)))),
        }
    }

    fn mapping(&mut self, pid: u32, address: u64) -> Option<Mapping> {
        let mappings = self.maps.entry(pid).or_insert_with(|| read_mappings(pid));
        mappings
            .iter()
            .find(|m| m.start <= address && address < m.end)
            .cloned()
    }
}

/// The file-backed mappings of process `pid` (none once it is gone).
fn read_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let parsed = parse_maps_line(line)?;
            let file_offset = line.split(' ').nth(2)?;
            Some(Mapping {
                start: parsed.start,
                end: parsed.end,
                file_offset: u64::from_str_radix(file_offset, 16).ok()?,
                path: parsed
                    .path
                    .strip_suffix(crate::target::DELETED_SUFFIX)
                    .unwrap_or(parsed.path)
                    .to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracer_s_own_stack_is_symbolized_through_its_maps() {
        // This test's own code: the address of a function of this binary.
        let address = the_tracer_s_own_stack_is_symbolized_through_its_maps as *const () as u64;
        let mut symbolizer = Symbolizer::new();
        let frames = symbolizer.frames(std::process::id(), &[address, address + 1]);
        let (name, offset) = frames[0].function.clone().expect("symbolized");
        assert!(
            name.ends_with("the_tracer_s_own_stack_is_symbolized_through_its_maps"),
            "{name}"
        );
        assert_eq!(offset, 0);
        // A return address one byte in is looked up inside the call, and shown as it is.
        assert_eq!(frames[1].function.as_ref().map(|f| f.1), Some(1));
        assert!(frames[0].to_string().contains(" (tracer-"), "{}", frames[0]);
        // An address no mapping holds is shown bare.
        let bare = symbolizer.frames(std::process::id(), &[8]);
        assert_eq!(bare[0].to_string(), "0x8");
    }
}
