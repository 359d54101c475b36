//! How a value of each type is read: scalars and strings, structs two levels deep (or as deep
//! as `--args` paths reach), enums with data (the discriminant and every variant's fields;
//! the discriminant picks which to show), library values by their shape (`std::string` as
//! its text, `std::vector` and `Vec` as their first elements, `std::optional`, smart pointers),
//! fixed arrays, and sequences whose elements are structs (read whole, each shown field by
//! field) or strings (each read on its own).

use tracer_ebpf::MAX_CHUNK;

use super::{
    access::Access,
    builder::{LengthField, PlanBuilder, render_of},
    go_values::go_map_length,
    slots::{ArgSlot, Family, FieldRender, Render, SlotValue, VariantSlot},
};
use crate::symbols::types::{Field, Shape, Type, Variant};

/// Levels of fields shown below an argument: a struct's fields and their fields
/// (`req.header.method`). A pointer to a struct shows its fields at the argument itself
/// only; below it, where `--args` reaches.
pub(super) const ARGUMENT_LEVELS: u8 = 2;

/// The elements of a sequence or array read one by one (strings, values with pointers to
/// follow) at most: each costs steps of its own.
const MAX_ITEMS: u64 = 4;

/// `--args` paths below a value: the fields to show and, below each, theirs (`header.method`
/// is `["header", "method"]`). `None` shows every field that fits.
pub(super) type Selection<'a> = Option<&'a [Vec<String>]>;

/// How a sequence's elements are captured.
enum Elements {
    /// Their first `bytes` copied in one read and shown by `render` (the kernel scales a
    /// count of elements by `scale` bytes; 0: the length counts bytes).
    Copied {
        bytes: u16,
        render: Render,
        scale: u8,
    },
    /// Each of the first `count` read on its own, as a value of its type.
    OneByOne { count: u64 },
}

impl PlanBuilder {
    /// The value of type `ty` at `access`, showing `levels` levels of fields below it and,
    /// where `selection` says, only those.
    pub(super) fn value(
        &mut self,
        access: &Access,
        ty: &Type,
        levels: u8,
        selection: Selection<'_>,
    ) -> SlotValue {
        match ty {
            Type::Void => self.missing("void"),
            _ if ty.is_c_string() => self.c_string(access),
            Type::Struct {
                shape: Some(shape), ..
            } => self.shaped(access, shape, levels, selection),
            Type::Variants { .. } => self.variants(access, ty, levels, selection),
            // A library value, an enum or an array behind a pointer or a reference (Rust's
            // `&[T; N]`): shown as the value.
            Type::Pointer { pointee }
                if matches!(
                    **pointee,
                    Type::Struct { shape: Some(_), .. }
                        | Type::Variants { .. }
                        | Type::Array { .. }
                ) =>
            {
                match access.deref(0) {
                    Some(at) => self.value(&at, pointee, levels, selection),
                    None => self.missing("pointer chain too deep"),
                }
            }
            // A Go map is a pointer to the runtime's table, whose first word counts its
            // entries: shown as the map's length.
            Type::Pointer { pointee } if go_map_length(pointee).is_some() => {
                let pointer = self.scalar(access, 8, Render::Pointer);
                let length = go_map_length(pointee).expect("checked");
                let fields = match access.deref(0) {
                    Some(at) => vec![ArgSlot {
                        name: "len".into(),
                        value: self.value(&at, &length.ty, 0, None),
                    }],
                    None => Vec::new(),
                };
                SlotValue::Struct {
                    pointer: Some(Box::new(pointer)),
                    fields,
                }
            }
            Type::Pointer { pointee }
                if (levels == ARGUMENT_LEVELS || selection.is_some())
                    && matches!(**pointee, Type::Struct { .. }) =>
            {
                let Type::Struct {
                    fields: members,
                    size,
                    ..
                } = &**pointee
                else {
                    unreachable!("matched above")
                };
                let pointer = self.scalar(access, 8, Render::Pointer);
                let fields = match access.deref(0) {
                    Some(at) => {
                        self.struct_fields(&at, members, *size, levels.saturating_sub(1), selection)
                    }
                    None => Vec::new(),
                };
                SlotValue::Struct {
                    pointer: Some(Box::new(pointer)),
                    fields,
                }
            }
            Type::Struct {
                fields: members,
                size,
                ..
            } if levels > 0 || selection.is_some() => SlotValue::Struct {
                pointer: None,
                fields: self.struct_fields(
                    access,
                    members,
                    *size,
                    levels.saturating_sub(1),
                    selection,
                ),
            },
            Type::Str => self.pointer_and_length(access, self.string_size, Render::Str),
            Type::Interface { name, empty } => {
                self.interface(access, *empty, name == "error", None)
            }
            Type::Slice { element, go: true } if matches!(**element, Type::Str) => {
                let len = self.pointer_and_length(access, 0, Render::Slice { bytes: false });
                self.go_strings(access, len)
            }
            Type::Slice { element, go: true } => {
                let bytes = element.size() == 1;
                let copy = if bytes { self.string_size.min(32) } else { 0 };
                self.pointer_and_length(access, copy, Render::Slice { bytes })
            }
            // A Rust slice: its pointer and its length counting elements, side by side.
            Type::Slice { element, go: false } => {
                self.sequence(access, 0, 8, false, element, false, levels)
            }
            Type::Array { element, count } => self.array(access, element, *count, levels),
            other => match render_of(other) {
                Some(render) => self.scalar(access, other.size(), render),
                None => self.missing("aggregate"),
            },
        }
    }

    /// The fields of a struct of `size` bytes at `access`, each at `levels` levels; a struct
    /// in memory with several scalars to show is read whole first.
    fn struct_fields(
        &mut self,
        access: &Access,
        members: &[Field],
        size: u64,
        levels: u8,
        selection: Selection<'_>,
    ) -> Vec<ArgSlot> {
        let scalars = members
            .iter()
            .filter(|f| render_of(&f.ty).is_some() && !f.ty.is_c_string())
            .filter(|f| {
                selection.is_none_or(|paths| !matches!(select(paths, &f.name), Picked::Not))
            })
            .count();
        let access = if scalars >= 2 {
            self.copied(access, size)
        } else {
            access.clone()
        };
        self.fields(&access, members, levels, selection)
    }

    /// The slots of `members` of the value at `access`, as `selection` picks them.
    fn fields(
        &mut self,
        access: &Access,
        members: &[Field],
        levels: u8,
        selection: Selection<'_>,
    ) -> Vec<ArgSlot> {
        let mut slots = Vec::new();
        for field in members {
            let below = match selection {
                None => None,
                Some(paths) => match select(paths, &field.name) {
                    Picked::Not => continue,
                    Picked::Whole => None,
                    Picked::Below(paths) => Some(paths),
                },
            };
            let value = match access.field(field.offset) {
                Some(at) => self.value(&at, &field.ty, levels, below.as_deref()),
                None => self.missing("pointer chain too deep"),
            };
            slots.push(ArgSlot {
                name: field.name.clone(),
                value,
            });
        }
        slots
    }

    /// An enum with data at `access`: its discriminant and every variant's fields (read
    /// whole first when small, so they are views of one copy).
    fn variants(
        &mut self,
        access: &Access,
        ty: &Type,
        levels: u8,
        selection: Selection<'_>,
    ) -> SlotValue {
        let Type::Variants {
            name,
            size,
            discriminant,
            variants,
        } = ty
        else {
            return self.missing("not an enum");
        };
        let access = self.copied(access, *size);
        let discriminant = discriminant.map(|d| match access.field(d.offset) {
            Some(at) => self.scalar(
                &at,
                u64::from(d.size),
                Render::Int {
                    size: d.size,
                    signed: false,
                },
            ),
            None => self.missing("pointer chain too deep"),
        });
        let family = if name.starts_with("Option<") {
            Family::Optional
        } else if name.starts_with("Result<") {
            Family::Result
        } else {
            Family::Enum
        };
        let variants = variants
            .iter()
            .map(
                |Variant {
                     name,
                     value,
                     fields,
                 }| VariantSlot {
                    name: name.clone(),
                    value: *value,
                    fields: self.fields(&access, fields, levels.saturating_sub(1), selection),
                },
            )
            .collect();
        SlotValue::Variants {
            family,
            discriminant: discriminant.map(Box::new),
            variants,
        }
    }

    /// A library type shown as what it holds (see [`Shape`]).
    fn shaped(
        &mut self,
        access: &Access,
        shape: &Shape,
        levels: u8,
        selection: Selection<'_>,
    ) -> SlotValue {
        match shape {
            // The member stands in for the wrapper.
            Shape::Inner { at, ty } => match access.field(*at) {
                Some(member) => self.value(&member, ty, levels, selection),
                None => self.missing("pointer chain too deep"),
            },
            Shape::Pointee {
                pointer_at,
                value_at,
                ty,
            } => self.pointee(access, *pointer_at, *value_at, ty, levels, selection),
            Shape::Sequence {
                pointer_at,
                len_at,
                len_is_end,
                element,
                text,
            } => self.sequence(
                access,
                *pointer_at,
                *len_at,
                *len_is_end,
                element,
                *text,
                levels,
            ),
            Shape::Optional {
                engaged_at,
                value_at,
                ty,
            } => self.optional(access, *engaged_at, *value_at, ty, levels, selection),
            Shape::ShortOrLongText {
                at,
                size,
                short_data_at,
                long_data_at,
                long_len_at,
            } => self.short_or_long_text(
                access,
                *at,
                *size,
                *short_data_at,
                *long_data_at,
                *long_len_at,
            ),
        }
    }

    /// A string kept in its object while short (see [`Shape::ShortOrLongText`]): the object
    /// read whole (the flag, and the short form's length and text), and the long form's
    /// pointer and length read too; the flag picks which is shown.
    fn short_or_long_text(
        &mut self,
        access: &Access,
        at: u64,
        size: u64,
        short_data_at: u64,
        long_data_at: u64,
        long_len_at: u64,
    ) -> SlotValue {
        let (Ok(flag_at), Ok(data_at), Some(length)) = (
            u16::try_from(at),
            u16::try_from(short_data_at),
            LengthField::between(long_data_at, long_len_at),
        ) else {
            return self.missing("string out of reach");
        };
        let object = self.copied(access, size);
        let (Some(flag_place), Some(long_place)) = (object.field(at), object.field(long_data_at))
        else {
            return self.missing("pointer chain too deep");
        };
        let flag = Render::Bits {
            size: 1,
            shift: 0,
            width: 1,
        };
        let flag = self.scalar(&flag_place, 1, flag);
        let inline = Render::InlineText {
            len_at: flag_at,
            len_shift: 1,
            data_at,
        };
        let short = self.block(&object, size, inline);
        let long = self.counted(&long_place, self.string_size, Render::Str, length);
        SlotValue::Variants {
            family: Family::Layout,
            discriminant: Some(Box::new(flag)),
            variants: vec![held_value(Some(0), short), held_value(Some(1), long)],
        }
    }

    /// A pointer at `pointer_at` of the value at `access` and the value at `value_at` in
    /// what it points to (see [`Shape::Pointee`]): a struct's fields beside the pointer, any
    /// other value as `value`.
    fn pointee(
        &mut self,
        access: &Access,
        pointer_at: u64,
        value_at: u64,
        ty: &Type,
        levels: u8,
        selection: Selection<'_>,
    ) -> SlotValue {
        let (Some(pointer_place), Ok(value_at)) =
            (access.field(pointer_at), i32::try_from(value_at))
        else {
            return self.missing("library value out of reach");
        };
        let pointer = Box::new(self.scalar(&pointer_place, 8, Render::Pointer));
        let Some(value) = pointer_place.deref(value_at) else {
            return self.missing("pointer chain too deep");
        };
        let below = levels.saturating_sub(1);
        let fields = match ty {
            Type::Struct {
                fields: members,
                size,
                shape: None,
                ..
            } => self.struct_fields(&value, members, *size, below, selection),
            other => vec![ArgSlot {
                name: "value".into(),
                value: self.value(&value, other, below, None),
            }],
        };
        SlotValue::Struct {
            pointer: Some(pointer),
            fields,
        }
    }

    /// A `std::optional` at `access`: its flag as the discriminant of two variants, `nullopt`
    /// and the value (which stands in for the optional).
    fn optional(
        &mut self,
        access: &Access,
        engaged_at: u64,
        value_at: u64,
        ty: &Type,
        levels: u8,
        selection: Selection<'_>,
    ) -> SlotValue {
        let size = engaged_at
            .saturating_add(1)
            .max(value_at.saturating_add(ty.size()));
        let access = self.copied(access, size);
        let (Some(engaged), Some(held)) = (access.field(engaged_at), access.field(value_at)) else {
            return self.missing("pointer chain too deep");
        };
        let flag = Render::Int {
            size: 1,
            signed: false,
        };
        let engaged = self.scalar(&engaged, 1, flag);
        let value = self.value(&held, ty, levels, selection);
        SlotValue::Variants {
            family: Family::Optional,
            discriminant: Some(Box::new(engaged)),
            variants: vec![
                VariantSlot {
                    name: "nullopt".into(),
                    value: Some(0),
                    fields: Vec::new(),
                },
                held_value(None, value),
            ],
        }
    }

    /// A sequence of the value at `access` (see [`Shape::Sequence`]): its length and first
    /// elements, or a string's text.
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &mut self,
        access: &Access,
        pointer_at: u64,
        len_at: u64,
        len_is_end: bool,
        element: &Type,
        text: bool,
        levels: u8,
    ) -> SlotValue {
        let Some(LengthField { offset, .. }) = LengthField::between(pointer_at, len_at) else {
            return self.missing("length too far from its pointer");
        };
        let Some(pointer) = access.field(pointer_at) else {
            return self.missing("pointer chain too deep");
        };
        let element_size = element.size();
        let length = |scale: u8| LengthField {
            offset,
            // An end pointer counts bytes.
            element_size: if len_is_end { 0 } else { scale },
            end_pointer: len_is_end,
        };
        // How the length counts: in elements of the size the render divides by.
        let counted_in = |render: Render| match (render, len_is_end) {
            // The kernel writes the bytes between the pointers: counted in elements here.
            (Render::Sequence { element: shown, .. }, true) => Render::Sequence {
                element: shown,
                element_size: u16::try_from(element_size.max(1)).unwrap_or(u16::MAX),
            },
            (render, _) => render,
        };
        match self.elements_of(element, text) {
            Elements::Copied {
                bytes,
                render,
                scale,
            } => self.counted(&pointer, bytes, counted_in(render), length(scale)),
            Elements::OneByOne { count } => {
                let only_count = Render::Sequence {
                    element: None,
                    element_size: 1,
                };
                let len = self.counted(&pointer, 0, counted_in(only_count), length(0));
                let items = (0..count)
                    .map(|i| {
                        let at = i
                            .checked_mul(element_size)
                            .and_then(|at| i32::try_from(at).ok())
                            .and_then(|at| pointer.deref(at));
                        match at {
                            Some(at) => self.value(&at, element, levels.saturating_sub(1), None),
                            None => self.missing("pointer chain too deep"),
                        }
                    })
                    .collect();
                SlotValue::Elements {
                    len: Box::new(len),
                    items,
                }
            }
        }
    }

    /// How a sequence of `element`s is captured.
    fn elements_of(&self, element: &Type, text: bool) -> Elements {
        let size = element.size();
        if text {
            return Elements::Copied {
                bytes: self.string_size,
                render: Render::Str,
                scale: 0,
            };
        }
        if size == 1 && matches!(element, Type::Int { .. } | Type::Char { .. }) {
            return Elements::Copied {
                bytes: self.string_size.min(32),
                render: Render::Slice { bytes: true },
                scale: 0,
            };
        }
        match (flat_render(element), u8::try_from(size)) {
            (Some(render), Ok(scale)) if size > 0 => {
                let count = u64::from(self.elements).min(MAX_CHUNK as u64 / size);
                Elements::Copied {
                    bytes: (count * size) as u16,
                    render: Render::Sequence {
                        element: Some(Box::new(render)),
                        element_size: u16::from(scale),
                    },
                    scale,
                }
            }
            _ if size == 0 => Elements::Copied {
                bytes: 0,
                render: Render::Sequence {
                    element: None,
                    element_size: 1,
                },
                scale: 0,
            },
            _ => Elements::OneByOne {
                count: u64::from(self.elements).min(MAX_ITEMS),
            },
        }
    }

    /// A fixed array at `access`: elements of scalars or of structs of scalars copied whole
    /// (up to one chunk, bytes shown as text); any other elements read one by one.
    fn array(&mut self, access: &Access, element: &Type, count: u64, levels: u8) -> SlotValue {
        let element_size = element.size();
        if element_size == 0 {
            return self.missing("array of empty elements");
        }
        if let (Some(render), Ok(size)) = (flat_render(element), u8::try_from(element_size)) {
            let shown = count.min(MAX_CHUNK as u64 / element_size) as u16;
            let text = matches!(element, Type::Char { size: 1, .. })
                || matches!(element, Type::Int { size: 1, name, .. } if name == "u8");
            let render = Render::Array {
                element: Box::new(render),
                element_size: size,
                count: shown,
                text,
            };
            return self.block(access, u64::from(shown) * element_size, render);
        }
        let items = (0..count.min(MAX_ITEMS))
            .map(
                |i| match i.checked_mul(element_size).and_then(|at| access.field(at)) {
                    Some(at) => self.value(&at, element, levels.saturating_sub(1), None),
                    None => self.missing("pointer chain too deep"),
                },
            )
            .collect();
        SlotValue::Items { count, items }
    }
}

/// A variant without a name of its own, selected by `value`, that is the one value `slot`
/// (shown bare): `std::optional`'s value, one form of libc++'s string.
fn held_value(value: Option<u64>, slot: SlotValue) -> VariantSlot {
    VariantSlot {
        name: String::new(),
        value,
        fields: vec![ArgSlot {
            name: "value".into(),
            value: slot,
        }],
    }
}

/// How a value of type `ty` is shown from its bytes alone, if it can be: a scalar, a fixed
/// array of such, or a struct of such (no pointer followed).
fn flat_render(ty: &Type) -> Option<Render> {
    match ty {
        Type::Struct {
            fields,
            shape: None,
            union: false,
            ..
        } if !fields.is_empty() => {
            let fields = fields
                .iter()
                .map(|field| {
                    Some(FieldRender {
                        name: field.name.clone(),
                        offset: u16::try_from(field.offset).ok()?,
                        size: u16::try_from(field.ty.size()).ok()?,
                        render: flat_render(&field.ty)?,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Render::Fields { fields })
        }
        Type::Array { element, count } => Some(Render::Array {
            element: Box::new(flat_render(element)?),
            element_size: u8::try_from(element.size()).ok()?,
            count: u16::try_from(*count).ok()?,
            text: matches!(**element, Type::Char { size: 1, .. }),
        }),
        scalar if (1..=8).contains(&scalar.size()) => render_of(scalar),
        _ => None,
    }
}

/// What a selection picks of a field named `name`.
enum Picked {
    Not,
    Whole,
    Below(Vec<Vec<String>>),
}

fn select(paths: &[Vec<String>], name: &str) -> Picked {
    let mut below = Vec::new();
    for path in paths {
        match path.split_first() {
            Some((head, [])) if head == name => return Picked::Whole,
            Some((head, rest)) if head == name => below.push(rest.to_vec()),
            _ => {}
        }
    }
    if below.is_empty() {
        Picked::Not
    } else {
        Picked::Below(below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::int;

    #[test]
    fn selections_pick_fields_and_what_is_below_them() {
        let paths = vec![
            vec!["header".to_string(), "method".to_string()],
            vec!["len".to_string()],
        ];
        assert!(matches!(select(&paths, "len"), Picked::Whole));
        assert!(matches!(select(&paths, "body"), Picked::Not));
        let Picked::Below(below) = select(&paths, "header") else {
            panic!()
        };
        assert_eq!(below, [vec!["method".to_string()]]);
    }

    #[test]
    fn structs_of_scalars_are_shown_from_their_bytes() {
        let point = Type::Struct {
            name: "Point".into(),
            size: 8,
            fields: vec![
                Field {
                    name: "x".into(),
                    offset: 0,
                    ty: int(4, true),
                },
                Field {
                    name: "y".into(),
                    offset: 4,
                    ty: int(4, true),
                },
            ],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        let Some(Render::Fields { fields }) = flat_render(&point) else {
            panic!()
        };
        assert_eq!((fields[1].name.as_str(), fields[1].offset), ("y", 4));
        // A struct holding a string is not: its text is behind a pointer to follow.
        let named = Type::Struct {
            name: "Named".into(),
            size: 16,
            fields: vec![Field {
                name: "name".into(),
                offset: 0,
                ty: Type::Str,
            }],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        assert_eq!(flat_render(&named), None);
    }
}
