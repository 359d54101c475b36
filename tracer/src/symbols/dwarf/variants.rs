//! Rust's enums with data, as DWARF's variant parts describe them: the member that holds the
//! discriminant (a tag of its own, or a niche inside one variant's data: `Option<&T>`'s
//! pointer, `Result<u64, String>`'s capacity), and each variant with the discriminant value
//! that selects it and its fields. A variant without a value is the one every other value
//! selects (the variant whose data holds the niche). Nothing here guesses a layout: an enum
//! DWARF does not describe this way stays the struct it is.

use gimli::{AttributeValue, UnitOffset, constants};

use super::{DebugInfo, Die, R, Unit};
use crate::symbols::types::{Discriminant, Field, Type, Variant};

/// Variants whose fields are read, per enum; the rest are known by name and value alone.
const MAX_VARIANTS_WITH_FIELDS: usize = 64;

/// One variant as DWARF lists it, before its fields are read.
struct Listed<'a> {
    name: String,
    value: Option<u64>,
    /// Where the variant's struct is in the enum.
    offset: u64,
    ty: Option<AttributeValue<R<'a>>>,
}

impl<'a> DebugInfo<'a> {
    /// The enum with data whose struct is at `entry` (named `name`, `size` bytes), if the
    /// struct holds a variant part; its variants' fields are read at `depth + 1`, as a
    /// struct's are, and only while `fields` allows (past the depth limit an enum still
    /// says which variant it holds).
    pub(super) fn variants(
        &self,
        unit: &Unit<'a>,
        entry: &Die<'a>,
        name: &str,
        size: u64,
        depth: usize,
        fields: bool,
    ) -> gimli::Result<Option<Type>> {
        let Some(part) = self.variant_part(unit, entry)? else {
            return Ok(None);
        };
        let discriminant = match part.attr_value(constants::DW_AT_discr) {
            None => None,
            Some(AttributeValue::UnitRef(member)) => match self.discriminant(unit, member)? {
                Some(discriminant) => Some(discriminant),
                None => return Ok(None),
            },
            Some(_) => return Ok(None),
        };
        let Some(listed) = self.listed_variants(unit, part.offset(), discriminant)? else {
            return Ok(None);
        };
        let mut variants = Vec::with_capacity(listed.len());
        for (index, variant) in listed.into_iter().enumerate() {
            let fields = match (fields && index < MAX_VARIANTS_WITH_FIELDS, variant.ty) {
                (true, Some(AttributeValue::UnitRef(ty))) => {
                    self.variant_fields(unit, ty, &variant.name, variant.offset, depth)?
                }
                _ => Vec::new(),
            };
            variants.push(Variant {
                name: variant.name,
                value: variant.value,
                fields,
            });
        }
        Ok(Some(Type::Variants {
            name: name.to_string(),
            size,
            discriminant,
            variants,
        }))
    }

    /// The variant part of the struct at `entry`: what makes it a Rust enum with data.
    pub(super) fn variant_part(
        &self,
        unit: &Unit<'a>,
        entry: &Die<'a>,
    ) -> gimli::Result<Option<Die<'a>>> {
        let mut part = None;
        self.for_each_child(unit, entry.offset(), |child| {
            if child.tag() == constants::DW_TAG_variant_part {
                part = Some(child.clone());
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(part)
    }

    /// The discriminant the member at `member` holds: an unsigned integer of at most 8
    /// bytes at its offset.
    fn discriminant(
        &self,
        unit: &Unit<'a>,
        member: UnitOffset<usize>,
    ) -> gimli::Result<Option<Discriminant>> {
        let member = unit.entry(member)?;
        let Some(offset) = member
            .attr_value(constants::DW_AT_data_member_location)
            .and_then(|v| v.udata_value())
        else {
            return Ok(None);
        };
        let Some(ty) = member.attr_value(constants::DW_AT_type) else {
            return Ok(None);
        };
        // Its size alone matters: no depth to spend.
        let size = self.resolve_type_attr(unit, ty, usize::MAX / 2)?.size();
        Ok(match u8::try_from(size) {
            Ok(size @ 1..=8) => Some(Discriminant { offset, size }),
            _ => None,
        })
    }

    /// The variants under the variant part at `part`, each with its value (masked to the
    /// discriminant's size); `None` when one is described in a way not read here (a list or
    /// range of values).
    fn listed_variants(
        &self,
        unit: &Unit<'a>,
        part: UnitOffset<usize>,
        discriminant: Option<Discriminant>,
    ) -> gimli::Result<Option<Vec<Listed<'a>>>> {
        let mut listed = Vec::new();
        let mut unreadable = false;
        self.for_each_child(unit, part, |child| {
            if child.tag() != constants::DW_TAG_variant {
                return Ok(true);
            }
            if child.attr_value(constants::DW_AT_discr_list).is_some() {
                unreadable = true;
                return Ok(false);
            }
            let value = match child.attr_value(constants::DW_AT_discr_value) {
                None => None,
                Some(value) => match (discriminant_value(value), discriminant) {
                    (Some(value), Some(d)) => Some(mask(value, d.size)),
                    _ => {
                        unreadable = true;
                        return Ok(false);
                    }
                },
            };
            let mut member = None;
            self.for_each_child(unit, child.offset(), |inner| {
                if inner.tag() == constants::DW_TAG_member {
                    let offset = inner
                        .attr_value(constants::DW_AT_data_member_location)
                        .and_then(|v| v.udata_value())
                        .unwrap_or(0);
                    member = Some((
                        self.name_of(unit, inner)?,
                        offset,
                        inner.attr_value(constants::DW_AT_type),
                    ));
                    return Ok(false);
                }
                Ok(true)
            })?;
            if let Some((name, offset, ty)) = member {
                listed.push(Listed {
                    name: name.unwrap_or_else(|| format!("variant{}", listed.len())),
                    value,
                    offset,
                    ty,
                });
            }
            Ok(true)
        })?;
        Ok((!unreadable).then_some(listed))
    }

    /// The fields of the variant struct at `ty`, which sits at `offset` in the enum: at their
    /// offsets in the whole enum.
    fn variant_fields(
        &self,
        unit: &Unit<'a>,
        ty: UnitOffset<usize>,
        name: &str,
        offset: u64,
        depth: usize,
    ) -> gimli::Result<Vec<Field>> {
        let entry = unit.entry(ty)?;
        if !matches!(
            entry.tag(),
            constants::DW_TAG_structure_type | constants::DW_TAG_class_type
        ) {
            return Ok(Vec::new());
        }
        let (fields, _) = self.members(unit, ty, name, depth)?;
        Ok(fields
            .into_iter()
            .filter_map(|field| {
                Some(Field {
                    offset: field.offset.checked_add(offset)?,
                    ..field
                })
            })
            .collect())
    }
}

/// A discriminant value in whichever form the compiler wrote it.
fn discriminant_value(value: AttributeValue<R<'_>>) -> Option<u64> {
    match value {
        AttributeValue::Sdata(v) => Some(v as u64),
        other => other.udata_value(),
    }
}

/// The low `size` bytes of `value`: a signed value written wider than its discriminant.
fn mask(value: u64, size: u8) -> u64 {
    match size {
        8.. => value,
        n => value & ((1u64 << (8 * u32::from(n))) - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_to_the_discriminant() {
        assert_eq!(mask(u64::MAX, 1), 0xff);
        assert_eq!(mask(0x8000_0000_0000_0000, 8), 0x8000_0000_0000_0000);
        assert_eq!(
            discriminant_value(AttributeValue::Sdata(-1)).map(|v| mask(v, 2)),
            Some(0xffff)
        );
        assert_eq!(discriminant_value(AttributeValue::Data1(3)), Some(3));
    }
}
