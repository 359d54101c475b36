//! The user's half of a plan, as trace files store it: which argument each payload slot holds
//! and how to show it. These types are part of the trace-file schema (`docs/trace-format.md`;
//! `tracer/tests/golden.rs` pins them): rename nothing here without a new format version.

use serde::{Deserialize, Serialize};

/// How captured bytes are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Render {
    /// A raw 64-bit register whose type is unknown: small values in decimal, others in hex.
    RawWord,
    Int {
        size: u8,
        signed: bool,
    },
    Bool,
    Char {
        size: u8,
        signed: bool,
    },
    Enum {
        size: u8,
        signed: bool,
        enumerators: Vec<(i64, String)>,
    },
    Pointer,
    Float {
        size: u8,
    },
    /// `u32` length then bytes (`u32::MAX` length: a NULL pointer).
    CString,
    /// `u64` length then up to the slot's size of UTF-8 bytes.
    Str,
    /// `u64` length of a slice, then (for byte slices) its first bytes.
    Slice {
        bytes: bool,
    },
    /// The name of a Go type descriptor: `u64` length (`u64::MAX`: none) then its bytes.
    GoTypeName,
    /// A sequence (a `std::vector`, a Rust `Vec` or `&[T]`): a `u64` length in units of
    /// `element_size` bytes, then its first elements, each shown as `element` (`None`: the
    /// length alone).
    Sequence {
        element: Option<Box<Render>>,
        element_size: u16,
    },
    /// A fixed array of `count` elements of `element` bytes each.
    Array {
        element: Box<Render>,
        element_size: u8,
        count: u16,
        text: bool,
    },
    /// A struct read whole, each field from its bytes: an element of an array or a sequence
    /// of structs.
    Fields {
        fields: Vec<FieldRender>,
    },
    /// `width` bits from bit `shift` of a little-endian integer of `size` bytes, unsigned.
    Bits {
        size: u8,
        shift: u8,
        width: u8,
    },
    /// Text kept inside an object (a short libc++ `std::string`): the object's bytes, whose
    /// byte `len_at` shifted right by `len_shift` is the length of the text at `data_at`.
    InlineText {
        len_at: u16,
        len_shift: u8,
        data_at: u16,
    },
}

/// One field of [`Render::Fields`]: `size` bytes at `offset` of the struct's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRender {
    pub name: String,
    pub offset: u16,
    pub size: u16,
    pub render: Render,
}

/// What kind of value an enum with data is, for JSON: an optional value (Rust's `Option`,
/// `std::optional`: `{"some": v}` or `null`), a result (`{"ok": v}`, `{"err": e}`), or any
/// other (`{"Variant": ...}`, a unit variant as its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Optional,
    Result,
    Enum,
    /// One value kept in one of several layouts (libc++'s short and long strings): shown
    /// as the value, whatever its layout.
    Layout,
}

/// One variant of an enum with data and the slots of its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantSlot {
    /// Its name; empty for the value of a `std::optional`, shown bare.
    pub name: String,
    /// The discriminant's value that selects it; `None` for the one any other value selects.
    pub value: Option<u64>,
    pub fields: Vec<ArgSlot>,
}

/// One argument (or struct field) and where its value is in the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSlot {
    pub name: String,
    pub value: SlotValue,
}

/// What an argument slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SlotValue {
    /// `size` bytes at `offset` of the payload, valid when step `step`'s status is OK.
    Captured {
        offset: u16,
        size: u16,
        step: u8,
        render: Render,
    },
    /// A struct: its fields, and the pointer it was reached through, if any.
    Struct {
        pointer: Option<Box<SlotValue>>,
        fields: Vec<ArgSlot>,
    },
    /// A Go interface: its type word (NULL: nil), the name of its dynamic type, its data
    /// word and, for an `error`, the message its data starts with (what `errors.New` and
    /// `fmt.Errorf` make; shown for those types only).
    Interface {
        type_word: Box<SlotValue>,
        type_name: Box<SlotValue>,
        data: Box<SlotValue>,
        message: Option<Box<SlotValue>>,
    },
    /// A slice by its length and its first elements (a Go `[]string`'s first strings).
    Elements {
        len: Box<SlotValue>,
        items: Vec<SlotValue>,
    },
    /// The first elements of a fixed array of `count`, each read on its own (strings).
    Items { count: u64, items: Vec<SlotValue> },
    /// An enum with data: the discriminant (`None`: one variant) and every variant's
    /// fields, of which the discriminant picks the one to show.
    Variants {
        family: Family,
        discriminant: Option<Box<SlotValue>>,
        variants: Vec<VariantSlot>,
    },
    /// A string whose pointer the optimiser dropped: its length alone.
    LengthOnly { len: Box<SlotValue> },
    /// Not captured, and why (`xmm`, `plan full`, ...).
    Missing { reason: String },
}

/// How the return register is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReturnValue {
    Register {
        render: Render,
    },
    /// Read by steps at the return: a value in RAX and RDX (a pair, a small struct), or in
    /// memory the caller gave (a large struct, a `std::string`), whose address the caller
    /// passed as `hidden` (RDI at the entry) and RAX holds at the return.
    Captured {
        value: SlotValue,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hidden: Option<SlotValue>,
    },
    /// Returned where a probe cannot read it (a vector register, a struct).
    Missing {
        reason: String,
    },
}
