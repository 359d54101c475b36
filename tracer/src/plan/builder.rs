//! Builds both halves of a plan together: each kernel read step and the payload slot it fills,
//! so offsets cannot disagree. The builder enforces the kernel's bounds (steps, payload bytes,
//! chunk size, dereference depth) and marks what does not fit as missing. How each type of
//! value is read is in `values` (and `go_values` for Go's own); this module holds the reads
//! they are made of.

use tracer_ebpf::{CapturePlan, CaptureStep, MAX_CHUNK, MAX_PAYLOAD, MAX_STEPS, STATUS_BYTES};
use tracer_ebpf::{location, plan_flags, value};

use super::{
    Plan,
    access::Access,
    slots::{ArgSlot, Render, ReturnValue, SlotValue},
};
use crate::symbols::types::Type;

/// Builds a plan step by step, placing each slot in the payload.
#[derive(Debug)]
pub(super) struct PlanBuilder {
    pub(super) kernel: CapturePlan,
    pub(super) string_size: u16,
    /// The first elements of a sequence captured (`--elements`).
    pub(super) elements: u16,
    pub(super) full: bool,
    /// The word step of each register read so far on this side of the call (the entry's or
    /// the return's): (register, step, payload offset). Parts of one register share it.
    words: Vec<(u8, u8, u16)>,
}

/// Where a sequence's length is, from its pointer, and what it counts.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LengthField {
    /// Bytes from the pointer to the length in memory (0: the word after the pointer).
    pub offset: i16,
    /// The bytes of one element the length counts (0: bytes).
    pub element_size: u8,
    /// The field is a pointer past the last element, not a count.
    pub end_pointer: bool,
}

impl LengthField {
    /// A count of bytes at `len_at` of a value whose pointer is at `pointer_at`; `None`
    /// when the two are further apart than a step can say.
    pub(super) fn between(pointer_at: u64, len_at: u64) -> Option<Self> {
        let offset = i64::try_from(len_at).ok()? - i64::try_from(pointer_at).ok()?;
        Some(Self {
            offset: i16::try_from(offset).ok()?,
            ..Self::default()
        })
    }
}

pub(super) const PLAN_FULL: &str = "plan full";

/// Bytes of a Go type's name captured (`*github.com/acme/shop/orders.NotFoundError` fits).
pub(super) const GO_TYPE_NAME_BYTES: u16 = 96;

/// The largest value read whole into the payload so that its scalars are views of one copy
/// (a small struct, an enum with its variants' data).
const COPY_LIMIT: u64 = 64;

impl PlanBuilder {
    pub(super) fn new(string_size: u16) -> Self {
        Self {
            kernel: CapturePlan::default(),
            string_size: string_size.clamp(1, MAX_CHUNK as u16),
            elements: super::DEFAULT_ELEMENTS,
            full: false,
            words: Vec::new(),
        }
    }

    /// Adds a step whose slot takes `slot_size` payload bytes; `None` when the plan is full.
    fn step(&mut self, mut step: CaptureStep, slot_size: usize) -> Option<(u8, u16)> {
        let index = self.kernel.step_count as usize;
        let offset = (self.kernel.payload_len as usize).max(STATUS_BYTES);
        // The kernel copies at most a chunk a step (the callers ask for no more; a layout
        // from odd DWARF must not make a slot the kernel fills only in part).
        if usize::from(step.size) > MAX_CHUNK {
            return None;
        }
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

    /// A step reading `access` (a register, or memory through its pointers) with `kind`.
    pub(super) fn read(
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
            Access::Copied { memory, .. } => return self.read(memory, kind, size, slot_size),
            Access::RegisterPair(..) | Access::Pieces { .. } => return None,
        }
        self.step(step, slot_size)
    }

    pub(super) fn missing(&self, reason: &str) -> SlotValue {
        SlotValue::Missing {
            reason: reason.to_string(),
        }
    }

    /// The step holding register `register`'s word on this side, added the first time.
    fn register_word(&mut self, register: u8) -> Option<(u8, u16)> {
        if let Some(&(_, step, offset)) = self.words.iter().find(|(r, ..)| *r == register) {
            return Some((step, offset));
        }
        let (step, offset) = self.read(&Access::Register(register), value::WORD, 8, 8)?;
        self.words.push((register, step, offset));
        Some((step, offset))
    }

    /// The value of a scalar (or anything shown as its first bytes) at `access`: a read of
    /// memory, or a view of a register's word or of a copy already in the payload.
    pub(super) fn scalar(&mut self, access: &Access, size: u64, render: Render) -> SlotValue {
        let size = size.clamp(1, 8);
        if matches!(access, Access::Memory { .. } | Access::Copied { .. }) {
            return self.block(access, size, render);
        }
        match access.held_in_register(size) {
            Ok((register, within)) => match self.register_word(register) {
                Some((step, offset)) => SlotValue::Captured {
                    offset: offset + within as u16,
                    size: size as u16,
                    step,
                    render,
                },
                None => self.missing(PLAN_FULL),
            },
            Err(reason) => self.missing(reason),
        }
    }

    /// `size` bytes of the value at `access` as one slot shown by `render` (an array, a
    /// struct read whole): a read of memory, or a view of what holds them in the payload.
    pub(super) fn block(&mut self, access: &Access, size: u64, render: Render) -> SlotValue {
        let size16 = match u16::try_from(size) {
            Ok(size) if usize::from(size) <= MAX_CHUNK => size,
            _ => return self.missing("too large"),
        };
        match access {
            Access::Copied {
                step,
                offset,
                size: copied,
                ..
            } if size <= *copied => SlotValue::Captured {
                offset: *offset,
                size: size16,
                step: *step,
                render,
            },
            Access::Copied { memory, .. } => self.block(memory, size, render),
            Access::Memory { .. } => match self.read(access, value::BYTES, size16, size as usize) {
                Some((step, offset)) => SlotValue::Captured {
                    offset,
                    size: size16,
                    step,
                    render,
                },
                None => self.missing(PLAN_FULL),
            },
            held if size <= 8 => self.scalar(held, size, render),
            _ if size > 16 => self.missing("larger than two registers"),
            // Sixteen bytes in two registers whose words sit side by side in the payload.
            held => {
                let Some((first, second)) = held.register_pair() else {
                    return self.missing("split across registers");
                };
                match (self.register_word(first), self.register_word(second)) {
                    (Some((step, offset)), Some((_, next))) if next == offset + 8 => {
                        SlotValue::Captured {
                            offset,
                            size: size16,
                            step,
                            render,
                        }
                    }
                    (Some(_), Some(_)) => self.missing("split across registers"),
                    _ => self.missing(PLAN_FULL),
                }
            }
        }
    }

    /// The value at `access`, `size` bytes, copied whole into the payload when it is in
    /// memory and small, so that the scalars read from it are views of one read; the access
    /// as it is otherwise (or when the plan has no room).
    pub(super) fn copied(&mut self, access: &Access, size: u64) -> Access {
        if !matches!(access, Access::Memory { .. }) || !(9..=COPY_LIMIT).contains(&size) {
            return access.clone();
        }
        match self.read(access, value::BYTES, size as u16, size as usize) {
            Some((step, offset)) => Access::Copied {
                step,
                offset,
                size,
                memory: Box::new(access.clone()),
            },
            None => access.clone(),
        }
    }

    /// Why the pointer at `access` cannot be followed.
    fn unfollowable(&self, access: &Access) -> SlotValue {
        match access.unreadable_piece(8) {
            Some(reason) => self.missing(&format!("pointer {reason}")),
            None => self.missing("pointer chain too deep"),
        }
    }

    /// A C string whose pointer is the value at `access`.
    pub(super) fn c_string(&mut self, access: &Access) -> SlotValue {
        let Some(string) = access.deref(0) else {
            return self.unfollowable(access);
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
    pub(super) fn pointer_and_length(
        &mut self,
        access: &Access,
        bytes: u16,
        render: Render,
    ) -> SlotValue {
        self.counted(access, bytes, render, LengthField::default())
    }

    /// A pointer at `access` and a length as `length` says, copying at most `bytes` of what
    /// the pointer points to. In registers, each must be a register of its own; a length
    /// whose pointer the optimiser dropped is shown alone.
    pub(super) fn counted(
        &mut self,
        access: &Access,
        bytes: u16,
        render: Render,
        length: LengthField,
    ) -> SlotValue {
        let placed = match access {
            Access::Memory { .. } | Access::Copied { .. } => {
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
            _ if length.end_pointer => return self.missing("end pointer in a register"),
            held => {
                let len_place = held.beside(match length.offset {
                    0 => 8,
                    at => i64::from(at),
                });
                let pointer = held.held_in_register(8);
                let len = len_place.as_ref().map(|l| l.held_in_register(8));
                match (pointer, len) {
                    (Ok((pointer, 0)), Some(Ok((len_reg, 0)))) => {
                        let step = CaptureStep {
                            value: value::PTR_LEN_IN_REGISTERS,
                            reg: pointer,
                            len_reg,
                            element_size: length.element_size,
                            size: bytes,
                            ..CaptureStep::default()
                        };
                        self.step(step, 8 + bytes as usize)
                    }
                    // The optimiser kept the length and dropped the pointer.
                    (Err(_), Some(Ok(_))) if render == Render::Str => {
                        let len = len_place.expect("placed");
                        let unsigned = Render::Int {
                            size: 8,
                            signed: false,
                        };
                        return SlotValue::LengthOnly {
                            len: Box::new(self.scalar(&len, 8, unsigned)),
                        };
                    }
                    (Err(reason), _) => return self.missing(reason),
                    _ => return self.missing("length not in a register"),
                }
            }
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

    /// Steps added from here on run at the function's return (a Go function's results, a
    /// return value read from RAX and RDX or through the memory RAX points to), until
    /// [`end_return_steps`](Self::end_return_steps). Registers read there are the return's.
    pub(super) fn begin_return_steps(&mut self) -> u32 {
        self.words.clear();
        self.kernel.step_count
    }

    pub(super) fn end_return_steps(&mut self, first: u32) {
        self.words.clear();
        let end = self.kernel.step_count;
        if end > first {
            self.kernel.return_steps = first | (end << 16);
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
        let at_return_address = Access::at_register(tracer_ebpf::reg::RSP, sp_adjust);
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
        let access = Access::at_register(tracer_ebpf::reg::RSP, 0);
        let room = self.read(&access, value::BYTES, bytes as u16, bytes)?;
        self.kernel.go_results = ((words as u32) << 16) | u32::from(room.1);
        Some(room)
    }

    /// The read of a Go function's goroutine id: the word `goid_offset` bytes into the
    /// `runtime.g` that R14 holds at its entry.
    pub(super) fn goroutine_id(&mut self, goid_offset: i32) -> SlotValue {
        let access = Access::at_register(tracer_ebpf::reg::R14, goid_offset);
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
    use tracer_ebpf::reg;

    #[test]
    fn parts_of_one_register_share_its_word() {
        let mut builder = PlanBuilder::new(64);
        let int4 = Render::Int {
            size: 4,
            signed: false,
        };
        let low = builder.scalar(&Access::Register(reg::RDI), 4, int4.clone());
        let high = builder.scalar(
            &Access::Register(reg::RDI).field(4).unwrap(),
            4,
            int4.clone(),
        );
        assert_eq!(builder.kernel.step_count, 1, "one word for both halves");
        let (SlotValue::Captured { offset: a, .. }, SlotValue::Captured { offset: b, .. }) =
            (&low, &high)
        else {
            panic!("{low:?} {high:?}")
        };
        assert_eq!(*b, *a + 4);
        // At the return the registers are others: read again.
        let first = builder.begin_return_steps();
        builder.scalar(&Access::Register(reg::RDI), 4, int4);
        builder.end_return_steps(first);
        assert_eq!(builder.kernel.step_count, 2);
        assert!(builder.kernel.at_return(1) && !builder.kernel.at_return(0));
    }

    #[test]
    fn small_values_in_memory_are_read_once_and_viewed() {
        let mut builder = PlanBuilder::new(64);
        let copied = builder.copied(&Access::at_register(reg::RDI, 0), 16);
        let int4 = Render::Int {
            size: 4,
            signed: true,
        };
        let second = builder.scalar(&copied.field(12).unwrap(), 4, int4);
        assert_eq!(builder.kernel.step_count, 1);
        let step = builder.kernel.steps[0];
        assert_eq!(
            (step.value, step.reg, step.size),
            (value::BYTES, reg::RDI, 16)
        );
        assert!(matches!(
            second,
            SlotValue::Captured { offset, size: 4, step: 0, .. } if offset == step.out_offset + 12
        ));
        // What a pointer in the copy leads to is read from the process.
        let Some(Access::Memory { derefs, offset, .. }) = copied.field(8).unwrap().deref(4) else {
            panic!()
        };
        assert_eq!((derefs, offset), (vec![8], 4));
    }
}
