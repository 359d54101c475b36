//! Builders the unit tests share: DWARF types and functions as the DWARF reader would produce
//! them, so plan and calling-convention tests need no binary.

use crate::symbols::{
    dwarf::{FunctionDebug, Language, function::Parameter},
    types::{Discriminant, Field, Type, Variant},
};

/// An integer type named `int` of `size` bytes.
pub fn int(size: u8, signed: bool) -> Type {
    Type::Int {
        name: "int".into(),
        size,
        signed,
    }
}

/// A Rust `Option` of `payload` at `payload_at` in `size` bytes, as rustc lays it out: with a
/// tag of its own (`tag`: offset and size; 0 `None`, 1 `Some`), or with `None` in the payload's
/// niche (`tag` `None`: the payload's bytes are 0 for `None`).
pub fn option(payload: Type, payload_at: u64, tag: Option<(u64, u8)>, size: u64) -> Type {
    let (discriminant, some) = match tag {
        Some((offset, size)) => (Discriminant { offset, size }, Some(1)),
        None => (
            Discriminant {
                offset: payload_at,
                size: payload.size() as u8,
            },
            None,
        ),
    };
    Type::Variants {
        name: "Option<T>".into(),
        size,
        discriminant: Some(discriminant),
        variants: vec![
            Variant {
                name: "None".into(),
                value: Some(0),
                fields: vec![],
            },
            Variant {
                name: "Some".into(),
                value: some,
                fields: vec![Field {
                    name: "__0".into(),
                    offset: payload_at,
                    ty: payload,
                }],
            },
        ],
    }
}

/// Rust's `Option<u32>`: a 4-byte tag, the value at 4.
pub fn option_u32() -> Type {
    option(int(4, false), 4, Some((0, 4)), 8)
}

/// `double`.
pub fn double() -> Type {
    Type::Float {
        name: "double".into(),
        size: 8,
    }
}

/// `char *`.
pub fn c_string() -> Type {
    Type::Pointer {
        pointee: Box::new(Type::Char {
            name: "char".into(),
            size: 1,
            signed: true,
        }),
    }
}

/// A function `f` of `language` with these parameters (name, type) and return type, with no
/// DWARF locations and the standard calling convention.
pub fn function(language: Language, params: Vec<(String, Type)>, ret: Type) -> FunctionDebug {
    FunctionDebug {
        name: "f".into(),
        file: None,
        line: None,
        language,
        params: params
            .into_iter()
            .map(|(name, ty)| Parameter {
                name,
                ty,
                artificial: false,
                entry_location: None,
            })
            .collect(),
        return_type: ret,
        go_results: Vec::new(),
        standard_convention: true,
        c_abi: false,
    }
}
