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

/// Rust's `Option<u32>` as rustc lays it out: a 4-byte tag (0 `None`, 1 `Some`), the value at 4.
pub fn option_u32() -> Type {
    Type::Variants {
        name: "Option<u32>".into(),
        size: 8,
        discriminant: Some(Discriminant { offset: 0, size: 4 }),
        variants: vec![
            Variant {
                name: "None".into(),
                value: Some(0),
                fields: vec![],
            },
            Variant {
                name: "Some".into(),
                value: Some(1),
                fields: vec![Field {
                    name: "__0".into(),
                    offset: 4,
                    ty: int(4, false),
                }],
            },
        ],
    }
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
