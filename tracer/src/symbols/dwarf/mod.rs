//! DWARF, read lazily: which compilation unit holds an address (`.debug_aranges`), the
//! functions of one unit, a function's parameters with their types and where they live at the
//! entry, and which functions a source line belongs to.
//!
//! Nothing is parsed up front: a query parses the one unit it needs, and unit summaries are
//! cached, so resolving a function in a 70 MB binary reads a few hundred kilobytes. Results are
//! owned values, so nothing borrows the file past the query. Malformed DWARF is an error or a
//! missing answer, never a panic.

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use gimli::{
    AttributeValue, DebugInfoOffset, DwAt, EndianSlice, Operation, RunTimeEndian, UnitOffset,
    constants,
};

use super::{
    elf::ElfFile,
    types::{Field, Type},
};
use crate::error::{Error, Result};

type R<'a> = EndianSlice<'a, RunTimeEndian>;
type Unit<'a> = gimli::Unit<R<'a>>;

/// The source language of a unit, as far as calling conventions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    C,
    Cpp,
    Rust,
    Go,
    Other,
}

impl Language {
    fn from_dwarf(language: constants::DwLang) -> Self {
        use constants as c;
        match language {
            c::DW_LANG_C | c::DW_LANG_C89 | c::DW_LANG_C99 | c::DW_LANG_C11 | c::DW_LANG_C17 => {
                Self::C
            }
            c::DW_LANG_C_plus_plus
            | c::DW_LANG_C_plus_plus_03
            | c::DW_LANG_C_plus_plus_11
            | c::DW_LANG_C_plus_plus_14
            | c::DW_LANG_C_plus_plus_17
            | c::DW_LANG_C_plus_plus_20 => Self::Cpp,
            c::DW_LANG_Rust => Self::Rust,
            c::DW_LANG_Go => Self::Go,
            _ => Self::Other,
        }
    }
}

/// Where a parameter is at the function's entry, as DWARF says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryLocation {
    /// In a register (DWARF register number).
    Register(u16),
    /// In memory at the stack pointer plus this offset (arguments passed on the stack).
    Stack(i64),
    /// Split over registers, each piece this many bytes, in order; `None` for a piece the
    /// compiler dropped (optimised out).
    Pieces(Vec<(Option<u16>, u64)>),
    /// The compiler dropped the value entirely at the entry.
    OptimizedOut,
}

/// A formal parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub ty: Type,
    /// Added by the compiler (C++ `this`).
    pub artificial: bool,
    /// Where DWARF places it at the entry address, when it says so in a form valid there.
    pub entry_location: Option<EntryLocation>,
}

/// What DWARF knows about one function with code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDebug {
    pub name: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub language: Language,
    pub params: Vec<Parameter>,
    pub return_type: Type,
    /// `false` when the compiler gave the function its own calling convention
    /// (`DW_AT_calling_convention: DW_CC_nocall`, after dropping or splitting arguments): then
    /// only DWARF's own locations say where parameters are.
    pub standard_convention: bool,
}

/// A function of a unit, in brief (what `list` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSummary {
    pub low_pc: u64,
    pub name: Option<String>,
    pub file: Option<String>,
    pub line: Option<u64>,
    die: UnitOffset<usize>,
}

/// Address ranges of a unit.
#[derive(Debug, Clone, Copy)]
struct Arange {
    start: u64,
    end: u64,
    unit: DebugInfoOffset<usize>,
}

/// Deepest type nesting resolved: parameter → pointee struct → field → field's pointee.
const MAX_TYPE_DEPTH: usize = 4;
/// Struct fields kept per struct.
const MAX_FIELDS: usize = 32;
/// Enumerators kept per enum.
const MAX_ENUMERATORS: usize = 512;

/// DWARF of one ELF file.
pub struct DebugInfo<'a> {
    dwarf: gimli::Dwarf<R<'a>>,
    aranges: Vec<Arange>,
    units: RefCell<HashMap<usize, Rc<Vec<FunctionSummary>>>>,
}

fn dwarf_error(elf: &ElfFile, err: impl std::fmt::Display) -> Error {
    Error::BadElf {
        path: elf.path().to_path_buf(),
        reason: format!("DWARF: {err}"),
    }
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
            dwarf,
            aranges: Vec::new(),
            units: RefCell::new(HashMap::new()),
        };
        info.aranges = info.read_aranges().map_err(|err| dwarf_error(elf, err))?;
        Ok(Some(info))
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

    fn unit_at(&self, offset: DebugInfoOffset<usize>) -> gimli::Result<Unit<'a>> {
        let header = self.dwarf.debug_info.header_from_offset(offset)?;
        self.dwarf.unit(header)
    }

    /// The functions with code of the unit that holds `address`.
    pub fn unit_functions(&self, address: u64) -> Result<Rc<Vec<FunctionSummary>>> {
        let Some(offset) = self.unit_offset_for(address) else {
            return Ok(Rc::new(Vec::new()));
        };
        if let Some(cached) = self.units.borrow().get(&offset.0) {
            return Ok(Rc::clone(cached));
        }
        let functions = Rc::new(self.summarise_unit(offset).map_err(|err| {
            Error::Usage(format!("malformed DWARF unit at {:#x}: {err}", offset.0))
        })?);
        self.units
            .borrow_mut()
            .insert(offset.0, Rc::clone(&functions));
        Ok(functions)
    }

    fn summarise_unit(
        &self,
        offset: DebugInfoOffset<usize>,
    ) -> gimli::Result<Vec<FunctionSummary>> {
        let unit = self.unit_at(offset)?;
        let mut functions = Vec::new();
        let mut entries = unit.entries();
        while let Some(entry) = entries.next_dfs()? {
            if entry.tag() != constants::DW_TAG_subprogram {
                continue;
            }
            let Some(low_pc) = self.low_pc(&unit, entry)? else {
                continue;
            };
            let die = entry.offset();
            let described = self.described_by(&unit, die)?;
            functions.push(FunctionSummary {
                low_pc,
                name: self.string_attr(&unit, &described, constants::DW_AT_name)?,
                file: self.decl_file(&unit, &described)?,
                line: described
                    .iter()
                    .find_map(|e| e.attr_value(constants::DW_AT_decl_line))
                    .and_then(|v| v.udata_value()),
                die,
            });
        }
        functions.sort_by_key(|f| f.low_pc);
        Ok(functions)
    }

    /// Where a function's code starts: `DW_AT_entry_pc`, else `DW_AT_low_pc`, else the first of
    /// its ranges (not the lowest: GCC places `.text.unlikely` cold parts first in memory).
    fn low_pc(
        &self,
        unit: &Unit<'a>,
        entry: &gimli::DebuggingInformationEntry<R<'a>>,
    ) -> gimli::Result<Option<u64>> {
        for at in [constants::DW_AT_entry_pc, constants::DW_AT_low_pc] {
            if let Some(value) = entry.attr_value(at)
                && let Some(address) = self.dwarf.attr_address(unit, value)?
            {
                return Ok(Some(address));
            }
        }
        if entry.attr_value(constants::DW_AT_ranges).is_none() {
            return Ok(None);
        }
        let mut ranges = self.dwarf.die_ranges(unit, entry)?;
        Ok(ranges.next()?.map(|range| range.begin))
    }

    /// The DIE and the DIEs it refers to for its description (`DW_AT_abstract_origin`,
    /// `DW_AT_specification`), nearest first, at most 4.
    fn described_by(
        &self,
        unit: &Unit<'a>,
        die: UnitOffset<usize>,
    ) -> gimli::Result<Vec<gimli::DebuggingInformationEntry<R<'a>>>> {
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
        chain: &[gimli::DebuggingInformationEntry<R<'a>>],
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

    fn decl_file(
        &self,
        unit: &Unit<'a>,
        chain: &[gimli::DebuggingInformationEntry<R<'a>>],
    ) -> gimli::Result<Option<String>> {
        let Some(index) = chain
            .iter()
            .find_map(|e| e.attr_value(constants::DW_AT_decl_file))
            .and_then(|v| match v {
                AttributeValue::FileIndex(index) => Some(index),
                other => other.udata_value(),
            })
        else {
            return Ok(None);
        };
        self.file_name(unit, index)
    }

    /// File `index` of the unit's line program, with its directory when that is not the
    /// compilation directory.
    fn file_name(&self, unit: &Unit<'a>, index: u64) -> gimli::Result<Option<String>> {
        let Some(program) = &unit.line_program else {
            return Ok(None);
        };
        let header = program.header();
        let Some(file) = header.file(index) else {
            return Ok(None);
        };
        let name = self
            .dwarf
            .attr_string(unit, file.path_name())?
            .to_string_lossy()
            .into_owned();
        if name.starts_with('/') {
            return Ok(Some(name));
        }
        let directory = match file.directory(header) {
            Some(dir) => self
                .dwarf
                .attr_string(unit, dir)?
                .to_string_lossy()
                .into_owned(),
            None => String::new(),
        };
        let comp_dir = unit.comp_dir.map(|d| d.to_string_lossy().into_owned());
        if directory.is_empty() || Some(&directory) == comp_dir.as_ref() {
            Ok(Some(name))
        } else {
            Ok(Some(format!("{}/{name}", directory.trim_end_matches('/'))))
        }
    }

    /// The summary of the function that starts at `address`, if DWARF has one.
    pub fn function_summary(&self, address: u64) -> Result<Option<FunctionSummary>> {
        let functions = self.unit_functions(address)?;
        Ok(functions.iter().find(|f| f.low_pc == address).cloned())
    }

    /// Everything DWARF says about the function that starts at `address`.
    pub fn function_at(&self, address: u64) -> Result<Option<FunctionDebug>> {
        let Some(summary) = self.function_summary(address)? else {
            return Ok(None);
        };
        let Some(offset) = self.unit_offset_for(address) else {
            return Ok(None);
        };
        self.describe_function(offset, &summary)
            .map(Some)
            .map_err(|err| {
                Error::Usage(format!(
                    "malformed DWARF for function at {address:#x}: {err}"
                ))
            })
    }

    fn describe_function(
        &self,
        offset: DebugInfoOffset<usize>,
        summary: &FunctionSummary,
    ) -> gimli::Result<FunctionDebug> {
        let unit = self.unit_at(offset)?;
        let language = {
            let mut entries = unit.entries();
            let root = entries.next_dfs()?;
            root.and_then(|r| r.attr_value(constants::DW_AT_language))
                .and_then(|v| match v {
                    AttributeValue::Language(lang) => Some(Language::from_dwarf(lang)),
                    _ => None,
                })
                .unwrap_or(Language::Other)
        };
        let chain = self.described_by(&unit, summary.die)?;
        let frame_base_is_cfa = chain[0]
            .attr_value(constants::DW_AT_frame_base)
            .is_some_and(|v| match v {
                AttributeValue::Exprloc(expr) => {
                    let mut ops = expr.operations(unit.encoding());
                    matches!(ops.next(), Ok(Some(Operation::CallFrameCFA)))
                }
                _ => false,
            });
        let standard_convention = !chain.iter().any(|e| {
            matches!(
                e.attr_value(constants::DW_AT_calling_convention),
                Some(AttributeValue::CallingConvention(constants::DW_CC_nocall))
            )
        });
        let return_type = match chain
            .iter()
            .find_map(|e| e.attr_value(constants::DW_AT_type))
        {
            Some(value) => self.resolve_type_attr(&unit, value, 0)?,
            None => Type::Void,
        };

        // Parameters are the direct children of the concrete DIE; their names and types may
        // live on the abstract instance they point to.
        let mut params = Vec::new();
        let mut entries = unit.entries_at_offset(summary.die)?;
        let depth = entries.next_dfs()?.map_or(0, |function| function.depth());
        while let Some(entry) = entries.next_dfs()? {
            if entry.depth() <= depth {
                break;
            }
            if entry.depth() != depth + 1 || entry.tag() != constants::DW_TAG_formal_parameter {
                continue;
            }
            let param = self.described_by(&unit, entry.offset())?;
            let name = self
                .string_attr(&unit, &param, constants::DW_AT_name)?
                .unwrap_or_else(|| format!("arg{}", params.len()));
            let ty = match param
                .iter()
                .find_map(|e| e.attr_value(constants::DW_AT_type))
            {
                Some(value) => self.resolve_type_attr(&unit, value, 0)?,
                None => Type::Opaque {
                    name: "?".into(),
                    size: 0,
                },
            };
            let artificial = param.iter().any(|e| {
                matches!(
                    e.attr_value(constants::DW_AT_artificial),
                    Some(AttributeValue::Flag(true))
                )
            });
            let entry_location = match param[0].attr_value(constants::DW_AT_location) {
                Some(value) => {
                    self.entry_location(&unit, value, summary.low_pc, frame_base_is_cfa)?
                }
                None => None,
            };
            params.push(Parameter {
                name,
                ty,
                artificial,
                entry_location,
            });
        }
        Ok(FunctionDebug {
            name: summary.name.clone().unwrap_or_default(),
            file: summary.file.clone(),
            line: summary.line,
            language,
            params,
            return_type,
            standard_convention,
        })
    }

    /// The location of a parameter at the entry address, if it is one we can use there.
    fn entry_location(
        &self,
        unit: &Unit<'a>,
        value: AttributeValue<R<'a>>,
        entry_pc: u64,
        frame_base_is_cfa: bool,
    ) -> gimli::Result<Option<EntryLocation>> {
        let expression = match value {
            AttributeValue::Exprloc(expr) => expr,
            other => {
                let Some(mut locations) = self.dwarf.attr_locations(unit, other)? else {
                    return Ok(None);
                };
                let mut found = None;
                while let Some(entry) = locations.next()? {
                    if entry.range.begin <= entry_pc && entry_pc < entry.range.end {
                        found = Some(entry.data);
                        break;
                    }
                }
                match found {
                    Some(expr) => expr,
                    // No location covers the entry: the value does not exist there.
                    None => return Ok(Some(EntryLocation::OptimizedOut)),
                }
            }
        };
        let mut ops = expression.operations(unit.encoding());
        let mut collected = Vec::new();
        while let Some(op) = ops.next()? {
            collected.push(op);
            if collected.len() > 8 {
                return Ok(None);
            }
        }
        Ok(match collected.as_slice() {
            [Operation::Register { register }] => Some(EntryLocation::Register(register.0)),
            // The canonical frame address at the entry is the stack pointer + 8 (the return
            // address); non-negative offsets from it are the caller's stack arguments. Negative
            // ones are the callee's own frame, not set up yet at the entry.
            [Operation::FrameOffset { offset }] if frame_base_is_cfa && *offset >= 0 => {
                Some(EntryLocation::Stack(8 + offset))
            }
            [
                Operation::RegisterOffset {
                    register, offset, ..
                },
            ] if register.0 == crate::plan::registers::DWARF_RSP && *offset >= 8 => {
                Some(EntryLocation::Stack(*offset))
            }
            [] => Some(EntryLocation::OptimizedOut),
            pieces
                if pieces
                    .iter()
                    .any(|op| matches!(op, Operation::Piece { .. })) =>
            {
                // Each piece is `DW_OP_regN DW_OP_piece`, or a bare `DW_OP_piece` for a part
                // the compiler dropped.
                let mut parts = Vec::new();
                let mut register = None;
                for op in pieces {
                    match op {
                        Operation::Register { register: r } if register.is_none() => {
                            register = Some(r.0);
                        }
                        Operation::Piece {
                            size_in_bits,
                            bit_offset: None,
                        } if size_in_bits % 8 == 0 => {
                            parts.push((register.take(), size_in_bits / 8));
                        }
                        _ => return Ok(None),
                    }
                }
                Some(EntryLocation::Pieces(parts))
            }
            _ => None,
        })
    }

    fn resolve_type_attr(
        &self,
        unit: &Unit<'a>,
        value: AttributeValue<R<'a>>,
        depth: usize,
    ) -> gimli::Result<Type> {
        match value {
            AttributeValue::UnitRef(offset) => self.resolve_type(unit, offset, depth),
            _ => Ok(Type::Opaque {
                name: "?".into(),
                size: 0,
            }),
        }
    }

    /// Builds the [`Type`] at `offset`, through typedefs and qualifiers, `depth` levels deep.
    fn resolve_type(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        depth: usize,
    ) -> gimli::Result<Type> {
        let mut entry = unit.entry(offset)?;
        // Typedefs and qualifiers, at most a few in a row.
        for _ in 0..8 {
            let tag = entry.tag();
            let transparent = matches!(
                tag,
                constants::DW_TAG_typedef
                    | constants::DW_TAG_const_type
                    | constants::DW_TAG_volatile_type
                    | constants::DW_TAG_restrict_type
                    | constants::DW_TAG_atomic_type
            );
            if !transparent {
                break;
            }
            match entry.attr_value(constants::DW_AT_type) {
                Some(AttributeValue::UnitRef(next)) => entry = unit.entry(next)?,
                _ => return Ok(Type::Void),
            }
        }
        let name = match entry.attr_value(constants::DW_AT_name) {
            Some(value) => self
                .dwarf
                .attr_string(unit, value)?
                .to_string_lossy()
                .into_owned(),
            None => String::new(),
        };
        let byte_size = entry
            .attr_value(constants::DW_AT_byte_size)
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        let small = |size: u64| u8::try_from(size).unwrap_or(u8::MAX);
        let pointee = |this: &Self| -> gimli::Result<Type> {
            match entry.attr_value(constants::DW_AT_type) {
                Some(value) if depth < MAX_TYPE_DEPTH => {
                    this.resolve_type_attr(unit, value, depth + 1)
                }
                Some(_) => Ok(Type::Opaque {
                    name: "…".into(),
                    size: 0,
                }),
                None => Ok(Type::Void),
            }
        };
        Ok(match entry.tag() {
            constants::DW_TAG_base_type => {
                let encoding = match entry.attr_value(constants::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(e)) => e,
                    _ => constants::DW_ATE_unsigned,
                };
                match encoding {
                    constants::DW_ATE_boolean => Type::Bool {
                        size: small(byte_size),
                    },
                    constants::DW_ATE_float => Type::Float {
                        name,
                        size: small(byte_size),
                    },
                    // A complex number is two floats side by side.
                    constants::DW_ATE_complex_float => Type::Array {
                        element: Box::new(Type::Float {
                            name: name.replace("complex ", "").replace("_Complex ", ""),
                            size: small(byte_size / 2),
                        }),
                        count: 2,
                    },
                    constants::DW_ATE_signed_char => Type::Char {
                        name,
                        size: small(byte_size),
                        signed: true,
                    },
                    constants::DW_ATE_unsigned_char | constants::DW_ATE_UTF => {
                        // Rust's u8 is an unsigned char in DWARF; it is a number, not a letter.
                        if name == "u8" {
                            Type::Int {
                                name,
                                size: 1,
                                signed: false,
                            }
                        } else {
                            Type::Char {
                                name,
                                size: small(byte_size),
                                signed: false,
                            }
                        }
                    }
                    constants::DW_ATE_signed => Type::Int {
                        name,
                        size: small(byte_size),
                        signed: true,
                    },
                    _ => Type::Int {
                        name,
                        size: small(byte_size),
                        signed: false,
                    },
                }
            }
            constants::DW_TAG_pointer_type
            | constants::DW_TAG_reference_type
            | constants::DW_TAG_rvalue_reference_type => {
                // Rust names its fat pointers like structs: `&str`, `&[u8]`.
                Type::Pointer {
                    pointee: Box::new(pointee(self)?),
                }
            }
            constants::DW_TAG_enumeration_type => {
                let mut enumerators = Vec::new();
                let mut signed = false;
                if let Some(AttributeValue::UnitRef(base)) = entry.attr_value(constants::DW_AT_type)
                    && let Ok(Type::Int { signed: s, .. }) =
                        self.resolve_type(unit, base, MAX_TYPE_DEPTH)
                {
                    signed = s;
                }
                let mut children = unit.entries_at_offset(entry.offset())?;
                let parent_depth = children.next_dfs()?.map_or(0, |e| e.depth());
                while let Some(child) = children.next_dfs()? {
                    if child.depth() <= parent_depth || enumerators.len() >= MAX_ENUMERATORS {
                        break;
                    }
                    if child.tag() != constants::DW_TAG_enumerator {
                        continue;
                    }
                    let value = match child.attr_value(constants::DW_AT_const_value) {
                        Some(AttributeValue::Sdata(v)) => v,
                        Some(AttributeValue::Udata(v)) => v as i64,
                        Some(AttributeValue::Data1(v)) => i64::from(v),
                        Some(AttributeValue::Data2(v)) => i64::from(v),
                        Some(AttributeValue::Data4(v)) => i64::from(v),
                        Some(AttributeValue::Data8(v)) => v as i64,
                        _ => continue,
                    };
                    let label = match child.attr_value(constants::DW_AT_name) {
                        Some(v) => self
                            .dwarf
                            .attr_string(unit, v)?
                            .to_string_lossy()
                            .into_owned(),
                        None => continue,
                    };
                    enumerators.push((value, label));
                }
                Type::Enum {
                    name,
                    size: small(byte_size),
                    signed,
                    enumerators,
                }
            }
            constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type => {
                let union = entry.tag() == constants::DW_TAG_union_type;
                if depth >= MAX_TYPE_DEPTH - 1 {
                    return Ok(Type::Opaque {
                        name,
                        size: byte_size,
                    });
                }
                let (fields, trivial) = self.members(unit, entry.offset(), &name, depth)?;
                match rust_fat_pointer(&name, &fields) {
                    Some(fat) => fat,
                    None => Type::Struct {
                        name,
                        size: byte_size,
                        fields,
                        union,
                        trivial,
                    },
                }
            }
            constants::DW_TAG_array_type => {
                let element = pointee(self)?;
                let mut count = 0;
                let mut children = unit.entries_at_offset(entry.offset())?;
                let parent_depth = children.next_dfs()?.map_or(0, |e| e.depth());
                if let Some(child) = children.next_dfs()?
                    && child.depth() > parent_depth
                    && child.tag() == constants::DW_TAG_subrange_type
                {
                    if let Some(n) = child
                        .attr_value(constants::DW_AT_count)
                        .and_then(|v| v.udata_value())
                    {
                        count = n;
                    } else if let Some(upper) = child
                        .attr_value(constants::DW_AT_upper_bound)
                        .and_then(|v| v.udata_value())
                    {
                        count = upper.saturating_add(1);
                    }
                }
                Type::Array {
                    element: Box::new(element),
                    count,
                }
            }
            constants::DW_TAG_unspecified_type if name == "void" || name.is_empty() => Type::Void,
            _ => Type::Opaque {
                name,
                size: byte_size,
            },
        })
    }

    /// The data members and base classes of the struct at `offset` (bases as fields named
    /// after their type), and whether the struct is trivial for calls (see [`Type::Struct`]).
    fn members(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        name: &str,
        depth: usize,
    ) -> gimli::Result<(Vec<Field>, Option<bool>)> {
        let mut fields = Vec::new();
        let mut trivial = Some(true);
        let mut children = unit.entries_at_offset(offset)?;
        let parent_depth = children.next_dfs()?.map_or(0, |e| e.depth());
        while let Some(child) = children.next_dfs()? {
            if child.depth() <= parent_depth {
                break;
            }
            if child.depth() != parent_depth + 1 {
                continue;
            }
            let child_name = match child.attr_value(constants::DW_AT_name) {
                Some(v) => Some(
                    self.dwarf
                        .attr_string(unit, v)?
                        .to_string_lossy()
                        .into_owned(),
                ),
                None => None,
            };
            match child.tag() {
                constants::DW_TAG_subprogram => {
                    // A user-declared destructor, copy or move constructor makes the class
                    // non-trivial for calls (unless defaulted in the class).
                    let declared = child.attr_value(constants::DW_AT_artificial).is_none()
                        && child.attr_value(constants::DW_AT_defaulted).is_none();
                    let special = match &child_name {
                        Some(n) if n.starts_with('~') => true,
                        Some(n) if n == name => {
                            self.is_copy_or_move(unit, child.offset(), offset)?
                        }
                        _ => false,
                    };
                    if declared && special {
                        trivial = Some(false);
                    }
                }
                constants::DW_TAG_member | constants::DW_TAG_inheritance => {
                    let inheritance = child.tag() == constants::DW_TAG_inheritance;
                    if inheritance && child.attr_value(constants::DW_AT_virtuality).is_some() {
                        trivial = Some(false);
                    }
                    if child_name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("_vptr"))
                    {
                        trivial = Some(false);
                    }
                    // Static members have no location; bit fields are not captured.
                    if child.attr_value(constants::DW_AT_bit_size).is_some()
                        || fields.len() >= MAX_FIELDS
                    {
                        continue;
                    }
                    let Some(member_offset) = child
                        .attr_value(constants::DW_AT_data_member_location)
                        .and_then(|v| v.udata_value())
                    else {
                        continue;
                    };
                    let ty = match child.attr_value(constants::DW_AT_type) {
                        Some(v) => self.resolve_type_attr(unit, v, depth + 1)?,
                        None => Type::Opaque {
                            name: "?".into(),
                            size: 0,
                        },
                    };
                    trivial = match (trivial, &ty) {
                        (Some(false), _) => Some(false),
                        (
                            _,
                            Type::Struct {
                                trivial: member, ..
                            },
                        ) => match (trivial, *member) {
                            (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        },
                        // A member whose type was not resolved could be a class of any kind.
                        (_, Type::Opaque { .. }) => trivial.and(None),
                        (t, _) => t,
                    };
                    let field_name = match (inheritance, child_name) {
                        (_, Some(n)) => n,
                        (true, None) => ty.name(),
                        (false, None) => format!("_{}", fields.len()),
                    };
                    fields.push(Field {
                        name: field_name,
                        offset: member_offset,
                        ty,
                    });
                }
                _ => {}
            }
        }
        Ok((fields, trivial))
    }

    /// Whether the member function at `function` is a copy or move constructor of the class at
    /// `class`: one parameter besides `this`, a reference to the class.
    fn is_copy_or_move(
        &self,
        unit: &Unit<'a>,
        function: UnitOffset<usize>,
        class: UnitOffset<usize>,
    ) -> gimli::Result<bool> {
        let mut children = unit.entries_at_offset(function)?;
        let depth = children.next_dfs()?.map_or(0, |e| e.depth());
        let mut params = Vec::new();
        while let Some(child) = children.next_dfs()? {
            if child.depth() <= depth {
                break;
            }
            if child.depth() == depth + 1
                && child.tag() == constants::DW_TAG_formal_parameter
                && child.attr_value(constants::DW_AT_artificial).is_none()
            {
                params.push(child.attr_value(constants::DW_AT_type));
            }
        }
        let [Some(AttributeValue::UnitRef(reference))] = params.as_slice() else {
            return Ok(false);
        };
        let reference = unit.entry(*reference)?;
        if !matches!(
            reference.tag(),
            constants::DW_TAG_reference_type | constants::DW_TAG_rvalue_reference_type
        ) {
            return Ok(false);
        }
        // Through `const` to the class itself.
        let mut target = reference.attr_value(constants::DW_AT_type);
        for _ in 0..4 {
            let Some(AttributeValue::UnitRef(offset)) = target else {
                return Ok(false);
            };
            if offset == class {
                return Ok(true);
            }
            let entry = unit.entry(offset)?;
            if entry.tag() != constants::DW_TAG_const_type
                && entry.tag() != constants::DW_TAG_volatile_type
            {
                // A declaration of the class elsewhere in the unit names it too.
                let same_name = match (
                    entry.attr_value(constants::DW_AT_name),
                    unit.entry(class)?.attr_value(constants::DW_AT_name),
                ) {
                    (Some(a), Some(b)) => {
                        self.dwarf.attr_string(unit, a)?.slice()
                            == self.dwarf.attr_string(unit, b)?.slice()
                    }
                    _ => false,
                };
                return Ok(same_name);
            }
            target = entry.attr_value(constants::DW_AT_type);
        }
        Ok(false)
    }

    /// Addresses of the statements of `line` in source files ending in `file`.
    pub fn line_addresses(&self, file: &str, line: u64) -> Result<LineMatches> {
        self.scan_lines(file, line)
            .map_err(|err| Error::Usage(format!("malformed DWARF line table: {err}")))
    }

    fn scan_lines(&self, file: &str, line: u64) -> gimli::Result<LineMatches> {
        let mut matches = LineMatches::default();
        let mut units = self.dwarf.units();
        while let Some(header) = units.next()? {
            let unit = self.dwarf.unit(header)?;
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            // Which file indexes of this unit are the file asked for.
            let mut wanted = Vec::new();
            let files = program.header().file_names().len() as u64;
            let first = if program.header().version() >= 5 {
                0
            } else {
                1
            };
            for index in first..first + files {
                if let Some(name) = self.file_name(&unit, index)?
                    && path_ends_with(&name, file)
                {
                    wanted.push(index);
                    matches.files.push(name);
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let mut rows = program.rows();
            while let Some((_, row)) = rows.next_row()? {
                if row.end_sequence() || !row.is_stmt() || !wanted.contains(&row.file_index()) {
                    continue;
                }
                let Some(row_line) = row.line().map(|l| l.get()) else {
                    continue;
                };
                if row_line == line {
                    matches.addresses.push(row.address());
                } else {
                    matches.nearby.push(row_line);
                }
            }
        }
        matches.addresses.sort_unstable();
        matches.addresses.dedup();
        matches.files.sort();
        matches.files.dedup();
        matches.nearby.sort_unstable_by_key(|l| l.abs_diff(line));
        matches.nearby.dedup();
        matches.nearby.truncate(5);
        Ok(matches)
    }

    /// Whether a function called `name` exists only inlined into its callers: an abstract
    /// instance (`DW_AT_inline`) and no out-of-line copy with code.
    pub fn inlined_only(&self, name: &str) -> bool {
        self.find_inlined(name).unwrap_or(false)
    }

    fn find_inlined(&self, name: &str) -> gimli::Result<bool> {
        let mut units = self.dwarf.units();
        let mut abstract_found = false;
        while let Some(header) = units.next()? {
            let unit = self.dwarf.unit(header)?;
            let mut entries = unit.entries();
            while let Some(entry) = entries.next_dfs()? {
                if entry.tag() != constants::DW_TAG_subprogram {
                    continue;
                }
                let Some(value) = entry.attr_value(constants::DW_AT_name) else {
                    continue;
                };
                if self.dwarf.attr_string(&unit, value)?.to_string_lossy() != name {
                    continue;
                }
                if entry.attr_value(constants::DW_AT_inline).is_some() {
                    abstract_found = true;
                }
                if entry.attr_value(constants::DW_AT_low_pc).is_some() {
                    return Ok(false);
                }
            }
        }
        Ok(abstract_found)
    }
}

/// What a source position resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineMatches {
    /// Statement addresses of the line.
    pub addresses: Vec<u64>,
    /// The source files that matched the name.
    pub files: Vec<String>,
    /// Lines with code in those files, nearest first (for suggestions).
    pub nearby: Vec<u64>,
}

/// Whether `path` ends with the path components of `suffix` (`src/server.c` matches
/// `/home/me/app/src/server.c` but not `/x/mysrc/server.c`).
pub fn path_ends_with(path: &str, suffix: &str) -> bool {
    let suffix = suffix.trim_start_matches("./");
    path == suffix
        || path
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('/'))
}

/// Rust's `&str` and `&[T]` are structs `{ data_ptr, length }` in DWARF.
fn rust_fat_pointer(name: &str, fields: &[Field]) -> Option<Type> {
    let [data, length] = fields else { return None };
    if data.name != "data_ptr" || length.name != "length" {
        return None;
    }
    if name == "&str" || name == "&mut str" {
        return Some(Type::Str);
    }
    let Type::Pointer { pointee } = &data.ty else {
        return None;
    };
    (name.starts_with("&[") || name.starts_with("&mut [")).then(|| Type::Slice {
        element: pointee.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths_match_by_whole_components() {
        assert!(path_ends_with("/home/me/app/src/server.c", "src/server.c"));
        assert!(path_ends_with("/home/me/app/src/server.c", "server.c"));
        assert!(path_ends_with("server.c", "./server.c"));
        assert!(!path_ends_with("/x/mysrc/server.c", "src/server.c"));
        assert!(!path_ends_with("/x/server.cc", "server.c"));
    }

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
                    .is_some_and(|d| d.path == "tracer::symbols::dwarf::path_ends_with")
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
                .ends_with("symbols/dwarf.rs"),
            "{function:?}"
        );
        let names: Vec<&str> = function.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["path", "suffix"]);
        assert_eq!(function.params[0].ty, Type::Str);
        assert_eq!(function.return_type, Type::Bool { size: 1 });
    }
}
