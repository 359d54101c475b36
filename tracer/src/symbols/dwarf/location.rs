//! Where a parameter is at the function's entry, as DWARF says: a register, the caller's
//! stack, or register pieces. Only locations valid at the entry address count; anything else
//! is left to the calling convention (`plan::calling_convention`).

use gimli::{AttributeValue, Operation};

use super::{DebugInfo, R, Unit};

/// DWARF's number for the stack pointer: stack arguments are `DW_OP_breg7` (or CFA) offsets.
pub const DWARF_RSP: u16 = 7;

/// How far past the entry a parameter's first location may start and still be taken as a late
/// start (a prologue's spills), not as a value computed later.
const PROLOGUE_BYTES: u64 = 32;

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

impl<'a> DebugInfo<'a> {
    /// The location of a parameter at the entry address, if it is one we can use there.
    pub(super) fn entry_location(
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
                let mut first_begin = u64::MAX;
                while let Some(entry) = locations.next()? {
                    if entry.range.begin <= entry_pc && entry_pc < entry.range.end {
                        found = Some(entry.data);
                        break;
                    }
                    first_begin = first_begin.min(entry.range.begin);
                }
                match found {
                    Some(expr) => expr,
                    // rustc's debug builds start a parameter's first range after the prologue
                    // has spilled it: at the entry it is where the calling convention put it.
                    None if (entry_pc..=entry_pc + PROLOGUE_BYTES).contains(&first_begin) => {
                        return Ok(None);
                    }
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
            ] if register.0 == DWARF_RSP && *offset >= 8 => Some(EntryLocation::Stack(*offset)),
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
}
