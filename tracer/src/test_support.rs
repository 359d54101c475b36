//! Builders the unit tests share: DWARF types and functions as the DWARF reader would produce
//! them, so plan and calling-convention tests need no binary.

use crate::symbols::{
    dwarf::{FunctionDebug, Language, function::Parameter},
    types::Type,
};

/// An integer type named `int` of `size` bytes.
pub fn int(size: u8, signed: bool) -> Type {
    Type::Int {
        name: "int".into(),
        size,
        signed,
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
    }
}
