//! Reading captured values back out of a call's payload, by the plan's slots, and showing them:
//! as text for humans (`name="abc"`, `color=GREEN`, `req=0x55… {len=3}`) and as JSON.
//!
//! The payload came from the kernel: every read is bounds-checked, and a slot that does not fit
//! shows as `<missing>` rather than panicking.

use serde_json::{Map, Value as Json, json};
use tracer_ebpf::step_status;

#[cfg(test)]
use crate::plan::slots::FieldRender;
use crate::plan::{ArgSlot, Family, Render, ReturnValue, SlotValue, VariantSlot};

/// A value decoded from the payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Raw(u64),
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
    Char(char),
    Enum {
        value: i64,
        name: Option<String>,
    },
    Pointer(u64),
    Float(f64),
    /// A string's bytes as the program held them (UTF-8 or not), and whether it was cut
    /// short (at `--string-size`, or before a page that could not be read).
    Text {
        bytes: Vec<u8>,
        truncated: bool,
    },
    Null,
    Slice {
        len: u64,
        bytes: Option<Vec<u8>>,
    },
    Array(Vec<Decoded>),
    Struct {
        pointer: Option<Box<Decoded>>,
        fields: Vec<(String, Decoded)>,
    },
    /// A Go interface that holds nothing.
    Nil,
    /// The first elements of a sequence that ran into an unreadable page: its length is not
    /// known (the kernel counted the bytes it could copy instead).
    CutElements(Vec<Decoded>),
    /// A slice's length and its first elements (no more than the length).
    Elements {
        len: u64,
        items: Vec<Decoded>,
    },
    /// A Go interface: the name of its dynamic type (None: unreadable), its data pointer and,
    /// for the errors whose value starts with their message, the message.
    Interface {
        type_name: Option<String>,
        data: Box<Decoded>,
        message: Option<Box<Decoded>>,
    },
    /// A variant of an enum with data (`Some(3)`, `Err("no such order")`, `Circle(1.5)`, a
    /// `std::optional`'s value), with its fields.
    Variant {
        family: Family,
        name: String,
        fields: Vec<(String, Decoded)>,
    },
    /// A string whose pointer the optimiser dropped: its length alone.
    LengthOnly(Box<Decoded>),
    /// The kernel could not read the memory.
    Unreadable,
    /// Not captured, with the reason.
    Missing(String),
}

fn bytes_at(payload: &[u8], offset: u16, size: u16) -> Option<&[u8]> {
    payload.get(offset as usize..offset as usize + size as usize)
}

fn word(bytes: &[u8], size: usize) -> Option<u64> {
    let bytes = bytes.get(..size)?;
    let mut buffer = [0u8; 8];
    buffer[..size].copy_from_slice(bytes);
    Some(u64::from_le_bytes(buffer))
}

/// The low `size` bytes of `value` as a signed integer.
pub fn sign_extend(value: u64, size: u8) -> i64 {
    let bits = u32::from(size.clamp(1, 8)) * 8;
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

fn truncate(value: u64, size: u8) -> u64 {
    if size >= 8 {
        value
    } else {
        value & ((1u64 << (u32::from(size) * 8)) - 1)
    }
}

/// Decodes `render` from the little-endian `bytes` it was copied from: a scalar, or a struct or
/// array of them read whole.
pub fn decode_scalar(bytes: &[u8], render: &Render) -> Decoded {
    match render {
        Render::Fields { fields } => {
            return Decoded::Struct {
                pointer: None,
                fields: fields
                    .iter()
                    .map(|field| {
                        let start = usize::from(field.offset);
                        let value = match bytes.get(start..start + usize::from(field.size)) {
                            Some(part) => decode_scalar(part, &field.render),
                            None => Decoded::Missing("short".into()),
                        };
                        (field.name.clone(), value)
                    })
                    .collect(),
            };
        }
        Render::Array {
            element,
            element_size,
            count,
            text: is_text,
        } => return decode_array(bytes, element, *element_size, *count, *is_text),
        Render::InlineText {
            len_at,
            len_shift,
            data_at,
        } => {
            let Some(&len) = bytes.get(usize::from(*len_at)) else {
                return Decoded::Missing("short".into());
            };
            let len = usize::from(len.checked_shr(u32::from(*len_shift)).unwrap_or(0));
            let data = bytes.get(usize::from(*data_at)..).unwrap_or_default();
            return text(&data[..len.min(data.len())], len > data.len());
        }
        Render::Bits { size, shift, width } => {
            let Some(raw) = word(bytes, usize::from(*size).min(8).min(bytes.len())) else {
                return Decoded::Missing("short".into());
            };
            let mask = match width {
                64.. => u64::MAX,
                w => (1u64 << w) - 1,
            };
            return Decoded::Unsigned(raw.checked_shr(u32::from(*shift)).unwrap_or(0) & mask);
        }
        _ => {}
    }
    let size = bytes.len().min(8);
    let Some(raw) = word(bytes, size) else {
        return Decoded::Missing("short".into());
    };
    match render {
        Render::RawWord => Decoded::Raw(raw),
        Render::Int { size, signed: true } => Decoded::Signed(sign_extend(raw, *size)),
        Render::Int {
            size,
            signed: false,
        } => Decoded::Unsigned(truncate(raw, *size)),
        Render::Bool => Decoded::Bool(truncate(raw, 1) != 0),
        Render::Char { size: 1, signed } => {
            // A C char: a letter when it is one, else the small number it is used as.
            let byte = truncate(raw, 1) as u8;
            match byte {
                0x20..=0x7e | b'\n' | b'\t' | b'\r' | 0 => Decoded::Char(char::from(byte)),
                _ if *signed => Decoded::Signed(sign_extend(raw, 1)),
                _ => Decoded::Unsigned(u64::from(byte)),
            }
        }
        Render::Char { size, .. } => {
            let code = truncate(raw, *size) as u32;
            char::from_u32(code).map_or(Decoded::Unsigned(u64::from(code)), Decoded::Char)
        }
        Render::Enum {
            size,
            signed,
            enumerators,
        } => {
            let value = if *signed {
                sign_extend(raw, *size)
            } else {
                truncate(raw, *size) as i64
            };
            let name = enumerators
                .iter()
                .find(|(v, _)| *v == value)
                .map(|(_, n)| n.clone());
            Decoded::Enum { value, name }
        }
        Render::Pointer if raw == 0 => Decoded::Null,
        Render::Pointer => Decoded::Pointer(raw),
        Render::Float { size: 4 } => Decoded::Float(f64::from(f32::from_bits(raw as u32))),
        Render::Float { .. } => Decoded::Float(f64::from_bits(raw)),
        _ => Decoded::Missing("not a scalar".into()),
    }
}

fn text(bytes: &[u8], truncated: bool) -> Decoded {
    Decoded::Text {
        bytes: bytes.to_vec(),
        truncated,
    }
}

fn decode_captured(payload: &[u8], offset: u16, size: u16, step: u8, render: &Render) -> Decoded {
    let status = payload.get(step as usize).copied();
    match status {
        Some(step_status::FAULT) => return Decoded::Unreadable,
        Some(step_status::AT_RETURN) => return Decoded::Missing("not returned".into()),
        _ => {}
    }
    // The string ran into an unreadable page: its length field counts the bytes before it.
    let partial = status == Some(step_status::PARTIAL);
    let Some(slot) = bytes_at(payload, offset, size) else {
        return Decoded::Missing("short payload".into());
    };
    match render {
        Render::CString => {
            let Some(length) = word(slot, 4) else {
                return Decoded::Missing("short".into());
            };
            if length == u64::from(u32::MAX) {
                return Decoded::Null;
            }
            let bytes = &slot[4..];
            // The slot holds one byte more than is shown, and the NUL.
            let shown = bytes.len().saturating_sub(2);
            if partial {
                let valid = &bytes[..(length as usize).min(shown)];
                let end = valid.iter().position(|&b| b == 0).unwrap_or(valid.len());
                return text(&valid[..end], true);
            }
            let length = length as usize;
            text(&bytes[..length.min(shown)], length > shown)
        }
        Render::Str | Render::Slice { .. } | Render::GoTypeName => {
            let Some(length) = word(slot, 8) else {
                return Decoded::Missing("short".into());
            };
            if *render == Render::GoTypeName && length == u64::MAX {
                return Decoded::Nil;
            }
            let bytes = &slot[8..];
            let copied = (length.min(bytes.len() as u64)) as usize;
            let truncated = partial || length > copied as u64;
            match render {
                Render::Str | Render::GoTypeName => text(&bytes[..copied], truncated),
                // A slice cut short by an unreadable page has a length of its own we lost.
                Render::Slice { bytes: true } if partial => text(&bytes[..copied], true),
                Render::Slice { bytes: true } => Decoded::Slice {
                    len: length,
                    bytes: Some(bytes[..copied].to_vec()),
                },
                _ => Decoded::Slice {
                    len: length,
                    bytes: None,
                },
            }
        }
        Render::Sequence {
            element,
            element_size,
        } => {
            let Some(length) = word(slot, 8) else {
                return Decoded::Missing("short".into());
            };
            let len = length / u64::from((*element_size).max(1));
            let Some(element) = element else {
                return Decoded::Slice { len, bytes: None };
            };
            let size = usize::from((*element_size).max(1));
            // Elements before the end of the copy (an unreadable page may have cut it short).
            let copied = (length.min((slot.len() - 8) as u64)) as usize / size;
            let items = slot[8..]
                .chunks(size)
                .take(copied)
                .map(|chunk| decode_scalar(chunk, element))
                .collect();
            if partial {
                return Decoded::CutElements(items);
            }
            Decoded::Elements { len, items }
        }
        other => decode_scalar(slot, other),
    }
}

/// A fixed array of `count` elements of `element_size` bytes from `bytes`; text up to its
/// first NUL when `is_text`.
fn decode_array(
    bytes: &[u8],
    element: &Render,
    element_size: u8,
    count: u16,
    is_text: bool,
) -> Decoded {
    if is_text {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        return text(&bytes[..end], false);
    }
    Decoded::Array(
        bytes
            .chunks(usize::from(element_size.max(1)))
            .take(usize::from(count))
            .map(|chunk| decode_scalar(chunk, element))
            .collect(),
    )
}

/// Decodes slot `value` from `payload`.
pub fn decode(payload: &[u8], value: &SlotValue) -> Decoded {
    match value {
        SlotValue::Captured {
            offset,
            size,
            step,
            render,
        } => decode_captured(payload, *offset, *size, *step, render),
        SlotValue::Struct { pointer, fields } => {
            let pointer = pointer.as_ref().map(|p| Box::new(decode(payload, p)));
            // Through a NULL pointer there are no fields to show.
            if matches!(pointer.as_deref(), Some(Decoded::Null)) {
                return Decoded::Null;
            }
            Decoded::Struct {
                pointer,
                fields: fields
                    .iter()
                    .map(|f| (f.name.clone(), decode(payload, &f.value)))
                    .collect(),
            }
        }
        SlotValue::Interface {
            type_word,
            type_name,
            data,
            message,
        } => decode_interface(payload, type_word, type_name, data, message.as_deref()),
        SlotValue::Elements { len, items } => match decode(payload, len) {
            Decoded::Slice { len, .. } => elements(payload, len, items),
            Decoded::Signed(len) => elements(payload, len.max(0) as u64, items),
            other => other,
        },
        SlotValue::Items { count, items } => {
            let items: Vec<Decoded> = items.iter().map(|item| decode(payload, item)).collect();
            if items.len() as u64 == *count {
                Decoded::Array(items)
            } else {
                Decoded::Elements { len: *count, items }
            }
        }
        SlotValue::Variants {
            family,
            discriminant,
            variants,
        } => decode_variant(payload, *family, discriminant.as_deref(), variants),
        SlotValue::LengthOnly { len } => Decoded::LengthOnly(Box::new(decode(payload, len))),
        SlotValue::Missing { reason } => Decoded::Missing(reason.clone()),
    }
}

/// The variant the discriminant picks, with its fields; the only one when there is no
/// discriminant.
fn decode_variant(
    payload: &[u8],
    family: Family,
    discriminant: Option<&SlotValue>,
    variants: &[VariantSlot],
) -> Decoded {
    let chosen = match discriminant {
        None => variants.first(),
        Some(slot) => match decode(payload, slot) {
            Decoded::Unsigned(value) => match variants.iter().find(|v| v.value == Some(value)) {
                Some(variant) => Some(variant),
                None => match variants.iter().find(|v| v.value.is_none()) {
                    Some(other) => Some(other),
                    None => return Decoded::Missing(format!("unknown variant {value}")),
                },
            },
            // The discriminant could not be read: neither can the variant.
            other => return other,
        },
    };
    let Some(variant) = chosen else {
        return Decoded::Missing("no variant".into());
    };
    Decoded::Variant {
        family,
        name: variant.name.clone(),
        fields: variant
            .fields
            .iter()
            .map(|f| (f.name.clone(), decode(payload, &f.value)))
            .collect(),
    }
}

/// Appends the human forms of `items`, separated by `, `.
fn write_list<'a>(out: &mut String, items: impl IntoIterator<Item = &'a Decoded>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item.write_human(out);
    }
}

/// Appends a tuple's values in order: `(4, 2)`.
fn write_tuple(out: &mut String, fields: &[(String, Decoded)]) {
    out.push('(');
    write_list(out, fields.iter().map(|(_, value)| value));
    out.push(')');
}

/// Appends fields by name: `{x=3, y=4}`.
fn write_fields(out: &mut String, fields: &[(String, Decoded)]) {
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        value.write_human(out);
    }
    out.push('}');
}

/// Fields as JSON: a tuple's as an array, any other's as an object by name.
fn fields_json(fields: &[(String, Decoded)]) -> Json {
    if !fields.is_empty() && is_tuple(fields) {
        return Json::Array(fields.iter().map(|(_, value)| value.to_json()).collect());
    }
    Json::Object(
        fields
            .iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect(),
    )
}

/// Whether `fields` are a tuple's (`__0`, `__1`, ...), shown by position.
fn is_tuple(fields: &[(String, Decoded)]) -> bool {
    fields
        .iter()
        .enumerate()
        .all(|(i, (name, _))| name.strip_prefix("__") == Some(&i.to_string()))
}

/// The first `items` of a slice of `len` elements.
fn elements(payload: &[u8], len: u64, items: &[SlotValue]) -> Decoded {
    let shown = items.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    Decoded::Elements {
        len,
        items: items[..shown]
            .iter()
            .map(|item| decode(payload, item))
            .collect(),
    }
}

/// The dynamic types whose value starts with the error's message (a Go string), which the
/// interface's message slot reads.
const MESSAGE_FIRST_ERRORS: [&str; 3] =
    ["*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors"];

fn decode_interface(
    payload: &[u8],
    type_word: &SlotValue,
    type_name: &SlotValue,
    data: &SlotValue,
    message: Option<&SlotValue>,
) -> Decoded {
    match decode(payload, type_word) {
        Decoded::Null => return Decoded::Nil,
        Decoded::Pointer(_) => {}
        // The interface itself could not be read.
        other => return other,
    }
    let type_name = match decode(payload, type_name) {
        Decoded::Text {
            bytes,
            truncated: false,
        } => String::from_utf8(bytes).ok(),
        _ => None,
    };
    let message = message
        .filter(|_| {
            type_name
                .as_deref()
                .is_some_and(|name| MESSAGE_FIRST_ERRORS.contains(&name))
        })
        .map(|slot| Box::new(decode(payload, slot)));
    Decoded::Interface {
        type_name,
        data: Box::new(decode(payload, data)),
        message,
    }
}

/// The goroutine id a Go call's payload holds at `slot`; None where it could not be read.
pub fn decode_goroutine(payload: &[u8], slot: &SlotValue) -> Option<u64> {
    decode_word(payload, slot)
}

/// The unsigned word in `slot` (a goroutine id, a stack id), if it was captured.
pub fn decode_word(payload: &[u8], slot: &SlotValue) -> Option<u64> {
    match decode(payload, slot) {
        Decoded::Unsigned(id) => Some(id),
        _ => None,
    }
}

/// Decodes the return value: the return register `ret`, or what the return's steps read into
/// `payload`.
pub fn decode_return(ret: u64, payload: &[u8], how: &ReturnValue) -> Decoded {
    match how {
        ReturnValue::Register { render } => decode_scalar(&ret.to_le_bytes(), render),
        ReturnValue::Captured { value, hidden } => {
            // Read through RAX: only the caller's memory if RAX is the address it passed.
            if let Some(hidden) = hidden {
                match decode(payload, hidden) {
                    Decoded::Pointer(address) if address == ret => {}
                    Decoded::Pointer(_) | Decoded::Null => {
                        return Decoded::Missing("result not where the caller asked".into());
                    }
                    other => return other,
                }
            }
            decode(payload, value)
        }
        ReturnValue::Missing { reason } => Decoded::Missing(reason.clone()),
    }
}

/// A raw register: decimal when it reads as a small signed number, else hex.
pub fn render_raw_word(word: u64) -> String {
    let signed = word as i64;
    if (-65536..=0xffff_ffff).contains(&signed) {
        signed.to_string()
    } else {
        format!("{word:#x}")
    }
}

/// `bytes` in double quotes, escaped as C and Rust write strings: UTF-8 as it is, control
/// characters and bytes that are not UTF-8 as `\xNN`.
fn quote(bytes: &[u8], out: &mut String) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
}

/// A string as JSON (documented in the README): a JSON string when it is whole UTF-8;
/// otherwise `{"text": lossy, "truncated": true}` and/or `"hex"` with the exact bytes.
fn text_json(bytes: &[u8], truncated: bool) -> Json {
    let utf8 = std::str::from_utf8(bytes);
    if let (Ok(text), false) = (utf8, truncated) {
        return json!(text);
    }
    let mut object = Map::new();
    object.insert("text".into(), json!(String::from_utf8_lossy(bytes)));
    if truncated {
        object.insert("truncated".into(), json!(true));
    }
    if utf8.is_err() {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        object.insert("hex".into(), json!(hex));
    }
    Json::Object(object)
}

impl Decoded {
    /// Appends the human form.
    pub fn write_human(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Self::Raw(word) => out.push_str(&render_raw_word(*word)),
            Self::Signed(v) => {
                let _ = write!(out, "{v}");
            }
            Self::Unsigned(v) => {
                let _ = write!(out, "{v}");
            }
            Self::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Self::Char(c) => {
                let _ = write!(out, "{c:?}");
            }
            Self::Enum { value, name } => match name {
                Some(name) => out.push_str(name),
                None => {
                    let _ = write!(out, "{value}");
                }
            },
            Self::Pointer(p) => {
                let _ = write!(out, "{p:#x}");
            }
            Self::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Self::Text { bytes, truncated } => {
                quote(bytes, out);
                if *truncated {
                    out.push('…');
                }
            }
            Self::Null => out.push_str("NULL"),
            Self::Slice { len, bytes } => match bytes {
                Some(bytes) => {
                    out.push('b');
                    quote(bytes, out);
                    if *len as usize > bytes.len() {
                        out.push('…');
                    }
                }
                None => {
                    let _ = write!(out, "[{len} items]");
                }
            },
            Self::Array(items) => {
                out.push('[');
                write_list(out, items);
                out.push(']');
            }
            // A tuple: its values in order.
            Self::Struct {
                pointer: None,
                fields,
            } if !fields.is_empty() && is_tuple(fields) => write_tuple(out, fields),
            Self::Struct { pointer, fields } => {
                if let Some(pointer) = pointer {
                    pointer.write_human(out);
                    out.push(' ');
                }
                write_fields(out, fields);
            }
            Self::Nil => out.push_str("nil"),
            Self::CutElements(items) => {
                out.push('[');
                write_list(out, items);
                out.push_str(if items.is_empty() { "…]" } else { ", …]" });
            }
            Self::Elements { len, items } => {
                out.push('[');
                write_list(out, items);
                if (items.len() as u64) < *len {
                    if !items.is_empty() {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "… {} more", len - items.len() as u64);
                }
                out.push(']');
            }
            Self::Interface {
                type_name,
                data,
                message,
            } => {
                out.push_str(type_name.as_deref().unwrap_or("<unreadable type>"));
                out.push('(');
                match message {
                    Some(message) => message.write_human(out),
                    None => data.write_human(out),
                }
                out.push(')');
            }
            Self::Variant { name, fields, .. } => match fields.as_slice() {
                // A `std::optional`'s value, bare.
                [(_, value)] if name.is_empty() => value.write_human(out),
                [] => out.push_str(name),
                _ if is_tuple(fields) => {
                    out.push_str(name);
                    write_tuple(out, fields);
                }
                _ => {
                    out.push_str(name);
                    out.push(' ');
                    write_fields(out, fields);
                }
            },
            Self::LengthOnly(len) => {
                out.push_str("<ptr optimized out> (len ");
                len.write_human(out);
                out.push(')');
            }
            Self::Unreadable => out.push_str("<unreadable>"),
            Self::Missing(reason) => {
                let _ = write!(out, "<{reason}>");
            }
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> Json {
        match self {
            Self::Raw(word) => {
                let signed = *word as i64;
                if (-65536..0).contains(&signed) {
                    json!(signed)
                } else {
                    json!(word)
                }
            }
            Self::Signed(v) => json!(v),
            Self::Unsigned(v) | Self::Pointer(v) => json!(v),
            Self::Bool(b) => json!(b),
            Self::Char(c) => json!(c.to_string()),
            Self::Enum { value, name } => name.as_ref().map_or_else(|| json!(value), |n| json!(n)),
            Self::Float(f) => json!(f),
            Self::Text { bytes, truncated } => text_json(bytes, *truncated),
            Self::Null => Json::Null,
            Self::Slice { len, bytes } => match bytes {
                Some(bytes) => json!({ "len": len, "bytes": text_json(bytes, false) }),
                None => json!({ "len": len }),
            },
            Self::Array(items) => Json::Array(items.iter().map(Self::to_json).collect()),
            Self::Struct {
                pointer: None,
                fields,
            } => fields_json(fields),
            Self::Struct {
                pointer: Some(pointer),
                fields,
            } => {
                let mut object = Map::new();
                object.insert("_ptr".into(), pointer.to_json());
                for (name, value) in fields {
                    object.insert(name.clone(), value.to_json());
                }
                Json::Object(object)
            }
            Self::Nil => Json::Null,
            Self::CutElements(items) => json!({
                "items": items.iter().map(Self::to_json).collect::<Vec<_>>(),
                "truncated": true,
            }),
            Self::Elements { len, items } => json!({
                "len": len,
                "items": items.iter().map(Self::to_json).collect::<Vec<_>>(),
            }),
            Self::Interface {
                type_name,
                data,
                message,
            } => {
                let mut object = Map::new();
                object.insert("type".into(), json!(type_name));
                match message {
                    Some(message) => object.insert("message".into(), message.to_json()),
                    None => object.insert("data".into(), data.to_json()),
                };
                Json::Object(object)
            }
            Self::Variant {
                family,
                name,
                fields,
            } => {
                let data = match fields.as_slice() {
                    [] => None,
                    [(_, value)] if is_tuple(fields) || name.is_empty() => Some(value.to_json()),
                    _ => Some(fields_json(fields)),
                };
                match (family, data) {
                    (Family::Optional, None) => Json::Null,
                    (Family::Optional, Some(data)) => json!({ "some": data }),
                    (Family::Result, data) => {
                        json!({ name.to_lowercase(): data.unwrap_or(Json::Null) })
                    }
                    (Family::Layout, data) => data.unwrap_or(Json::Null),
                    (Family::Enum, None) => json!(name),
                    (Family::Enum, Some(data)) => json!({ name.clone(): data }),
                }
            }
            Self::LengthOnly(len) => {
                json!({ "missing": "ptr optimized out", "len": len.to_json() })
            }
            Self::Unreadable => json!({ "unreadable": true }),
            Self::Missing(reason) => json!({ "missing": reason }),
        }
    }
}

/// Decodes every argument of a call, in plan order.
pub fn decode_args<'a>(payload: &[u8], args: &'a [ArgSlot]) -> Vec<(&'a str, Decoded)> {
    args.iter()
        .map(|arg| (arg.name.as_str(), decode(payload, &arg.value)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequences_show_their_first_elements_and_count_the_rest() {
        let render = Render::Sequence {
            element: Some(Box::new(Render::Int {
                size: 4,
                signed: true,
            })),
            element_size: 4,
        };
        // 100 elements, the first 3 copied.
        let mut payload = vec![0u8; 16];
        payload.extend_from_slice(&400u64.to_le_bytes());
        for v in [1i32, -2, 3] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        let slot = SlotValue::Captured {
            offset: 16,
            size: 8 + 12,
            step: 0,
            render: render.clone(),
        };
        let decoded = decode(&payload, &slot);
        let mut human = String::new();
        decoded.write_human(&mut human);
        assert_eq!(human, "[1, -2, 3, … 97 more]");
        assert_eq!(decoded.to_json(), json!({"len": 100, "items": [1, -2, 3]}));
        // Two elements: both shown, nothing more.
        payload[16..24].copy_from_slice(&8u64.to_le_bytes());
        let mut human = String::new();
        decode(&payload, &slot).write_human(&mut human);
        assert_eq!(human, "[1, -2]");
        // Cut short by an unreadable page: the length counts the bytes copied, no more.
        payload[0] = step_status::PARTIAL;
        let cut = decode(&payload, &slot);
        let mut shown = String::new();
        cut.write_human(&mut shown);
        assert_eq!(shown, "[1, -2, …]");
        assert_eq!(cut.to_json(), json!({"items": [1, -2], "truncated": true}));
        payload[0] = step_status::OK;
        // Elements not shown: the count alone.
        let count_only = SlotValue::Captured {
            offset: 16,
            size: 8,
            step: 0,
            render: Render::Sequence {
                element: None,
                element_size: 4,
            },
        };
        assert_eq!(
            decode(&payload, &count_only),
            Decoded::Slice {
                len: 2,
                bytes: None
            }
        );
    }

    use super::*;

    fn human(decoded: &Decoded) -> String {
        let mut out = String::new();
        decoded.write_human(&mut out);
        out
    }

    #[test]
    fn integers_of_every_size_and_sign() {
        let minus_one = u64::MAX.to_le_bytes();
        assert_eq!(
            decode_scalar(
                &minus_one,
                &Render::Int {
                    size: 4,
                    signed: true
                }
            ),
            Decoded::Signed(-1)
        );
        assert_eq!(
            decode_scalar(
                &minus_one,
                &Render::Int {
                    size: 2,
                    signed: false
                }
            ),
            Decoded::Unsigned(65535)
        );
        assert_eq!(
            decode_scalar(
                &[0x80],
                &Render::Int {
                    size: 1,
                    signed: true
                }
            ),
            Decoded::Signed(-128)
        );
        assert_eq!(
            decode_scalar(&2u64.to_le_bytes(), &Render::Bool),
            Decoded::Bool(true)
        );
        assert_eq!(
            decode_scalar(
                b"x",
                &Render::Char {
                    size: 1,
                    signed: true
                }
            ),
            Decoded::Char('x')
        );
        assert_eq!(
            decode_scalar(
                &[200],
                &Render::Char {
                    size: 1,
                    signed: false
                }
            ),
            Decoded::Unsigned(200)
        );
        assert_eq!(
            decode_scalar(
                &[0xf9],
                &Render::Char {
                    size: 1,
                    signed: true
                }
            ),
            Decoded::Signed(-7)
        );
        assert_eq!(
            human(&decode_scalar(
                b"\n",
                &Render::Char {
                    size: 1,
                    signed: true
                }
            )),
            "'\\n'"
        );
        assert_eq!(
            human(&decode_scalar(
                &0x1f600u64.to_le_bytes(),
                &Render::Char {
                    size: 4,
                    signed: false
                }
            )),
            "'😀'"
        );
        assert_eq!(
            decode_scalar(&0u64.to_le_bytes(), &Render::Pointer),
            Decoded::Null
        );
        assert_eq!(
            human(&decode_scalar(
                &1.5f64.to_bits().to_le_bytes(),
                &Render::Float { size: 8 }
            )),
            "1.5"
        );
    }

    #[test]
    fn enums_by_name_or_number() {
        let render = Render::Enum {
            size: 4,
            signed: false,
            enumerators: vec![(1, "GREEN".into())],
        };
        assert_eq!(human(&decode_scalar(&1u64.to_le_bytes(), &render)), "GREEN");
        assert_eq!(human(&decode_scalar(&7u64.to_le_bytes(), &render)), "7");
        assert_eq!(
            decode_scalar(&1u64.to_le_bytes(), &render).to_json(),
            json!("GREEN")
        );
    }

    #[test]
    fn strings_null_truncated_and_faulted() {
        let mut payload = vec![0u8; 64];
        // C string "hi" at 16 in a 12-byte slot (a length, 6 shown, 1 more, the NUL).
        payload[16..20].copy_from_slice(&2u32.to_le_bytes());
        payload[20..22].copy_from_slice(b"hi");
        let slot = SlotValue::Captured {
            offset: 16,
            size: 12,
            step: 0,
            render: Render::CString,
        };
        assert_eq!(human(&decode(&payload, &slot)), "\"hi\"");
        payload[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(human(&decode(&payload, &slot)), "NULL");
        payload[0] = step_status::FAULT;
        assert_eq!(human(&decode(&payload, &slot)), "<unreadable>");
        // A &str of 10 bytes of which 4 were copied.
        let mut payload = vec![0u8; 64];
        payload[16..24].copy_from_slice(&10u64.to_le_bytes());
        payload[24..28].copy_from_slice(b"abcd");
        let slot = SlotValue::Captured {
            offset: 16,
            size: 12,
            step: 1,
            render: Render::Str,
        };
        assert_eq!(human(&decode(&payload, &slot)), "\"abcd\"…");
        // Escapes.
        assert_eq!(human(&text(b"a\"b\n", false)), "\"a\\\"b\\n\"");
        assert_eq!(human(&text(b"ok\xff\xfe!", false)), "\"ok\\xff\\xfe!\"");
    }

    #[test]
    fn a_string_cut_by_an_unreadable_page_keeps_what_was_read() {
        // 16 bytes before the page end, no NUL among them.
        let mut payload = vec![0u8; 64];
        payload[0] = step_status::PARTIAL;
        payload[16..20].copy_from_slice(&16u32.to_le_bytes());
        payload[20..36].copy_from_slice(b"0123456789abcdef");
        let slot = SlotValue::Captured {
            offset: 16,
            size: 40,
            step: 0,
            render: Render::CString,
        };
        let value = decode(&payload, &slot);
        let narrow = SlotValue::Captured {
            offset: 16,
            size: 4 + 10 + 2,
            step: 0,
            render: Render::CString,
        };
        assert_eq!(human(&decode(&payload, &narrow)), "\"0123456789\"…");
        assert_eq!(human(&value), "\"0123456789abcdef\"…");
        assert_eq!(
            value.to_json(),
            json!({"text": "0123456789abcdef", "truncated": true})
        );
    }

    #[test]
    fn json_keeps_truncation_bytes_and_missing_values_apart() {
        assert_eq!(text(b"whole", false).to_json(), json!("whole"));
        assert_eq!(
            text(b"cut", true).to_json(),
            json!({"text": "cut", "truncated": true})
        );
        assert_eq!(
            text(b"a\xffb", false).to_json(),
            json!({"text": "a\u{fffd}b", "hex": "61ff62"})
        );
        assert_eq!(Decoded::Unreadable.to_json(), json!({"unreadable": true}));
        assert_eq!(
            Decoded::Missing("optimized out".into()).to_json(),
            json!({"missing": "optimized out"})
        );
    }

    #[test]
    fn out_of_range_slots_are_missing_not_a_panic() {
        let slot = SlotValue::Captured {
            offset: 60,
            size: 16,
            step: 0,
            render: Render::Int {
                size: 8,
                signed: true,
            },
        };
        assert!(matches!(decode(&[0u8; 64], &slot), Decoded::Missing(_)));
        let huge = SlotValue::Captured {
            offset: u16::MAX,
            size: u16::MAX,
            step: 200,
            render: Render::CString,
        };
        assert!(matches!(decode(&[0u8; 8], &huge), Decoded::Missing(_)));
    }

    /// A Go `error` as the plan lays it out: type word at 16, data word at 24, the type's
    /// name (step 1) at 32, the message (step 2) at 72.
    fn error_slot() -> SlotValue {
        let word = |offset| {
            Box::new(SlotValue::Captured {
                offset,
                size: 8,
                step: 0,
                render: Render::Pointer,
            })
        };
        SlotValue::Interface {
            type_word: word(16),
            data: word(24),
            type_name: Box::new(SlotValue::Captured {
                offset: 32,
                size: 40,
                step: 1,
                render: Render::GoTypeName,
            }),
            message: Some(Box::new(SlotValue::Captured {
                offset: 72,
                size: 40,
                step: 2,
                render: Render::Str,
            })),
        }
    }

    fn error_payload(type_word: u64, name: &[u8], message: &[u8]) -> Vec<u8> {
        let mut payload = vec![0u8; 112];
        payload[16..24].copy_from_slice(&type_word.to_le_bytes());
        payload[24..32].copy_from_slice(&0xc000_1000u64.to_le_bytes());
        payload[32..40].copy_from_slice(&(name.len() as u64).to_le_bytes());
        payload[40..40 + name.len()].copy_from_slice(name);
        payload[72..80].copy_from_slice(&(message.len() as u64).to_le_bytes());
        payload[80..80 + message.len()].copy_from_slice(message);
        payload
    }

    #[test]
    fn go_errors_show_their_type_and_the_message_of_the_errors_that_keep_one() {
        let slot = error_slot();
        let nil = decode(&error_payload(0, b"", b""), &slot);
        assert_eq!((human(&nil), nil.to_json()), ("nil".into(), Json::Null));

        let plain = decode(
            &error_payload(0x4d_2000, b"*errors.errorString", b"no such order"),
            &slot,
        );
        assert_eq!(human(&plain), "*errors.errorString(\"no such order\")");
        assert_eq!(
            plain.to_json(),
            json!({"type": "*errors.errorString", "message": "no such order"})
        );
        let wrapped = decode(
            &error_payload(0x4d_2000, b"*fmt.wrapError", b"order 14: no such order"),
            &slot,
        );
        assert_eq!(
            human(&wrapped),
            "*fmt.wrapError(\"order 14: no such order\")"
        );

        // Another type's data does not start with a message: its data pointer shows.
        let other = decode(
            &error_payload(0x4d_2000, b"*os.PathError", b"garbage"),
            &slot,
        );
        assert_eq!(human(&other), "*os.PathError(0xc0001000)");
        assert_eq!(
            other.to_json(),
            json!({"type": "*os.PathError", "data": 0xc000_1000u64})
        );

        // A type name the kernel could not read.
        let mut payload = error_payload(0x4d_2000, b"*errors.errorString", b"x");
        payload[1] = step_status::FAULT;
        let unreadable = decode(&payload, &slot);
        assert_eq!(human(&unreadable), "<unreadable type>(0xc0001000)");
    }

    #[test]
    fn slices_of_strings_show_no_more_elements_than_their_length() {
        let string = |offset| SlotValue::Captured {
            offset,
            size: 16,
            step: 0,
            render: Render::Str,
        };
        let slot = SlotValue::Elements {
            len: Box::new(SlotValue::Captured {
                offset: 16,
                size: 8,
                step: 0,
                render: Render::Int {
                    size: 8,
                    signed: true,
                },
            }),
            items: vec![string(24), string(40)],
        };
        let mut payload = vec![0u8; 64];
        payload[24..32].copy_from_slice(&3u64.to_le_bytes());
        payload[32..35].copy_from_slice(b"tea");
        payload[40..48].copy_from_slice(&8u64.to_le_bytes());
        payload[48..56].copy_from_slice(b"leftover");
        for (len, shown, json) in [
            (1u64, "[\"tea\"]", json!({"len": 1, "items": ["tea"]})),
            (
                2,
                "[\"tea\", \"leftover\"]",
                json!({"len": 2, "items": ["tea", "leftover"]}),
            ),
            (
                5,
                "[\"tea\", \"leftover\", … 3 more]",
                json!({"len": 5, "items": ["tea", "leftover"]}),
            ),
            (0, "[]", json!({"len": 0, "items": []})),
        ] {
            payload[16..24].copy_from_slice(&len.to_le_bytes());
            let value = decode(&payload, &slot);
            assert_eq!((human(&value), value.to_json()), (shown.to_string(), json));
        }
    }

    #[test]
    fn structs_show_pointer_and_fields() {
        let mut payload = vec![0u8; 64];
        payload[16..24].copy_from_slice(&0x5000u64.to_le_bytes());
        payload[24..28].copy_from_slice(&3u32.to_le_bytes());
        let value = SlotValue::Struct {
            pointer: Some(Box::new(SlotValue::Captured {
                offset: 16,
                size: 8,
                step: 0,
                render: Render::Pointer,
            })),
            fields: vec![ArgSlot {
                name: "len".into(),
                value: SlotValue::Captured {
                    offset: 24,
                    size: 4,
                    step: 1,
                    render: Render::Int {
                        size: 4,
                        signed: true,
                    },
                },
            }],
        };
        let decoded = decode(&payload, &value);
        assert_eq!(human(&decoded), "0x5000 {len=3}");
        assert_eq!(decoded.to_json(), json!({"_ptr": 0x5000, "len": 3}));
        payload[16..24].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(human(&decode(&payload, &value)), "NULL");
    }

    fn int4(offset: u16, step: u8) -> SlotValue {
        SlotValue::Captured {
            offset,
            size: 4,
            step,
            render: Render::Int {
                size: 4,
                signed: true,
            },
        }
    }

    /// An enum of `family` whose discriminant is the `u32` at 16; variant `one` (value 0)
    /// has no fields, variant `two` (any other value) one field, the `i32` at 20.
    fn two_variants(family: Family, one: &str, two: &str, field: &str) -> SlotValue {
        SlotValue::Variants {
            family,
            discriminant: Some(Box::new(SlotValue::Captured {
                offset: 16,
                size: 4,
                step: 0,
                render: Render::Int {
                    size: 4,
                    signed: false,
                },
            })),
            variants: vec![
                VariantSlot {
                    name: one.into(),
                    value: Some(0),
                    fields: Vec::new(),
                },
                VariantSlot {
                    name: two.into(),
                    value: None,
                    fields: vec![ArgSlot {
                        name: field.into(),
                        value: int4(20, 0),
                    }],
                },
            ],
        }
    }

    fn enum_payload(discriminant: u32, value: i32) -> Vec<u8> {
        let mut payload = vec![0u8; 24];
        payload[16..20].copy_from_slice(&discriminant.to_le_bytes());
        payload[20..24].copy_from_slice(&value.to_le_bytes());
        payload
    }

    #[test]
    fn enums_show_the_variant_their_discriminant_picks_in_both_shapes() {
        let cases = [
            (
                Family::Optional,
                "None",
                "Some",
                "__0",
                0,
                "None",
                Json::Null,
            ),
            (
                Family::Optional,
                "None",
                "Some",
                "__0",
                1,
                "Some(-3)",
                json!({"some": -3}),
            ),
            (
                Family::Result,
                "Err",
                "Ok",
                "__0",
                0,
                "Err",
                json!({"err": null}),
            ),
            (
                Family::Result,
                "Err",
                "Ok",
                "__0",
                9,
                "Ok(-3)",
                json!({"ok": -3}),
            ),
            (
                Family::Enum,
                "Empty",
                "Rect",
                "w",
                0,
                "Empty",
                json!("Empty"),
            ),
            (
                Family::Enum,
                "Empty",
                "Rect",
                "w",
                2,
                "Rect {w=-3}",
                json!({"Rect": {"w": -3}}),
            ),
            // std::optional: its value bare, or `nullopt`.
            (
                Family::Optional,
                "nullopt",
                "",
                "value",
                1,
                "-3",
                json!({"some": -3}),
            ),
            (
                Family::Optional,
                "nullopt",
                "",
                "value",
                0,
                "nullopt",
                Json::Null,
            ),
            // libc++'s two layouts of one string: the value, whichever.
            (Family::Layout, "short", "", "value", 1, "-3", json!(-3)),
        ];
        for (family, one, two, field, discriminant, text, json) in cases {
            let slot = two_variants(family, one, two, field);
            let decoded = decode(&enum_payload(discriminant, -3), &slot);
            assert_eq!(
                (human(&decoded), decoded.to_json()),
                (text.to_string(), json)
            );
        }
        // A discriminant no variant claims, when every variant names its own.
        let mut strict = two_variants(Family::Enum, "A", "B", "x");
        if let SlotValue::Variants { variants, .. } = &mut strict {
            variants[1].value = Some(1);
        }
        assert_eq!(
            human(&decode(&enum_payload(7, 0), &strict)),
            "<unknown variant 7>"
        );
        // A discriminant the kernel could not read.
        let mut payload = enum_payload(1, 5);
        payload[0] = step_status::FAULT;
        assert_eq!(human(&decode(&payload, &strict)), "<unreadable>");
    }

    #[test]
    fn tuples_structs_read_whole_and_bit_fields() {
        let tuple = SlotValue::Struct {
            pointer: None,
            fields: vec![
                ArgSlot {
                    name: "__0".into(),
                    value: int4(16, 0),
                },
                ArgSlot {
                    name: "__1".into(),
                    value: int4(20, 0),
                },
            ],
        };
        let decoded = decode(&enum_payload(4, 2), &tuple);
        assert_eq!(
            (human(&decoded), decoded.to_json()),
            ("(4, 2)".into(), json!([4, 2]))
        );
        // An array of two structs { short x; short y; } from its bytes.
        let point = Render::Fields {
            fields: ["x", "y"]
                .iter()
                .enumerate()
                .map(|(i, name)| FieldRender {
                    name: (*name).into(),
                    offset: 2 * i as u16,
                    size: 2,
                    render: Render::Int {
                        size: 2,
                        signed: true,
                    },
                })
                .collect(),
        };
        let array = SlotValue::Captured {
            offset: 16,
            size: 8,
            step: 0,
            render: Render::Array {
                element: Box::new(point),
                element_size: 4,
                count: 2,
                text: false,
            },
        };
        let mut payload = vec![0u8; 24];
        for (i, v) in [1i16, -2, 3, -4].iter().enumerate() {
            payload[16 + 2 * i..18 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        let decoded = decode(&payload, &array);
        assert_eq!(human(&decoded), "[{x=1, y=-2}, {x=3, y=-4}]");
        assert_eq!(
            decoded.to_json(),
            json!([{"x": 1, "y": -2}, {"x": 3, "y": -4}])
        );
        // Bits 1..8 of a byte: a libc++ short string's length.
        let bits = Render::Bits {
            size: 1,
            shift: 1,
            width: 7,
        };
        assert_eq!(decode_scalar(&[7 << 1 | 1], &bits), Decoded::Unsigned(7));
    }

    #[test]
    fn short_strings_kept_inside_their_object_and_lengths_without_their_pointer() {
        // libc++: byte 0 is the length shifted left by one, the text from byte 1.
        let mut object = [0u8; 24];
        object[0] = 3 << 1;
        object[1..4].copy_from_slice(b"ada");
        let inline = Render::InlineText {
            len_at: 0,
            len_shift: 1,
            data_at: 1,
        };
        assert_eq!(human(&decode_scalar(&object, &inline)), "\"ada\"");
        // A length past the object's bytes is garbage, shown cut short.
        object[0] = 60 << 1;
        assert!(matches!(
            decode_scalar(&object, &inline),
            Decoded::Text {
                truncated: true,
                ..
            }
        ));
        let length_only = SlotValue::LengthOnly {
            len: Box::new(SlotValue::Captured {
                offset: 16,
                size: 8,
                step: 0,
                render: Render::Int {
                    size: 8,
                    signed: false,
                },
            }),
        };
        let mut payload = vec![0u8; 24];
        payload[16] = 5;
        let decoded = decode(&payload, &length_only);
        assert_eq!(human(&decoded), "<ptr optimized out> (len 5)");
        assert_eq!(
            decoded.to_json(),
            json!({"missing": "ptr optimized out", "len": 5})
        );
    }

    #[test]
    fn returns_read_through_memory_only_where_the_caller_asked() {
        let how = ReturnValue::Captured {
            value: int4(20, 1),
            hidden: Some(SlotValue::Captured {
                offset: 24,
                size: 8,
                step: 0,
                render: Render::Pointer,
            }),
        };
        let mut payload = vec![0u8; 32];
        payload[20..24].copy_from_slice(&42i32.to_le_bytes());
        payload[24..32].copy_from_slice(&0x7ff0_0000u64.to_le_bytes());
        assert_eq!(
            decode_return(0x7ff0_0000, &payload, &how),
            Decoded::Signed(42)
        );
        assert_eq!(
            decode_return(0x1234, &payload, &how),
            Decoded::Missing("result not where the caller asked".into())
        );
        // A return step that never ran (the call left by a tail call).
        payload[1] = step_status::AT_RETURN;
        assert_eq!(
            decode_return(0x7ff0_0000, &payload, &how),
            Decoded::Missing("not returned".into())
        );
    }
}
