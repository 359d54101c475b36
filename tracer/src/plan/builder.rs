//! Builds both halves of a plan together: each kernel read step and the payload slot it fills,
//! so offsets cannot disagree. The builder enforces the kernel's bounds (steps, payload bytes,
//! chunk size, dereference depth) and marks what does not fit as missing.

use tracer_ebpf::{
    CapturePlan, CaptureStep, MAX_CHUNK, MAX_DEREFS, MAX_PAYLOAD, MAX_STEPS, STATUS_BYTES, go_type,
    location, plan_flags, value,
};

use super::{
    Plan,
    calling_convention::{GO_ARGS, go_words},
    slots::{ArgSlot, Render, ReturnValue, SlotValue},
};
use crate::symbols::types::{Field, Shape, Type};

/// How a value is reached at the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    /// The value is the register.
    Register(u8),
    /// The value is 16 bytes in two registers.
    RegisterPair(u8, u8),
    /// The value is in memory: start from `reg`, follow pointers after adding each of
    /// `derefs`, then add `offset`.
    Memory {
        reg: u8,
        derefs: Vec<i32>,
        offset: i32,
    },
}

impl Access {
    /// The access to what the pointer stored at this place points to, plus `offset`.
    fn through_pointer(&self, offset: i32) -> Option<Self> {
        match self {
            Self::Register(r) => Some(Self::Memory {
                reg: *r,
                derefs: Vec::new(),
                offset,
            }),
            Self::Memory {
                reg,
                derefs,
                offset: at,
            } if derefs.len() < MAX_DEREFS => {
                let mut derefs = derefs.clone();
                derefs.push(*at);
                Some(Self::Memory {
                    reg: *reg,
                    derefs,
                    offset,
                })
            }
            _ => None,
        }
    }

    /// The access to a field at `offset` of a value in memory.
    fn field(&self, offset: u64) -> Option<Self> {
        match self {
            Self::Memory {
                reg,
                derefs,
                offset: at,
            } => Some(Self::Memory {
                reg: *reg,
                derefs: derefs.clone(),
                offset: at.checked_add(i32::try_from(offset).ok()?)?,
            }),
            _ => None,
        }
    }
}

/// Builds a plan step by step, placing each slot in the payload.
#[derive(Debug)]
pub(super) struct PlanBuilder {
    kernel: CapturePlan,
    string_size: u16,
    /// The first elements of a sequence captured (`--elements`).
    pub(super) elements: u16,
    pub(super) full: bool,
}

/// Where a sequence's length is, from its pointer, and what it counts.
#[derive(Debug, Clone, Copy, Default)]
struct LengthField {
    /// Bytes from the pointer to the length in memory (0: the word after the pointer).
    offset: i16,
    /// The bytes of one element the length counts (0: bytes).
    element_size: u8,
    /// The field is a pointer past the last element, not a count.
    end_pointer: bool,
}

pub(super) const PLAN_FULL: &str = "plan full";

/// Bytes of a Go type's name captured (`*github.com/acme/shop/orders.NotFoundError` fits).
const GO_TYPE_NAME_BYTES: u16 = 96;
/// The first strings of a Go `[]string` shown, and the bytes of each.
const GO_SLICE_STRINGS: usize = 2;
const GO_SLICE_STRING_BYTES: u16 = 32;

impl PlanBuilder {
    pub(super) fn new(string_size: u16) -> Self {
        Self {
            kernel: CapturePlan::default(),
            string_size: string_size.clamp(1, MAX_CHUNK as u16),
            elements: super::DEFAULT_ELEMENTS,
            full: false,
        }
    }

    /// Adds a step whose slot takes `slot_size` payload bytes; `None` when the plan is full.
    fn step(&mut self, mut step: CaptureStep, slot_size: usize) -> Option<(u8, u16)> {
        let index = self.kernel.step_count as usize;
        let offset = (self.kernel.payload_len as usize).max(STATUS_BYTES);
        if index >= MAX_STEPS || offset + slot_size > MAX_PAYLOAD {
            self.full = true;
            return None;
        }
        step.location = location::REGISTER;
        step.out_offset = offset as u16;
        self.kernel.steps[index] = step;
        self.kernel.step_count += 1;
        self.kernel.payload_len = (offset + slot_size) as u32;
        Some((index as u8, offset as u16))
    }

    /// A step reading `access` (register, or memory through its pointers) with `kind`.
    fn read(
        &mut self,
        access: &Access,
        kind: u8,
        size: u16,
        slot_size: usize,
    ) -> Option<(u8, u16)> {
        let mut step = CaptureStep {
            value: kind,
            size,
            ..CaptureStep::default()
        };
        match access {
            Access::Register(r) => step.reg = *r,
            Access::RegisterPair(..) => return None,
            Access::Memory {
                reg,
                derefs,
                offset,
            } => {
                step.reg = *reg;
                step.derefs = derefs.len() as u8;
                for (slot, deref) in step.deref_offsets.iter_mut().zip(derefs) {
                    *slot = *deref;
                }
                step.offset = *offset;
            }
        }
        self.step(step, slot_size)
    }

    fn missing(&self, reason: &str) -> SlotValue {
        SlotValue::Missing {
            reason: reason.to_string(),
        }
    }

    /// The value of a scalar (or anything shown as its first bytes) at `access`.
    pub(super) fn scalar(&mut self, access: &Access, size: u64, render: Render) -> SlotValue {
        let size = size.clamp(1, 8) as u16;
        let placed = match access {
            Access::Register(_) => self.read(access, value::WORD, 8, 8),
            Access::Memory { .. } => self.read(access, value::BYTES, size, size as usize),
            Access::RegisterPair(..) => None,
        };
        match placed {
            Some((step, offset)) => SlotValue::Captured {
                offset,
                size,
                step,
                render,
            },
            None => self.missing(PLAN_FULL),
        }
    }

    /// A C string whose pointer is the value at `access`.
    fn c_string(&mut self, access: &Access) -> SlotValue {
        let string = match access {
            Access::Register(r) => Some(Access::Memory {
                reg: *r,
                derefs: Vec::new(),
                offset: 0,
            }),
            other => other.through_pointer(0),
        };
        let Some(string) = string else {
            return self.missing("pointer chain too deep");
        };
        // Room for one byte more than shown (to tell a string of exactly `string_size` bytes
        // from a longer one) and the NUL the kernel writes after it.
        let size = (self.string_size + 2).min(MAX_CHUNK as u16);
        match self.read(&string, value::C_STRING, size, 4 + size as usize) {
            Some((step, offset)) => SlotValue::Captured {
                offset,
                size: 4 + size,
                step,
                render: Render::CString,
            },
            None => self.missing(PLAN_FULL),
        }
    }

    /// A (pointer, length) pair at `access`, copying at most `bytes` of what it points to.
    fn pointer_and_length(&mut self, access: &Access, bytes: u16, render: Render) -> SlotValue {
        self.counted(access, bytes, render, LengthField::default())
    }

    /// A pointer at `access` and a length as `length` says, copying at most `bytes` of what
    /// the pointer points to; for a register pair, the first register is the pointer.
    fn counted(
        &mut self,
        access: &Access,
        bytes: u16,
        render: Render,
        length: LengthField,
    ) -> SlotValue {
        let placed = match access {
            Access::RegisterPair(pointer, len_reg) if !length.end_pointer => {
                let step = CaptureStep {
                    value: value::PTR_LEN_IN_REGISTERS,
                    reg: *pointer,
                    len_reg: *len_reg,
                    element_size: length.element_size,
                    size: bytes,
                    ..CaptureStep::default()
                };
                self.step(step, 8 + bytes as usize)
            }
            Access::Memory { .. } => {
                let kind = match length.end_pointer {
                    true => value::BEGIN_END_IN_MEMORY,
                    false => value::PTR_LEN_IN_MEMORY,
                };
                self.read(access, kind, bytes, 8 + bytes as usize)
                    .inspect(|&(step, _)| {
                        let step = &mut self.kernel.steps[step as usize];
                        step.len_field = length.offset;
                        step.element_size = length.element_size;
                    })
            }
            Access::Register(_) | Access::RegisterPair(..) => None,
        };
        match placed {
            Some((step, offset)) => SlotValue::Captured {
                offset,
                size: 8 + bytes,
                step,
                render,
            },
            None => self.missing(PLAN_FULL),
        }
    }

    /// The value of type `ty` at `access`. `expand` says whether a struct (or a pointer to one)
    /// shows its fields; `fields` limits which.
    pub(super) fn value(
        &mut self,
        access: &Access,
        ty: &Type,
        expand: bool,
        fields: Option<&[String]>,
    ) -> SlotValue {
        match ty {
            Type::Void => self.missing("void"),
            _ if ty.is_c_string() => self.c_string(access),
            Type::Struct {
                shape: Some(shape), ..
            } => self.shaped(access, shape, fields),
            // A library value behind a pointer or a C++ reference: shown as the value.
            Type::Pointer { pointee }
                if matches!(**pointee, Type::Struct { shape: Some(_), .. }) =>
            {
                match access.through_pointer(0) {
                    Some(at) => self.value(&at, pointee, expand, fields),
                    None => self.missing("pointer chain too deep"),
                }
            }
            // A Go map is a pointer to the runtime's table, whose first word counts its
            // entries: shown as the map's length.
            Type::Pointer { pointee } if go_map_length(pointee).is_some() => {
                let pointer = self.scalar(access, 8, Render::Pointer);
                let length = go_map_length(pointee).expect("checked");
                let fields = match access.through_pointer(0) {
                    Some(at) => vec![ArgSlot {
                        name: "len".into(),
                        value: self.value(&at, &length.ty, false, None),
                    }],
                    None => Vec::new(),
                };
                SlotValue::Struct {
                    pointer: Some(Box::new(pointer)),
                    fields,
                }
            }
            Type::Pointer { pointee } if expand && matches!(**pointee, Type::Struct { .. }) => {
                let pointer = self.scalar(access, 8, Render::Pointer);
                let Type::Struct {
                    fields: members, ..
                } = &**pointee
                else {
                    unreachable!()
                };
                let fields = self.fields(members, fields, |field| {
                    access.through_pointer(field.offset as i32)
                });
                SlotValue::Struct {
                    pointer: Some(Box::new(pointer)),
                    fields,
                }
            }
            Type::Struct {
                fields: members, ..
            } if expand => {
                let fields = match access {
                    Access::Memory { .. } => {
                        self.fields(members, fields, |field| access.field(field.offset))
                    }
                    Access::Register(r) => self.fields_in_registers(members, fields, &[*r]),
                    Access::RegisterPair(a, b) => {
                        self.fields_in_registers(members, fields, &[*a, *b])
                    }
                };
                SlotValue::Struct {
                    pointer: None,
                    fields,
                }
            }
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
            // A Rust slice: its first elements, its length counting elements.
            Type::Slice { element, go: false } => {
                let (copy, render, element_size) = self.elements_of(element, false);
                let length = LengthField {
                    element_size,
                    ..LengthField::default()
                };
                self.counted(access, copy, render, length)
            }
            Type::Array { element, count } => self.array(access, element, *count),
            other => match render_of(other) {
                Some(render) => self.scalar(access, other.size(), render),
                None => self.missing("aggregate"),
            },
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
        wanted: Option<&[String]>,
    ) -> SlotValue {
        let pointer_access = match access {
            Access::Memory { .. } => access.field(pointer_at),
            Access::Register(_) if pointer_at == 0 => Some(access.clone()),
            _ => None,
        };
        let Some(pointer_access) = pointer_access else {
            return self.missing("library value not in memory");
        };
        let Ok(value_at) = i32::try_from(value_at) else {
            return self.missing("library value");
        };
        let pointer = Box::new(self.scalar(&pointer_access, 8, Render::Pointer));
        let Some(value) = pointer_access.through_pointer(value_at) else {
            return self.missing("pointer chain too deep");
        };
        let fields = match ty {
            Type::Struct {
                fields: members,
                shape: None,
                ..
            } => self.fields(members, wanted, |field| value.field(field.offset)),
            other => vec![ArgSlot {
                name: "value".into(),
                value: self.value(&value, other, false, None),
            }],
        };
        SlotValue::Struct {
            pointer: Some(pointer),
            fields,
        }
    }

    /// A library type shown as what it holds (see [`Shape`]); `fields` limits a struct's.
    fn shaped(&mut self, access: &Access, shape: &Shape, fields: Option<&[String]>) -> SlotValue {
        match shape {
            Shape::Inner { at, ty } => match (access, *at) {
                (Access::Memory { .. }, at) => match access.field(at) {
                    Some(member) => self.value(&member, ty, true, fields),
                    None => self.missing("pointer chain too deep"),
                },
                // A one-word wrapper in a register is its member.
                (Access::Register(_), 0) => self.value(access, ty, true, fields),
                _ => self.missing("library value not in memory"),
            },
            Shape::Pointee {
                pointer_at,
                value_at,
                ty,
            } => self.pointee(access, *pointer_at, *value_at, ty, fields),
            Shape::Sequence {
                pointer_at,
                len_at,
                len_is_end,
                element,
                text,
            } => self.sequence(access, *pointer_at, *len_at, *len_is_end, element, *text),
        }
    }

    /// A sequence (see [`Shape::Sequence`]) of the value at `access`: its length and first
    /// elements, or a string's text.
    fn sequence(
        &mut self,
        access: &Access,
        pointer_at: u64,
        len_at: u64,
        len_is_end: bool,
        element: &Type,
        text: bool,
    ) -> SlotValue {
        let Ok(offset) = i16::try_from(len_at as i64 - pointer_at as i64) else {
            return self.missing("length too far from its pointer");
        };
        let (copy, render, element_size) = self.elements_of(element, text);
        let length = LengthField {
            offset,
            // An end pointer counts bytes.
            element_size: if len_is_end { 0 } else { element_size },
            end_pointer: len_is_end,
        };
        let render = match (render, len_is_end) {
            // The kernel writes the bytes between the pointers: counted in elements here.
            (Render::Sequence { element: shown, .. }, true) => Render::Sequence {
                element: shown,
                element_size: u16::try_from(element.size().max(1)).unwrap_or(u16::MAX),
            },
            (render, _) => render,
        };
        match access {
            Access::Memory { .. } => match access.field(pointer_at) {
                Some(at) => self.counted(&at, copy, render, length),
                None => self.missing("pointer chain too deep"),
            },
            // A trivially copyable 16-byte value (`std::string_view`) comes in two registers.
            Access::RegisterPair(first, second)
                if pointer_at.is_multiple_of(8) && len_at.is_multiple_of(8) && !len_is_end =>
            {
                let register = |at: u64| if at == 0 { *first } else { *second };
                let pair = Access::RegisterPair(register(pointer_at), register(len_at));
                self.counted(&pair, copy, render, length)
            }
            _ => self.missing("library value not in memory"),
        }
    }

    /// How a sequence of `element`s is captured: the bytes to copy, how to show it, and the
    /// element size the kernel scales a count of elements by (0: the length counts bytes).
    fn elements_of(&self, element: &Type, text: bool) -> (u16, Render, u8) {
        let size = element.size();
        if text {
            return (self.string_size, Render::Str, 0);
        }
        if size == 1 && matches!(element, Type::Int { .. } | Type::Char { .. }) {
            return (self.string_size.min(32), Render::Slice { bytes: true }, 0);
        }
        // The kernel scales a count by at most 255 bytes an element; past that the length
        // stays a count of elements, shown without them.
        let Ok(scale) = u8::try_from(size) else {
            return (
                0,
                Render::Sequence {
                    element: None,
                    element_size: 1,
                },
                0,
            );
        };
        let shown = match render_of(element) {
            Some(render) if (1..=8).contains(&size) => Some(render),
            _ => None,
        };
        let count = match shown {
            Some(_) => u64::from(self.elements).min(MAX_CHUNK as u64 / size),
            None => 0,
        };
        let render = Render::Sequence {
            element: shown.map(Box::new),
            element_size: u16::from(scale.max(1)),
        };
        ((count * size) as u16, render, scale)
    }

    /// A fixed array of scalars, copied whole up to one chunk; arrays of bytes show as text.
    fn array(&mut self, access: &Access, element: &Type, count: u64) -> SlotValue {
        let element_size = element.size();
        let Some(render) = render_of(element) else {
            return self.missing("array of aggregates");
        };
        if element_size == 0 || element_size > 8 {
            return self.missing("array of aggregates");
        }
        let count = count.min(MAX_CHUNK as u64 / element_size) as u16;
        let size = count * element_size as u16;
        let text = matches!(element, Type::Char { size: 1, .. })
            || matches!(element, Type::Int { size: 1, name, .. } if name == "u8");
        match self.read(access, value::BYTES, size, size as usize) {
            Some((step, offset)) => SlotValue::Captured {
                offset,
                size,
                step,
                render: Render::Array {
                    element: Box::new(render),
                    element_size: element_size as u8,
                    count,
                    text,
                },
            },
            None => self.missing(PLAN_FULL),
        }
    }

    /// Fields of a struct in memory, each at the access `field_access` gives.
    fn fields(
        &mut self,
        members: &[Field],
        wanted: Option<&[String]>,
        field_access: impl Fn(&Field) -> Option<Access>,
    ) -> Vec<ArgSlot> {
        members
            .iter()
            .filter(|f| wanted.is_none_or(|w| w.contains(&f.name)))
            .map(|field| ArgSlot {
                name: field.name.clone(),
                value: match field_access(field) {
                    Some(access) => self.value(&access, &field.ty, false, None),
                    None => self.missing("pointer chain too deep"),
                },
            })
            .collect()
    }

    /// Fields of a struct passed in registers: each register is captured once, fields are
    /// views of its bytes; strings are read through the register holding their pointer.
    fn fields_in_registers(
        &mut self,
        members: &[Field],
        wanted: Option<&[String]>,
        regs: &[u8],
    ) -> Vec<ArgSlot> {
        let mut words: Vec<Option<(u8, u16)>> = vec![None; regs.len()];
        let mut slots = Vec::new();
        for field in members
            .iter()
            .filter(|f| wanted.is_none_or(|w| w.contains(&f.name)))
        {
            let word = (field.offset / 8) as usize;
            let within = field.offset % 8;
            let size = field.ty.size();
            let value = if word >= regs.len() || within + size > 8 {
                self.missing("straddles registers")
            } else if field.ty.is_c_string() || matches!(field.ty, Type::Str) {
                self.value(&Access::Register(regs[word]), &field.ty, false, None)
            } else if let Some(render) = render_of(&field.ty) {
                if words[word].is_none() {
                    words[word] = self.read(&Access::Register(regs[word]), value::WORD, 8, 8);
                }
                match words[word] {
                    Some((step, offset)) => SlotValue::Captured {
                        offset: offset + within as u16,
                        size: size as u16,
                        step,
                        render,
                    },
                    None => self.missing(PLAN_FULL),
                }
            } else {
                self.missing("aggregate")
            };
            slots.push(ArgSlot {
                name: field.name.clone(),
                value,
            });
        }
        slots
    }

    /// A Go interface at `access`: its type word, the name of its dynamic type, its data word
    /// and, for an `error`, the message its data starts with (`errors.New`'s and
    /// `fmt.Errorf`'s values start with it). `words` are the type and data words when they are
    /// captured already (a result's, in the result room).
    fn interface(
        &mut self,
        access: &Access,
        empty: bool,
        error: bool,
        words: Option<(SlotValue, SlotValue)>,
    ) -> SlotValue {
        let (type_access, data_access) = match access {
            Access::RegisterPair(a, b) => (Access::Register(*a), Access::Register(*b)),
            Access::Memory { .. } => match access.field(8) {
                Some(data) => (access.clone(), data),
                None => return self.missing("interface out of reach"),
            },
            Access::Register(_) => return self.missing("interface in one register"),
        };
        let (type_word, data) = words.unwrap_or_else(|| {
            (
                self.scalar(&type_access, 8, Render::Pointer),
                self.scalar(&data_access, 8, Render::Pointer),
            )
        });
        // An empty interface holds the type descriptor; any other its itab, which holds it.
        let descriptor = if empty {
            type_access.through_pointer(0)
        } else {
            type_access
                .through_pointer(go_type::ITAB_TYPE)
                .and_then(|itab_type| itab_type.through_pointer(0))
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
        let message = error.then(|| match data_access.through_pointer(0) {
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
    fn go_strings(&mut self, access: &Access, len: SlotValue) -> SlotValue {
        let array = match access {
            Access::RegisterPair(pointer, _) => Some(Access::Register(*pointer)),
            Access::Memory { .. } => Some(access.clone()),
            Access::Register(_) => None,
        };
        let bytes = self.string_size.min(GO_SLICE_STRING_BYTES);
        let items = (0..GO_SLICE_STRINGS)
            .map(|i| {
                match array
                    .as_ref()
                    .and_then(|a| a.through_pointer(16 * i as i32))
                {
                    Some(at) => self.pointer_and_length(&at, bytes, Render::Str),
                    None => self.missing("pointer chain too deep"),
                }
            })
            .collect();
        SlotValue::Elements {
            len: Box::new(len),
            items,
        }
    }

    /// Steps added from here on run at a Go function's returns (its results' strings and
    /// interfaces), until [`end_return_steps`](Self::end_return_steps).
    pub(super) fn begin_return_steps(&mut self) -> u32 {
        self.kernel.step_count
    }

    pub(super) fn end_return_steps(&mut self, first: u32) {
        let end = self.kernel.step_count;
        if end > first {
            self.kernel.return_steps = first | (end << 16);
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

    pub(super) fn finish(mut self, args: Vec<ArgSlot>, ret: Option<ReturnValue>) -> Plan {
        self.kernel.flags |= plan_flags::PRESENT;
        Plan {
            kernel: self.kernel,
            args,
            ret,
            full: self.full,
            goroutine: None,
            results: Vec::new(),
            stack: None,
            caller: None,
        }
    }

    /// The steps of `--stack`: the return address at the entry's stack pointer (plus
    /// `sp_adjust`), then the call's user stack stored in the kernel's stack map, its id in
    /// the payload. (stack id, return address.)
    pub(super) fn stack(&mut self, sp_adjust: i32) -> (SlotValue, SlotValue) {
        let at_return_address = Access::Memory {
            reg: tracer_ebpf::reg::RSP,
            derefs: Vec::new(),
            offset: sp_adjust,
        };
        let word = Render::Int {
            size: 8,
            signed: false,
        };
        let caller = self.scalar(&at_return_address, 8, word);
        (self.stack_id(), caller)
    }

    /// The step that stores the call's user stack in the kernel's stack map and its id in
    /// the payload.
    fn stack_id(&mut self) -> SlotValue {
        let step = CaptureStep {
            value: value::STACK_ID,
            reg: tracer_ebpf::reg::RSP,
            size: 8,
            ..CaptureStep::default()
        };
        match self.step(step, 8) {
            Some((step, offset)) => SlotValue::Captured {
                offset,
                size: 8,
                step,
                render: Render::Int {
                    size: 8,
                    signed: false,
                },
            },
            None => self.missing(PLAN_FULL),
        }
    }

    /// Room for `words` result words of a Go function, which its return program fills in:
    /// a read of as many stack bytes at the entry (always readable) makes the step whose
    /// status says the room is valid. Returns (step, payload offset).
    pub(super) fn go_results_room(&mut self, words: usize) -> Option<(u8, u16)> {
        let bytes = 8 * words;
        let access = Access::Memory {
            reg: tracer_ebpf::reg::RSP,
            derefs: Vec::new(),
            offset: 0,
        };
        let room = self.read(&access, value::BYTES, bytes as u16, bytes)?;
        self.kernel.go_results = ((words as u32) << 16) | u32::from(room.1);
        Some(room)
    }

    /// The read of a Go function's goroutine id: the word `goid_offset` bytes into the
    /// `runtime.g` that R14 holds at its entry.
    pub(super) fn goroutine_id(&mut self, goid_offset: i32) -> SlotValue {
        let access = Access::Memory {
            reg: tracer_ebpf::reg::R14,
            derefs: Vec::new(),
            offset: goid_offset,
        };
        self.scalar(
            &access,
            8,
            Render::Int {
                size: 8,
                signed: false,
            },
        )
    }
}

/// The entry count of a Go map's runtime table `ty`: `hash<K,V>.count` (Go 1.23 and before)
/// or the Swiss table's `map<K,V>.used` (1.24 on), the first field of each.
fn go_map_length(ty: &Type) -> Option<&Field> {
    let Type::Struct { name, fields, .. } = ty else {
        return None;
    };
    let first = fields.first().filter(|f| f.offset == 0)?;
    let counted = (name.starts_with("hash<") && first.name == "count")
        || (name.starts_with("map<") && first.name == "used");
    (counted && name.ends_with('>') && first.ty.is_scalar()).then_some(first)
}

/// How a scalar of type `ty` is shown, if it is one.
pub(super) fn render_of(ty: &Type) -> Option<Render> {
    Some(match ty {
        Type::Int { size, signed, .. } => Render::Int {
            size: *size,
            signed: *signed,
        },
        Type::Bool { .. } => Render::Bool,
        Type::Char { size, signed, .. } => Render::Char {
            size: *size,
            signed: *signed,
        },
        Type::Enum {
            size,
            signed,
            enumerators,
            ..
        } => Render::Enum {
            size: *size,
            signed: *signed,
            enumerators: enumerators.clone(),
        },
        Type::Pointer { .. } => Render::Pointer,
        Type::Float { size, .. } => Render::Float { size: *size },
        _ => return None,
    })
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
