//! Go's own values: interfaces (the dynamic type's name, an `error`'s message), slices of
//! strings, maps by their length, and results, which Go returns in the registers it passes
//! arguments in (scalars are copied into a room of the payload at the return; what needs
//! memory read there is read by return steps).

use tracer_ebpf::{go_type, value};

use super::{
    access::Access,
    builder::{GO_TYPE_NAME_BYTES, PLAN_FULL, PlanBuilder, render_of},
    calling_convention::{GO_ARGS, go_words},
    slots::{ArgSlot, Render, SlotValue},
};
use crate::symbols::types::{Field, Type};

/// The first strings of a Go `[]string` shown, and the bytes of each.
const GO_SLICE_STRINGS: usize = 2;
const GO_SLICE_STRING_BYTES: u16 = 32;

impl PlanBuilder {
    /// A Go interface at `access`: its type word, the name of its dynamic type, its data word
    /// and, for an `error`, the message its data starts with (`errors.New`'s and
    /// `fmt.Errorf`'s values start with it). `words` are the type and data words when they are
    /// captured already (a result's, in the result room).
    pub(super) fn interface(
        &mut self,
        access: &Access,
        empty: bool,
        error: bool,
        words: Option<(SlotValue, SlotValue)>,
    ) -> SlotValue {
        let (type_access, data_access) = match access {
            Access::RegisterPair(a, b) => (Access::Register(*a), Access::Register(*b)),
            Access::Register(_) => return self.missing("interface in one register"),
            other => match other.field(8) {
                Some(data) => (other.clone(), data),
                None => return self.missing("interface out of reach"),
            },
        };
        let (type_word, data) = words.unwrap_or_else(|| {
            (
                self.scalar(&type_access, 8, Render::Pointer),
                self.scalar(&data_access, 8, Render::Pointer),
            )
        });
        // An empty interface holds the type descriptor; any other its itab, which holds it.
        let descriptor = if empty {
            type_access.deref(0)
        } else {
            type_access
                .deref(go_type::ITAB_TYPE)
                .and_then(|itab_type| itab_type.deref(0))
        };
        let type_name = match descriptor {
            Some(at) => {
                let size = GO_TYPE_NAME_BYTES;
                match self.read(&at, value::GO_TYPE_NAME, size, 8 + size as usize) {
                    Some((step, offset)) => SlotValue::Captured {
                        offset,
                        size: 8 + size,
                        step,
                        render: Render::GoTypeName,
                    },
                    None => self.missing(PLAN_FULL),
                }
            }
            None => self.missing("pointer chain too deep"),
        };
        let message = error.then(|| match data_access.deref(0) {
            Some(at) => self.pointer_and_length(&at, self.string_size, Render::Str),
            None => self.missing("pointer chain too deep"),
        });
        SlotValue::Interface {
            type_word: Box::new(type_word),
            type_name: Box::new(type_name),
            data: Box::new(data),
            message: message.map(Box::new),
        }
    }

    /// A Go `[]string` at `access` (its header: array pointer, length, capacity) by `len`
    /// and its first strings, each read through the array pointer (a string is 16 bytes).
    /// Strings past the length are read too but never shown.
    pub(super) fn go_strings(&mut self, access: &Access, len: SlotValue) -> SlotValue {
        let array = match access {
            Access::Register(_) => None,
            other => Some(other.clone()),
        };
        let bytes = self.string_size.min(GO_SLICE_STRING_BYTES);
        let items = (0..GO_SLICE_STRINGS)
            .map(
                |i| match array.as_ref().and_then(|a| a.deref(16 * i as i32)) {
                    Some(at) => self.pointer_and_length(&at, bytes, Render::Str),
                    None => self.missing("pointer chain too deep"),
                },
            )
            .collect();
        SlotValue::Elements {
            len: Box::new(len),
            items,
        }
    }

    /// The slot of a Go result of type `ty` at word `word` of the result room (payload
    /// `room.1`, valid when step `room.0` is): scalars from the room the return program copies
    /// the result registers into, strings, byte slices and interfaces' types read by return
    /// steps from the registers themselves (run between `begin_return_steps` and
    /// `end_return_steps`), structs field by field.
    pub(super) fn go_result(&mut self, ty: &Type, word: usize, room: (u8, u16)) -> SlotValue {
        let (step, offset) = room;
        let at = |w: usize| offset + 8 * w as u16;
        let in_room = |w: usize, size: u16, render: Render| SlotValue::Captured {
            offset: at(w),
            size,
            step,
            render,
        };
        let pair = || Access::RegisterPair(GO_ARGS[word], GO_ARGS[word + 1]);
        let signed = Render::Int {
            size: 8,
            signed: true,
        };
        match ty {
            Type::Float { .. } => self.missing("xmm"),
            Type::Void => self.missing("void"),
            Type::Str => self.pointer_and_length(&pair(), self.string_size, Render::Str),
            Type::Slice { element, go: true } if element.size() == 1 => {
                let copy = self.string_size.min(32);
                self.pointer_and_length(&pair(), copy, Render::Slice { bytes: true })
            }
            Type::Slice { element, go: true } if matches!(**element, Type::Str) => {
                let len = in_room(word + 1, 8, signed);
                self.go_strings(&pair(), len)
            }
            // Other slices by their length, from the room.
            Type::Slice { go: true, .. } => SlotValue::Struct {
                pointer: None,
                fields: vec![ArgSlot {
                    name: "len".into(),
                    value: in_room(word + 1, 8, signed),
                }],
            },
            Type::Interface { name, empty } => {
                let words = (
                    in_room(word, 8, Render::Pointer),
                    in_room(word + 1, 8, Render::Pointer),
                );
                self.interface(&pair(), *empty, name == "error", Some(words))
            }
            Type::Struct { fields, .. } => {
                let mut next = word;
                let fields = fields
                    .iter()
                    .map(|field| {
                        let value = self.go_result(&field.ty, next, room);
                        next += go_words(&field.ty).unwrap_or(0);
                        ArgSlot {
                            name: field.name.clone(),
                            value,
                        }
                    })
                    .collect();
                SlotValue::Struct {
                    pointer: None,
                    fields,
                }
            }
            other => match render_of(other) {
                Some(render) => in_room(word, other.size().clamp(1, 8) as u16, render),
                None => self.missing(&other.name()),
            },
        }
    }
}

/// The entry count of a Go map's runtime table `ty`: `hash<K,V>.count` (Go 1.23 and before)
/// or the Swiss table's `map<K,V>.used` (1.24 on), the first field of each.
pub(super) fn go_map_length(ty: &Type) -> Option<&Field> {
    let Type::Struct { name, fields, .. } = ty else {
        return None;
    };
    let first = fields.first().filter(|f| f.offset == 0)?;
    let counted = (name.starts_with("hash<") && first.name == "count")
        || (name.starts_with("map<") && first.name == "used");
    (counted && name.ends_with('>') && first.ty.is_scalar()).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::int;

    fn table(name: &str, first: &str) -> Type {
        Type::Struct {
            name: name.into(),
            size: 48,
            fields: vec![Field {
                name: first.into(),
                offset: 0,
                ty: int(8, false),
            }],
            union: false,
            trivial: Some(true),
            shape: None,
        }
    }

    fn order() -> Type {
        let items = Type::Slice {
            element: Box::new(Type::Str),
            go: true,
        };
        let field = |name: &str, offset, ty| Field {
            name: name.into(),
            offset,
            ty,
        };
        Type::Struct {
            name: "main.Order".into(),
            size: 40,
            fields: vec![
                field("ID", 0, int(8, true)),
                field("Items", 8, items),
                field("Total", 32, int(8, true)),
            ],
            union: false,
            trivial: Some(true),
            shape: None,
        }
    }

    fn error() -> Type {
        Type::Interface {
            name: "error".into(),
            empty: false,
        }
    }

    #[test]
    fn go_results_read_scalars_from_the_room_and_strings_and_errors_at_the_return() {
        use tracer_ebpf::reg;
        let mut builder = PlanBuilder::new(64);
        // (Order, error, string): 5 words, 2, 2.
        let room = builder.go_results_room(9).expect("room");
        let first = builder.begin_return_steps();
        let order = builder.go_result(&order(), 0, room);
        let error = builder.go_result(&error(), 5, room);
        let text = builder.go_result(&Type::Str, 7, room);
        builder.end_return_steps(first);
        let plan = builder.finish(Vec::new(), None);
        let kernel = plan.kernel;

        // The struct's fields at their words of the room: ID 0, Items' length 2, Total 4.
        let SlotValue::Struct { fields, .. } = &order else {
            panic!("{order:?}")
        };
        let room_offset = |value: &SlotValue| match value {
            SlotValue::Captured { offset, step, .. } => (*step, *offset),
            SlotValue::Elements { len, .. } => match &**len {
                SlotValue::Captured { offset, step, .. } => (*step, *offset),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let words: Vec<(u8, u16)> = fields.iter().map(|f| room_offset(&f.value)).collect();
        assert_eq!(words, [room, (room.0, room.1 + 16), (room.0, room.1 + 32)]);
        // Items' first two strings, through the array pointer in RBX (word 1).
        let SlotValue::Elements { items, .. } = &fields[1].value else {
            panic!("{:?}", fields[1])
        };
        let item_steps: Vec<_> = items
            .iter()
            .map(|item| match item {
                SlotValue::Captured { step, .. } => kernel.steps[*step as usize],
                other => panic!("{other:?}"),
            })
            .map(|step| (step.value, step.reg, step.derefs, step.offset))
            .collect();
        assert_eq!(
            item_steps,
            [
                (value::PTR_LEN_IN_MEMORY, reg::RBX, 0, 0),
                (value::PTR_LEN_IN_MEMORY, reg::RBX, 0, 16)
            ]
        );

        // The error: its two words from the room, its type's name through the itab in R8
        // (the sixth result register), its message through the data pointer in R9.
        let SlotValue::Interface {
            type_word,
            type_name,
            data,
            message,
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(room_offset(type_word), (room.0, room.1 + 40));
        assert_eq!(room_offset(data), (room.0, room.1 + 48));
        let step_of = |value: &SlotValue| match value {
            SlotValue::Captured { step, .. } => kernel.steps[*step as usize],
            other => panic!("{other:?}"),
        };
        let name = step_of(type_name);
        assert_eq!(
            (name.value, name.reg, name.derefs, name.deref_offsets[0]),
            (value::GO_TYPE_NAME, reg::R8, 1, go_type::ITAB_TYPE)
        );
        let message = step_of(message.as_deref().expect("an error's message"));
        assert_eq!(
            (message.value, message.reg, message.derefs),
            (value::PTR_LEN_IN_MEMORY, reg::R9, 0)
        );
        // The string's bytes from its two registers, R10 and R11.
        let string = step_of(&text);
        assert_eq!(
            (string.value, string.reg, string.len_reg),
            (value::PTR_LEN_IN_REGISTERS, reg::R10, reg::R11)
        );
        // Those five steps run at the return; the room's read at the entry.
        let at_return: Vec<usize> = (0..kernel.step_count as usize)
            .filter(|&i| kernel.at_return(i))
            .collect();
        assert_eq!(at_return, [1, 2, 3, 4, 5]);
        assert!(!kernel.at_return(room.0 as usize));
    }

    #[test]
    fn go_maps_of_both_runtimes_show_their_length() {
        assert!(go_map_length(&table("hash<string,int>", "count")).is_some());
        assert!(go_map_length(&table("map<string,int>", "used")).is_some());
        assert!(go_map_length(&table("hash<string,int>", "used")).is_none());
        assert!(go_map_length(&table("hashtable", "count")).is_none());
    }
}
