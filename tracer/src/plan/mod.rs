//! Capture plans: what the entry program copies for each probe, and how user space reads it
//! back.
//!
//! A [`Plan`] pairs the kernel's half (the `#[repr(C)]` [`CapturePlan`] written into the plans
//! map) with the user's half (which argument each payload slot holds and how to show it). Both
//! halves are built together here, from the function's parameters, their types and where each
//! is at the entry ([`crate::plan::calling_convention`]), so they cannot disagree about offsets.
//!
//! Must never emit a step the kernel cannot bound: every slot ends below `MAX_PAYLOAD`, every
//! copy is at most `MAX_CHUNK` bytes, every chain at most `MAX_DEREFS` pointers.

pub(crate) mod calling_convention;
pub(crate) mod registers;

use serde::{Deserialize, Serialize};
use tracer_ebpf::{
    CapturePlan, CaptureStep, MAX_CHUNK, MAX_DEREFS, MAX_PAYLOAD, MAX_STEPS, STATUS_BYTES,
    location, plan_flags, reg, value,
};

use crate::{
    error::{Error, Result},
    plan::calling_convention::{ArgPlace, entry_places},
    symbols::{
        dwarf::FunctionDebug,
        types::{Field, Type},
    },
};

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
    /// A fixed array of `count` elements of `element` bytes each.
    Array {
        element: Box<Render>,
        element_size: u8,
        count: u16,
        text: bool,
    },
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
    /// Not captured, and why (`xmm`, `plan full`, ...).
    Missing { reason: String },
}

/// A probe's capture plan, both halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kernel: CapturePlan,
    pub args: Vec<ArgSlot>,
    /// How to show the return register; `None` for functions returning nothing.
    pub ret: Option<ReturnValue>,
}

/// How the return register is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReturnValue {
    Register {
        render: Render,
    },
    /// Returned where a probe cannot read it (a vector register, a struct).
    Missing {
        reason: String,
    },
}

/// How many System V argument registers are captured when nothing says how many parameters
/// a function has.
pub const DEFAULT_RAW_ARGS: usize = 6;
/// Default cap on the bytes of one string.
pub const DEFAULT_STRING_SIZE: u16 = 64;

/// One `--args` entry: a parameter, or a field of one (`req.path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgPath {
    pub param: String,
    pub field: Option<String>,
}

impl std::str::FromStr for ArgPath {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (param, field) = match text.split_once(['.']) {
            Some((param, field)) => (param, Some(field.trim_start_matches('>'))),
            None => match text.split_once("->") {
                Some((param, field)) => (param, Some(field)),
                None => (text, None),
            },
        };
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid(param) || field.is_some_and(|f| !valid(f)) {
            return Err(Error::Usage(format!(
                "--args `{text}`: expected NAME or NAME.FIELD (one level of fields)"
            )));
        }
        Ok(Self {
            param: param.to_string(),
            field: field.map(str::to_string),
        })
    }
}

/// What to capture, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--args`: only these parameters (and fields); `None` for every parameter that fits.
    pub selection: Option<Vec<ArgPath>>,
    /// Cap on the bytes of one string.
    pub string_size: u16,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            selection: None,
            string_size: DEFAULT_STRING_SIZE,
        }
    }
}

/// How a value is reached at the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
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
struct PlanBuilder {
    kernel: CapturePlan,
    string_size: u16,
    full: bool,
}

const PLAN_FULL: &str = "plan full";

impl PlanBuilder {
    fn new(string_size: u16) -> Self {
        Self {
            kernel: CapturePlan::default(),
            string_size: string_size.clamp(1, MAX_CHUNK as u16),
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
    fn scalar(&mut self, access: &Access, size: u64, render: Render) -> SlotValue {
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
        let placed = match access {
            Access::RegisterPair(pointer, length) => {
                let step = CaptureStep {
                    value: value::PTR_LEN_IN_REGISTERS,
                    reg: *pointer,
                    len_reg: *length,
                    size: bytes,
                    ..CaptureStep::default()
                };
                self.step(step, 8 + bytes as usize)
            }
            Access::Memory { .. } => {
                self.read(access, value::PTR_LEN_IN_MEMORY, bytes, 8 + bytes as usize)
            }
            Access::Register(_) => None,
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
    fn value(
        &mut self,
        access: &Access,
        ty: &Type,
        expand: bool,
        fields: Option<&[String]>,
    ) -> SlotValue {
        match ty {
            Type::Void => self.missing("void"),
            _ if ty.is_c_string() => self.c_string(access),
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
            Type::Slice { element } => {
                let bytes = element.size() == 1;
                let copy = if bytes { self.string_size.min(32) } else { 0 };
                self.pointer_and_length(access, copy, Render::Slice { bytes })
            }
            Type::Array { element, count } => {
                let element_size = element.size();
                let Some(render) = render_of(element) else {
                    return self.missing("array of aggregates");
                };
                if element_size == 0 || element_size > 8 {
                    return self.missing("array of aggregates");
                }
                let count = (*count).min(MAX_CHUNK as u64 / element_size) as u16;
                let size = count * element_size as u16;
                let text = matches!(**element, Type::Char { size: 1, .. })
                    || matches!(&**element, Type::Int { size: 1, name, .. } if name == "u8");
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
            other => match render_of(other) {
                Some(render) => self.scalar(access, other.size(), render),
                None => self.missing("aggregate"),
            },
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

    fn finish(mut self, args: Vec<ArgSlot>, ret: Option<ReturnValue>) -> Plan {
        self.kernel.flags |= plan_flags::PRESENT;
        Plan {
            kernel: self.kernel,
            args,
            ret,
        }
    }
}

/// How a scalar of type `ty` is shown, if it is one.
fn render_of(ty: &Type) -> Option<Render> {
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

/// A plan that captures the first `count` System V integer argument registers as `arg0..`,
/// for functions without DWARF.
pub fn raw_register_args(count: usize) -> Result<Plan> {
    if count > reg::SYSV_ARGS.len() {
        return Err(Error::internal(format!(
            "only the first {} arguments are passed in registers; {count} asked",
            reg::SYSV_ARGS.len()
        )));
    }
    let mut builder = PlanBuilder::new(DEFAULT_STRING_SIZE);
    let args = reg::SYSV_ARGS
        .iter()
        .take(count)
        .enumerate()
        .map(|(index, &register)| ArgSlot {
            name: format!("arg{index}"),
            value: builder.scalar(&Access::Register(register), 8, Render::RawWord),
        })
        .collect();
    Ok(builder.finish(
        args,
        Some(ReturnValue::Register {
            render: Render::RawWord,
        }),
    ))
}

/// The plan for a function DWARF describes, capturing what `options` selects.
pub fn compile(function: &FunctionDebug, options: &PlanOptions) -> Plan {
    let mut builder = PlanBuilder::new(options.string_size);
    let places = entry_places(function);
    let mut args = Vec::new();
    for (param, place) in function.params.iter().zip(&places) {
        let fields: Option<Vec<String>> = match &options.selection {
            None => None,
            Some(selection) => {
                let picked: Vec<&ArgPath> =
                    selection.iter().filter(|p| p.param == param.name).collect();
                if picked.is_empty() {
                    continue;
                }
                if picked.iter().any(|p| p.field.is_none()) {
                    None
                } else {
                    Some(picked.iter().filter_map(|p| p.field.clone()).collect())
                }
            }
        };
        let access = match place {
            ArgPlace::Register(r) => Access::Register(*r),
            ArgPlace::RegisterPair(a, b) => Access::RegisterPair(*a, *b),
            ArgPlace::Stack(offset) => Access::Memory {
                reg: reg::RSP,
                derefs: Vec::new(),
                offset: *offset,
            },
            ArgPlace::Indirect(r) => Access::Memory {
                reg: *r,
                derefs: Vec::new(),
                offset: 0,
            },
            ArgPlace::Unavailable(reason) => {
                args.push(ArgSlot {
                    name: param.name.clone(),
                    value: SlotValue::Missing {
                        reason: (*reason).to_string(),
                    },
                });
                continue;
            }
        };
        let value = builder.value(&access, &param.ty, true, fields.as_deref());
        args.push(ArgSlot {
            name: param.name.clone(),
            value,
        });
    }
    if builder.full {
        log::warn!(
            "{}: not every argument fits one capture plan ({MAX_STEPS} reads, {MAX_PAYLOAD} \
             bytes); use --args to choose",
            function.name
        );
    }
    let ret = match &function.return_type {
        Type::Void => None,
        Type::Float { .. } => Some(ReturnValue::Missing {
            reason: "xmm".into(),
        }),
        other => Some(match render_of(other) {
            Some(render) => ReturnValue::Register { render },
            None => ReturnValue::Missing {
                reason: other.name(),
            },
        }),
    };
    builder.finish(args, ret)
}

/// Checks every `--args` entry names a parameter (and field) of at least one function.
pub fn check_selection(selection: &[ArgPath], functions: &[&FunctionDebug]) -> Result<()> {
    for path in selection {
        let params = functions
            .iter()
            .flat_map(|f| f.params.iter())
            .filter(|p| p.name == path.param)
            .collect::<Vec<_>>();
        if params.is_empty() {
            let known: Vec<String> = functions
                .iter()
                .flat_map(|f| f.params.iter().map(|p| p.name.clone()))
                .collect();
            return Err(Error::Usage(format!(
                "--args: no traced function has a parameter `{}`; they have: {}",
                path.param,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        if let Some(field) = &path.field
            && !params.iter().any(|p| p.ty.field(field).is_some())
        {
            return Err(Error::Usage(format!(
                "--args: `{}` has no field `{field}`",
                path.param
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::dwarf::{Language, Parameter};
    use tracer_ebpf::value;

    fn int(size: u8, signed: bool) -> Type {
        Type::Int {
            name: "int".into(),
            size,
            signed,
        }
    }

    fn c_string() -> Type {
        Type::Pointer {
            pointee: Box::new(Type::Char {
                name: "char".into(),
                size: 1,
                signed: true,
            }),
        }
    }

    fn request() -> Type {
        Type::Struct {
            name: "request".into(),
            size: 16,
            fields: vec![
                Field {
                    name: "path".into(),
                    offset: 0,
                    ty: c_string(),
                },
                Field {
                    name: "len".into(),
                    offset: 8,
                    ty: int(4, true),
                },
            ],
            union: false,
            trivial: Some(true),
        }
    }

    fn function(language: Language, params: Vec<(&str, Type)>, ret: Type) -> FunctionDebug {
        FunctionDebug {
            name: "f".into(),
            file: None,
            line: None,
            language,
            params: params
                .into_iter()
                .map(|(name, ty)| Parameter {
                    name: name.into(),
                    ty,
                    artificial: false,
                    entry_location: None,
                })
                .collect(),
            return_type: ret,
            standard_convention: true,
        }
    }

    fn steps(plan: &Plan) -> &[CaptureStep] {
        &plan.kernel.steps[..plan.kernel.step_count as usize]
    }

    #[test]
    fn raw_plan_reads_sysv_registers_into_consecutive_slots() {
        let plan = raw_register_args(3).unwrap();
        let regs: Vec<u8> = steps(&plan).iter().map(|s| s.reg).collect();
        assert_eq!(regs, [reg::RDI, reg::RSI, reg::RDX]);
        for (i, (step, arg)) in steps(&plan).iter().zip(&plan.args).enumerate() {
            assert_eq!(step.out_offset as usize, STATUS_BYTES + i * 8);
            assert_eq!(step.value, value::WORD);
            assert_eq!(arg.name, format!("arg{i}"));
            assert!(
                matches!(arg.value, SlotValue::Captured { offset, .. } if offset == step.out_offset)
            );
        }
        assert_eq!(plan.kernel.payload_len as usize, STATUS_BYTES + 24);
        assert!(plan.kernel.flags & plan_flags::PRESENT != 0);
        assert!(raw_register_args(7).is_err());
    }

    #[test]
    fn c_strings_and_pointers_to_structs() {
        let f = function(
            Language::C,
            vec![
                ("name", c_string()),
                (
                    "req",
                    Type::Pointer {
                        pointee: Box::new(request()),
                    },
                ),
            ],
            int(4, true),
        );
        let plan = compile(&f, &PlanOptions::default());
        let s = steps(&plan);
        // name: the string the register points to.
        assert_eq!(
            (s[0].reg, s[0].value, s[0].derefs, s[0].offset),
            (reg::RDI, value::C_STRING, 0, 0)
        );
        // req: the pointer, then req->path (follow the pointer at offset 0), then req->len.
        assert_eq!((s[1].reg, s[1].value), (reg::RSI, value::WORD));
        assert_eq!(
            (s[2].reg, s[2].value, s[2].derefs, s[2].deref_offsets[0]),
            (reg::RSI, value::C_STRING, 1, 0)
        );
        assert_eq!(
            (s[3].reg, s[3].value, s[3].derefs, s[3].offset, s[3].size),
            (reg::RSI, value::BYTES, 0, 8, 4)
        );
        let SlotValue::Struct {
            pointer: Some(_),
            fields,
        } = &plan.args[1].value
        else {
            panic!()
        };
        assert_eq!(
            fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["path", "len"]
        );
        assert_eq!(
            plan.ret,
            Some(ReturnValue::Register {
                render: Render::Int {
                    size: 4,
                    signed: true
                }
            })
        );
        // Slots do not overlap and stay inside the payload.
        let mut end = STATUS_BYTES as u16;
        for step in s {
            assert!(step.out_offset >= end);
            end = step.out_offset
                + match step.value {
                    value::WORD => 8,
                    value::C_STRING => 4 + step.size,
                    _ => step.size,
                };
        }
        assert!(end as usize <= MAX_PAYLOAD && end as u32 == plan.kernel.payload_len);
    }

    #[test]
    fn args_selection_picks_parameters_and_fields() {
        let f = function(
            Language::C,
            vec![
                ("name", c_string()),
                (
                    "req",
                    Type::Pointer {
                        pointee: Box::new(request()),
                    },
                ),
            ],
            Type::Void,
        );
        let options = PlanOptions {
            selection: Some(vec!["req.len".parse().unwrap()]),
            ..PlanOptions::default()
        };
        let plan = compile(&f, &options);
        assert_eq!(plan.args.len(), 1);
        let SlotValue::Struct { fields, .. } = &plan.args[0].value else {
            panic!()
        };
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].name, "len");
        assert_eq!(plan.ret, None);
        assert!(check_selection(&["req.len".parse().unwrap()], &[&f]).is_ok());
        assert!(check_selection(&["nope".parse().unwrap()], &[&f]).is_err());
        assert!(check_selection(&["req.nope".parse().unwrap()], &[&f]).is_err());
        assert!("a.b.c".parse::<ArgPath>().is_err());
        assert_eq!(
            "req->path".parse::<ArgPath>().unwrap().field.as_deref(),
            Some("path")
        );
    }

    #[test]
    fn rust_str_and_struct_by_value_in_registers() {
        let f = function(Language::Rust, vec![("s", Type::Str)], Type::Void);
        let plan = compile(&f, &PlanOptions::default());
        let s = steps(&plan);
        assert_eq!(
            (s[0].value, s[0].reg, s[0].len_reg),
            (value::PTR_LEN_IN_REGISTERS, reg::RDI, reg::RSI)
        );

        let f = function(Language::C, vec![("r", request())], Type::Void);
        let plan = compile(&f, &PlanOptions::default());
        let s = steps(&plan);
        // path: a string through rdi; len: a view of rsi's word.
        assert_eq!((s[0].value, s[0].reg), (value::C_STRING, reg::RDI));
        assert_eq!((s[1].value, s[1].reg), (value::WORD, reg::RSI));
    }

    #[test]
    fn stack_arguments_are_read_through_rsp() {
        let params = (0..7)
            .map(|i| (["a", "b", "c", "d", "e", "f", "g"][i], int(8, true)))
            .collect();
        let f = function(Language::C, params, Type::Void);
        let plan = compile(&f, &PlanOptions::default());
        let last = steps(&plan)[6];
        assert_eq!(
            (last.reg, last.value, last.offset, last.size),
            (reg::RSP, value::BYTES, 8, 8)
        );
    }

    #[test]
    fn a_full_plan_marks_the_rest_missing_instead_of_overflowing() {
        let params = (0..20).map(|_| ("s", c_string())).collect();
        let plan = compile(
            &function(Language::C, params, Type::Void),
            &PlanOptions {
                selection: None,
                string_size: 200,
            },
        );
        assert!(plan.kernel.payload_len as usize <= MAX_PAYLOAD);
        assert!(plan.kernel.step_count as usize <= MAX_STEPS);
        assert!(
            plan.args
                .iter()
                .any(|a| matches!(&a.value, SlotValue::Missing { reason } if reason == PLAN_FULL))
        );
    }
}
