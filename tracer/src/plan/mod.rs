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

mod access;
mod builder;
pub(crate) mod calling_convention;
mod go_values;
pub(crate) mod registers;
pub(crate) mod rust_layout;
pub(crate) mod slots;
mod values;

use tracer_ebpf::{CapturePlan, MAX_PAYLOAD, MAX_STEPS, reg};

use access::Access;
use builder::{PlanBuilder, render_of};
use calling_convention::{ArgPlace, ReturnPlace, entry_places, return_place};
pub use slots::{ArgSlot, Family, Render, ReturnValue, SlotValue, VariantSlot};
use values::ARGUMENT_LEVELS;

use crate::{
    error::{Error, Result},
    symbols::{
        ProbeSite,
        dwarf::{FunctionDebug, Language},
        types::Type,
    },
};

/// A probe's capture plan, both halves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kernel: CapturePlan,
    pub args: Vec<ArgSlot>,
    /// How to show the return register; `None` for functions returning nothing.
    pub ret: Option<ReturnValue>,
    /// Not every argument fitted the kernel's limits; the rest show as missing (`plan full`).
    pub full: bool,
    /// A Go function's goroutine id, read from its `runtime.g` at the entry.
    pub goroutine: Option<SlotValue>,
    /// A Go function's results, from the registers its return program copies (empty: only
    /// the return value).
    pub results: Vec<ArgSlot>,
    /// `--stack`: the id of the call's user stack in the kernel's stack map.
    pub stack: Option<SlotValue>,
    /// `--stack`: the return address at the entry, the caller's frame, which a stack walked
    /// by frame pointers from a function's first instruction skips (its frame pointer is
    /// still the caller's).
    pub caller: Option<SlotValue>,
}

/// How many System V argument registers are captured when nothing says how many parameters
/// a function has.
pub const DEFAULT_RAW_ARGS: usize = 6;
/// Default cap on the bytes of one string.
pub const DEFAULT_STRING_SIZE: u16 = 64;
/// Default count of a sequence's first elements captured (`--elements`).
pub const DEFAULT_ELEMENTS: u16 = 8;
/// The most elements `--elements` may ask for.
pub const MAX_ELEMENTS: u16 = 64;

/// One `--args` entry: a parameter, or a field of one, as deep as it goes
/// (`req.header.method`; `->` reads as `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgPath {
    pub param: String,
    /// The fields below the parameter, outermost first (empty: the parameter whole).
    pub fields: Vec<String>,
}

/// The deepest `--args` path: a parameter and this many fields below it.
const MAX_ARG_PATH_FIELDS: usize = 4;

impl std::str::FromStr for ArgPath {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let mut parts = text
            .replace("->", ".")
            .split('.')
            .map(str::to_string)
            .collect::<Vec<_>>();
        let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !parts.iter().all(|p| valid(p)) || parts.len() > MAX_ARG_PATH_FIELDS + 1 {
            return Err(Error::Usage(format!(
                "--args `{text}`: expected NAME or NAME.FIELD, as deep as NAME.F1.F2.F3.F4 \
                 (`->` reads as `.`)"
            )));
        }
        let param = parts.remove(0);
        Ok(Self {
            param,
            fields: parts,
        })
    }
}

impl std::fmt::Display for ArgPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.param)?;
        for field in &self.fields {
            write!(f, ".{field}")?;
        }
        Ok(())
    }
}

/// What to capture, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--args`: only these parameters (and fields); `None` for every parameter that fits.
    pub selection: Option<Vec<ArgPath>>,
    /// Cap on the bytes of one string.
    pub string_size: u16,
    /// `--elements`: the first elements of a sequence captured.
    pub elements: u16,
    /// `--stack`: each call's user stack too.
    pub stack: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            selection: None,
            string_size: DEFAULT_STRING_SIZE,
            elements: DEFAULT_ELEMENTS,
            stack: false,
        }
    }
}

/// A plan that captures the first `count` System V integer argument registers as `arg0..`,
/// for functions without DWARF.
pub fn raw_register_args(count: usize) -> Result<Plan> {
    raw_args_in(&reg::SYSV_ARGS, count, None, None)
}

/// The same for a Go function without DWARF (a `-ldflags=-s -w` build found through
/// `.gopclntab`): Go's register ABI passes its first integer arguments in RAX, RBX, RCX, ...
/// `goid_offset` says where its goroutine's id is (see [`compile`]).
#[cfg(test)]
pub fn raw_go_register_args(count: usize, goid_offset: Option<i32>) -> Result<Plan> {
    raw_args_in(&calling_convention::GO_ARGS, count, goid_offset, None)
}

/// `count` raw argument registers of `registers`, a Go function's goroutine id (at
/// `goid_offset`) and with `stack` the user stack (the entry's stack pointer that much
/// below the return address), each read before the arguments so that arguments filling the
/// plan cost neither.
fn raw_args_in(
    registers: &[u8],
    count: usize,
    goid_offset: Option<i32>,
    stack: Option<i32>,
) -> Result<Plan> {
    if count > registers.len() {
        return Err(Error::internal(format!(
            "only the first {} arguments are passed in registers; {count} asked",
            registers.len()
        )));
    }
    let mut builder = PlanBuilder::new(DEFAULT_STRING_SIZE);
    let goroutine = goid_offset.map(|offset| builder.goroutine_id(offset));
    let stack = stack.map(|sp_adjust| builder.stack(sp_adjust));
    let args = registers
        .iter()
        .take(count)
        .enumerate()
        .map(|(index, &register)| ArgSlot {
            name: format!("arg{index}"),
            value: builder.scalar(&Access::Register(register), 8, Render::RawWord),
        })
        .collect();
    let mut plan = builder.finish(
        args,
        Some(ReturnValue::Register {
            render: Render::RawWord,
        }),
    );
    plan.goroutine = goroutine;
    (plan.stack, plan.caller) = stack.unzip();
    Ok(plan)
}

/// The plan for a function DWARF describes, capturing what `options` selects; for a Go
/// function, also its goroutine id, `goid_offset` into its `runtime.g`, read first so that
/// arguments filling the plan never cost a call its goroutine.
#[cfg(test)]
pub fn compile(function: &FunctionDebug, options: &PlanOptions, goid_offset: Option<i32>) -> Plan {
    compile_at(function, options, goid_offset, 0)
}

/// [`compile`] for an entry probe `sp_adjust` bytes below the entry's stack pointer (it moved
/// past `sub $N,%rsp`): the arguments on the stack are that much further up.
fn compile_at(
    function: &FunctionDebug,
    options: &PlanOptions,
    goid_offset: Option<i32>,
    sp_adjust: i32,
) -> Plan {
    let mut builder = PlanBuilder::new(options.string_size);
    builder.elements = options.elements;
    let goroutine = goid_offset.map(|offset| builder.goroutine_id(offset));
    let stack = options.stack.then(|| builder.stack(sp_adjust));
    let results = go_results(&mut builder, function);
    let places = entry_places(function);
    let mut args = Vec::new();
    for (param, place) in function.params.iter().zip(&places) {
        let paths: Option<Vec<Vec<String>>> = match &options.selection {
            None => None,
            Some(selection) => {
                let picked: Vec<&ArgPath> =
                    selection.iter().filter(|p| p.param == param.name).collect();
                if picked.is_empty() {
                    continue;
                }
                if picked.iter().any(|p| p.fields.is_empty()) {
                    None
                } else {
                    Some(picked.iter().map(|p| p.fields.clone()).collect())
                }
            }
        };
        let access = match place {
            ArgPlace::Register(r) => Access::Register(*r),
            ArgPlace::RegisterPair(a, b) => Access::RegisterPair(*a, *b),
            ArgPlace::Pieces(pieces) => Access::in_pieces(pieces),
            ArgPlace::Stack(offset) => {
                Access::at_register(reg::RSP, offset.saturating_add(sp_adjust))
            }
            ArgPlace::Indirect(r) => Access::at_register(*r, 0),
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
        let value = builder.value(&access, &param.ty, ARGUMENT_LEVELS, paths.as_deref());
        args.push(ArgSlot {
            name: param.name.clone(),
            value,
        });
    }
    let ret = return_value(&mut builder, function);
    let mut plan = builder.finish(args, ret);
    plan.goroutine = goroutine;
    plan.results = results;
    (plan.stack, plan.caller) = stack.unzip();
    plan
}

/// How a function's return value is shown: a scalar from the return register (RAX, in
/// every event); anything else read by steps at the return, from RAX and RDX or through the
/// memory RAX points to (the caller's, whose address it passed in RDI: the entry keeps RDI
/// to check that the two agree).
fn return_value(builder: &mut PlanBuilder, function: &FunctionDebug) -> Option<ReturnValue> {
    let ty = &function.return_type;
    let missing = |reason: &str| {
        Some(ReturnValue::Missing {
            reason: reason.into(),
        })
    };
    match ty {
        Type::Void => return None,
        Type::Float { .. } => return missing("xmm"),
        scalar if scalar.size() <= 8 && render_of(scalar).is_some() => {
            let render = render_of(scalar).expect("checked");
            return Some(ReturnValue::Register { render });
        }
        _ if function.language == Language::Go => return missing(&ty.name()),
        _ => {}
    }
    // The optimiser changed the function's convention: its return may be too (a `&str`
    // whose pointer no caller used comes back as its length alone).
    if !function.standard_convention {
        return missing("non-standard calling convention");
    }
    let (access, hidden) = match return_place(function) {
        ReturnPlace::Nothing => return None,
        ReturnPlace::Unavailable(reason) => return missing(reason),
        ReturnPlace::Registers(pieces) => (Access::in_pieces(&pieces), None),
        ReturnPlace::Memory => {
            let hidden = builder.scalar(&Access::Register(reg::RDI), 8, Render::Pointer);
            (Access::at_register(reg::RAX, 0), Some(hidden))
        }
    };
    let first = builder.begin_return_steps();
    let value = builder.value(&access, ty, ARGUMENT_LEVELS, None);
    builder.end_return_steps(first);
    Some(ReturnValue::Captured { value, hidden })
}

/// The slots of a Go function's results, when there is more to show than the return
/// register: more than one result, or a first one that is not a scalar.
fn go_results(builder: &mut PlanBuilder, function: &FunctionDebug) -> Vec<ArgSlot> {
    let results = &function.go_results;
    let only_scalar = matches!(results.as_slice(), [one] if render_of(&one.ty).is_some());
    if function.language != Language::Go || results.is_empty() || only_scalar {
        return Vec::new();
    }
    let mut words = 0;
    let shapes: Vec<_> = results
        .iter()
        .map(|result| {
            let shape = calling_convention::go_result_words(&result.ty, words);
            if let Ok((_, used)) = &shape {
                words += used;
            }
            shape
        })
        .collect();
    let room = if words > 0 {
        builder.go_results_room(words)
    } else {
        None
    };
    let first = builder.begin_return_steps();
    let slots = results
        .iter()
        .zip(shapes)
        .map(|(result, shape)| ArgSlot {
            name: result.name.clone(),
            value: match (shape, room) {
                (Ok((at, _)), Some(room)) => builder.go_result(&result.ty, at, room),
                (Ok(_), None) => SlotValue::Missing {
                    reason: builder::PLAN_FULL.into(),
                },
                (Err(reason), _) => SlotValue::Missing {
                    reason: reason.into(),
                },
            },
        })
        .collect();
    builder.end_return_steps(first);
    slots
}

/// The warning for the functions whose arguments did not all fit one plan, if any.
pub fn full_plans_warning(sites: &[ProbeSite], plans: &[Plan]) -> Option<String> {
    let full: Vec<&str> = sites
        .iter()
        .zip(plans)
        .filter(|(_, plan)| plan.full)
        .map(|(site, _)| site.function.as_str())
        .collect();
    let (first, rest) = full.split_first()?;
    let which = match rest.len() {
        0 => (*first).to_string(),
        n => format!("{first} and {n} more functions"),
    };
    Some(format!(
        "not every argument of {which} fits one capture plan ({MAX_STEPS} reads, {MAX_PAYLOAD} \
         bytes): the rest show as <plan full>; --args chooses which to capture"
    ))
}

/// The capture plan of every site: typed from DWARF where the function has it, raw argument
/// registers where it does not.
pub fn plan_sites(sites: &[ProbeSite], options: &PlanOptions) -> Result<Vec<Plan>> {
    if let Some(selection) = &options.selection {
        let described: Vec<_> = sites.iter().filter_map(|s| s.debug.as_ref()).collect();
        check_selection(selection, &described)?;
    }
    sites
        .iter()
        .map(|site| {
            let go = site.go;
            let goid_offset = site.goroutine_id_offset;
            let sp_adjust = i32::try_from(site.entry_sp_adjust).unwrap_or(0);
            let mut plan = match &site.debug {
                Some(debug) => compile_at(debug, options, goid_offset, sp_adjust),
                None if go => raw_args_in(
                    &calling_convention::GO_ARGS,
                    DEFAULT_RAW_ARGS,
                    goid_offset,
                    options.stack.then_some(sp_adjust),
                )?,
                None => raw_args_in(
                    &reg::SYSV_ARGS,
                    DEFAULT_RAW_ARGS,
                    None,
                    options.stack.then_some(sp_adjust),
                )?,
            };
            plan.kernel.entry_sp_adjust = sp_adjust as u32;
            if go {
                plan.kernel.flags |= tracer_ebpf::plan_flags::GO;
                if let Some(types) = site.go_types {
                    plan.kernel.go_types = types;
                    plan.kernel.entry_address = site.probe_address();
                }
            }
            Ok(plan)
        })
        .collect()
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
        // The path's fields, one level after the other, in any function's parameter.
        for depth in 1..=path.fields.len() {
            let reached = params.iter().any(|p| {
                path.fields[..depth]
                    .iter()
                    .try_fold(&p.ty, |ty, name| ty.field(name).map(|f| &f.ty))
                    .is_some()
            });
            if !reached {
                let above = ArgPath {
                    param: path.param.clone(),
                    fields: path.fields[..depth - 1].to_vec(),
                };
                return Err(Error::Usage(format!(
                    "--args: `{above}` has no field `{}`",
                    path.fields[depth - 1]
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        symbols::{dwarf::Language, types::Field},
        test_support::{c_string, int},
    };
    use builder::PLAN_FULL;
    use tracer_ebpf::value;
    use tracer_ebpf::{CaptureStep, STATUS_BYTES, plan_flags};

    fn function(language: Language, params: Vec<(&str, Type)>, ret: Type) -> FunctionDebug {
        let named = params
            .into_iter()
            .map(|(n, ty)| (n.to_string(), ty))
            .collect();
        crate::test_support::function(language, named, ret)
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
            shape: None,
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
        let go = raw_go_register_args(2, None).unwrap();
        let regs: Vec<u8> = steps(&go).iter().map(|s| s.reg).collect();
        assert_eq!(
            regs,
            [reg::RAX, reg::RBX],
            "Go passes arguments in RAX, RBX"
        );
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
        let plan = compile(&f, &PlanOptions::default(), None);
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
        let plan = compile(&f, &options, None);
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
        assert!(
            "a.b.c.d.e.f".parse::<ArgPath>().is_err(),
            "deeper than four fields"
        );
        assert!("a..b".parse::<ArgPath>().is_err());
        assert_eq!(
            "req->header.method".parse::<ArgPath>().unwrap().fields,
            ["header", "method"]
        );
    }

    #[test]
    fn rust_str_and_struct_by_value_in_registers() {
        let f = function(Language::Rust, vec![("s", Type::Str)], Type::Void);
        let plan = compile(&f, &PlanOptions::default(), None);
        let s = steps(&plan);
        assert_eq!(
            (s[0].value, s[0].reg, s[0].len_reg),
            (value::PTR_LEN_IN_REGISTERS, reg::RDI, reg::RSI)
        );

        let f = function(Language::C, vec![("r", request())], Type::Void);
        let plan = compile(&f, &PlanOptions::default(), None);
        let s = steps(&plan);
        // path: a string through rdi; len: a view of rsi's word.
        assert_eq!((s[0].value, s[0].reg), (value::C_STRING, reg::RDI));
        assert_eq!((s[1].value, s[1].reg), (value::WORD, reg::RSI));
    }

    /// A shaped library struct (as `symbols::dwarf::library_types` makes them).
    fn sequence(name: &str, pointer_at: u64, len_at: u64, len_is_end: bool) -> Type {
        Type::Struct {
            name: name.into(),
            size: 24,
            fields: Vec::new(),
            union: false,
            trivial: Some(false),
            shape: Some(crate::symbols::types::Shape::Sequence {
                pointer_at,
                len_at,
                len_is_end,
                element: Box::new(int(4, true)),
                text: false,
            }),
        }
    }

    #[test]
    fn library_sequences_read_their_pointer_and_length_where_dwarf_says() {
        // A Rust Vec<i32> by reference: its pointer at 8, its count of elements at 16.
        let vec = Type::Pointer {
            pointee: Box::new(sequence("Vec<i32>", 8, 16, false)),
        };
        let plan = compile(
            &function(Language::Rust, vec![("v", vec)], Type::Void),
            &PlanOptions::default(),
            None,
        );
        let s = steps(&plan)[0];
        assert_eq!(
            (
                s.value,
                s.reg,
                s.derefs,
                s.offset,
                s.len_field,
                s.element_size
            ),
            (value::PTR_LEN_IN_MEMORY, reg::RDI, 0, 8, 8, 4)
        );
        assert_eq!(s.size as usize, 4 * DEFAULT_ELEMENTS as usize);
        // A std::vector<int> (non-trivial: by invisible reference): begin and end pointers.
        let plan = compile(
            &function(
                Language::Cpp,
                vec![("v", sequence("vector<int>", 0, 8, true))],
                Type::Void,
            ),
            &PlanOptions {
                elements: 3,
                ..PlanOptions::default()
            },
            None,
        );
        let s = steps(&plan)[0];
        assert_eq!(
            (
                s.value,
                s.reg,
                s.offset,
                s.len_field,
                s.element_size,
                s.size
            ),
            (value::BEGIN_END_IN_MEMORY, reg::RDI, 0, 8, 0, 12)
        );
        assert_eq!(
            plan.args[0].value,
            SlotValue::Captured {
                offset: s.out_offset,
                size: 8 + 12,
                step: 0,
                render: Render::Sequence {
                    element: Some(Box::new(Render::Int {
                        size: 4,
                        signed: true
                    })),
                    element_size: 4,
                },
            }
        );
    }

    #[test]
    fn an_enum_in_two_registers_is_its_discriminant_and_variants_viewed_from_them() {
        let option = crate::test_support::option_u32();
        let plan = compile(
            &function(Language::Rust, vec![("value", option)], Type::Void),
            &PlanOptions::default(),
            None,
        );
        // One word each of RDI (the tag) and RSI (the value).
        let regs: Vec<(u8, u8)> = steps(&plan).iter().map(|s| (s.reg, s.value)).collect();
        assert_eq!(regs, [(reg::RDI, value::WORD), (reg::RSI, value::WORD)]);
        let SlotValue::Variants {
            family: Family::Optional,
            discriminant: Some(discriminant),
            variants,
        } = &plan.args[0].value
        else {
            panic!("{:?}", plan.args[0].value)
        };
        let offset_of = |slot: &SlotValue| match slot {
            SlotValue::Captured { offset, step, .. } => (*step, *offset),
            other => panic!("{other:?}"),
        };
        assert_eq!(offset_of(discriminant), (0, STATUS_BYTES as u16));
        assert_eq!(
            offset_of(&variants[1].fields[0].value),
            (1, STATUS_BYTES as u16 + 8)
        );
    }

    #[test]
    fn returned_structs_are_read_by_return_steps() {
        // struct { long low, high; } in RAX and RDX.
        let range = Type::Struct {
            name: "Range".into(),
            size: 16,
            fields: vec![
                Field {
                    name: "low".into(),
                    offset: 0,
                    ty: int(8, true),
                },
                Field {
                    name: "high".into(),
                    offset: 8,
                    ty: int(8, true),
                },
            ],
            union: false,
            trivial: Some(true),
            shape: None,
        };
        let plan = compile(
            &function(Language::C, vec![("n", int(8, true))], range.clone()),
            &PlanOptions::default(),
            None,
        );
        let kernel = plan.kernel;
        let at_return: Vec<(u8, u8)> = (0..kernel.step_count as usize)
            .filter(|&i| kernel.at_return(i))
            .map(|i| (kernel.steps[i].reg, kernel.steps[i].value))
            .collect();
        assert_eq!(
            at_return,
            [(reg::RAX, value::WORD), (reg::RDX, value::WORD)]
        );
        assert!(matches!(
            plan.ret,
            Some(ReturnValue::Captured { hidden: None, .. })
        ));
        // Three longs: through memory, RDI kept at the entry, the struct read through RAX.
        let mut big = range;
        if let Type::Struct { size, fields, .. } = &mut big {
            *size = 24;
            fields.push(Field {
                name: "step".into(),
                offset: 16,
                ty: int(8, true),
            });
        }
        let plan = compile(
            &function(Language::C, vec![("n", int(8, true))], big),
            &PlanOptions::default(),
            None,
        );
        let kernel = plan.kernel;
        let Some(ReturnValue::Captured {
            hidden: Some(SlotValue::Captured { step: hidden, .. }),
            ..
        }) = plan.ret
        else {
            panic!("{:?}", plan.ret)
        };
        assert_eq!(kernel.steps[hidden as usize].reg, reg::RDI);
        assert!(!kernel.at_return(hidden as usize));
        let read: Vec<(u8, u8, u16)> = (0..kernel.step_count as usize)
            .filter(|&i| kernel.at_return(i))
            .map(|i| {
                (
                    kernel.steps[i].reg,
                    kernel.steps[i].value,
                    kernel.steps[i].size,
                )
            })
            .collect();
        assert_eq!(
            read,
            [(reg::RAX, value::BYTES, 24)],
            "the struct read whole"
        );
        // The optimiser's own convention: its returns are not trusted.
        let mut nocall = function(Language::Rust, vec![], Type::Str);
        nocall.standard_convention = false;
        assert_eq!(
            compile(&nocall, &PlanOptions::default(), None).ret,
            Some(ReturnValue::Missing {
                reason: "non-standard calling convention".into()
            })
        );
    }

    #[test]
    fn stack_arguments_are_read_through_rsp() {
        let params = (0..7)
            .map(|i| (["a", "b", "c", "d", "e", "f", "g"][i], int(8, true)))
            .collect();
        let f = function(Language::C, params, Type::Void);
        let plan = compile(&f, &PlanOptions::default(), None);
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
                elements: DEFAULT_ELEMENTS,
                stack: false,
            },
            Some(152),
        );
        assert!(plan.kernel.payload_len as usize <= MAX_PAYLOAD);
        assert!(plan.kernel.step_count as usize <= MAX_STEPS);
        assert!(
            plan.args
                .iter()
                .any(|a| matches!(&a.value, SlotValue::Missing { reason } if reason == PLAN_FULL))
        );
        // A Go call's goroutine is read first: a full plan never loses it.
        assert!(
            matches!(plan.goroutine, Some(SlotValue::Captured { step: 0, .. })),
            "{:?}",
            plan.goroutine
        );
        assert_eq!(steps(&plan)[0].reg, reg::R14);
        assert_eq!(steps(&plan)[0].offset, 152);
    }
}
