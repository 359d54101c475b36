//! The types of parameters, as far as koolkit-trace needs them to capture and show values.
//!
//! A small, owned, bounded model built from DWARF: integers, bools, chars, floats, enums with
//! their enumerators, pointers, structs with their fields, arrays, Rust's `&str`/`&[T]` and
//! Rust's enums with data (their variants and where the discriminant is). Depth is bounded
//! when it is built, so self-referential types cannot recurse forever.

use serde::{Deserialize, Serialize};

/// A struct or union member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    /// Byte offset in the struct.
    pub offset: u64,
    pub ty: Type,
}

/// How a library type is shown instead of its fields: recognised by its name and checked
/// against its layout in DWARF (`symbols::dwarf::library_types`), never by fixed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum Shape {
    /// Elements behind a pointer: `std::string`, `std::string_view`, `std::vector<T>`, Rust's
    /// `String` and `Vec<T>`. The pointer to the first element is at byte `pointer_at` of the
    /// value; at `len_at` is the count of elements or, where `len_is_end`, the pointer past
    /// the last one.
    Sequence {
        pointer_at: u64,
        len_at: u64,
        len_is_end: bool,
        element: Box<Type>,
        /// Shown as a string: the elements are a string's bytes.
        text: bool,
    },
    /// A wrapper shown as its one member of interest at byte `at`: `std::array`'s elements,
    /// the pointer of a `std::unique_ptr` or a `std::shared_ptr`.
    Inner { at: u64, ty: Box<Type> },
    /// A pointer at byte `pointer_at` to a block whose value of interest is at `value_at`
    /// in it: a Rust `Rc` or `Arc` (the counts come first), shown as the pointer and the
    /// value.
    Pointee {
        pointer_at: u64,
        value_at: u64,
        ty: Box<Type>,
    },
    /// A string kept inside its object while short (libc++'s `std::string`): bit 0 of the
    /// byte at `at` is clear for the short form, whose length is that byte's other bits and
    /// whose text is at `short_data_at`; set for the long form, a pointer at `long_data_at`
    /// and a length at `long_len_at`. The object is `size` bytes.
    ShortOrLongText {
        at: u64,
        size: u64,
        short_data_at: u64,
        long_data_at: u64,
        long_len_at: u64,
    },
    /// A value that may be absent: `std::optional`, whose flag (a `bool` at `engaged_at`)
    /// says whether the value at `value_at` is there.
    Optional {
        engaged_at: u64,
        value_at: u64,
        ty: Box<Type>,
    },
}

/// Where an enum with data keeps which variant it holds: an unsigned integer of `size` bytes
/// at byte `offset` (a tag of its own, or a niche inside one variant's data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discriminant {
    pub offset: u64,
    pub size: u8,
}

/// One variant of an enum with data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    /// The discriminant's value that selects it; `None` for the variant that every value
    /// no other variant claims selects (the one whose data holds the niche).
    pub value: Option<u64>,
    /// Its fields, at their offsets in the whole enum (`__0`, `__1` for a tuple variant).
    pub fields: Vec<Field>,
}

/// A type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Type {
    Int {
        name: String,
        size: u8,
        signed: bool,
    },
    Bool {
        size: u8,
    },
    /// A character: C `char` (1 byte) or Rust `char` (4 bytes, a Unicode scalar).
    Char {
        name: String,
        size: u8,
        signed: bool,
    },
    Float {
        name: String,
        size: u8,
    },
    Enum {
        name: String,
        size: u8,
        signed: bool,
        enumerators: Vec<(i64, String)>,
    },
    Pointer {
        pointee: Box<Type>,
    },
    Struct {
        name: String,
        size: u64,
        fields: Vec<Field>,
        /// A union: every field at offset 0.
        union: bool,
        /// Whether a C++ class is trivial for the purposes of calls (no user copy or move
        /// constructor or destructor, no virtual table, members and bases alike): only such
        /// classes are passed in registers or copied onto the stack; the others go by
        /// invisible reference. `None` when DWARF does not let us tell. Always `Some(true)`
        /// for C.
        #[serde(default)]
        trivial: Option<bool>,
        /// A library type shown as what it holds rather than its fields (a `std::string` as
        /// its text); `None` for the rest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shape: Option<Shape>,
    },
    Array {
        element: Box<Type>,
        count: u64,
    },
    /// Rust `&str`: a (pointer, length) pair of UTF-8 bytes.
    Str,
    /// Rust `&[T]`: a (pointer, length) pair; Go `[]T`: (pointer, length, capacity).
    Slice {
        element: Box<Type>,
        /// Go's: a capacity word follows the length.
        go: bool,
    },
    /// A Go interface, `name` as the program spells it (`error`, `io.Reader`,
    /// `interface {}`): two words, the type (for an `empty` one, `interface {}`/`any`, the type
    /// descriptor; otherwise the `itab` whose second word is) and the data pointer.
    Interface {
        name: String,
        empty: bool,
    },
    /// A Rust enum with data (`Option<T>`, `Result<T, E>`, one of the program's own), as
    /// DWARF's variant part describes it. `discriminant` is `None` for an enum of one variant.
    Variants {
        name: String,
        size: u64,
        discriminant: Option<Discriminant>,
        variants: Vec<Variant>,
    },
    /// No value (`void`, `()`).
    Void,
    /// Anything else, or something past the depth limit.
    Opaque {
        name: String,
        size: u64,
    },
}

impl Type {
    /// Size in bytes of a value of this type.
    pub fn size(&self) -> u64 {
        match self {
            Self::Int { size, .. }
            | Self::Bool { size }
            | Self::Char { size, .. }
            | Self::Float { size, .. }
            | Self::Enum { size, .. } => u64::from(*size),
            Self::Pointer { .. } => 8,
            Self::Struct { size, .. } | Self::Opaque { size, .. } | Self::Variants { size, .. } => {
                *size
            }
            Self::Array { element, count } => element.size().saturating_mul(*count),
            Self::Slice { go: true, .. } => 24,
            Self::Str | Self::Slice { .. } | Self::Interface { .. } => 16,
            Self::Void => 0,
        }
    }

    /// The type as a Go developer writes it: `string`, `*main.Point`, `[]int`, `[4]byte`.
    pub fn go_name(&self) -> String {
        match self {
            Self::Str => "string".into(),
            Self::Pointer { pointee } if matches!(**pointee, Self::Void) => "unsafe.Pointer".into(),
            Self::Pointer { pointee } => format!("*{}", pointee.go_name()),
            Self::Slice { element, .. } => format!("[]{}", element.go_name()),
            Self::Array { element, count } => format!("[{count}]{}", element.go_name()),
            other => other.name(),
        }
    }

    /// The type as a developer writes it (C-ish, or Rust for Rust-only types).
    pub fn name(&self) -> String {
        match self {
            Self::Int { name, .. }
            | Self::Char { name, .. }
            | Self::Float { name, .. }
            | Self::Enum { name, .. }
            | Self::Opaque { name, .. } => name.clone(),
            Self::Struct { name, .. }
            | Self::Interface { name, .. }
            | Self::Variants { name, .. } => name.clone(),
            Self::Bool { .. } => "bool".into(),
            Self::Pointer { pointee } => format!("{} *", pointee.name()),
            Self::Array { element, count } => format!("{}[{count}]", element.name()),
            Self::Str => "&str".into(),
            Self::Slice { element, go: true } => match **element {
                // A Go slice holds Go strings (the one `Str` is Rust's `&str` elsewhere).
                Self::Str => "[]string".into(),
                _ => format!("[]{}", element.name()),
            },
            Self::Slice { element, .. } => format!("&[{}]", element.name()),
            Self::Void => "void".into(),
        }
    }

    /// The alignment of a value of this type in bytes, as the compiler lays it out by
    /// default: a scalar's size, the largest of its members' for an aggregate.
    pub fn align(&self) -> u64 {
        match self {
            Self::Int { size, .. }
            | Self::Bool { size }
            | Self::Char { size, .. }
            | Self::Float { size, .. }
            | Self::Enum { size, .. } => u64::from(*size).clamp(1, 16).next_power_of_two(),
            Self::Pointer { .. } | Self::Str | Self::Slice { .. } | Self::Interface { .. } => 8,
            Self::Struct { fields, .. } => fields.iter().map(|f| f.ty.align()).max().unwrap_or(1),
            Self::Variants {
                discriminant,
                variants,
                ..
            } => variants
                .iter()
                .flat_map(|v| &v.fields)
                .map(|f| f.ty.align())
                .chain(discriminant.map(|d| u64::from(d.size).next_power_of_two()))
                .max()
                .unwrap_or(1),
            Self::Array { element, .. } => element.align(),
            Self::Opaque { .. } | Self::Void => 1,
        }
    }

    /// Whether this is a pointer to 1-byte characters: a C string.
    pub fn is_c_string(&self) -> bool {
        matches!(self, Self::Pointer { pointee } if matches!(**pointee, Self::Char { size: 1, .. }))
    }

    /// Whether the value is a scalar that fits one general register.
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Self::Int { .. }
                | Self::Bool { .. }
                | Self::Char { .. }
                | Self::Enum { .. }
                | Self::Pointer { .. }
        )
    }

    /// The field `name` of a struct, of the struct a pointer points to, or of one of an
    /// enum's variants.
    pub fn field(&self, name: &str) -> Option<&Field> {
        match self {
            Self::Struct { fields, .. } => fields.iter().find(|f| f.name == name),
            Self::Pointer { pointee } => pointee.field(name),
            Self::Variants { variants, .. } => variants
                .iter()
                .find_map(|v| v.fields.iter().find(|f| f.name == name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(size: u8, signed: bool) -> Type {
        Type::Int {
            name: if signed { "int" } else { "unsigned int" }.into(),
            size,
            signed,
        }
    }

    #[test]
    fn sizes_and_names() {
        let c_string = Type::Pointer {
            pointee: Box::new(Type::Char {
                name: "char".into(),
                size: 1,
                signed: true,
            }),
        };
        assert!(c_string.is_c_string());
        assert_eq!(c_string.name(), "char *");
        assert_eq!(c_string.size(), 8);
        let request = Type::Struct {
            name: "request".into(),
            size: 16,
            fields: vec![
                Field {
                    name: "path".into(),
                    offset: 0,
                    ty: c_string,
                },
                Field {
                    name: "len".into(),
                    offset: 8,
                    ty: int(4, true),
                },
            ],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        let pointer = Type::Pointer {
            pointee: Box::new(request.clone()),
        };
        assert_eq!(pointer.field("len").unwrap().offset, 8);
        assert!(pointer.field("nope").is_none());
        assert!(!pointer.is_c_string());
        assert_eq!(
            Type::Array {
                element: Box::new(int(4, false)),
                count: 3
            }
            .size(),
            12
        );
        assert_eq!(Type::Str.size(), 16);
        assert!(int(8, true).is_scalar() && !request.is_scalar());
    }

    #[test]
    fn types_round_trip_through_json() {
        let ty = Type::Enum {
            name: "color".into(),
            size: 4,
            signed: false,
            enumerators: vec![(0, "RED".into()), (1, "GREEN".into())],
        };
        let json = serde_json::to_string(&ty).unwrap();
        assert_eq!(serde_json::from_str::<Type>(&json).unwrap(), ty);
    }
}
