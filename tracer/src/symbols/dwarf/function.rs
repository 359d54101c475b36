//! The functions of a unit and what DWARF says about one: its name, source position,
//! language, parameters and return type, and whether the compiler kept the standard calling
//! convention.

use std::rc::Rc;

use gimli::{AttributeValue, DebugInfoOffset, Operation, UnitOffset, constants};

use super::{DebugInfo, Die, EntryLocation, Unit};
use crate::{error::Result, symbols::types::Type};

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
    /// A Go function's results, in order (the first is also `return_type`).
    pub go_results: Vec<Parameter>,
    /// `false` when the compiler gave the function its own calling convention
    /// (`DW_AT_calling_convention: DW_CC_nocall`, after dropping or splitting arguments): then
    /// only DWARF's own locations say where parameters are.
    pub standard_convention: bool,
    /// A Rust function exported under a name of its own, not mangled (`#[no_mangle]`, what C
    /// calls): it takes and returns values by C's convention, not rustc's.
    pub c_abi: bool,
}

/// A function of a unit, in brief (what `list` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSummary {
    pub low_pc: u64,
    pub name: Option<String>,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub(super) die: UnitOffset<usize>,
}

impl<'a> DebugInfo<'a> {
    /// The functions with code of the unit that holds `address`.
    pub fn unit_functions(&self, address: u64) -> Result<Rc<Vec<FunctionSummary>>> {
        let Some(offset) = self.unit_offset_for(address) else {
            return Ok(Rc::new(Vec::new()));
        };
        if let Some(cached) = self.units.borrow().get(&offset.0) {
            return Ok(Rc::clone(cached));
        }
        let functions = Rc::new(
            self.summarise_unit(offset)
                .map_err(|err| self.malformed(format_args!("unit at {:#x}", offset.0), err))?,
        );
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
    fn low_pc(&self, unit: &Unit<'a>, entry: &Die<'a>) -> gimli::Result<Option<u64>> {
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
            .map_err(|err| self.malformed(format_args!("for the function at {address:#x}"), err))
    }

    fn describe_function(
        &self,
        offset: DebugInfoOffset<usize>,
        summary: &FunctionSummary,
    ) -> gimli::Result<FunctionDebug> {
        let unit = self.unit_at(offset)?;
        let chain = self.described_by(&unit, summary.die)?;
        let frame_base_is_cfa = frame_base_is_cfa(&unit, &chain[0]);
        // Parameters are the direct children of the concrete DIE; their names and types may
        // live on the abstract instance they point to.
        let language = unit_language(&unit)?;
        let mut params = Vec::new();
        // Go lists its results as parameters too, marked `DW_AT_variable_parameter`.
        let mut results = Vec::new();
        self.for_each_child(&unit, summary.die, |entry| {
            if entry.tag() == constants::DW_TAG_formal_parameter {
                let is_result = language == Language::Go
                    && matches!(
                        entry.attr_value(constants::DW_AT_variable_parameter),
                        Some(AttributeValue::Flag(true))
                    );
                let list = if is_result { &mut results } else { &mut params };
                let index = list.len();
                let param = self.parameter(
                    &unit,
                    entry.offset(),
                    index,
                    summary.low_pc,
                    frame_base_is_cfa,
                )?;
                // Go 1.19 may list an unnamed result twice (`~r0`, `~r0`, `~r1`).
                let repeated = is_result
                    && list.last().is_some_and(|last: &Parameter| {
                        last.name == param.name && last.ty == param.ty
                    });
                if !repeated {
                    list.push(param);
                }
            }
            Ok(true)
        })?;
        // The first result comes back in RAX; the return program copies the others.
        let return_type = match results.first() {
            Some(first) => first.ty.clone(),
            None => self.type_of(&unit, &chain)?.unwrap_or(Type::Void),
        };
        // rustc writes a linkage name only where it differs from the name: a mangled one.
        let linkage_name = self.string_attr(&unit, &chain, constants::DW_AT_linkage_name)?;
        let c_abi = language == Language::Rust
            && !linkage_name.is_some_and(|n| n.starts_with("_ZN") || n.starts_with("_R"));
        Ok(FunctionDebug {
            c_abi,
            name: summary.name.clone().unwrap_or_default(),
            file: summary.file.clone(),
            line: summary.line,
            language,
            params,
            return_type,
            go_results: results,
            standard_convention: !chain.iter().any(|e| {
                matches!(
                    e.attr_value(constants::DW_AT_calling_convention),
                    Some(AttributeValue::CallingConvention(constants::DW_CC_nocall))
                )
            }),
        })
    }

    /// The formal parameter at `die`, the `index`th of a function entered at `entry_pc`.
    fn parameter(
        &self,
        unit: &Unit<'a>,
        die: UnitOffset<usize>,
        index: usize,
        entry_pc: u64,
        frame_base_is_cfa: bool,
    ) -> gimli::Result<Parameter> {
        let chain = self.described_by(unit, die)?;
        let entry_location = match chain[0].attr_value(constants::DW_AT_location) {
            Some(value) => self.entry_location(unit, value, entry_pc, frame_base_is_cfa)?,
            None => None,
        };
        Ok(Parameter {
            name: self
                .string_attr(unit, &chain, constants::DW_AT_name)?
                .unwrap_or_else(|| format!("arg{index}")),
            ty: self.type_of(unit, &chain)?.unwrap_or(Type::Opaque {
                name: "?".into(),
                size: 0,
            }),
            artificial: chain.iter().any(|e| {
                matches!(
                    e.attr_value(constants::DW_AT_artificial),
                    Some(AttributeValue::Flag(true))
                )
            }),
            entry_location,
        })
    }

    /// The resolved `DW_AT_type` of the nearest entry of `chain` that has one.
    fn type_of(&self, unit: &Unit<'a>, chain: &[Die<'a>]) -> gimli::Result<Option<Type>> {
        match chain
            .iter()
            .find_map(|e| e.attr_value(constants::DW_AT_type))
        {
            Some(value) => self.resolve_type_attr(unit, value, 0).map(Some),
            None => Ok(None),
        }
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

/// The language of `unit`, from its root entry.
fn unit_language(unit: &Unit<'_>) -> gimli::Result<Language> {
    let mut entries = unit.entries();
    let root = entries.next_dfs()?;
    Ok(root
        .and_then(|r| r.attr_value(constants::DW_AT_language))
        .and_then(|v| match v {
            AttributeValue::Language(lang) => Some(Language::from_dwarf(lang)),
            _ => None,
        })
        .unwrap_or(Language::Other))
}

/// Whether the function's frame base is the canonical frame address (`DW_OP_call_frame_cfa`):
/// then frame offsets of parameters are the caller's stack slots.
fn frame_base_is_cfa(unit: &Unit<'_>, function: &Die<'_>) -> bool {
    function
        .attr_value(constants::DW_AT_frame_base)
        .is_some_and(|v| match v {
            AttributeValue::Exprloc(expr) => {
                let mut ops = expr.operations(unit.encoding());
                matches!(ops.next(), Ok(Some(Operation::CallFrameCFA)))
            }
            _ => false,
        })
}
