//! Where each parameter is at a function's entry on x86-64.
//!
//! DWARF says where a parameter lives in the function's body; at the entry, before the
//! prologue, only the calling convention holds. So a DWARF location is used when it is valid at
//! the entry address (a register, the caller's stack, or register pieces, typical of optimised
//! code), and otherwise the calling convention is applied to the parameter types: System V for
//! C and C++, and Rust's own rules for Rust (scalars and scalar pairs such as `&str` in general
//! registers, large aggregates behind a pointer).

use tracer_ebpf::reg;

use super::{
    registers,
    rust_layout::{self, Repr, Scalar},
};
use crate::symbols::{
    dwarf::{EntryLocation, FunctionDebug, Language},
    types::{Shape, Type},
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
    /// In parts, each in a general register or not readable: a Rust scalar pair
    /// (`Option<u32>`: the tag in one register, the value in the next), or what DWARF's
    /// pieces say (one dropped by the optimiser).
    Pieces(Vec<Piece>),
    /// Not readable from a uprobe (a vector register), or not known.
    Unavailable(&'static str),
}

/// The place of a value held in `pieces`: one register or a pair of them when they hold it
/// whole, word by word.
fn held_in(pieces: Vec<Piece>) -> ArgPlace {
    let whole = |piece: &Piece, offset| piece.offset == offset && piece.size == 8;
    match pieces.as_slice() {
        // A piece smaller than a register may be all DWARF says of a larger value: only a
        // whole register is the value's.
        [one] if whole(one, 0) && one.register.is_ok() => {
            ArgPlace::Register(one.register.expect("checked"))
        }
        [a, b] if whole(a, 0) && whole(b, 8) => match (a.register, b.register) {
            (Ok(a), Ok(b)) => ArgPlace::RegisterPair(a, b),
            _ => ArgPlace::Pieces(pieces),
        },
        _ => ArgPlace::Pieces(pieces),
    }
}

/// Bytes `offset..offset + size` of a value, in the low bytes of a general register or, with
/// the reason, not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub size: u64,
    pub register: Result<u8, &'static str>,
}

/// The System V integer argument registers, in order.
const GP_ARGS: [u8; 6] = reg::SYSV_ARGS;
/// SSE argument registers (xmm0-7) System V uses before the stack.
const SSE_ARGS: usize = 8;

/// The class of one eightbyte of a value (System V).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eightbyte {
    Integer,
    Sse,
}

/// How a value is passed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Passing {
    /// Nothing is passed (zero-sized, empty C++ classes).
    Nothing,
    /// In registers, one per eightbyte.
    Registers(Vec<Eightbyte>),
    /// Copied onto the stack, aligned to this many bytes.
    Memory { align: i32 },
    /// A pointer to it is passed (C++ classes that are not trivial, large Rust values).
    ByReference,
    /// Its parts each in a register of their class: (class, offset, size) (a Rust scalar
    /// pair).
    Split(Vec<(Eightbyte, u64, u64)>),
    /// We cannot tell; what follows cannot be placed by the convention either.
    Uncertain(&'static str),
}

/// The scalar pieces of a value: (offset, size, is a float), or `None` where some part's
/// type is unknown.
fn flatten(ty: &Type, at: u64, out: &mut Vec<(u64, u64, bool)>) -> Option<()> {
    match ty {
        Type::Void => {}
        Type::Float { size, .. } => out.push((at, u64::from(*size), true)),
        Type::Int { .. }
        | Type::Bool { .. }
        | Type::Char { .. }
        | Type::Enum { .. }
        | Type::Pointer { .. } => out.push((at, ty.size(), false)),
        Type::Str | Type::Slice { .. } | Type::Interface { .. } => {
            out.push((at, 8, false));
            out.push((at + 8, 8, false));
            if matches!(ty, Type::Slice { go: true, .. }) {
                out.push((at + 16, 8, false));
            }
        }
        // A library value by the parts its shape names (its fields may not have been read):
        // pointers, lengths and flags are integers; the value held is what it is.
        Type::Struct {
            shape: Some(shape), ..
        } => match shape {
            Shape::Sequence {
                pointer_at, len_at, ..
            } => {
                out.push((at + pointer_at, 8, false));
                out.push((at + len_at, 8, false));
            }
            Shape::Inner { at: inner, ty } => flatten(ty, at + inner, out)?,
            Shape::Pointee { pointer_at, .. } => out.push((at + pointer_at, 8, false)),
            // Never trivial: passed by reference before its parts matter.
            Shape::ShortOrLongText { .. } => return None,
            Shape::Optional {
                engaged_at,
                value_at,
                ty,
            } => {
                flatten(ty, at + value_at, out)?;
                out.push((at + engaged_at, 1, false));
            }
        },
        Type::Struct { fields, union, .. } => {
            for field in fields {
                flatten(&field.ty, if *union { at } else { at + field.offset }, out)?;
            }
        }
        Type::Array { element, count } => {
            for i in 0..(*count).min(16) {
                flatten(element, at + i * element.size(), out)?;
            }
        }
        // Rust's enums are not C's.
        Type::Opaque { .. } | Type::Variants { .. } => return None,
    }
    Some(())
}

fn needs_16_byte_alignment(ty: &Type) -> bool {
    match ty {
        Type::Float { size, .. } | Type::Int { size, .. } => *size == 16,
        Type::Struct { fields, .. } => fields.iter().any(|f| needs_16_byte_alignment(&f.ty)),
        Type::Array { element, .. } => needs_16_byte_alignment(element),
        _ => false,
    }
}

/// System V passing of `ty` (with the C++ rule for classes that are not trivial).
fn sysv_passing(ty: &Type, language: Language) -> Passing {
    let align = if needs_16_byte_alignment(ty) { 16 } else { 8 };
    if let Type::Struct { trivial, .. } = ty
        && language == Language::Cpp
    {
        match trivial {
            Some(false) => return Passing::ByReference,
            None => return Passing::Uncertain("C++ class of unknown triviality"),
            Some(true) => {}
        }
    }
    match ty {
        Type::Void => Passing::Nothing,
        Type::Opaque { size: 0, .. } => Passing::Uncertain("unknown type"),
        // long double (x87): in memory as an argument.
        Type::Float { size, .. } if *size > 8 => Passing::Memory { align },
        _ if ty.size() > 16 => Passing::Memory { align },
        _ => {
            let mut pieces = Vec::new();
            if flatten(ty, 0, &mut pieces).is_none() {
                return Passing::Uncertain("unknown type");
            }
            if pieces.is_empty() {
                return Passing::Nothing;
            }
            // An x87 or 16-byte piece inside an aggregate sends it to memory.
            if pieces.iter().any(|&(_, size, float)| float && size > 8) && pieces.len() > 1 {
                return Passing::Memory { align };
            }
            let words = ty.size().div_ceil(8).max(1) as usize;
            let classes = (0..words as u64)
                .map(|word| {
                    let inside: Vec<_> = pieces
                        .iter()
                        .filter(|(offset, _, _)| offset / 8 == word)
                        .collect();
                    if !inside.is_empty() && inside.iter().all(|(_, _, float)| *float) {
                        Eightbyte::Sse
                    } else {
                        Eightbyte::Integer
                    }
                })
                .collect();
            Passing::Registers(classes)
        }
    }
}

/// Rust's own passing (rustc's `Rust` ABI on x86-64, as rustc 1.95 does it): a scalar in one
/// register of its class, a scalar pair in two (each of its class), any other value in one
/// general register when it fits a pointer's size and behind a pointer when it does not.
fn rust_passing(ty: &Type) -> Passing {
    let class = |scalar: Scalar| match scalar.float {
        true => Eightbyte::Sse,
        false => Eightbyte::Integer,
    };
    match rust_layout::repr(ty) {
        Repr::Empty => Passing::Nothing,
        // An `i128` takes two general registers, low word first.
        Repr::Scalar(scalar) if scalar.size > 8 && !scalar.float => {
            Passing::Registers(vec![Eightbyte::Integer; 2])
        }
        Repr::Scalar(scalar) if scalar.size > 8 => Passing::Uncertain("wide float"),
        Repr::Scalar(scalar) => Passing::Registers(vec![class(scalar)]),
        Repr::Pair { first, second, .. } if first.size > 8 || second.size > 8 => {
            Passing::Uncertain("Rust pair of wide scalars")
        }
        Repr::Pair {
            first,
            second,
            second_at,
        } => Passing::Split(vec![
            (class(first), 0, first.size),
            (class(second), second_at, second.size),
        ]),
        Repr::Memory if ty.size() <= 8 => Passing::Registers(vec![Eightbyte::Integer]),
        Repr::Memory => Passing::ByReference,
        // Too large for a scalar pair: behind a pointer, whatever its fields.
        Repr::Unknown if rust_layout::too_large_for_a_pair(ty.size()) => Passing::ByReference,
        Repr::Unknown => Passing::Uncertain("Rust aggregate"),
    }
}

/// Assigns registers and stack slots in parameter order.
struct Allocator {
    next_gp: usize,
    next_sse: usize,
    stack: i32,
    /// Set once a parameter's passing is uncertain: the convention cannot place what follows.
    lost: Option<&'static str>,
}

impl Allocator {
    fn new() -> Self {
        // At the entry, [rsp] is the return address; stack arguments start above it.
        Self {
            next_gp: 0,
            next_sse: 0,
            stack: 8,
            lost: None,
        }
    }

    fn memory(&mut self, size: u64, align: i32) -> ArgPlace {
        self.stack = (self.stack + align - 1) / align * align;
        let place = ArgPlace::Stack(self.stack);
        self.stack = self
            .stack
            .saturating_add((size.div_ceil(8).max(1) * 8) as i32);
        place
    }

    fn place(&mut self, passing: Passing, size: u64) -> ArgPlace {
        match passing {
            Passing::Nothing => ArgPlace::Unavailable("zero-sized"),
            Passing::Uncertain(reason) => {
                self.lost = Some(reason);
                ArgPlace::Unavailable(reason)
            }
            Passing::ByReference => {
                if self.next_gp < GP_ARGS.len() {
                    self.next_gp += 1;
                    ArgPlace::Indirect(GP_ARGS[self.next_gp - 1])
                } else {
                    self.stack += 8;
                    ArgPlace::Unavailable("reference passed on the stack")
                }
            }
            Passing::Memory { align } => self.memory(size, align),
            Passing::Split(parts) => {
                let pieces = parts
                    .into_iter()
                    .map(|(class, offset, size)| Piece {
                        offset,
                        size,
                        register: match class {
                            Eightbyte::Integer if self.next_gp < GP_ARGS.len() => {
                                self.next_gp += 1;
                                Ok(GP_ARGS[self.next_gp - 1])
                            }
                            Eightbyte::Sse if self.next_sse < SSE_ARGS => {
                                self.next_sse += 1;
                                Err("xmm")
                            }
                            // Each part without a register takes a stack slot of its own.
                            _ => {
                                self.memory(size, 8);
                                Err("on the stack")
                            }
                        },
                    })
                    .collect();
                held_in(pieces)
            }
            Passing::Registers(classes) => {
                let gp = classes.iter().filter(|c| **c == Eightbyte::Integer).count();
                let sse = classes.len() - gp;
                if self.next_gp + gp > GP_ARGS.len() || self.next_sse + sse > SSE_ARGS {
                    // What does not fit the registers goes wholly on the stack.
                    return self.memory(size, 8);
                }
                let first = self.next_gp;
                self.next_gp += gp;
                self.next_sse += sse;
                match (classes.as_slice(), gp) {
                    ([Eightbyte::Integer], 1) => ArgPlace::Register(GP_ARGS[first]),
                    ([Eightbyte::Integer, Eightbyte::Integer], 2) => {
                        ArgPlace::RegisterPair(GP_ARGS[first], GP_ARGS[first + 1])
                    }
                    _ => ArgPlace::Unavailable("xmm"),
                }
            }
        }
    }
}

/// The place a DWARF entry location names.
fn dwarf_place(location: &EntryLocation) -> ArgPlace {
    const UNKNOWN_REGISTER: ArgPlace = ArgPlace::Unavailable("unknown register");
    const OPTIMIZED_OUT: ArgPlace = ArgPlace::Unavailable("optimized out");
    let register = |r: u16| registers::from_dwarf(r).map_or(UNKNOWN_REGISTER, ArgPlace::Register);
    match location {
        EntryLocation::Register(r) if registers::is_vector_dwarf(*r) => {
            ArgPlace::Unavailable("xmm")
        }
        EntryLocation::Register(r) => register(*r),
        EntryLocation::Stack(offset) => {
            i32::try_from(*offset).map_or(ArgPlace::Unavailable("stack offset"), ArgPlace::Stack)
        }
        EntryLocation::OptimizedOut => OPTIMIZED_OUT,
        EntryLocation::Pieces(pieces) => match pieces.as_slice() {
            [(Some(a), 8), (Some(b), 8)] => {
                match (registers::from_dwarf(*a), registers::from_dwarf(*b)) {
                    (Some(a), Some(b)) => ArgPlace::RegisterPair(a, b),
                    _ => UNKNOWN_REGISTER,
                }
            }
            // Parts in registers of their own (a Rust pair), or some dropped (a `&str` whose
            // pointer is never used): each part where it is.
            parts => {
                let mut offset = 0;
                let pieces: Vec<Piece> = parts
                    .iter()
                    .map(|&(register, size)| {
                        let piece = Piece {
                            offset,
                            size,
                            register: match register {
                                None => Err("optimized out"),
                                Some(r) if registers::is_vector_dwarf(r) => Err("xmm"),
                                // A general register holds 8 bytes, no more.
                                Some(_) if size > 8 => Err("wider than a register"),
                                Some(r) => registers::from_dwarf(r).ok_or("unknown register"),
                            },
                        };
                        offset = offset.saturating_add(size);
                        piece
                    })
                    .collect();
                if pieces.iter().all(|p| p.register.is_err()) {
                    OPTIMIZED_OUT
                } else {
                    held_in(pieces)
                }
            }
        },
    }
}

/// Whether `function` takes and returns values by rustc's own convention (not C's).
fn rust_convention(function: &FunctionDebug) -> bool {
    function.language == Language::Rust && !function.c_abi
}

/// How `function` passes a value of type `ty`: by rustc's convention or System V's.
fn passing_of(function: &FunctionDebug, ty: &Type) -> Passing {
    match rust_convention(function) {
        true => rust_passing(ty),
        false => sysv_passing(ty, function.language),
    }
}

/// How the return value comes back: whether through a hidden pointer passed as the first
/// argument, or `None` when that cannot be told.
fn returns_in_memory(function: &FunctionDebug) -> Option<bool> {
    let ty = &function.return_type;
    match function.language {
        _ if rust_convention(function) => match rust_layout::repr(ty) {
            _ if rust_layout::too_large_for_a_pair(ty.size()) => Some(true),
            Repr::Memory => Some(ty.size() > 8),
            Repr::Unknown => None,
            _ => Some(false),
        },
        language => match sysv_passing(ty, language) {
            // long double comes back in st0, not through memory.
            Passing::Memory { .. } => Some(!matches!(ty, Type::Float { .. })),
            Passing::ByReference => Some(true),
            Passing::Uncertain(_) => None,
            Passing::Nothing | Passing::Registers(_) | Passing::Split(_) => Some(false),
        },
    }
}

/// Where a function's return value is when it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnPlace {
    /// Nothing is returned (zero-sized).
    Nothing,
    /// In the return registers, part by part: general ones are RAX then RDX, a part in a
    /// vector register is not readable.
    Registers(Vec<Piece>),
    /// In memory the caller provided, whose address it passed as a hidden first argument
    /// (RDI at the entry) and RAX holds at the return.
    Memory,
    Unavailable(&'static str),
}

/// Where `function` (C, C++ or Rust) leaves its return value.
pub fn return_place(function: &FunctionDebug) -> ReturnPlace {
    let ty = &function.return_type;
    if function.language == Language::Go {
        return ReturnPlace::Unavailable("Go results");
    }
    let passing = match passing_of(function, ty) {
        // long double comes back in st0.
        Passing::Memory { .. } if matches!(ty, Type::Float { .. }) => {
            return ReturnPlace::Unavailable("x87");
        }
        other => other,
    };
    const RETURN_REGISTERS: [u8; 2] = [reg::RAX, reg::RDX];
    let mut next = 0;
    let mut piece = |class: Eightbyte, offset: u64, size: u64| Piece {
        offset,
        size,
        register: match class {
            Eightbyte::Sse => Err("xmm"),
            Eightbyte::Integer if next < RETURN_REGISTERS.len() => {
                next += 1;
                Ok(RETURN_REGISTERS[next - 1])
            }
            Eightbyte::Integer => Err("not in a register"),
        },
    };
    match passing {
        Passing::Nothing => ReturnPlace::Nothing,
        Passing::Memory { .. } | Passing::ByReference => ReturnPlace::Memory,
        Passing::Uncertain(reason) => ReturnPlace::Unavailable(reason),
        Passing::Registers(classes) => ReturnPlace::Registers(
            classes
                .into_iter()
                .enumerate()
                .map(|(word, class)| {
                    let offset = 8 * word as u64;
                    piece(class, offset, ty.size().saturating_sub(offset).min(8))
                })
                .collect(),
        ),
        Passing::Split(parts) => ReturnPlace::Registers(
            parts
                .into_iter()
                .map(|(class, offset, size)| piece(class, offset, size))
                .collect(),
        ),
    }
}

/// Whether `function` is a Rust closure whose environment DWARF leaves out of its parameters:
/// rustc does so when it passes the environment by reference (the captures are described
/// as variables read through that pointer), and the pointer still takes the first register.
fn hides_closure_environment(function: &FunctionDebug) -> bool {
    rust_convention(function)
        && function.name.starts_with("{closure#")
        && !function
            .params
            .iter()
            .any(|p| p.ty.name().contains("{closure_env#"))
}

/// Where each parameter of `function` is at its entry, in parameter order.
pub fn entry_places(function: &FunctionDebug) -> Vec<ArgPlace> {
    if function.language == Language::Go {
        return go_entry_places(function);
    }
    let mut allocator = Allocator::new();
    match returns_in_memory(function) {
        Some(true) => allocator.next_gp = 1,
        Some(false) => {}
        None => allocator.lost = Some("return value of uncertain passing"),
    }
    if hides_closure_environment(function) {
        allocator.next_gp += 1;
    }
    let mut places = Vec::with_capacity(function.params.len());
    for param in &function.params {
        // Classify first so the convention's bookkeeping stays right even when DWARF wins.
        let passing = passing_of(function, &param.ty);
        let lost_before = allocator.lost;
        let by_convention = allocator.place(passing, param.ty.size());
        let from_dwarf = param.entry_location.as_ref().map(dwarf_place);
        places.push(match from_dwarf {
            Some(place) => place,
            // A convention of the compiler's own: guessing from the ABI would show another
            // argument's value under this name.
            None if !function.standard_convention => {
                ArgPlace::Unavailable("non-standard calling convention")
            }
            // Past a parameter we could not place, so is everything after it.
            None if lost_before.is_some() => {
                ArgPlace::Unavailable("after a parameter of uncertain passing")
            }
            None => by_convention,
        });
    }
    places
}

/// Go's register ABI (1.17+): integer-class arguments in RAX, RBX, RCX, RDI, RSI, R8, R9,
/// R10, R11 in order, a string in two of them (pointer, length); floats in X registers.
pub(crate) const GO_ARGS: [u8; 9] = [
    reg::RAX,
    reg::RBX,
    reg::RCX,
    reg::RDI,
    reg::RSI,
    reg::R8,
    reg::R9,
    reg::R10,
    reg::R11,
];

/// Where each parameter of a Go function is at its entry: DWARF's location where it gives
/// one (Go writes them for register arguments), else the register ABI's assignment: each
/// value takes its integer words in order ([`go_words`]: a string or interface two, a slice
/// three, a struct its fields'), and one that does not fit what is left goes to the stack
/// whole while the next still gets registers. What this does not place (a struct in more
/// than two registers, arguments on the stack) shows as unavailable rather than as a
/// neighbour's value.
fn go_entry_places(function: &FunctionDebug) -> Vec<ArgPlace> {
    let mut next = 0usize;
    let mut lost = false;
    function
        .params
        .iter()
        .map(|param| {
            let go_slice = matches!(param.ty, Type::Slice { go: true, .. });
            let words = go_words(&param.ty);
            let fits = words.is_some_and(|words| next + words <= GO_ARGS.len());
            let by_abi = match words {
                _ if lost => ArgPlace::Unavailable("after a Go argument of unknown assignment"),
                None => {
                    lost = true;
                    ArgPlace::Unavailable("Go aggregate")
                }
                _ if !fits => ArgPlace::Unavailable("on the stack"),
                Some(0) if matches!(param.ty, Type::Float { .. }) => ArgPlace::Unavailable("xmm"),
                Some(0) => ArgPlace::Unavailable("no integer words"),
                Some(1) => ArgPlace::Register(GO_ARGS[next]),
                // A string or interface, a struct of two words, a slice's (pointer, length):
                // its capacity is not shown.
                Some(2) => ArgPlace::RegisterPair(GO_ARGS[next], GO_ARGS[next + 1]),
                Some(3) if go_slice => ArgPlace::RegisterPair(GO_ARGS[next], GO_ARGS[next + 1]),
                Some(_) => ArgPlace::Unavailable("struct over more than two registers"),
            };
            if fits {
                next += words.unwrap_or(0);
            }
            match &param.entry_location {
                // A slice in three registers: its (pointer, length) pair is what is shown.
                Some(EntryLocation::Pieces(pieces)) if go_slice && pieces.len() == 3 => {
                    dwarf_place(&EntryLocation::Pieces(pieces[..2].to_vec()))
                }
                // What DWARF cannot place, the ABI still does at the entry (Go 1.19 writes
                // an interface in registers as four pieces, each word twice).
                Some(location) => match dwarf_place(location) {
                    ArgPlace::Unavailable(_) if !matches!(by_abi, ArgPlace::Unavailable(_)) => {
                        by_abi
                    }
                    place => place,
                },
                None => by_abi,
            }
        })
        .collect()
}

/// Where a Go result of type `ty` comes back, when `before` integer words went to the
/// results before it: (its first word, the words it takes). Go's ABI assigns each scalar,
/// each string's two words, each slice's three and each interface's two in order, struct
/// fields one by one; a value that does not fit the registers left is on the stack, and the
/// next result still gets registers. Floats come back in X registers (no words).
pub(crate) fn go_result_words(ty: &Type, before: usize) -> Result<(usize, usize), &'static str> {
    let words = go_words(ty).ok_or("Go aggregate")?;
    if before + words > GO_ARGS.len() {
        return Err("on the stack");
    }
    Ok((before, words))
}

/// The integer words of a Go value in registers, or `None` for what is not placed here.
pub(crate) fn go_words(ty: &Type) -> Option<usize> {
    Some(match ty {
        Type::Float { .. } | Type::Void => 0,
        Type::Str | Type::Interface { .. } => 2,
        Type::Slice { go: true, .. } => 3,
        Type::Struct {
            fields,
            union: false,
            ..
        } => fields
            .iter()
            .map(|f| go_words(&f.ty))
            .sum::<Option<usize>>()?,
        ty if ty.is_scalar() => 1,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{symbols::types::Field, test_support::double};

    fn int(size: u8) -> Type {
        crate::test_support::int(size, true)
    }

    fn function(language: Language, params: Vec<Type>, ret: Type) -> FunctionDebug {
        let named = params
            .into_iter()
            .enumerate()
            .map(|(i, ty)| (format!("p{i}"), ty))
            .collect();
        crate::test_support::function(language, named, ret)
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
            trivial: Some(true),
            shape: None,
        }
    }

    #[test]
    fn go_arguments_take_their_words_in_order_and_spill_whole_values() {
        let pair = strukt(16, vec![int(8), int(8)]);
        let error = Type::Interface {
            name: "error".into(),
            empty: false,
        };
        let f = function(
            Language::Go,
            vec![int(8), pair, Type::Str, double(), error, int(8)],
            Type::Void,
        );
        assert_eq!(
            entry_places(&f),
            [
                ArgPlace::Register(reg::RAX),
                ArgPlace::RegisterPair(reg::RBX, reg::RCX),
                ArgPlace::RegisterPair(reg::RDI, reg::RSI),
                ArgPlace::Unavailable("xmm"),
                ArgPlace::RegisterPair(reg::R8, reg::R9),
                ArgPlace::Register(reg::R10),
            ]
        );
        // Eight words used: a string no longer fits and goes to the stack, the int after it
        // still gets R11.
        let mut params = vec![int(8); 8];
        params.extend([Type::Str, int(8)]);
        let places = entry_places(&function(Language::Go, params, Type::Void));
        assert_eq!(places[8], ArgPlace::Unavailable("on the stack"));
        assert_eq!(places[9], ArgPlace::Register(reg::R11));
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
                    trivial: Some(true),
                    shape: None,
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
    fn rust_pairs_take_a_register_each_and_small_values_one_for_their_bytes() {
        // fn f(value: Option<u32>, bytes: [u16; 4], three: Three, k: u64), as rustc 1.95
        // passes them: edi and esi, rdx, a pointer in rcx, r8.
        let quad = Type::Array {
            element: Box::new(crate::test_support::int(2, false)),
            count: 4,
        };
        let three = strukt(12, vec![int(4), int(4), int(4)]);
        let f = function(
            Language::Rust,
            vec![crate::test_support::option_u32(), quad, three, int(8)],
            Type::Void,
        );
        let places = entry_places(&f);
        let piece = |offset, register| Piece {
            offset,
            size: 4,
            register: Ok(register),
        };
        assert_eq!(
            places[0],
            ArgPlace::Pieces(vec![piece(0, reg::RDI), piece(4, reg::RSI)])
        );
        assert_eq!(places[1], ArgPlace::Register(reg::RDX));
        assert_eq!(places[2], ArgPlace::Indirect(reg::RCX));
        assert_eq!(places[3], ArgPlace::Register(reg::R8));
    }

    #[test]
    fn a_pair_short_of_registers_spills_its_second_part_to_the_stack() {
        // fn f(a, b, c, d, e: u64, s: &str, g: u64): s's pointer in r9, its length in the
        // first stack slot, g in the next.
        let mut params = vec![int(8); 5];
        params.extend([Type::Str, int(8)]);
        let places = entry_places(&function(Language::Rust, params, Type::Void));
        assert_eq!(
            places[5],
            ArgPlace::Pieces(vec![
                Piece {
                    offset: 0,
                    size: 8,
                    register: Ok(reg::R9)
                },
                Piece {
                    offset: 8,
                    size: 8,
                    register: Err("on the stack")
                }
            ])
        );
        assert_eq!(places[6], ArgPlace::Stack(16));
    }

    #[test]
    fn rust_functions_exported_to_c_take_cs_convention() {
        // #[no_mangle] extern "C" fn cfun(p: P, n: u64), P a #[repr(C)] pair of i32: one
        // eightbyte in rdi, n in rsi (rustc's own convention would split P over two).
        let p = strukt(8, vec![int(4), int(4)]);
        let mut f = function(Language::Rust, vec![p, int(8)], Type::Void);
        assert_eq!(entry_places(&f)[1], ArgPlace::Register(reg::RDX));
        f.c_abi = true;
        assert_eq!(
            entry_places(&f),
            [ArgPlace::Register(reg::RDI), ArgPlace::Register(reg::RSI)]
        );
    }

    #[test]
    fn a_piece_narrower_than_the_value_is_not_the_whole_register() {
        // Option<u32> whose DWARF keeps only its tag (`DW_OP_reg5, DW_OP_piece 4`).
        let mut f = function(
            Language::Rust,
            vec![crate::test_support::option_u32()],
            Type::Void,
        );
        f.params[0].entry_location = Some(EntryLocation::Pieces(vec![(Some(5), 4)]));
        assert_eq!(
            entry_places(&f)[0],
            ArgPlace::Pieces(vec![Piece {
                offset: 0,
                size: 4,
                register: Ok(reg::RDI)
            }])
        );
    }

    #[test]
    fn return_values_are_in_rax_and_rdx_or_in_the_callers_memory() {
        let pair = strukt(16, vec![int(8), int(8)]);
        let c = function(Language::C, vec![], pair.clone());
        let whole = |offset, register| Piece {
            offset,
            size: 8,
            register: Ok(register),
        };
        assert_eq!(
            return_place(&c),
            ReturnPlace::Registers(vec![whole(0, reg::RAX), whole(8, reg::RDX)])
        );
        // { double; long }: the double in xmm0, the long in RAX.
        let mixed = strukt(16, vec![double(), int(8)]);
        let c = function(Language::C, vec![], mixed);
        assert_eq!(
            return_place(&c),
            ReturnPlace::Registers(vec![
                Piece {
                    offset: 0,
                    size: 8,
                    register: Err("xmm")
                },
                whole(8, reg::RAX)
            ])
        );
        let big = strukt(24, vec![int(8), int(8), int(8)]);
        assert_eq!(
            return_place(&function(Language::C, vec![], big.clone())),
            ReturnPlace::Memory
        );
        // Rust: a pair part by part, a 12-byte struct through memory.
        let rust = function(Language::Rust, vec![], crate::test_support::option_u32());
        let part = |offset, register| Piece {
            offset,
            size: 4,
            register: Ok(register),
        };
        assert_eq!(
            return_place(&rust),
            ReturnPlace::Registers(vec![part(0, reg::RAX), part(4, reg::RDX)])
        );
        let three = strukt(12, vec![int(4), int(4), int(4)]);
        assert_eq!(
            return_place(&function(Language::Rust, vec![], three)),
            ReturnPlace::Memory
        );
        // long double comes back in st0.
        assert_eq!(
            return_place(&function(Language::C, vec![], float(16))),
            ReturnPlace::Unavailable("x87")
        );
    }

    #[test]
    fn a_closure_environment_dwarf_leaves_out_still_takes_a_register() {
        // `|name: &&str| ...` capturing by reference: DWARF lists `name` alone, rustc passes
        // the environment's address in rdi and `name` in rsi.
        let name = Type::Pointer {
            pointee: Box::new(Type::Str),
        };
        let mut f = function(Language::Rust, vec![name.clone()], Type::Void);
        f.name = "{closure#0}".into();
        assert_eq!(entry_places(&f), [ArgPlace::Register(reg::RSI)]);
        // Listed (passed by value, zero-sized here): nothing hidden.
        let env = Type::Struct {
            name: "{closure_env#0}".into(),
            size: 0,
            fields: vec![],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        let mut f = function(Language::Rust, vec![env, name], Type::Void);
        f.name = "{closure#0}".into();
        assert_eq!(entry_places(&f)[1], ArgPlace::Register(reg::RDI));
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
        // The length is there: shown alone.
        assert_eq!(
            places[0],
            ArgPlace::Pieces(vec![
                Piece {
                    offset: 0,
                    size: 8,
                    register: Err("optimized out")
                },
                Piece {
                    offset: 8,
                    size: 8,
                    register: Ok(reg::RDI)
                }
            ])
        );
        assert_eq!(
            places[1],
            ArgPlace::Unavailable("non-standard calling convention")
        );
        f.params[1].entry_location = Some(EntryLocation::Register(4));
        assert_eq!(entry_places(&f)[1], ArgPlace::Register(reg::RSI));
    }

    fn float(size: u8) -> Type {
        Type::Float {
            name: "float".into(),
            size,
        }
    }

    #[test]
    fn eightbytes_are_classified_one_by_one() {
        // struct { float x; int y; }: one eightbyte holding an int: INTEGER.
        let mixed = strukt(8, vec![float(4), int(4)]);
        let f = function(Language::C, vec![mixed, int(4)], Type::Void);
        assert_eq!(
            entry_places(&f),
            [ArgPlace::Register(reg::RDI), ArgPlace::Register(reg::RSI)]
        );
        // struct { double d; long l; }: xmm0 + one general register.
        let split = strukt(16, vec![float(8), int(8)]);
        let f = function(Language::C, vec![split, int(4)], Type::Void);
        assert_eq!(
            entry_places(&f),
            [ArgPlace::Unavailable("xmm"), ArgPlace::Register(reg::RSI)]
        );
        // struct { float a, b; }: both in one SSE eightbyte, no general register.
        let floats = strukt(8, vec![float(4), float(4)]);
        let f = function(Language::C, vec![floats, int(4)], Type::Void);
        assert_eq!(entry_places(&f)[1], ArgPlace::Register(reg::RDI));
    }

    #[test]
    fn cpp_classes_that_are_not_trivial_go_by_reference() {
        let mut string = strukt(32, vec![int(8); 4]);
        if let Type::Struct { trivial, .. } = &mut string {
            *trivial = Some(false);
        }
        let f = function(Language::Cpp, vec![string.clone(), int(4)], Type::Void);
        assert_eq!(
            entry_places(&f),
            [ArgPlace::Indirect(reg::RDI), ArgPlace::Register(reg::RSI)]
        );
        // Returned too: the hidden return slot takes rdi.
        let f = function(Language::Cpp, vec![int(4)], string);
        assert_eq!(entry_places(&f), [ArgPlace::Register(reg::RSI)]);
    }

    #[test]
    fn uncertainty_stops_the_convention_for_what_follows() {
        let mut unknown = strukt(8, vec![int(8)]);
        if let Type::Struct { trivial, .. } = &mut unknown {
            *trivial = None;
        }
        let mut f = function(
            Language::Cpp,
            vec![int(4), unknown, int(4), int(4)],
            Type::Void,
        );
        f.params[3].entry_location = Some(EntryLocation::Register(2));
        let places = entry_places(&f);
        assert_eq!(places[0], ArgPlace::Register(reg::RDI));
        assert_eq!(
            places[1],
            ArgPlace::Unavailable("C++ class of unknown triviality")
        );
        assert_eq!(
            places[2],
            ArgPlace::Unavailable("after a parameter of uncertain passing")
        );
        assert_eq!(
            places[3],
            ArgPlace::Register(reg::RCX),
            "DWARF still says where"
        );
        let opaque = Type::Opaque {
            name: "?".into(),
            size: 0,
        };
        let f = function(Language::C, vec![opaque, int(4)], Type::Void);
        assert_eq!(
            entry_places(&f)[1],
            ArgPlace::Unavailable("after a parameter of uncertain passing")
        );
    }

    #[test]
    fn long_double_goes_on_an_aligned_stack_slot_and_returns_in_st0() {
        let f = function(Language::C, vec![int(4), float(16), int(4)], float(16));
        let places = entry_places(&f);
        assert_eq!(
            places[0],
            ArgPlace::Register(reg::RDI),
            "no hidden return pointer"
        );
        assert_eq!(
            places[1],
            ArgPlace::Stack(16),
            "16-byte aligned above the return address"
        );
        assert_eq!(places[2], ArgPlace::Register(reg::RSI));
    }

    #[test]
    fn empty_structs_take_nothing() {
        let empty = Type::Struct {
            name: "tag".into(),
            size: 1,
            fields: vec![],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        let f = function(Language::Cpp, vec![empty, int(4)], Type::Void);
        assert_eq!(
            entry_places(&f),
            [
                ArgPlace::Unavailable("zero-sized"),
                ArgPlace::Register(reg::RDI)
            ]
        );
    }
}

#[cfg(test)]
mod go_result_tests {
    use super::*;
    use crate::{symbols::types::Field, test_support::int};

    fn field(name: &str, offset: u64, ty: Type) -> Field {
        Field {
            name: name.into(),
            offset,
            ty,
        }
    }

    fn error() -> Type {
        Type::Interface {
            name: "error".into(),
            empty: false,
        }
    }

    #[test]
    fn go_results_take_registers_in_order_and_spill_whole_values() {
        let slice = Type::Slice {
            element: Box::new(Type::Str),
            go: true,
        };
        let order = Type::Struct {
            name: "main.Order".into(),
            size: 40,
            fields: vec![
                field("ID", 0, int(8, true)),
                field("Items", 8, slice.clone()),
                field("Total", 32, int(8, true)),
            ],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        // (Order, error): 5 words, then 2.
        assert_eq!(go_result_words(&order, 0), Ok((0, 5)));
        assert_eq!(go_result_words(&error(), 5), Ok((5, 2)));
        // A value that does not fit what is left goes to the stack as a whole.
        assert_eq!(go_result_words(&order, 5), Err("on the stack"));
        assert_eq!(go_result_words(&int(8, true), 8), Ok((8, 1)));
        assert_eq!(go_result_words(&Type::Str, 8), Err("on the stack"));
    }
}
