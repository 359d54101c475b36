//! How rustc represents a value in calls (its `BackendRepr`), read back from the layout DWARF
//! gives: a scalar (one register), a scalar pair (two registers, one per scalar, wherever
//! each sits in memory: an `Option<u32>` is its tag in one register and its value in the
//! next), or memory (its bytes in one register up to a pointer's size, else behind a
//! pointer). The rules are rustc's own (`rustc_abi::layout`): a struct with one non-empty
//! field is that field; one with two scalars laid out as a pair is a pair; an enum with a tag
//! and one scalar at the same place in every variant is a pair of the tag and that scalar; an
//! enum whose niche is in its one variant with data is that variant. What cannot be told from
//! DWARF (a type whose fields were not read) is unknown, never guessed.

use crate::symbols::types::{Field, Type};

/// A scalar as rustc's layout sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scalar {
    pub size: u64,
    /// Passed in a vector register, not a general one.
    pub float: bool,
    /// An address (a pointer or reference): one that an integer of its size may share a
    /// place with in an enum's variants.
    pub pointer: bool,
}

impl Scalar {
    fn align(self) -> u64 {
        self.size.clamp(1, 16).next_power_of_two()
    }
}

/// How rustc passes and returns a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repr {
    /// Nothing: zero-sized.
    Empty,
    /// One scalar at offset 0.
    Scalar(Scalar),
    /// Two scalars, the second at `second_at` bytes.
    Pair {
        first: Scalar,
        second: Scalar,
        second_at: u64,
    },
    /// Its bytes: in a general register when it fits one, else behind a pointer.
    Memory,
    /// Not known from what DWARF gave.
    Unknown,
}

/// The representation of a value of type `ty` in calls.
pub(crate) fn repr(ty: &Type) -> Repr {
    let scalar = |float: bool, pointer: bool| {
        Repr::Scalar(Scalar {
            size: ty.size(),
            float,
            pointer,
        })
    };
    match ty {
        Type::Void => Repr::Empty,
        _ if ty.size() == 0 => Repr::Empty,
        Type::Int { size: 16, .. } => Repr::Scalar(Scalar {
            size: 16,
            float: false,
            pointer: false,
        }),
        Type::Int { .. } | Type::Bool { .. } | Type::Char { .. } | Type::Enum { .. } => {
            scalar(false, false)
        }
        Type::Pointer { .. } => scalar(false, true),
        Type::Float { .. } => scalar(true, false),
        Type::Str | Type::Slice { go: false, .. } => Repr::Pair {
            first: Scalar {
                size: 8,
                float: false,
                pointer: true,
            },
            second: Scalar {
                size: 8,
                float: false,
                pointer: false,
            },
            second_at: 8,
        },
        Type::Array { .. } => Repr::Memory,
        Type::Struct {
            fields,
            union: false,
            size,
            ..
        } => {
            // A library value shown by its shape may have been read without its fields.
            if fields.is_empty() {
                return Repr::Unknown;
            }
            fields_repr(fields, *size)
        }
        Type::Struct { union: true, .. } => Repr::Memory,
        Type::Variants {
            discriminant,
            variants,
            size,
            ..
        } => match discriminant {
            None => match variants.as_slice() {
                [only] => fields_repr(&only.fields, *size),
                _ => Repr::Unknown,
            },
            Some(tag) => enum_repr(tag.offset, u64::from(tag.size), variants, *size),
        },
        Type::Slice { go: true, .. } | Type::Interface { .. } | Type::Opaque { .. } => {
            Repr::Unknown
        }
    }
}

/// Whether no scalar or scalar pair is `size` bytes: up to 16 bytes two scalars of 8 fit;
/// past 16 only a pair holding a 128-bit scalar, 16-byte aligned, which makes 32 bytes.
pub(crate) fn too_large_for_a_pair(size: u64) -> bool {
    size > 16 && size != 32
}

/// The representation of a struct of `fields` (or of one variant's data) of `size` bytes.
fn fields_repr(fields: &[Field], size: u64) -> Repr {
    let mut non_empty: Vec<&Field> = fields.iter().filter(|f| f.ty.size() > 0).collect();
    non_empty.sort_by_key(|f| f.offset);
    match non_empty.as_slice() {
        [] if size == 0 => Repr::Empty,
        // Bytes but no fields: they were not read (past the depth limit).
        [] => Repr::Unknown,
        // One field filling the struct: the struct is passed as the field is.
        [only] if only.offset == 0 && only.ty.size() == size => match repr(&only.ty) {
            known @ (Repr::Scalar(_) | Repr::Pair { .. } | Repr::Unknown) => known,
            _ => Repr::Memory,
        },
        // A field larger than any scalar is no half of a pair.
        [a, b] if a.ty.size() > 16 || b.ty.size() > 16 => Repr::Memory,
        [a, b] => match (repr(&a.ty), repr(&b.ty)) {
            (Repr::Scalar(first), Repr::Scalar(second)) => {
                pair(first, a.offset, second, b.offset, size)
            }
            (Repr::Unknown, _) | (_, Repr::Unknown) => Repr::Unknown,
            _ => Repr::Memory,
        },
        // Three fields or more, or one that does not fill the struct: memory, whatever they
        // are.
        _ => Repr::Memory,
    }
}

/// A pair of `first` at `first_at` and `second` at `second_at` in a value of `size` bytes,
/// if rustc would lay out its scalar pair the same way (else the value stays memory).
fn pair(first: Scalar, first_at: u64, second: Scalar, second_at: u64, size: u64) -> Repr {
    let expected_second = first.size.next_multiple_of(second.align());
    let align = first.align().max(second.align());
    let expected_size = (expected_second + second.size).next_multiple_of(align);
    if first_at == 0 && second_at == expected_second && size == expected_size {
        Repr::Pair {
            first,
            second,
            second_at,
        }
    } else {
        Repr::Memory
    }
}

/// The representation of an enum `ty` whose discriminant is `tag_size` bytes at `tag_at`.
fn enum_repr(
    tag_at: u64,
    tag_size: u64,
    variants: &[crate::symbols::types::Variant],
    size: u64,
) -> Repr {
    // A niche: the one variant with data is what the enum is passed as, when every other
    // variant is empty.
    if let Some(dataful) = variants.iter().find(|v| v.value.is_none()) {
        let others_empty = variants
            .iter()
            .filter(|v| v.value.is_some())
            .all(|v| v.fields.iter().all(|f| f.ty.size() == 0));
        if !others_empty {
            return Repr::Memory;
        }
        return match fields_repr(&dataful.fields, size) {
            known @ (Repr::Scalar(_) | Repr::Pair { .. } | Repr::Unknown) => known,
            _ => Repr::Memory,
        };
    }
    let tag = Scalar {
        size: tag_size,
        float: false,
        pointer: false,
    };
    if tag_at != 0 {
        return Repr::Memory;
    }
    if tag_size == size {
        return Repr::Scalar(tag);
    }
    // A tag and one scalar at the same place in every variant that has data.
    let mut common: Option<(Scalar, u64)> = None;
    for variant in variants {
        let data: Vec<&Field> = variant.fields.iter().filter(|f| f.ty.size() > 0).collect();
        let field = match data.as_slice() {
            [] => continue,
            [one] => *one,
            // Two fields in one variant: no pair of the tag and one scalar.
            _ => return Repr::Memory,
        };
        let scalar = match repr(&field.ty) {
            Repr::Scalar(scalar) => scalar,
            Repr::Unknown if field.ty.size() <= 16 => return Repr::Unknown,
            _ => return Repr::Memory,
        };
        common = match common {
            None => Some((scalar, field.offset)),
            Some((_, at)) if at != field.offset => return Repr::Memory,
            Some((old, at)) => match shared(old, scalar) {
                Some(kept) => Some((kept, at)),
                None => return Repr::Memory,
            },
        };
    }
    match common {
        Some((scalar, at)) => pair(tag, 0, scalar, at, size),
        // Bytes past the tag but no variant with fields: they were not read (past the depth
        // limit; an enum without data is DWARF's enumeration, not a variant part).
        None => Repr::Unknown,
    }
}

/// The scalar two variants' data can share a place as: equal ones, integers of one size
/// (the first's signedness), or an integer and a pointer of one size (the pointer).
fn shared(a: Scalar, b: Scalar) -> Option<Scalar> {
    match (a, b) {
        _ if a == b => Some(a),
        _ if a.float || b.float || a.size != b.size => None,
        _ if b.pointer => Some(b),
        _ => Some(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        symbols::types::{Discriminant, Variant},
        test_support::{double, int, option, option_u32},
    };

    fn field(name: &str, offset: u64, ty: Type) -> Field {
        Field {
            name: name.into(),
            offset,
            ty,
        }
    }

    fn strukt(size: u64, fields: Vec<Field>) -> Type {
        Type::Struct {
            name: "S".into(),
            size,
            fields,
            union: false,
            trivial: Some(true),
            shape: None,
        }
    }

    fn scalar(size: u64, pointer: bool) -> Scalar {
        Scalar {
            size,
            float: false,
            pointer,
        }
    }

    #[test]
    fn what_rustc_passes_in_two_registers() {
        // Option<u32>: tag and value, each in its register (rustc 1.95: edi, esi).
        assert_eq!(
            repr(&option_u32()),
            Repr::Pair {
                first: scalar(4, false),
                second: scalar(4, false),
                second_at: 4
            }
        );
        // struct P2 { x: i32, y: i32 }: a pair too.
        let p2 = strukt(
            8,
            vec![field("x", 0, int(4, true)), field("y", 4, int(4, true))],
        );
        assert!(matches!(repr(&p2), Repr::Pair { second_at: 4, .. }));
        // &str.
        assert!(matches!(repr(&Type::Str), Repr::Pair { second_at: 8, .. }));
    }

    #[test]
    fn only_a_pair_of_a_128_bit_scalar_is_larger_than_16_bytes() {
        assert!(!too_large_for_a_pair(16));
        assert!(too_large_for_a_pair(24), "a String: behind a pointer");
        assert!(!too_large_for_a_pair(32), "(u128, u64) is a pair");
        assert!(too_large_for_a_pair(40));
    }

    #[test]
    fn niches_take_the_representation_of_the_variant_with_data() {
        let pointer = Type::Pointer {
            pointee: Box::new(int(8, false)),
        };
        assert_eq!(
            repr(&option(pointer, 0, None, 8)),
            Repr::Scalar(scalar(8, true))
        );
        assert!(matches!(
            repr(&option(Type::Str, 0, None, 16)),
            Repr::Pair { .. }
        ));
    }

    #[test]
    fn the_rest_is_memory() {
        // Result<u32, u8>: the data of its variants at different places.
        let result = Type::Variants {
            name: "Result<u32, u8>".into(),
            size: 8,
            discriminant: Some(Discriminant { offset: 0, size: 1 }),
            variants: vec![
                Variant {
                    name: "Ok".into(),
                    value: Some(0),
                    fields: vec![field("__0", 4, int(4, false))],
                },
                Variant {
                    name: "Err".into(),
                    value: Some(1),
                    fields: vec![field("__0", 1, int(1, false))],
                },
            ],
        };
        assert_eq!(repr(&result), Repr::Memory);
        // Three fields, and arrays.
        let three = strukt(
            12,
            vec![
                field("a", 0, int(4, false)),
                field("b", 4, int(4, false)),
                field("c", 8, int(4, false)),
            ],
        );
        assert_eq!(repr(&three), Repr::Memory);
        let array = Type::Array {
            element: Box::new(int(2, false)),
            count: 4,
        };
        assert_eq!(repr(&array), Repr::Memory);
        // Two floats: a pair of vector registers.
        let f2 = strukt(16, vec![field("x", 0, double()), field("y", 8, double())]);
        assert!(matches!(
            repr(&f2),
            Repr::Pair {
                first: Scalar { float: true, .. },
                ..
            }
        ));
        // Fields not read: unknown.
        let unread = strukt(
            8,
            vec![field(
                "inner",
                0,
                Type::Opaque {
                    name: "…".into(),
                    size: 8,
                },
            )],
        );
        assert_eq!(repr(&unread), Repr::Unknown);
        // An enum whose variants' fields were not read: unknown, not memory.
        let Type::Variants {
            name,
            size,
            discriminant,
            mut variants,
        } = option_u32()
        else {
            unreachable!()
        };
        variants[1].fields.clear();
        let unread = Type::Variants {
            name,
            size,
            discriminant,
            variants,
        };
        assert_eq!(repr(&unread), Repr::Unknown);
    }
}
