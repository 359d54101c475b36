//! DWARF, read lazily: which compilation unit holds an address (`.debug_aranges`), the
//! functions of one unit ([`function`]), a function's parameters with their types
//! ([`type_reader`]) and where they live at the entry ([`location`]), and which functions a
//! source line belongs to ([`lines`]).
//!
//! Nothing is parsed up front: a query parses the one unit it needs, and unit summaries are
//! cached, so resolving a function in a 70 MB binary reads a few hundred kilobytes. Results are
//! owned values, so nothing borrows the file past the query. Malformed DWARF is an error (the
//! ELF file's, naming it) or a missing answer, never a panic.

pub(crate) mod function;
pub(crate) mod library_types;
pub(crate) mod lines;
pub(crate) mod location;
pub(crate) mod type_reader;
pub(crate) mod variants;

use std::{cell::RefCell, collections::HashMap, path::Path, rc::Rc};

use gimli::{
    AttributeValue, DebugInfoOffset, DwAt, EndianSlice, RunTimeEndian, UnitOffset, constants,
};

pub use function::{FunctionDebug, FunctionSummary, Language};
pub use location::EntryLocation;

use super::elf::ElfFile;
use crate::error::{Error, Result};

type R<'a> = EndianSlice<'a, RunTimeEndian>;
type Unit<'a> = gimli::Unit<R<'a>>;
type Die<'a> = gimli::DebuggingInformationEntry<R<'a>>;

/// Address ranges of a unit.
#[derive(Debug, Clone, Copy)]
struct Arange {
    start: u64,
    end: u64,
    unit: DebugInfoOffset<usize>,
}

/// DWARF of one ELF file.
pub struct DebugInfo<'a> {
    /// The ELF file's path, for messages.
    path: &'a Path,
    dwarf: gimli::Dwarf<R<'a>>,
    aranges: Vec<Arange>,
    units: RefCell<HashMap<usize, Rc<Vec<FunctionSummary>>>>,
    /// Whether each class read so far is trivial for calls, by the global offset of its
    /// entry: a class is read once however many classes hold it.
    trivial_classes: RefCell<HashMap<usize, Option<bool>>>,
    /// Where each unit starts and ends in `.debug_info`, in order: read once, when a
    /// reference into another unit first needs it.
    unit_spans: std::cell::OnceCell<Vec<(usize, usize)>>,
    /// Units parsed so far, by their offset: a unit is parsed once however many references
    /// lead into it (rustc's and Go's types are in units of their own).
    parsed_units: RefCell<HashMap<usize, Rc<Unit<'a>>>>,
}

impl<'a> DebugInfo<'a> {
    /// The DWARF of `elf`; `None` when it has none.
    pub fn load(elf: &'a ElfFile) -> Result<Option<Self>> {
        if !elf.has_dwarf() {
            return Ok(None);
        }
        let endian = RunTimeEndian::Little;
        let dwarf = gimli::Dwarf::load(|id| -> Result<R<'a>> {
            let data = elf.section(id.name())?.unwrap_or(&[]);
            Ok(EndianSlice::new(data, endian))
        })?;
        let mut info = Self {
            path: elf.path(),
            dwarf,
            aranges: Vec::new(),
            units: RefCell::new(HashMap::new()),
            trivial_classes: RefCell::new(HashMap::new()),
            unit_spans: std::cell::OnceCell::new(),
            parsed_units: RefCell::new(HashMap::new()),
        };
        info.aranges = info
            .read_aranges()
            .map_err(|err| info.malformed("address ranges", err))?;
        Ok(Some(info))
    }

    /// A fault in this file's DWARF, as the ELF error that names the file.
    fn malformed(&self, what: impl std::fmt::Display, err: gimli::Error) -> Error {
        Error::BadElf {
            path: self.path.to_path_buf(),
            reason: format!("malformed DWARF {what}: {err}"),
        }
    }

    /// Unit address ranges from `.debug_aranges`, or from the units themselves without it.
    fn read_aranges(&self) -> gimli::Result<Vec<Arange>> {
        let mut aranges = Vec::new();
        let mut headers = self.dwarf.debug_aranges.headers();
        while let Some(header) = headers.next()? {
            let unit = header.debug_info_offset();
            let mut entries = header.entries();
            while let Some(entry) = entries.next()? {
                let range = entry.range();
                if range.end > range.begin {
                    aranges.push(Arange {
                        start: range.begin,
                        end: range.end,
                        unit,
                    });
                }
            }
        }
        // Units `.debug_aranges` leaves out (objects from another compiler linked in, or no
        // aranges at all) get their ranges from the units themselves.
        let covered: std::collections::HashSet<usize> = aranges.iter().map(|a| a.unit.0).collect();
        {
            let mut units = self.dwarf.units();
            while let Some(header) = units.next()? {
                let Some(offset) = header.debug_info_offset() else {
                    continue;
                };
                if covered.contains(&offset.0) {
                    continue;
                }
                let unit = self.dwarf.unit(header)?;
                let mut ranges = self.dwarf.unit_ranges(&unit)?;
                while let Some(range) = ranges.next()? {
                    if range.end > range.begin {
                        aranges.push(Arange {
                            start: range.begin,
                            end: range.end,
                            unit: offset,
                        });
                    }
                }
            }
        }
        aranges.sort_by_key(|a| a.start);
        Ok(aranges)
    }

    fn unit_offset_for(&self, address: u64) -> Option<DebugInfoOffset<usize>> {
        let after = self.aranges.partition_point(|a| a.start <= address);
        self.aranges[..after]
            .iter()
            .rev()
            .take(64)
            .find(|a| address < a.end)
            .map(|a| a.unit)
    }

    /// The unit whose entries include `.debug_info` offset `offset`.
    fn unit_holding(&self, offset: DebugInfoOffset<usize>) -> gimli::Result<Option<Rc<Unit<'a>>>> {
        let spans = match self.unit_spans.get() {
            Some(spans) => spans,
            None => {
                let mut spans = Vec::new();
                let mut headers = self.dwarf.units();
                while let Some(header) = headers.next()? {
                    if let Some(start) = header.debug_info_offset() {
                        spans.push((start.0, start.0 + header.length_including_self()));
                    }
                }
                self.unit_spans.get_or_init(|| spans)
            }
        };
        let after = spans.partition_point(|&(start, _)| start <= offset.0);
        match after.checked_sub(1).map(|i| spans[i]) {
            Some((start, end)) if offset.0 < end => self.unit_at(DebugInfoOffset(start)).map(Some),
            _ => Ok(None),
        }
    }

    /// The unit at `offset`, parsed once.
    fn unit_at(&self, offset: DebugInfoOffset<usize>) -> gimli::Result<Rc<Unit<'a>>> {
        if let Some(unit) = self.parsed_units.borrow().get(&offset.0) {
            return Ok(Rc::clone(unit));
        }
        let header = self.dwarf.debug_info.header_from_offset(offset)?;
        let unit = Rc::new(self.dwarf.unit(header)?);
        self.parsed_units
            .borrow_mut()
            .insert(offset.0, Rc::clone(&unit));
        Ok(unit)
    }

    /// The DIE and the DIEs it refers to for its description (`DW_AT_abstract_origin`,
    /// `DW_AT_specification`), nearest first, at most 4.
    fn described_by(&self, unit: &Unit<'a>, die: UnitOffset<usize>) -> gimli::Result<Vec<Die<'a>>> {
        let mut chain = vec![unit.entry(die)?];
        while chain.len() < 4 {
            let last = chain.last().expect("non-empty");
            let next = [
                constants::DW_AT_abstract_origin,
                constants::DW_AT_specification,
            ]
            .into_iter()
            .find_map(|at| match last.attr_value(at) {
                Some(AttributeValue::UnitRef(offset)) => Some(offset),
                _ => None,
            });
            match next {
                Some(offset) => chain.push(unit.entry(offset)?),
                None => break,
            }
        }
        Ok(chain)
    }

    fn string_attr(
        &self,
        unit: &Unit<'a>,
        chain: &[Die<'a>],
        at: DwAt,
    ) -> gimli::Result<Option<String>> {
        for entry in chain {
            if let Some(value) = entry.attr_value(at) {
                let text = self.dwarf.attr_string(unit, value)?;
                return Ok(Some(text.to_string_lossy().into_owned()));
            }
        }
        Ok(None)
    }

    /// The `DW_AT_name` of `entry`, if it has one.
    fn name_of(&self, unit: &Unit<'a>, entry: &Die<'a>) -> gimli::Result<Option<String>> {
        self.string_attr(unit, std::slice::from_ref(entry), constants::DW_AT_name)
    }

    /// Whether the entry at `offset` is a union: its members without a location are at 0.
    fn is_union(&self, unit: &Unit<'a>, offset: UnitOffset<usize>) -> gimli::Result<bool> {
        Ok(unit.entry(offset)?.tag() == constants::DW_TAG_union_type)
    }

    /// The entries one level below the one at `parent`, in order, calling `visit` on each
    /// until it returns `false`.
    fn for_each_child(
        &self,
        unit: &Unit<'a>,
        parent: UnitOffset<usize>,
        mut visit: impl FnMut(&Die<'a>) -> gimli::Result<bool>,
    ) -> gimli::Result<()> {
        let mut entries = unit.entries_at_offset(parent)?;
        let depth = entries.next_dfs()?.map_or(0, |e| e.depth());
        while let Some(entry) = entries.next_dfs()? {
            if entry.depth() <= depth {
                break;
            }
            if entry.depth() == depth + 1 && !visit(entry)? {
                break;
            }
        }
        Ok(())
    }
}

/// Where the data member `member` is in its struct (or union, `in_union`): its
/// `DW_AT_data_member_location`, or 0 for a union's member that has none (compilers leave it
/// out there); `None` for a static member, which has no place in the object.
fn member_offset(member: &Die<'_>, in_union: bool) -> Option<u64> {
    match member.attr_value(constants::DW_AT_data_member_location) {
        Some(location) => location.udata_value(),
        None if in_union && member.attr_value(constants::DW_AT_declaration).is_none() => Some(0),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::types::Type;

    #[test]
    fn reads_own_debug_info() {
        // This test binary has DWARF; find this very function's unit and parameters of a
        // known function.
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::open(&exe).unwrap();
        let info = DebugInfo::load(&elf)
            .unwrap()
            .expect("test binaries carry DWARF");
        let functions = elf.functions().unwrap();
        let target = functions
            .iter()
            .find(|f| {
                super::super::demangle::demangle(&f.name)
                    .is_some_and(|d| d.path == "tracer::symbols::dwarf::lines::path_ends_with")
            })
            .expect("path_ends_with is in the symbol table");
        let function = info
            .function_at(target.address)
            .unwrap()
            .expect("DWARF for it");
        assert_eq!(function.name, "path_ends_with");
        assert_eq!(function.language, Language::Rust);
        assert!(
            function
                .file
                .as_deref()
                .unwrap()
                .ends_with("symbols/dwarf/lines.rs"),
            "{function:?}"
        );
        let names: Vec<&str> = function.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["path", "suffix"]);
        assert_eq!(function.params[0].ty, Type::Str);
        assert_eq!(function.return_type, Type::Bool { size: 1 });
    }
}
