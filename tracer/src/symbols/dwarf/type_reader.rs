//! DWARF types into [`Type`]s: base types, pointers, enums, structs and classes (with their
//! triviality for calls, which decides how C++ passes them), arrays, and Rust's fat pointers.
//! Bounded in depth, fields and enumerators, so a huge or cyclic type graph stays cheap.

use gimli::{AttributeValue, UnitOffset, constants};

use super::{DebugInfo, Die, R, Unit, member_offset};
use crate::symbols::types::{Field, Type};

/// Deepest type nesting resolved: parameter → pointee struct → field → field's pointee.
const MAX_TYPE_DEPTH: usize = 4;
/// Deepest a wrapper of one or two fields is read (see `structure`).
const MAX_WRAPPER_DEPTH: usize = 10;
/// Struct fields kept per struct.
const MAX_FIELDS: usize = 32;
/// Enumerators kept per enum.
const MAX_ENUMERATORS: usize = 512;

impl<'a> DebugInfo<'a> {
    pub(super) fn resolve_type_attr(
        &self,
        unit: &Unit<'a>,
        value: AttributeValue<R<'a>>,
        depth: usize,
    ) -> gimli::Result<Type> {
        match value {
            AttributeValue::UnitRef(offset) => self.resolve_type(unit, offset, depth),
            // A type in another unit (Go keeps its types in units of their own).
            AttributeValue::DebugInfoRef(offset) => match self.unit_holding(offset)? {
                Some(other) => {
                    let local = offset
                        .to_unit_offset(&other.header)
                        .expect("the unit holds the offset");
                    self.resolve_type(&other, local, depth)
                }
                None => Ok(Type::Opaque {
                    name: "?".into(),
                    size: 0,
                }),
            },
            _ => Ok(Type::Opaque {
                name: "?".into(),
                size: 0,
            }),
        }
    }

    /// Builds the [`Type`] at `offset`, through typedefs and qualifiers, `depth` levels deep:
    /// one reader per kind of DWARF type. A Go interface is the runtime's two-word struct in
    /// DWARF, under the typedef that names it (`error`): the outermost name is the one shown.
    pub(super) fn resolve_type(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        depth: usize,
    ) -> gimli::Result<Type> {
        let entry = unit.entry(offset)?;
        let typedef_name = match entry.tag() {
            constants::DW_TAG_typedef => self.name_of(unit, &entry)?,
            _ => None,
        };
        let ty = self.resolve_named_type(unit, entry, depth)?;
        Ok(match ty {
            Type::Struct { name, .. } | Type::Opaque { name, .. } if is_go_interface(&name) => {
                Type::Interface {
                    empty: name == GO_EMPTY_INTERFACE,
                    name: typedef_name.filter(|n| !is_go_interface(n)).unwrap_or(name),
                }
            }
            Type::Interface { name, empty } => Type::Interface {
                name: typedef_name.filter(|n| !is_go_interface(n)).unwrap_or(name),
                empty,
            },
            other => other,
        })
    }

    fn resolve_named_type(
        &self,
        unit: &Unit<'a>,
        entry: Die<'a>,
        depth: usize,
    ) -> gimli::Result<Type> {
        let entry = match skip_typedefs_and_qualifiers(unit, entry)? {
            Skipped::To(entry) => entry,
            Skipped::Nothing => return Ok(Type::Void),
            // Go's named types are typedefs in one unit of the type in another.
            Skipped::Elsewhere(value) if depth < MAX_TYPE_DEPTH => {
                return self.resolve_type_attr(unit, value, depth + 1);
            }
            Skipped::Elsewhere(_) => {
                return Ok(Type::Opaque {
                    name: "…".into(),
                    size: 0,
                });
            }
        };
        let name = self.name_of(unit, &entry)?.unwrap_or_default();
        let byte_size = entry
            .attr_value(constants::DW_AT_byte_size)
            .and_then(|v| v.udata_value())
            .unwrap_or(0);
        Ok(match entry.tag() {
            constants::DW_TAG_base_type => base_type(&entry, name, byte_size),
            // Rust names its fat pointers like structs: `&str`, `&[u8]` (see `rust_fat_pointer`).
            constants::DW_TAG_pointer_type
            | constants::DW_TAG_reference_type
            | constants::DW_TAG_rvalue_reference_type => Type::Pointer {
                pointee: Box::new(self.pointee(unit, &entry, depth)?),
            },
            constants::DW_TAG_enumeration_type => {
                self.enumeration(unit, &entry, name, byte_size)?
            }
            constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type => {
                self.structure(unit, &entry, name, byte_size, depth)?
            }
            constants::DW_TAG_array_type => self.array(unit, &entry, depth)?,
            constants::DW_TAG_unspecified_type if name == "void" || name.is_empty() => Type::Void,
            _ => Type::Opaque {
                name,
                size: byte_size,
            },
        })
    }

    /// The type `entry` points to or holds (`DW_AT_type`), one level deeper, or `…` past the
    /// depth limit.
    fn pointee(&self, unit: &Unit<'a>, entry: &Die<'a>, depth: usize) -> gimli::Result<Type> {
        match entry.attr_value(constants::DW_AT_type) {
            Some(value) if depth < MAX_TYPE_DEPTH => self.resolve_type_attr(unit, value, depth + 1),
            Some(_) => Ok(Type::Opaque {
                name: "…".into(),
                size: 0,
            }),
            None => Ok(Type::Void),
        }
    }

    /// An enum with its enumerators (at most [`MAX_ENUMERATORS`]) and the signedness of its
    /// underlying type.
    fn enumeration(
        &self,
        unit: &Unit<'a>,
        entry: &Die<'a>,
        name: String,
        byte_size: u64,
    ) -> gimli::Result<Type> {
        let mut signed = false;
        if let Some(AttributeValue::UnitRef(base)) = entry.attr_value(constants::DW_AT_type)
            && let Ok(Type::Int { signed: s, .. }) = self.resolve_type(unit, base, MAX_TYPE_DEPTH)
        {
            signed = s;
        }
        let mut enumerators = Vec::new();
        self.for_each_child(unit, entry.offset(), |child| {
            if enumerators.len() >= MAX_ENUMERATORS {
                return Ok(false);
            }
            if child.tag() == constants::DW_TAG_enumerator
                && let Some(value) = enumerator_value(child)
                && let Some(label) = self.name_of(unit, child)?
            {
                enumerators.push((value, label));
            }
            Ok(true)
        })?;
        Ok(Type::Enum {
            name,
            size: small(byte_size),
            signed,
            enumerators,
        })
    }

    /// A struct, class or union with its fields, or a Rust fat pointer that DWARF spells as a
    /// struct; opaque past the depth limit.
    fn structure(
        &self,
        unit: &Unit<'a>,
        entry: &Die<'a>,
        name: String,
        byte_size: u64,
        depth: usize,
    ) -> gimli::Result<Type> {
        // A Rust enum with data: its variants, their fields while the depth allows.
        let fields_allowed = depth < MAX_TYPE_DEPTH - 1
            || (depth < MAX_WRAPPER_DEPTH && self.data_members_of_variants(unit, entry)? <= 1);
        if let Some(variants) =
            self.variants(unit, entry, &name, byte_size, depth, fields_allowed)?
        {
            return Ok(variants);
        }
        // Go's strings and slices are structs in DWARF, but values to show at any depth
        // (their members are a pointer and words, shallow by nature).
        let go_value = name == "string" || name.starts_with("[]");
        // A library type shown as what it holds needs none of its fields, at any depth.
        let shape = self.library_shape(unit, entry, &name, depth)?;
        // A thin wrapper (Rust's `NonNull`, `Unique`, a newtype) is read past the depth
        // limit: how a value is passed depends on what it wraps, and there is little of it.
        let past_limit = depth >= MAX_TYPE_DEPTH - 1 && !go_value;
        let thin = past_limit
            && shape.is_none()
            && depth < MAX_WRAPPER_DEPTH
            && self.data_members(unit, entry.offset())? <= 2;
        if past_limit && !thin {
            return Ok(match shape {
                Some(shape) => Type::Struct {
                    trivial: self.class_trivial_for_calls(
                        unit,
                        entry.offset(),
                        &name,
                        TRIVIALITY_DEPTH,
                    )?,
                    name,
                    size: byte_size,
                    fields: Vec::new(),
                    union: false,
                    shape: Some(shape),
                },
                None => Type::Opaque {
                    name,
                    size: byte_size,
                },
            });
        }
        let (fields, trivial) = self.members(unit, entry.offset(), &name, depth)?;
        Ok(match rust_fat_pointer(&name, &fields) {
            Some(fat) => fat,
            None => Type::Struct {
                name,
                size: byte_size,
                fields,
                union: entry.tag() == constants::DW_TAG_union_type,
                trivial,
                shape,
            },
        })
    }

    /// A fixed array: its element type and the count of its first dimension.
    fn array(&self, unit: &Unit<'a>, entry: &Die<'a>, depth: usize) -> gimli::Result<Type> {
        // The elements stand in for the array: at its depth, so that an array of structs in
        // a struct still shows their fields.
        let element = match entry.attr_value(constants::DW_AT_type) {
            Some(value) => self.resolve_type_attr(unit, value, depth)?,
            None => Type::Void,
        };
        let mut count = 0;
        self.for_each_child(unit, entry.offset(), |child| {
            if child.tag() == constants::DW_TAG_subrange_type {
                if let Some(n) = child
                    .attr_value(constants::DW_AT_count)
                    .and_then(|v| v.udata_value())
                {
                    count = n;
                } else if let Some(upper) = child
                    .attr_value(constants::DW_AT_upper_bound)
                    .and_then(|v| v.udata_value())
                {
                    count = upper.saturating_add(1);
                }
            }
            // Only the first child can be the first dimension.
            Ok(false)
        })?;
        Ok(Type::Array {
            element: Box::new(element),
            count,
        })
    }

    /// The data members and base classes of the struct at `offset` (bases as fields named
    /// after their type), and whether the struct is trivial for calls (see [`Type::Struct`]).
    pub(super) fn members(
        &self,
        unit: &Unit<'a>,
        offset: UnitOffset<usize>,
        name: &str,
        depth: usize,
    ) -> gimli::Result<(Vec<Field>, Option<bool>)> {
        let mut fields = Vec::new();
        let mut trivial = Some(true);
        let in_union = self.is_union(unit, offset)?;
        self.for_each_child(unit, offset, |child| {
            let child_name = self.name_of(unit, child)?;
            if self.breaks_triviality(unit, child, child_name.as_deref(), name, offset)? {
                trivial = Some(false);
            }
            let data = matches!(
                child.tag(),
                constants::DW_TAG_member | constants::DW_TAG_inheritance
            );
            if data
                && fields.len() < MAX_FIELDS
                && let Some(field) =
                    self.field(unit, child, child_name, in_union, fields.len(), depth)?
            {
                trivial = match &field.ty {
                    // Cut short by the depth limit: its class is read for this alone.
                    Type::Opaque { .. } => match child.attr_value(constants::DW_AT_type) {
                        Some(ty) => and_member(
                            trivial,
                            self.type_trivial_for_calls(unit, ty, TRIVIALITY_DEPTH)?,
                        ),
                        None => trivial.and(None),
                    },
                    member => with_member(trivial, member),
                };
                fields.push(field);
            }
            Ok(true)
        })?;
        Ok((fields, trivial))
    }

    /// Whether `child` (named `child_name`) of the class at `class` (named `class_name`)
    /// makes the class non-trivial for calls by itself: a user-declared destructor, copy or
    /// move constructor, a virtual base, a virtual table pointer.
    fn breaks_triviality(
        &self,
        unit: &Unit<'a>,
        child: &Die<'a>,
        child_name: Option<&str>,
        class_name: &str,
        class: UnitOffset<usize>,
    ) -> gimli::Result<bool> {
        Ok(match child.tag() {
            constants::DW_TAG_subprogram => {
                self.is_special_member(unit, child, child_name, class_name, class)?
            }
            constants::DW_TAG_inheritance => {
                child.attr_value(constants::DW_AT_virtuality).is_some()
            }
            constants::DW_TAG_member => child_name.is_some_and(|n| n.starts_with("_vptr")),
            _ => false,
        })
    }

    /// Whether the member function `child` of the class `class` (named `class_name`) is a
    /// user-declared destructor, copy or move constructor, which makes the class non-trivial
    /// for calls (unless defaulted in the class).
    fn is_special_member(
        &self,
        unit: &Unit<'a>,
        child: &Die<'a>,
        child_name: Option<&str>,
        class_name: &str,
        class: UnitOffset<usize>,
    ) -> gimli::Result<bool> {
        let declared = child.attr_value(constants::DW_AT_artificial).is_none()
            && child.attr_value(constants::DW_AT_defaulted).is_none();
        Ok(declared
            && match child_name {
                Some(n) if n.starts_with('~') => true,
                Some(n) if n == class_name => self.is_copy_or_move(unit, child.offset(), class)?,
                _ => false,
            })
    }

    /// The field a member or base class entry describes; `None` for static members (no
    /// location) and bit fields (not captured).
    fn field(
        &self,
        unit: &Unit<'a>,
        child: &Die<'a>,
        child_name: Option<String>,
        in_union: bool,
        index: usize,
        depth: usize,
    ) -> gimli::Result<Option<Field>> {
        if child.attr_value(constants::DW_AT_bit_size).is_some() {
            return Ok(None);
        }
        let inheritance = child.tag() == constants::DW_TAG_inheritance;
        let Some(offset) = member_offset(child, in_union) else {
            return Ok(None);
        };
        let ty = match child.attr_value(constants::DW_AT_type) {
            Some(v) => self.resolve_type_attr(unit, v, depth + 1)?,
            None => Type::Opaque {
                name: "?".into(),
                size: 0,
            },
        };
        let name = match (inheritance, child_name) {
            (_, Some(n)) => n,
            (true, None) => ty.name(),
            (false, None) => format!("_{index}"),
        };
        Ok(Some(Field { name, offset, ty }))
    }

    /// How many data members (and base classes) the struct at `offset` has, at most 3.
    fn data_members(&self, unit: &Unit<'a>, offset: UnitOffset<usize>) -> gimli::Result<usize> {
        let in_union = self.is_union(unit, offset)?;
        let mut count = 0;
        self.for_each_child(unit, offset, |child| {
            let member = match child.tag() {
                constants::DW_TAG_inheritance => true,
                constants::DW_TAG_member => member_offset(child, in_union).is_some(),
                // An enum with data: its variants' own.
                constants::DW_TAG_variant_part => {
                    count = 3;
                    false
                }
                _ => false,
            };
            count += usize::from(member);
            Ok(count <= 2)
        })?;
        Ok(count)
    }

    /// The most data members any variant of the Rust enum at `entry` has (at most 3); 3
    /// when it is not one.
    fn data_members_of_variants(&self, unit: &Unit<'a>, entry: &Die<'a>) -> gimli::Result<usize> {
        let mut most = 0;
        let Some(part) = self.variant_part(unit, entry)? else {
            return Ok(3);
        };
        let part = part.offset();
        let mut structs = Vec::new();
        self.for_each_child(unit, part, |variant| {
            if variant.tag() == constants::DW_TAG_variant {
                self.for_each_child(unit, variant.offset(), |member| {
                    if let Some(AttributeValue::UnitRef(ty)) =
                        member.attr_value(constants::DW_AT_type)
                    {
                        structs.push(ty);
                    }
                    Ok(false)
                })?;
            }
            Ok(true)
        })?;
        for ty in structs {
            most = most.max(self.data_members(unit, ty)?);
            if most > 2 {
                break;
            }
        }
        Ok(most)
    }

    /// Whether the class at `class` (named `name`) is trivial for calls (see
    /// [`Type::Struct`]), read from its entries alone, `levels` of members and base classes
    /// deep: the types built for showing values stop earlier than the rule needs.
    fn class_trivial_for_calls(
        &self,
        unit: &Unit<'a>,
        class: UnitOffset<usize>,
        name: &str,
        levels: usize,
    ) -> gimli::Result<Option<bool>> {
        let mut trivial = Some(true);
        let mut members = Vec::new();
        let in_union = self.is_union(unit, class)?;
        self.for_each_child(unit, class, |child| {
            let child_name = self.name_of(unit, child)?;
            if self.breaks_triviality(unit, child, child_name.as_deref(), name, class)? {
                trivial = Some(false);
            }
            // Static members have no place in the object.
            let placed = child.tag() == constants::DW_TAG_inheritance
                || (child.tag() == constants::DW_TAG_member
                    && member_offset(child, in_union).is_some());
            if placed && let Some(ty) = child.attr_value(constants::DW_AT_type) {
                members.push(ty);
            }
            Ok(trivial != Some(false))
        })?;
        for member in members {
            if trivial == Some(false) {
                break;
            }
            trivial = and_member(trivial, self.type_trivial_for_calls(unit, member, levels)?);
        }
        Ok(trivial)
    }

    /// Whether a member of type `ty` keeps its class trivial for calls: a class only if it
    /// is trivial itself (`levels` deep), an array as its elements, anything else.
    fn type_trivial_for_calls(
        &self,
        unit: &Unit<'a>,
        ty: AttributeValue<R<'a>>,
        levels: usize,
    ) -> gimli::Result<Option<bool>> {
        let found = self.with_entry(unit, ty, |unit, entry| match entry.tag() {
            constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type => {
                let key = entry
                    .offset()
                    .to_debug_info_offset(&unit.header)
                    .map(|offset| offset.0);
                if let Some(known) =
                    key.and_then(|k| self.trivial_classes.borrow().get(&k).copied())
                {
                    return Ok(known);
                }
                let trivial = match levels {
                    0 => None,
                    _ => {
                        let name = self.name_of(unit, entry)?.unwrap_or_default();
                        self.class_trivial_for_calls(unit, entry.offset(), &name, levels - 1)?
                    }
                };
                // An answer the depth cut short is not the class's own.
                if let (Some(key), Some(_)) = (key, trivial) {
                    self.trivial_classes.borrow_mut().insert(key, trivial);
                }
                Ok(trivial)
            }
            constants::DW_TAG_array_type => match entry.attr_value(constants::DW_AT_type) {
                Some(element) => self.type_trivial_for_calls(unit, element, levels),
                None => Ok(Some(true)),
            },
            _ => Ok(Some(true)),
        })?;
        // A type that leads nowhere (`void`) holds nothing to copy.
        Ok(found.unwrap_or(Some(true)))
    }

    /// Whether the member function at `function` is a copy or move constructor of the class at
    /// `class`: one parameter besides `this`, a reference to the class.
    fn is_copy_or_move(
        &self,
        unit: &Unit<'a>,
        function: UnitOffset<usize>,
        class: UnitOffset<usize>,
    ) -> gimli::Result<bool> {
        let mut children = unit.entries_at_offset(function)?;
        let depth = children.next_dfs()?.map_or(0, |e| e.depth());
        let mut params = Vec::new();
        while let Some(child) = children.next_dfs()? {
            if child.depth() <= depth {
                break;
            }
            if child.depth() == depth + 1
                && child.tag() == constants::DW_TAG_formal_parameter
                && child.attr_value(constants::DW_AT_artificial).is_none()
            {
                params.push(child.attr_value(constants::DW_AT_type));
            }
        }
        let [Some(AttributeValue::UnitRef(reference))] = params.as_slice() else {
            return Ok(false);
        };
        let reference = unit.entry(*reference)?;
        if !matches!(
            reference.tag(),
            constants::DW_TAG_reference_type | constants::DW_TAG_rvalue_reference_type
        ) {
            return Ok(false);
        }
        // Through `const` to the class itself.
        let mut target = reference.attr_value(constants::DW_AT_type);
        for _ in 0..4 {
            let Some(AttributeValue::UnitRef(offset)) = target else {
                return Ok(false);
            };
            if offset == class {
                return Ok(true);
            }
            let entry = unit.entry(offset)?;
            if entry.tag() != constants::DW_TAG_const_type
                && entry.tag() != constants::DW_TAG_volatile_type
            {
                // A declaration of the class elsewhere in the unit names it too.
                let same_name = match (
                    entry.attr_value(constants::DW_AT_name),
                    unit.entry(class)?.attr_value(constants::DW_AT_name),
                ) {
                    (Some(a), Some(b)) => {
                        self.dwarf.attr_string(unit, a)?.slice()
                            == self.dwarf.attr_string(unit, b)?.slice()
                    }
                    _ => false,
                };
                return Ok(same_name);
            }
            target = entry.attr_value(constants::DW_AT_type);
        }
        Ok(false)
    }
}

/// The Go runtime's struct for an interface with methods (`error` too) and for an empty one.
const GO_INTERFACE: &str = "runtime.iface";
const GO_EMPTY_INTERFACE: &str = "runtime.eface";

fn is_go_interface(name: &str) -> bool {
    name == GO_INTERFACE || name == GO_EMPTY_INTERFACE
}

/// Rust's pointers to slices and strings are structs `{ data_ptr, length }` in DWARF: `&str`,
/// `&[T]`, and the owning ones, `Box<[T]>`, `Box<str>`, `*const [T]`; Go's `string` is
/// `{ str, len }`.
fn rust_fat_pointer(name: &str, fields: &[Field]) -> Option<Type> {
    if let Some(slice) = go_slice(name, fields) {
        return Some(slice);
    }
    let [data, length] = fields else { return None };
    if name == "string" && data.name == "str" && length.name == "len" {
        return Some(Type::Str);
    }
    if data.name != "data_ptr" || length.name != "length" || data.offset != 0 {
        return None;
    }
    let Type::Pointer { pointee } = &data.ty else {
        return None;
    };
    // `&[u8]` and `&str` both point to bytes: the name tells a slice (`[`) from a string.
    if name.contains('[') {
        return Some(Type::Slice {
            element: pointee.clone(),
            go: false,
        });
    }
    (name.contains("str")
        && matches!(
            **pointee,
            Type::Int { size: 1, .. } | Type::Char { size: 1, .. }
        ))
    .then_some(Type::Str)
}

/// Go's `[]T`: a struct `{ array *T, len, cap }` named `[]T`.
fn go_slice(name: &str, fields: &[Field]) -> Option<Type> {
    let [array, len, cap] = fields else {
        return None;
    };
    let names = [array.name.as_str(), len.name.as_str(), cap.name.as_str()];
    let Type::Pointer { pointee } = &array.ty else {
        return None;
    };
    (name.starts_with("[]") && names == ["array", "len", "cap"]).then(|| Type::Slice {
        element: pointee.clone(),
        go: true,
    })
}

/// Where following typedefs and qualifiers leads.
pub(super) enum Skipped<'a> {
    To(Die<'a>),
    /// One that names nothing (`const void`).
    Nothing,
    /// The type is in another unit (`DW_FORM_ref_addr`).
    Elsewhere(AttributeValue<R<'a>>),
}

/// Follows typedefs and qualifiers (at most a few in a row) to the type they name.
pub(super) fn skip_typedefs_and_qualifiers<'a>(
    unit: &Unit<'a>,
    mut entry: Die<'a>,
) -> gimli::Result<Skipped<'a>> {
    for _ in 0..8 {
        let transparent = matches!(
            entry.tag(),
            constants::DW_TAG_typedef
                | constants::DW_TAG_const_type
                | constants::DW_TAG_volatile_type
                | constants::DW_TAG_restrict_type
                | constants::DW_TAG_atomic_type
        );
        if !transparent {
            break;
        }
        match entry.attr_value(constants::DW_AT_type) {
            Some(AttributeValue::UnitRef(next)) => entry = unit.entry(next)?,
            Some(other @ AttributeValue::DebugInfoRef(_)) => return Ok(Skipped::Elsewhere(other)),
            _ => return Ok(Skipped::Nothing),
        }
    }
    Ok(Skipped::To(entry))
}

/// A size in bytes as the small sizes of scalar types hold it.
fn small(size: u64) -> u8 {
    u8::try_from(size).unwrap_or(u8::MAX)
}

/// A base type by its DWARF encoding.
fn base_type(entry: &Die<'_>, name: String, byte_size: u64) -> Type {
    let encoding = match entry.attr_value(constants::DW_AT_encoding) {
        Some(AttributeValue::Encoding(e)) => e,
        _ => constants::DW_ATE_unsigned,
    };
    let size = small(byte_size);
    match encoding {
        constants::DW_ATE_boolean => Type::Bool { size },
        constants::DW_ATE_float => Type::Float { name, size },
        // A complex number is two floats side by side.
        constants::DW_ATE_complex_float => Type::Array {
            element: Box::new(Type::Float {
                name: name.replace("complex ", "").replace("_Complex ", ""),
                size: small(byte_size / 2),
            }),
            count: 2,
        },
        constants::DW_ATE_signed_char => Type::Char {
            name,
            size,
            signed: true,
        },
        // Rust's u8 is an unsigned char in DWARF; it is a number, not a letter.
        constants::DW_ATE_unsigned_char | constants::DW_ATE_UTF if name == "u8" => Type::Int {
            name,
            size: 1,
            signed: false,
        },
        constants::DW_ATE_unsigned_char | constants::DW_ATE_UTF => Type::Char {
            name,
            size,
            signed: false,
        },
        constants::DW_ATE_signed => Type::Int {
            name,
            size,
            signed: true,
        },
        _ => Type::Int {
            name,
            size,
            signed: false,
        },
    }
}

/// The value of an enumerator, in whichever form the compiler wrote it.
fn enumerator_value(entry: &Die<'_>) -> Option<i64> {
    Some(match entry.attr_value(constants::DW_AT_const_value)? {
        AttributeValue::Sdata(v) => v,
        AttributeValue::Udata(v) => v as i64,
        AttributeValue::Data1(v) => i64::from(v),
        AttributeValue::Data2(v) => i64::from(v),
        AttributeValue::Data4(v) => i64::from(v),
        AttributeValue::Data8(v) => v as i64,
        _ => return None,
    })
}

/// Levels of members and base classes the triviality of a class is read through (the
/// standard library's `std::optional<int>` is five deep).
const TRIVIALITY_DEPTH: usize = 12;

/// The triviality of a class so far, after a member whose own is `member`.
fn and_member(trivial: Option<bool>, member: Option<bool>) -> Option<bool> {
    match (trivial, member) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// The triviality of a class so far (`trivial`), after a member of type `member`: a
/// non-trivial member class makes it non-trivial; one of unknown kind makes it unknown.
fn with_member(trivial: Option<bool>, member: &Type) -> Option<bool> {
    let own = match member {
        Type::Struct { trivial, .. } => *trivial,
        // A member whose type was not resolved could be a class of any kind.
        Type::Opaque { .. } => None,
        _ => Some(true),
    };
    and_member(trivial, own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::int;

    fn field(name: &str, offset: u64, ty: Type) -> Field {
        Field {
            name: name.into(),
            offset,
            ty,
        }
    }

    #[test]
    fn go_slices_and_strings_are_recognised_by_name_and_fields() {
        let pointer = Type::Pointer {
            pointee: Box::new(int(8, true)),
        };
        let slice = [
            field("array", 0, pointer.clone()),
            field("len", 8, int(8, true)),
            field("cap", 16, int(8, true)),
        ];
        let Some(Type::Slice { element, go: true }) = rust_fat_pointer("[]int", &slice) else {
            panic!("a Go slice");
        };
        assert_eq!(*element, int(8, true));
        assert_eq!(Type::Slice { element, go: true }.size(), 24);
        // A C struct with the same fields is not a slice.
        assert_eq!(rust_fat_pointer("span", &slice), None);
        let string = [field("str", 0, pointer), field("len", 8, int(8, true))];
        assert_eq!(rust_fat_pointer("string", &string), Some(Type::Str));
    }
}
