//! Where each parameter is at a function's entry on x86-64.
//!
//! DWARF says where a parameter lives in the function's body; at the entry, before the
//! prologue, only the calling convention holds. So a DWARF location is used when it is valid at
//! the entry address (a register, the caller's stack, or register pieces, typical of optimised
//! code), and otherwise the calling convention is applied to the parameter types: System V for
//! C and C++, and Rust's own rules for Rust (scalars and scalar pairs such as `&str` in general
//! registers, large aggregates behind a pointer).

use tracer_ebpf::reg;

use crate::symbols::{
    dwarf::{EntryLocation, FunctionDebug, Language},
    types::Type,
};

/// Where a parameter's value is at the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPlace {
    /// In a general register (a [`reg`] index).
    Register(u8),
    /// Split over two general registers, 8 bytes each (a 9–16 byte aggregate or a fat pointer).
    RegisterPair(u8, u8),
    /// In memory at the stack pointer plus this offset.
    Stack(i32),
    /// In memory, at the address held by this register (passed by invisible reference).
    Indirect(u8),
    /// Not readable from a uprobe (a vector register), or not known.
    Unavailable(&'static str),
}

/// The System V integer argument registers, in order.
const GP_ARGS: [u8; 6] = reg::SYSV_ARGS;
/// SSE argument registers (xmm0-7) System V uses before the stack.
const SSE_ARGS: usize = 8;

/// Our register index for DWARF register `dwarf`, if it is a general register.
pub fn register_from_dwarf(dwarf: u16) -> Option<u8> {
    Some(match dwarf {
        0 => reg::RAX,
        1 => reg::RDX,
        2 => reg::RCX,
        3 => reg::RBX,
        4 => reg::RSI,
        5 => reg::RDI,
        6 => reg::RBP,
        7 => reg::RSP,
        8 => reg::R8,
        9 => reg::R9,
        10 => reg::R10,
        11 => reg::R11,
        12 => reg::R12,
        13 => reg::R13,
        14 => reg::R14,
        15 => reg::R15,
        _ => return None,
    })
}

/// DWARF registers 17–32 are xmm0–15.
fn is_vector_register(dwarf: u16) -> bool {
    (17..=32).contains(&dwarf)
}

/// The System V class of a value for argument passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// General registers, one per eightbyte.
    Integer,
    /// Vector registers.
    Sse,
    /// Copied onto the stack.
    Memory,
    /// Nothing is passed (zero-sized).
    Nothing,
}

fn has_float(ty: &Type) -> bool {
    match ty {
        Type::Float { .. } => true,
        Type::Struct { fields, .. } => fields.iter().any(|f| has_float(&f.ty)),
        Type::Array { element, .. } => has_float(element),
        _ => false,
    }
}

/// System V classification, simplified to what a probe needs: aggregates larger than 16 bytes
/// go in memory; aggregates with any float are not read (they mix register files).
fn sysv_class(ty: &Type) -> Class {
    match ty {
        Type::Void => Class::Nothing,
        Type::Float { size, .. } if *size <= 8 => Class::Sse,
        Type::Float { .. } => Class::Memory,
        Type::Struct { size: 0, .. } => Class::Nothing,
        Type::Struct { size, .. } | Type::Opaque { size, .. } if *size > 16 => Class::Memory,
        Type::Array { .. } if ty.size() > 16 => Class::Memory,
        aggregate if has_float(aggregate) => Class::Sse,
        _ => Class::Integer,
    }
}

fn eightbytes(size: u64) -> usize {
    size.div_ceil(8).max(1) as usize
}

/// Assigns general registers and stack slots in parameter order.
struct Allocator {
    next_gp: usize,
    next_sse: usize,
    stack: i32,
}

impl Allocator {
    fn new() -> Self {
        // At the entry, [rsp] is the return address; stack arguments start above it.
        Self {
            next_gp: 0,
            next_sse: 0,
            stack: 8,
        }
    }

    fn integer(&mut self, size: u64) -> ArgPlace {
        let needed = eightbytes(size);
        if needed <= 2 && self.next_gp + needed <= GP_ARGS.len() {
            let first = GP_ARGS[self.next_gp];
            self.next_gp += needed;
            return if needed == 1 {
                ArgPlace::Register(first)
            } else {
                ArgPlace::RegisterPair(first, GP_ARGS[self.next_gp - 1])
            };
        }
        // An aggregate that does not fit the remaining registers goes wholly on the stack.
        self.memory(size)
    }

    fn memory(&mut self, size: u64) -> ArgPlace {
        let place = ArgPlace::Stack(self.stack);
        self.stack = self.stack.saturating_add((eightbytes(size) * 8) as i32);
        place
    }

    fn sse(&mut self, size: u64) -> ArgPlace {
        if self.next_sse < SSE_ARGS {
            self.next_sse += 1;
            ArgPlace::Unavailable("xmm")
        } else {
            self.memory(size)
        }
    }

    fn pointer(&mut self) -> ArgPlace {
        match self.integer(8) {
            ArgPlace::Register(r) => ArgPlace::Indirect(r),
            _ => ArgPlace::Unavailable("stack-passed reference"),
        }
    }
}

/// The place a DWARF entry location names.
fn dwarf_place(location: &EntryLocation) -> ArgPlace {
    const UNKNOWN_REGISTER: ArgPlace = ArgPlace::Unavailable("unknown register");
    const OPTIMIZED_OUT: ArgPlace = ArgPlace::Unavailable("optimized out");
    let register = |r: u16| register_from_dwarf(r).map_or(UNKNOWN_REGISTER, ArgPlace::Register);
    match location {
        EntryLocation::Register(r) if is_vector_register(*r) => ArgPlace::Unavailable("xmm"),
        EntryLocation::Register(r) => register(*r),
        EntryLocation::Stack(offset) => {
            i32::try_from(*offset).map_or(ArgPlace::Unavailable("stack offset"), ArgPlace::Stack)
        }
        EntryLocation::OptimizedOut => OPTIMIZED_OUT,
        EntryLocation::Pieces(pieces) => match pieces.as_slice() {
            [(Some(a), 8), (Some(b), 8)] => {
                match (register_from_dwarf(*a), register_from_dwarf(*b)) {
                    (Some(a), Some(b)) => ArgPlace::RegisterPair(a, b),
                    _ => UNKNOWN_REGISTER,
                }
            }
            [(Some(a), _)] => register(*a),
            // Part of the value was dropped (a `&str` whose pointer is never used).
            _ => OPTIMIZED_OUT,
        },
    }
}

/// Whether the return value is returned through a hidden pointer passed as the first argument.
fn returns_in_memory(function: &FunctionDebug) -> bool {
    match function.language {
        Language::Rust => function.return_type.size() > 16,
        _ => sysv_class(&function.return_type) == Class::Memory,
    }
}

/// Where each parameter of `function` is at its entry, in parameter order.
pub fn entry_places(function: &FunctionDebug) -> Vec<ArgPlace> {
    let mut allocator = Allocator::new();
    if returns_in_memory(function) {
        allocator.next_gp = 1;
    }
    let mut places = Vec::with_capacity(function.params.len());
    for param in &function.params {
        // Classify first so the convention's bookkeeping stays right even when DWARF wins.
        let by_convention = match function.language {
            Language::Rust => rust_place(&mut allocator, &param.ty),
            _ => sysv_place(&mut allocator, &param.ty),
        };
        let from_dwarf = param.entry_location.as_ref().map(dwarf_place);
        places.push(match from_dwarf {
            Some(place) => place,
            None if function.standard_convention => by_convention,
            // A convention of the compiler's own: guessing from the ABI would show another
            // argument's value under this name.
            None => ArgPlace::Unavailable("non-standard calling convention"),
        });
    }
    places
}

fn sysv_place(allocator: &mut Allocator, ty: &Type) -> ArgPlace {
    match sysv_class(ty) {
        Class::Nothing => ArgPlace::Unavailable("zero-sized"),
        Class::Integer => allocator.integer(ty.size()),
        Class::Sse => allocator.sse(ty.size()),
        Class::Memory => allocator.memory(ty.size()),
    }
}

fn rust_place(allocator: &mut Allocator, ty: &Type) -> ArgPlace {
    match ty {
        // Zero-sized values are not passed at all.
        _ if ty.size() == 0 && !matches!(ty, Type::Str | Type::Slice { .. }) => {
            ArgPlace::Unavailable("zero-sized")
        }
        Type::Str | Type::Slice { .. } => allocator.integer(16),
        Type::Float { size, .. } => allocator.sse(u64::from(*size)),
        _ if ty.is_scalar() => allocator.integer(ty.size()),
        // Aggregates: larger than two words go by reference; smaller ones are passed in a
        // way rustc does not promise, so they are not read unless DWARF says where.
        _ if ty.size() > 16 => allocator.pointer(),
        _ => {
            allocator.integer(ty.size());
            ArgPlace::Unavailable("rust aggregate")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::{dwarf::Parameter, types::Field};

    fn int(size: u8) -> Type {
        Type::Int {
            name: "int".into(),
            size,
            signed: true,
        }
    }

    fn double() -> Type {
        Type::Float {
            name: "double".into(),
            size: 8,
        }
    }

    fn strukt(size: u64, fields: Vec<Type>) -> Type {
        let mut offset = 0;
        Type::Struct {
            name: "s".into(),
            size,
            fields: fields
                .into_iter()
                .map(|ty| {
                    let field = Field {
                        name: format!("f{offset}"),
                        offset,
                        ty: ty.clone(),
                    };
                    offset += ty.size();
                    field
                })
                .collect(),
            union: false,
        }
    }

    fn function(language: Language, params: Vec<Type>, ret: Type) -> FunctionDebug {
        FunctionDebug {
            name: "f".into(),
            file: None,
            line: None,
            language,
            params: params
                .into_iter()
                .enumerate()
                .map(|(i, ty)| Parameter {
                    name: format!("p{i}"),
                    ty,
                    artificial: false,
                    entry_location: None,
                })
                .collect(),
            return_type: ret,
            standard_convention: true,
        }
    }

    #[test]
    fn sysv_integers_fill_the_six_registers_then_the_stack() {
        let f = function(Language::C, vec![int(4); 8], int(4));
        let places = entry_places(&f);
        let expected_regs = [reg::RDI, reg::RSI, reg::RDX, reg::RCX, reg::R8, reg::R9];
        for (place, r) in places.iter().zip(expected_regs) {
            assert_eq!(*place, ArgPlace::Register(r));
        }
        assert_eq!(places[6], ArgPlace::Stack(8));
        assert_eq!(places[7], ArgPlace::Stack(16));
    }

    #[test]
    fn floats_take_vector_registers_not_general_ones() {
        let f = function(
            Language::C,
            vec![double(), int(8), double(), int(8)],
            Type::Void,
        );
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::Unavailable("xmm"));
        assert_eq!(places[1], ArgPlace::Register(reg::RDI));
        assert_eq!(places[3], ArgPlace::Register(reg::RSI));
    }

    #[test]
    fn small_structs_use_register_pairs_big_ones_the_stack() {
        let pair = strukt(16, vec![int(8), int(8)]);
        let big = strukt(24, vec![int(8), int(8), int(8)]);
        let f = function(Language::C, vec![pair, big, int(4)], Type::Void);
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::RegisterPair(reg::RDI, reg::RSI));
        assert_eq!(places[1], ArgPlace::Stack(8));
        assert_eq!(places[2], ArgPlace::Register(reg::RDX));
    }

    #[test]
    fn a_struct_returned_in_memory_takes_the_first_register() {
        let big = strukt(32, vec![int(8); 4]);
        let f = function(Language::C, vec![int(4)], big);
        assert_eq!(entry_places(&f)[0], ArgPlace::Register(reg::RSI));
    }

    #[test]
    fn rust_str_is_a_pointer_and_length_pair() {
        let big = strukt(40, vec![int(8); 5]);
        let f = function(
            Language::Rust,
            vec![
                Type::Str,
                int(8),
                big,
                Type::Struct {
                    name: "()".into(),
                    size: 0,
                    fields: vec![],
                    union: false,
                },
            ],
            Type::Void,
        );
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::RegisterPair(reg::RDI, reg::RSI));
        assert_eq!(places[1], ArgPlace::Register(reg::RDX));
        assert_eq!(places[2], ArgPlace::Indirect(reg::RCX));
        assert_eq!(places[3], ArgPlace::Unavailable("zero-sized"));
    }

    #[test]
    fn dwarf_locations_valid_at_entry_win() {
        let mut f = function(Language::C, vec![int(4), int(4)], Type::Void);
        f.params[1].entry_location = Some(EntryLocation::Register(4)); // rsi
        f.params[0].entry_location = Some(EntryLocation::Register(17)); // xmm0
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::Unavailable("xmm"));
        assert_eq!(places[1], ArgPlace::Register(reg::RSI));
    }

    #[test]
    fn non_standard_conventions_trust_only_dwarf() {
        // rustc -O: `fn describe(name: &str, count: u32)` whose pointer half is unused.
        let mut f = function(Language::Rust, vec![Type::Str, int(4)], Type::Void);
        f.standard_convention = false;
        f.params[0].entry_location = Some(EntryLocation::Pieces(vec![(None, 8), (Some(5), 8)]));
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::Unavailable("optimized out"));
        assert_eq!(
            places[1],
            ArgPlace::Unavailable("non-standard calling convention")
        );
        f.params[1].entry_location = Some(EntryLocation::Register(4));
        assert_eq!(entry_places(&f)[1], ArgPlace::Register(reg::RSI));
    }
}
