//! Where a value is when a probe fires, and how to reach its parts: in a register (its bytes
//! are the register's low bytes), in two, in pieces over several (a Rust pair, what DWARF's
//! pieces say), in the process's memory (reached from a register through a bounded chain of
//! pointers), or already copied into the payload (a small struct read whole, whose scalars are
//! views of the copy). The plan builder asks for a field's place ([`Access::field`]) or for
//! what a pointer leads to ([`Access::deref`]) and never computes an offset itself.

use std::rc::Rc;

use tracer_ebpf::MAX_DEREFS;

use super::calling_convention::Piece;

/// How a value is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    /// The value is the register.
    Register(u8),
    /// The value is 16 bytes in two registers.
    RegisterPair(u8, u8),
    /// The value's bytes from `at` on, in the pieces of a larger value.
    Pieces { pieces: Rc<[Piece]>, at: u64 },
    /// The value is in memory: start from `reg`, follow pointers after adding each of
    /// `derefs`, then add `offset`.
    Memory {
        reg: u8,
        derefs: Vec<i32>,
        offset: i32,
    },
    /// `size` bytes copied into the payload at `offset` by step `step`, which are the bytes
    /// at `memory` in the process.
    Copied {
        step: u8,
        offset: u16,
        size: u64,
        memory: Box<Access>,
    },
}

impl Access {
    /// A value held in `pieces` (of registers, or dropped), from its first byte.
    pub(super) fn in_pieces(pieces: &[Piece]) -> Self {
        Self::Pieces {
            pieces: pieces.into(),
            at: 0,
        }
    }

    /// Memory at the address in register `reg`, plus `offset`.
    pub(super) fn at_register(reg: u8, offset: i32) -> Self {
        Self::Memory {
            reg,
            derefs: Vec::new(),
            offset,
        }
    }

    /// The value's bytes as pieces of registers, when it is held in registers.
    fn pieces(&self) -> Option<(Rc<[Piece]>, u64)> {
        let whole = |offset, register| Piece {
            offset,
            size: 8,
            register: Ok(register),
        };
        match self {
            Self::Register(r) => Some((Rc::from([whole(0, *r)]), 0)),
            Self::RegisterPair(a, b) => Some((Rc::from([whole(0, *a), whole(8, *b)]), 0)),
            Self::Pieces { pieces, at } => Some((Rc::clone(pieces), *at)),
            _ => None,
        }
    }

    /// The place of the part at byte `offset` of this value.
    pub(super) fn field(&self, offset: u64) -> Option<Self> {
        if offset == 0 {
            return Some(self.clone());
        }
        match self {
            Self::Memory {
                reg,
                derefs,
                offset: at,
            } => Some(Self::Memory {
                reg: *reg,
                derefs: derefs.clone(),
                offset: at.checked_add(i32::try_from(offset).ok()?)?,
            }),
            Self::Copied {
                step,
                offset: at,
                size,
                memory,
            } => Some(Self::Copied {
                step: *step,
                offset: at.checked_add(u16::try_from(offset).ok()?)?,
                size: size.checked_sub(offset)?,
                memory: Box::new(memory.field(offset)?),
            }),
            held => held.beside(i64::try_from(offset).ok()?),
        }
    }

    /// The place of the part `by` bytes from this one (before it, when negative) in a value
    /// held in registers; `None` for one in memory, or out of the value.
    pub(super) fn beside(&self, by: i64) -> Option<Self> {
        let (pieces, at) = self.pieces()?;
        Some(Self::Pieces {
            pieces,
            at: at.checked_add_signed(by)?,
        })
    }

    /// The place of what the pointer held in this value's first 8 bytes points to, plus
    /// `offset`; `None` when the pointer is not wholly in one register or the chain of
    /// pointers would be too long for the kernel.
    pub(super) fn deref(&self, offset: i32) -> Option<Self> {
        match self {
            Self::Register(r) | Self::RegisterPair(r, _) => Some(Self::at_register(*r, offset)),
            Self::Pieces { .. } => {
                let (register, within) = self.register_holding(8)?;
                (within == 0).then(|| Self::at_register(register, offset))
            }
            Self::Memory {
                reg,
                derefs,
                offset: at,
            } if derefs.len() < MAX_DEREFS => {
                let mut derefs = derefs.clone();
                derefs.push(*at);
                Some(Self::Memory {
                    reg: *reg,
                    derefs,
                    offset,
                })
            }
            Self::Memory { .. } => None,
            Self::Copied { memory, .. } => memory.deref(offset),
        }
    }

    /// The register holding this value's first `size` bytes and where in the register they
    /// start; `Err` with the reason when no register holds them whole.
    pub(super) fn held_in_register(&self, size: u64) -> Result<(u8, u64), &'static str> {
        let (pieces, at) = self.pieces().ok_or("not in registers")?;
        let piece = pieces
            .iter()
            .find(|p| p.offset <= at && at.saturating_add(size) <= p.offset.saturating_add(p.size))
            .ok_or("split across registers")?;
        piece.register.map(|register| (register, at - piece.offset))
    }

    fn register_holding(&self, size: u64) -> Option<(u8, u64)> {
        self.held_in_register(size).ok()
    }

    /// The two registers holding this value's 16 bytes whole (a pointer and a length), if
    /// it is held so.
    pub(super) fn register_pair(&self) -> Option<(u8, u8)> {
        if let Self::RegisterPair(a, b) = self {
            return Some((*a, *b));
        }
        let (first, 0) = self.register_holding(8)? else {
            return None;
        };
        let (second, 0) = self.field(8)?.register_holding(8)? else {
            return None;
        };
        Some((first, second))
    }

    /// Why the first `size` bytes of a value in pieces cannot be read, if a piece the
    /// optimiser dropped (or a vector register) holds them.
    pub(super) fn unreadable_piece(&self, size: u64) -> Option<&'static str> {
        let (pieces, at) = self.pieces()?;
        pieces
            .iter()
            .filter(|p| p.offset < at.saturating_add(size) && at < p.offset.saturating_add(p.size))
            .find_map(|p| p.register.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_ebpf::reg;

    fn pieces(list: &[(u64, u64, Result<u8, &'static str>)]) -> Access {
        Access::Pieces {
            pieces: list
                .iter()
                .map(|&(offset, size, register)| Piece {
                    offset,
                    size,
                    register,
                })
                .collect(),
            at: 0,
        }
    }

    #[test]
    fn fields_of_values_in_registers_are_parts_of_the_registers() {
        // Option<u32> in two registers: the tag in edi, the value in esi.
        let option = pieces(&[(0, 4, Ok(reg::RDI)), (4, 4, Ok(reg::RSI))]);
        assert_eq!(option.held_in_register(4), Ok((reg::RDI, 0)));
        assert_eq!(
            option.field(4).unwrap().held_in_register(4),
            Ok((reg::RSI, 0))
        );
        assert_eq!(option.held_in_register(8), Err("split across registers"));
        // A struct { short a; short b; } in one register: b is its bytes 2..4.
        let packed = Access::Register(reg::RDX).field(2).unwrap();
        assert_eq!(packed.held_in_register(2), Ok((reg::RDX, 2)));
        // A &str whose pointer was dropped: its length is still there.
        let string = pieces(&[(0, 8, Err("optimized out")), (8, 8, Ok(reg::RSI))]);
        assert_eq!(string.unreadable_piece(8), Some("optimized out"));
        assert_eq!(string.field(8).unwrap().unreadable_piece(8), None);
        assert_eq!(string.register_pair(), None);
        assert_eq!(
            pieces(&[(0, 8, Ok(reg::RDI)), (8, 8, Ok(reg::RSI))]).register_pair(),
            Some((reg::RDI, reg::RSI))
        );
    }

    #[test]
    fn pointers_are_followed_within_the_kernels_bound() {
        let mut access = Access::at_register(reg::RDI, 8);
        for _ in 0..MAX_DEREFS {
            access = access.deref(16).expect("within the bound");
        }
        assert_eq!(access.deref(0), None);
        let Access::Memory { derefs, offset, .. } = access else {
            panic!()
        };
        assert_eq!((derefs[0], derefs[1], offset), (8, 16, 16));
        // A pointer in the middle of a register is not one to follow.
        assert_eq!(Access::Register(reg::RDI).field(4).unwrap().deref(0), None);
    }
}
