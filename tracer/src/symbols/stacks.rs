//! The user stacks of `--stack`: each address of a call's stack as `function+offset at
//! file:line (object)`, from the object's symbol tables and DWARF (its own or its separate
//! debug file's), the functions inlined at the address as frames of their own, with a cache
//! per process and address.
//!
//! Addresses are the process's: `/proc/PID/maps` says which file (and where in it) holds
//! each, read once per process and again when an address falls outside every mapping known.
//! Objects are opened through `/proc/PID/root`, so a container's files are its own.

use std::{
    cell::OnceCell,
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{
    debug_file::find_debug_file,
    elf::ElfFile,
    site::SourceLocation,
    source_places::{SourcePlaces, short_place},
};
use crate::target::parse_maps_line;

/// One frame of a stack, symbolized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub address: u64,
    /// The function holding the address, and how far into it the address is (for a
    /// function inlined there, no offset: it has no code of its own).
    pub function: Option<(String, u64)>,
    /// The file name of the object mapping the address, and the address in the file's
    /// own terms (what `addr2line -e OBJECT` takes), where known.
    pub object: Option<(String, Option<u64>)>,
    /// Where in the function's source the address is, from DWARF.
    pub place: Option<SourceLocation>,
    /// A function the compiler inlined at the address: its caller is the next frame, at the
    /// same address.
    pub inlined: bool,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some((name, _)) if self.inlined => write!(f, "{name} (inlined)")?,
            Some((name, 0)) => write!(f, "{name}")?,
            Some((name, offset)) => write!(f, "{name}+{offset:#x}")?,
            None => write!(f, "{:#x}", self.address)?,
        }
        if let Some(place) = &self.place {
            write!(f, " at {}", short_place(place))?;
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

/// An object's functions by address, its file for offset-to-address sums, and its DWARF.
struct ObjectSymbols {
    elf: ElfFile,
    /// The separate debug file of a stripped object, when one is installed.
    debug: Option<ElfFile>,
    /// (address, size, shown name), sorted by address.
    functions: Vec<(u64, u64, String)>,
    /// Read on the first address looked up.
    places: OnceCell<Option<SourcePlaces>>,
}

impl ObjectSymbols {
    /// The object mapped from `path` by processes whose root is `root`.
    fn open(root: &Path, path: &str) -> Option<Self> {
        let elf = ElfFile::open(root.join(path.trim_start_matches('/'))).ok()?;
        let debug = if elf.has_dwarf() {
            None
        } else {
            find_debug_file(&elf, path, root)
        };
        let symbols = match &debug {
            Some(debug) if !elf.has_section(".symtab") => debug,
            _ => &elf,
        };
        // A Go build stripped of its symbol table still names its functions in `.gopclntab`.
        let mut functions: Vec<(u64, u64, String)> =
            if elf.is_go() && !symbols.has_section(".symtab") {
                super::object_files::pclntab_functions(&elf)
                    .into_iter()
                    .map(|f| (f.address, f.size, f.name))
                    .collect()
            } else {
                symbols
                    .functions()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| {
                        let shown = super::demangle::demangle(&f.name).map_or(f.name, |d| d.path);
                        (f.address, f.size, shown)
                    })
                    .collect()
            };
        functions.sort_by_key(|f| f.0);
        Some(Self {
            elf,
            debug,
            functions,
            places: OnceCell::new(),
        })
    }

    fn places(&self) -> Option<&SourcePlaces> {
        self.places
            .get_or_init(|| SourcePlaces::load(self.debug.as_ref().unwrap_or(&self.elf)))
            .as_ref()
    }

    /// The function holding file address `address`, and the offset into it.
    fn function_at(&self, address: u64) -> Option<(&str, u64)> {
        let index = self.functions.partition_point(|f| f.0 <= address);
        let (start, size, name) = self.functions.get(index.checked_sub(1)?)?;
        // A symbol without a size (hand-written assembly) holds what follows it.
        (*size == 0 || address - start < *size).then_some((name.as_str(), address - start))
    }
}

/// What a process's `/proc/PID/maps` says, read once (again when an address falls outside).
#[derive(Debug, Default)]
struct ProcessMaps {
    /// The file-backed mappings (none once the process is gone).
    files: Vec<Mapping>,
    /// Where the kernel's uretprobe trampoline is mapped (`[uprobes]`).
    trampoline: Option<(u64, u64)>,
}

/// Symbolizes addresses of traced processes, remembering each one it has done.
#[derive(Default)]
pub struct Symbolizer {
    maps: HashMap<u32, ProcessMaps>,
    /// Whose mappings stand for a process gone before its stacks were read: the traced
    /// process, whose forked children (a pre-fork server's workers, postgres's backends)
    /// map what it mapped where it mapped it.
    fallback: Option<u32>,
    objects: HashMap<PathBuf, Option<ObjectSymbols>>,
    /// The frames of each address (and whether it was a return address): more than one
    /// where functions were inlined there.
    frames: HashMap<(u32, u64, bool), Vec<Frame>>,
}

impl Symbolizer {
    /// A symbolizer that reads the mappings of `pid` for processes already gone.
    pub fn with_fallback(pid: Option<u32>) -> Self {
        Self {
            fallback: pid,
            ..Self::default()
        }
    }

    /// Whether `address` of process `pid` is the kernel's uretprobe trampoline: a return
    /// address a uretprobe replaced (a traced caller's, or the one read at the entry once
    /// the return probe took it), which names no code.
    pub fn is_trampoline(&mut self, pid: u32, address: u64) -> bool {
        let pid = self.source_of(pid);
        self.process_maps(pid)
            .trampoline
            .is_some_and(|(start, end)| start <= address && address < end)
    }

    fn process_maps(&mut self, pid: u32) -> &ProcessMaps {
        self.maps
            .entry(pid)
            .or_insert_with(|| read_process_maps(pid))
    }

    /// The process whose mappings and root stand for `pid`: itself while it runs.
    fn source_of(&mut self, pid: u32) -> u32 {
        let gone = self.process_maps(pid).files.is_empty();
        match self.fallback {
            Some(fallback) if gone && fallback != pid => fallback,
            _ => pid,
        }
    }

    /// The frames of a stack of process `pid`, innermost first, the functions inlined at
    /// an address before the one holding it. Every address but the first is a return
    /// address: it is looked up one byte back, inside the call. The first is where the
    /// traced function was just entered (its probe, maybe past its first instructions, where
    /// code inlined from its body may already start): only the function is shown there.
    pub fn frames(&mut self, pid: u32, addresses: &[u64]) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(addresses.len());
        for (depth, &address) in addresses.iter().enumerate() {
            frames.extend(self.address_frames(pid, address, depth > 0));
        }
        frames
    }

    fn address_frames(&mut self, pid: u32, address: u64, return_address: bool) -> Vec<Frame> {
        if let Some(frames) = self.frames.get(&(pid, address, return_address)) {
            return frames.clone();
        }
        let lookup = if return_address {
            address.saturating_sub(1)
        } else {
            address
        };
        let mut frames = self.symbolize(pid, address, lookup);
        if !return_address {
            frames.drain(..frames.len() - 1);
        }
        self.frames
            .insert((pid, address, return_address), frames.clone());
        frames
    }

    fn symbolize(&mut self, pid: u32, address: u64, lookup: u64) -> Vec<Frame> {
        let pid = self.source_of(pid);
        let mut mapping = self.mapping(pid, lookup);
        if mapping.is_none() {
            // A library loaded since the maps were read.
            self.maps.remove(&pid);
            mapping = self.mapping(pid, lookup);
        }
        let Some(mapping) = mapping else {
            return vec![Frame {
                address,
                function: None,
                object: None,
                place: None,
                inlined: false,
            }];
        };
        let object = crate::symbols::file_name(&mapping.path).to_string();
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let symbols = self
            .objects
            .entry(root.join(mapping.path.trim_start_matches('/')))
            .or_insert_with(|| ObjectSymbols::open(&root, &mapping.path));
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
        let places = symbols
            .as_ref()
            .zip(file_address)
            .and_then(|(symbols, at)| Some(symbols.places()?.at(at)))
            .unwrap_or_default();
        let object = Some((object, file_address.map(|at| at + (address - lookup))));
        let mut frames: Vec<Frame> = places
            .inlined
            .into_iter()
            .map(|call| Frame {
                address,
                function: Some((call.function, 0)),
                object: object.clone(),
                place: call.place,
                inlined: true,
            })
            .collect();
        frames.push(Frame {
            address,
            function,
            object,
            place: places.place,
            inlined: false,
        });
        frames
    }

    fn mapping(&mut self, pid: u32, address: u64) -> Option<Mapping> {
        self.process_maps(pid)
            .files
            .iter()
            .find(|m| m.start <= address && address < m.end)
            .cloned()
    }
}

/// The file-backed mappings of process `pid` and its `[uprobes]` range (nothing once it is
/// gone).
fn read_process_maps(pid: u32) -> ProcessMaps {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return ProcessMaps::default();
    };
    let trampoline = maps
        .lines()
        .find(|line| line.ends_with("[uprobes]"))
        .and_then(|line| {
            let (start, end) = line.split_once(' ')?.0.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        });
    let files = maps
        .lines()
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
        .collect();
    ProcessMaps { files, trampoline }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracer_s_own_stack_is_symbolized_through_its_maps() {
        // This test's own code: the address of a function of this binary.
        let address = the_tracer_s_own_stack_is_symbolized_through_its_maps as *const () as u64;
        let mut symbolizer = Symbolizer::with_fallback(None);
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
