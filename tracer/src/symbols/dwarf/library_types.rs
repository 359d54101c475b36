//! Library types shown as what they hold: a `std::string` as its text, a `Vec<i32>` as its
//! first elements. Each is recognised by its name and then checked against its layout in
//! DWARF: the members that hold its pointer and its length are looked up by name through base
//! classes and nested members, and their offsets are what the plan reads. A library version
//! whose members differ (or a type that only shares the name) is shown as the struct it is.

use gimli::{AttributeValue, UnitOffset, constants};

use super::{
    DebugInfo, Die, R, Unit, member_offset,
    type_reader::{Skipped, skip_typedefs_and_qualifiers},
};
use crate::symbols::types::{Shape, Type};

/// How deep a member is looked for through base classes and nested members: `std::vector`'s
/// `_M_start` is three levels down, a Rust `Vec`'s data pointer five, libc++'s
/// `std::optional` keeps its value eight down (six base classes and a union).
const MEMBER_SEARCH_DEPTH: usize = 10;

/// The library types known, by the members that hold their elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Library {
    /// libstdc++'s `std::basic_string<char>`, libstdc++'s and libc++'s
    /// `std::basic_string_view<char>`: a pointer member and a length member, by the names
    /// each library gives them.
    CxxText {
        members: &'static [(&'static str, &'static str)],
    },
    /// `std::vector<T>` (libstdc++ and libc++): begin and end pointers, by the names each
    /// library gives them.
    CxxVector {
        members: &'static [(&'static str, &'static str)],
    },
    /// Rust's `String` (text) and `Vec<T>`: the pointer inside its `RawVec` (a `NonNull`'s
    /// `pointer`), the length beside it.
    RustVec { text: bool },
    /// A wrapper shown as one member, by the names libraries give it (a pointer, where
    /// `pointer`): `std::array`, `std::unique_ptr`, `std::shared_ptr`.
    Wrapper {
        members: &'static [&'static str],
        pointer: bool,
    },
    /// Rust's `Rc` and `Arc`: a pointer (a `NonNull`'s `pointer`) to a block of counts and
    /// the value, named `value` (`RcInner`) or `data` (`ArcInner`).
    RustCounted,
    /// `std::basic_string<char>`: libstdc++'s pointer and length (`_M_p`,
    /// `_M_string_length`), or libc++'s short and long forms in a union (`__s`, `__l`).
    CxxString,
    /// `std::span<T>` of a dynamic extent: a pointer and a count of elements, by the names
    /// each library gives them (a span of a static extent keeps no count: shown as it is).
    CxxSpan {
        members: &'static [(&'static str, &'static str)],
    },
    /// `std::optional<T>`: a `bool` saying whether it holds a value and the value, by the
    /// names each library gives them.
    CxxOptional {
        members: &'static [(&'static str, &'static str)],
    },
}

/// Which library type `name` (a DWARF type name, without its namespace) is, if any.
fn library_of(name: &str) -> Option<Library> {
    if name.starts_with("basic_string<char,") || name == "basic_string<char>" {
        return Some(Library::CxxString);
    }
    if name.starts_with("basic_string_view<char,") || name == "basic_string_view<char>" {
        return Some(Library::CxxText {
            members: &[
                ("_M_str", "_M_len"),
                ("__data_", "__size_"),
                ("__data", "__size"),
            ],
        });
    }
    // `std::vector<bool>` packs bits: not a sequence of its elements.
    if name.starts_with("vector<") && !name.starts_with("vector<bool") {
        return Some(Library::CxxVector {
            members: &[("_M_start", "_M_finish"), ("__begin_", "__end_")],
        });
    }
    if name.starts_with("array<") {
        return Some(Library::Wrapper {
            members: &["_M_elems", "__elems_"],
            pointer: false,
        });
    }
    if name.starts_with("unique_ptr<") {
        return Some(Library::Wrapper {
            members: &["_M_head_impl", "__value_", "__ptr_"],
            pointer: true,
        });
    }
    if name.starts_with("shared_ptr<") {
        return Some(Library::Wrapper {
            members: &["_M_ptr", "__ptr_"],
            pointer: true,
        });
    }
    if name.starts_with("span<") {
        return Some(Library::CxxSpan {
            members: &[
                ("_M_ptr", "_M_extent_value"),
                ("__data_", "__size_"),
                ("__data", "__size"),
            ],
        });
    }
    if name.starts_with("optional<") {
        return Some(Library::CxxOptional {
            members: &[("_M_engaged", "_M_value"), ("__engaged_", "__val_")],
        });
    }
    if name.starts_with("Rc<") || name.starts_with("Arc<") {
        return Some(Library::RustCounted);
    }
    if name == "String" {
        return Some(Library::RustVec { text: true });
    }
    if name.starts_with("Vec<") {
        return Some(Library::RustVec { text: false });
    }
    None
}

/// A type reference any unit can follow: a unit-relative one made global.
fn global<'a>(unit: &Unit<'a>, ty: AttributeValue<R<'a>>) -> AttributeValue<R<'a>> {
    match ty {
        AttributeValue::UnitRef(offset) => offset
            .to_debug_info_offset(&unit.header)
            .map_or(ty, AttributeValue::DebugInfoRef),
        other => other,
    }
}

fn is_struct(entry: &Die<'_>) -> bool {
    matches!(
        entry.tag(),
        constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
    )
}

/// A member found: its offset from the start of the struct searched, and its type.
struct Member<'a> {
    offset: u64,
    ty: AttributeValue<R<'a>>,
}

impl<'a> DebugInfo<'a> {
    /// The shape of the struct at `entry` named `name`, if it is a library type whose layout
    /// DWARF confirms. `depth` is the struct's depth in the type being built.
    pub(super) fn library_shape(
        &self,
        unit: &Unit<'a>,
        entry: &Die<'a>,
        name: &str,
        depth: usize,
    ) -> gimli::Result<Option<Shape>> {
        let Some(library) = library_of(name) else {
            return Ok(None);
        };
        let found = |member: &str, pointer: bool| {
            self.find_member(unit, entry.offset(), member, pointer, MEMBER_SEARCH_DEPTH)
        };
        // The first (pointer, length or end) pair of member names the type has.
        let first_pair = |members: &[(&str, &str)], end_pointer: bool| {
            for (pointer, length) in members {
                if let (Some(p), Some(l)) = (found(pointer, true)?, found(length, end_pointer)?) {
                    return Ok(Some((p, l)));
                }
            }
            Ok::<_, gimli::Error>(None)
        };
        let pair = match library {
            Library::Wrapper { members, pointer } => {
                for member in members {
                    if let Some(found) = found(member, pointer)? {
                        // The member stands in for the wrapper: at the wrapper's depth.
                        let ty = self.resolve_type_attr(unit, found.ty, depth)?;
                        return Ok(Some(Shape::Inner {
                            at: found.offset,
                            ty: Box::new(ty),
                        }));
                    }
                }
                return Ok(None);
            }
            Library::RustCounted => {
                let Some(pointer) = found("pointer", true)? else {
                    return Ok(None);
                };
                return self.counted_value(unit, pointer, depth);
            }
            Library::CxxOptional { members } => {
                for (engaged, value) in members {
                    if let (Some(engaged), Some(value)) =
                        (found(engaged, false)?, found(value, false)?)
                    {
                        return self.optional(unit, engaged, value, depth);
                    }
                }
                return Ok(None);
            }
            Library::CxxString => match first_pair(&[("_M_p", "_M_string_length")], false)? {
                Some(pair) => Some((pair, false, true)),
                None => return self.libcxx_string(unit, entry),
            },
            Library::CxxText { members } => first_pair(members, false)?.map(|p| (p, false, true)),
            Library::CxxSpan { members } => first_pair(members, false)?.map(|p| (p, false, false)),
            Library::CxxVector { members } => first_pair(members, true)?.map(|p| (p, true, false)),
            Library::RustVec { text } => {
                first_pair(&[("pointer", "len")], false)?.map(|p| (p, false, text))
            }
        };
        let Some(((pointer, length), len_is_end, text)) = pair else {
            return Ok(None);
        };
        // The elements' type is what the pointer member points to, unless the type names it
        // as its parameter `T`: a Rust `Vec<T>` keeps a type-erased `*u8` (since 1.80).
        // The elements stand in for the sequence: one level below it, as a struct's fields.
        let pointee = match self.resolve_type_attr(unit, pointer.ty, depth)? {
            Type::Pointer { pointee } => *pointee,
            _ => return Ok(None),
        };
        let element = match self.type_parameter(unit, entry.offset(), "T")? {
            Some(ty) if matches!(library, Library::RustVec { text: false }) => {
                self.resolve_type_attr(unit, ty, depth + 1)?
            }
            _ => pointee,
        };
        let length_ok = match self.resolve_type_attr(unit, length.ty, depth + 1)? {
            Type::Int { size: 8, .. } => !len_is_end,
            Type::Pointer { .. } => len_is_end,
            _ => false,
        };
        if !length_ok || element.size() == 0 && !text {
            return Ok(None);
        }
        Ok(Some(Shape::Sequence {
            pointer_at: pointer.offset,
            len_at: length.offset,
            len_is_end,
            element: Box::new(element),
            text,
        }))
    }

    /// The shape of a Rust `Rc` or `Arc` whose pointer member is `pointer`: the value in the
    /// block it points to, read at the wrapper's depth (the value stands in for the wrapper).
    fn counted_value(
        &self,
        unit: &Unit<'a>,
        pointer: Member<'a>,
        depth: usize,
    ) -> gimli::Result<Option<Shape>> {
        let value = self.with_entry(unit, pointer.ty, |unit, pointer_type| {
            let Some(block) = pointer_type.attr_value(constants::DW_AT_type) else {
                return Ok(None);
            };
            let found = self.with_entry(unit, global(unit, block), |unit, block| {
                if !is_struct(block) {
                    return Ok(None);
                }
                match self.find_member(unit, block.offset(), "value", false, 0)? {
                    Some(value) => Ok(Some(value)),
                    None => self.find_member(unit, block.offset(), "data", false, 0),
                }
            })?;
            Ok(found.flatten())
        })?;
        let Some(value) = value.flatten() else {
            return Ok(None);
        };
        Ok(Some(Shape::Pointee {
            pointer_at: pointer.offset,
            value_at: value.offset,
            ty: Box::new(self.resolve_type_attr(unit, value.ty, depth)?),
        }))
    }

    /// The shape of libc++'s `std::string` at `entry`: a union of a short form (a byte
    /// whose bit 0 is clear and whose other bits count the bytes that follow it) and a long
    /// form (that bit set; the length at 8, the pointer at 16), each found by its members'
    /// names. Any other arrangement (the alternate layout, with the pointer first) is not read.
    fn libcxx_string(&self, unit: &Unit<'a>, entry: &Die<'a>) -> gimli::Result<Option<Shape>> {
        let found =
            |offset, name: &str| self.find_member(unit, offset, name, false, MEMBER_SEARCH_DEPTH);
        let (Some(short), Some(long)) =
            (found(entry.offset(), "__s")?, found(entry.offset(), "__l")?)
        else {
            return Ok(None);
        };
        if short.offset != long.offset {
            return Ok(None);
        }
        // Members of each form, relative to the form.
        let within = |form: &Member<'a>, name: &'static str, pointer: bool| {
            self.with_entry(unit, form.ty, |unit, form| {
                self.find_member(unit, form.offset(), name, pointer, 2)
            })
            .map(|found| found.flatten().map(|member| member.offset))
        };
        let (Some(short_data), Some(long_size), Some(long_data)) = (
            within(&short, "__data_", false)?,
            within(&long, "__size_", false)?,
            within(&long, "__data_", true)?,
        ) else {
            return Ok(None);
        };
        if (short_data, long_size, long_data) != (1, 8, 16) {
            return Ok(None);
        }
        let size = entry
            .attr_value(constants::DW_AT_byte_size)
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        Ok(Some(Shape::ShortOrLongText {
            at: short.offset,
            size,
            short_data_at: short.offset + short_data,
            long_data_at: long.offset + long_data,
            long_len_at: long.offset + long_size,
        }))
    }

    /// The shape of a `std::optional` whose flag is `engaged` and value `value` (read at the
    /// optional's depth: the value stands in for it); `None` unless the flag is a `bool`.
    fn optional(
        &self,
        unit: &Unit<'a>,
        engaged: Member<'a>,
        value: Member<'a>,
        depth: usize,
    ) -> gimli::Result<Option<Shape>> {
        if !matches!(
            self.resolve_type_attr(unit, engaged.ty, depth + 1)?,
            Type::Bool { size: 1 }
        ) {
            return Ok(None);
        }
        Ok(Some(Shape::Optional {
            engaged_at: engaged.offset,
            value_at: value.offset,
            ty: Box::new(self.resolve_type_attr(unit, value.ty, depth)?),
        }))
    }

    /// The member `name` of the struct at `offset`, or of one of its base classes or nested
    /// members, `levels` deep at most; with `pointer`, only one whose type is a pointer (a
    /// Rust `Unique`'s `pointer` is a `NonNull` struct, whose own `pointer` is the pointer).
    /// Members' types may be in other units (rustc's optimised builds refer across them):
    /// the type of the member found is a reference any unit can follow.
    fn find_member(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        name: &str,
        pointer: bool,
        levels: usize,
    ) -> gimli::Result<Option<Member<'a>>> {
        let mut members = Vec::new();
        let in_union = self.is_union(unit, offset)?;
        self.for_each_child(unit, offset, |child| {
            if matches!(
                child.tag(),
                constants::DW_TAG_member | constants::DW_TAG_inheritance
            ) && let (Some(at), Some(ty)) = (
                member_offset(child, in_union),
                child.attr_value(constants::DW_AT_type),
            ) {
                members.push((self.name_of(unit, child)?, at, global(unit, ty)));
            }
            Ok(true)
        })?;
        // This level first: a member of the struct itself wins over one of the same name
        // further down.
        for (member_name, at, ty) in &members {
            if member_name.as_deref() == Some(name)
                && (!pointer || self.is_pointer_type(unit, *ty)?)
            {
                return Ok(Some(Member {
                    offset: *at,
                    ty: *ty,
                }));
            }
        }
        if levels == 0 {
            return Ok(None);
        }
        for (_, at, ty) in members {
            let found = self.with_entry(unit, ty, |unit, entry| {
                if !is_struct(entry) {
                    return Ok(None);
                }
                self.find_member(unit, entry.offset(), name, pointer, levels - 1)
            })?;
            if let Some(Some(found)) = found {
                return Ok(Some(Member {
                    offset: at + found.offset,
                    ty: found.ty,
                }));
            }
        }
        Ok(None)
    }

    /// The type of the template parameter `name` of the type at `offset`.
    fn type_parameter(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        name: &str,
    ) -> gimli::Result<Option<AttributeValue<R<'a>>>> {
        let mut found = None;
        self.for_each_child(unit, offset, |child| {
            if child.tag() == constants::DW_TAG_template_type_parameter
                && self.name_of(unit, child)?.as_deref() == Some(name)
            {
                found = child
                    .attr_value(constants::DW_AT_type)
                    .map(|ty| global(unit, ty));
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// Whether the type `ty` names is a pointer, through typedefs and qualifiers.
    fn is_pointer_type(&self, unit: &Unit<'a>, ty: AttributeValue<R<'a>>) -> gimli::Result<bool> {
        Ok(self
            .with_entry(unit, ty, |_, entry| {
                Ok(entry.tag() == constants::DW_TAG_pointer_type)
            })?
            .unwrap_or(false))
    }

    /// Calls `visit` with the entry the type attribute `ty` leads to past typedefs and
    /// qualifiers, and the unit holding it (this one, or another for a `DW_FORM_ref_addr`);
    /// `None` when it leads nowhere.
    pub(super) fn with_entry<T>(
        &self,
        unit: &Unit<'a>,
        ty: AttributeValue<R<'a>>,
        visit: impl FnOnce(&Unit<'a>, &Die<'a>) -> gimli::Result<T>,
    ) -> gimli::Result<Option<T>> {
        match ty {
            AttributeValue::UnitRef(offset) => {
                match skip_typedefs_and_qualifiers(unit, unit.entry(offset)?)? {
                    Skipped::To(entry) => visit(unit, &entry).map(Some),
                    Skipped::Nothing => Ok(None),
                    // A typedef here of a type elsewhere: one more hop, no further.
                    Skipped::Elsewhere(AttributeValue::DebugInfoRef(global)) => {
                        self.with_entry_elsewhere(global, visit)
                    }
                    Skipped::Elsewhere(_) => Ok(None),
                }
            }
            AttributeValue::DebugInfoRef(global) => self.with_entry_elsewhere(global, visit),
            _ => Ok(None),
        }
    }

    fn with_entry_elsewhere<T>(
        &self,
        global: gimli::DebugInfoOffset<usize>,
        visit: impl FnOnce(&Unit<'a>, &Die<'a>) -> gimli::Result<T>,
    ) -> gimli::Result<Option<T>> {
        let Some(other) = self.unit_holding(global)? else {
            return Ok(None);
        };
        let Some(offset) = global.to_unit_offset(&other.header) else {
            return Ok(None);
        };
        match skip_typedefs_and_qualifiers(&other, other.entry(offset)?)? {
            Skipped::To(entry) => visit(&other, &entry).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_types_are_known_by_name() {
        assert_eq!(
            library_of("basic_string<char, std::char_traits<char>, std::allocator<char> >"),
            Some(Library::CxxString)
        );
        assert!(matches!(
            library_of("basic_string_view<char, std::char_traits<char> >"),
            Some(Library::CxxText {
                members: [("_M_str", _), ..]
            })
        ));
        assert!(library_of("basic_string<wchar_t, std::char_traits<wchar_t> >").is_none());
        assert!(matches!(
            library_of("vector<int, std::allocator<int> >"),
            Some(Library::CxxVector { .. })
        ));
        assert!(library_of("vector<bool, std::allocator<bool> >").is_none());
        assert_eq!(library_of("String"), Some(Library::RustVec { text: true }));
        assert_eq!(
            library_of("Vec<i32, alloc::alloc::Global>"),
            Some(Library::RustVec { text: false })
        );
        assert!(library_of("Vector3").is_none());
        assert!(matches!(
            library_of("unique_ptr<shop::Item, std::default_delete<shop::Item> >"),
            Some(Library::Wrapper { pointer: true, .. })
        ));
        assert!(matches!(
            library_of("optional<int>"),
            Some(Library::CxxOptional { .. })
        ));
        assert!(matches!(
            library_of("span<int, 18446744073709551615>"),
            Some(Library::CxxSpan { .. })
        ));
        assert!(matches!(
            library_of("array<int, 3>"),
            Some(Library::Wrapper { pointer: false, .. })
        ));
    }
}
