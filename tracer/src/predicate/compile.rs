//! From an [`Expression`] and one probe's [`Plan`] to the kernel's conditions: each name is
//! looked up among the plan's captured slots, each literal checked against the slot's type.

use tracer_ebpf::{Condition, MAX_CONDITION_TEXT, MAX_CONDITIONS, Predicate, compare, operand};

use super::{Comparison, Expression, Literal, Name, Op};
use crate::{
    error::{Error, Result},
    plan::{ArgPath, Family, Plan, Render, ReturnValue, SlotValue, VariantSlot},
};

/// What the kernel reads for a name.
#[derive(Debug, Clone)]
struct Operand {
    operand: u8,
    step: u8,
    offset: u16,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Integer {
        width: u8,
        signed: bool,
        render: Render,
    },
    /// A string: its length prefix's width, and how many of its bytes are captured exactly
    /// (a longer string is cut there).
    Text { prefix: u8, exact: u16 },
    /// A Go interface by its type word: only `== nil` / `!= nil`.
    Interface,
}

/// The conditions of `expression` for the function `function` planned as `plan`, or `None`
/// when one of its names is no parameter of that function (then the function cannot be
/// tested, and is not traced). A name that is a parameter but is not captured, or a value its
/// type cannot hold, is a usage error.
pub fn compile(
    expression: &Expression,
    plan: &Plan,
    function: &str,
) -> Result<Option<Vec<Condition>>> {
    let mut conditions = Vec::new();
    for comparison in &expression.comparisons {
        let Some(operand) = operand_of(&comparison.name, plan, function)? else {
            return Ok(None);
        };
        conditions.push(condition(comparison, &operand, function)?);
    }
    Ok(Some(conditions))
}

/// The condition `--errors` puts on a call of the function planned as `plan`: a Go function's
/// `error` result is not nil; a C, C++ or Rust function's signed integer return is negative,
/// its pointer return NULL; a Rust `Result` returned is `Err` (its discriminant, read at the
/// return). `None`: its return says nothing of errors that way.
pub fn errors_predicate(plan: &Plan) -> Option<Condition> {
    let go_error = plan
        .results
        .iter()
        .rev()
        .find_map(|result| match &result.value {
            SlotValue::Interface {
                type_word,
                message: Some(_),
                ..
            } => match type_word.as_ref() {
                SlotValue::Captured { offset, step, .. } => Some((*offset, *step)),
                _ => None,
            },
            _ => None,
        });
    if let Some((offset, step)) = go_error {
        return Some(Condition {
            operand: operand::SLOT,
            compare: compare::NE,
            step,
            width: 8,
            offset,
            ..Condition::NONE
        });
    }
    if !plan.results.is_empty() {
        return None;
    }
    match &plan.ret {
        Some(ReturnValue::Captured {
            value:
                SlotValue::Variants {
                    family: Family::Result,
                    discriminant: Some(discriminant),
                    variants,
                },
            ..
        }) => err_condition(discriminant, variants),
        Some(ReturnValue::Register {
            render: Render::Int { size, signed: true },
        }) => Some(Condition {
            operand: operand::RETURN,
            compare: compare::LT,
            width: *size,
            signed: 1,
            value: 0,
            ..Condition::NONE
        }),
        Some(ReturnValue::Register {
            render: Render::Pointer,
        }) => Some(Condition {
            operand: operand::RETURN,
            compare: compare::EQ,
            width: 8,
            value: 0,
            ..Condition::NONE
        }),
        _ => None,
    }
}

/// The condition that a `Result` whose discriminant is `discriminant` holds its `Err`: the
/// value that selects `Err`, or any but `Ok`'s where `Err` holds the niche.
fn err_condition(discriminant: &SlotValue, variants: &[VariantSlot]) -> Option<Condition> {
    let SlotValue::Captured {
        offset, step, size, ..
    } = discriminant
    else {
        return None;
    };
    let value_of = |name: &str| variants.iter().find(|v| v.name == name).map(|v| v.value);
    let (compare, value) = match (value_of("Err")?, value_of("Ok")?) {
        (Some(err), _) => (compare::EQ, err),
        (None, Some(ok)) => (compare::NE, ok),
        (None, None) => return None,
    };
    Some(Condition {
        operand: operand::SLOT,
        compare,
        step: *step,
        width: u8::try_from(*size).ok().filter(|w| (1..=8).contains(w))?,
        offset: *offset,
        value,
        ..Condition::NONE
    })
}

/// Where a plan holds an integer argument, and how it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegerSlot {
    pub offset: u16,
    /// The step whose status says the slot is valid.
    pub step: u8,
    pub width: u8,
    pub signed: bool,
    pub render: Render,
}

/// Where the plan of `function` holds the integer `name` (`--by-arg`); `None` when the
/// function has no such parameter. A name that is not an integer captured in the payload is
/// a usage error.
pub fn integer_slot(name: &Name, plan: &Plan, function: &str) -> Result<Option<IntegerSlot>> {
    let Some(operand) = operand_of(name, plan, function)? else {
        return Ok(None);
    };
    match operand.kind {
        Kind::Integer {
            width,
            signed,
            render,
        } if operand.operand == operand::SLOT => Ok(Some(IntegerSlot {
            offset: operand.offset,
            step: operand.step,
            width,
            signed,
            render,
        })),
        _ => Err(Error::Usage(format!(
            "--by-arg: `{name}` of {function} is not an integer argument (group by an \
             integer, an enum or a boolean parameter, or a field of one)"
        ))),
    }
}

/// The kernel's predicate of `conditions` (all must hold).
pub fn kernel_predicate(conditions: &[Condition], function: &str) -> Result<Predicate> {
    if conditions.len() > MAX_CONDITIONS {
        return Err(Error::Usage(format!(
            "{function}: at most {MAX_CONDITIONS} conditions (--where comparisons and \
             --errors) are decided in the kernel; {} asked",
            conditions.len()
        )));
    }
    let mut predicate = Predicate::NONE;
    predicate.count = conditions.len() as u32;
    predicate.conditions[..conditions.len()].copy_from_slice(conditions);
    Ok(predicate)
}

fn operand_of(name: &Name, plan: &Plan, function: &str) -> Result<Option<Operand>> {
    let (param, path) = match name {
        Name::Return => {
            return match &plan.ret {
                Some(ReturnValue::Register { render }) => Ok(Some(Operand {
                    operand: operand::RETURN,
                    step: 0,
                    offset: 0,
                    kind: kind_of(render, name, function)?,
                })),
                Some(ReturnValue::Captured { .. }) => Err(Error::Usage(format!(
                    "--where: the return value of {function} is not a scalar: only integers, \
                     enums, booleans and pointers returned compare (`ret`)"
                ))),
                Some(ReturnValue::Missing { reason }) => Err(Error::Usage(format!(
                    "--where: the return value of {function} is not captured ({reason})"
                ))),
                None => Err(Error::Usage(format!(
                    "--where: {function} returns nothing to compare (`ret`)"
                ))),
            };
        }
        Name::Path(ArgPath { param, fields }) => (param, fields),
    };
    let Some(slot) = plan
        .args
        .iter()
        .chain(&plan.results)
        .find(|slot| &slot.name == param)
    else {
        return Ok(None);
    };
    let mut value = &slot.value;
    for (depth, field) in path.iter().enumerate() {
        value = match value {
            SlotValue::Struct { fields, .. } => match fields.iter().find(|f| &f.name == field) {
                Some(found) => &found.value,
                None => {
                    return Err(Error::Usage(format!(
                        "--where: `{name}` is not captured in {function} (its captured fields: \
                         {}; add it with --args {name})",
                        fields
                            .iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            },
            _ => {
                let above = ArgPath {
                    param: param.clone(),
                    fields: path[..depth].to_vec(),
                };
                return Err(Error::Usage(format!(
                    "--where: `{above}` of {function} is not a struct: `{name}` names nothing"
                )));
            }
        };
    }
    let (step, offset, kind) = match value {
        SlotValue::Captured {
            offset,
            step,
            render,
            size,
        } => {
            let kind = match render {
                // Room for one byte past what is shown and the NUL (see the plan builder).
                Render::CString => Kind::Text {
                    prefix: 4,
                    exact: size.saturating_sub(6),
                },
                Render::Str => Kind::Text {
                    prefix: 8,
                    exact: size.saturating_sub(8),
                },
                other => kind_of(other, name, function)?,
            };
            (*step, *offset, kind)
        }
        SlotValue::Interface { type_word, .. } => match type_word.as_ref() {
            SlotValue::Captured { offset, step, .. } => (*step, *offset, Kind::Interface),
            _ => {
                return Err(not_captured(
                    name,
                    function,
                    "its type word is not captured",
                ));
            }
        },
        SlotValue::Missing { reason } => return Err(not_captured(name, function, reason)),
        SlotValue::Struct { .. } => {
            return Err(Error::Usage(format!(
                "--where: `{name}` of {function} is a struct: compare one of its fields \
                 (`{name}.FIELD`)"
            )));
        }
        SlotValue::Elements { .. } | SlotValue::Items { .. } => {
            return Err(Error::Usage(format!(
                "--where: `{name}` of {function} is a slice: only integers, strings, enums, \
                 booleans and pointers compare"
            )));
        }
        SlotValue::Variants { .. } => {
            return Err(Error::Usage(format!(
                "--where: `{name}` of {function} is an enum with data: only integers, strings, \
                 enums, booleans and pointers compare"
            )));
        }
        SlotValue::LengthOnly { .. } => {
            return Err(not_captured(name, function, "its pointer is optimized out"));
        }
    };
    Ok(Some(Operand {
        operand: operand::SLOT,
        step,
        offset,
        kind,
    }))
}

fn not_captured(name: &Name, function: &str, reason: &str) -> Error {
    Error::Usage(format!(
        "--where: `{name}` of {function} is not captured ({reason}), so nothing can be \
         compared with it"
    ))
}

fn kind_of(render: &Render, name: &Name, function: &str) -> Result<Kind> {
    let integer = |width: u8, signed: bool| Kind::Integer {
        width,
        signed,
        render: render.clone(),
    };
    Ok(match render {
        Render::Int { size, signed }
        | Render::Char { size, signed }
        | Render::Enum { size, signed, .. } => integer(*size, *signed),
        Render::Bool => integer(1, false),
        Render::Pointer => integer(8, false),
        Render::RawWord => integer(8, true),
        other => {
            return Err(Error::Usage(format!(
                "--where: `{name}` of {function} is {}: only integers, strings, enums, \
                 booleans and pointers compare",
                match other {
                    Render::Float { .. } => "a floating-point number",
                    Render::Slice { .. } | Render::Sequence { .. } => "a sequence",
                    Render::Array { .. } => "an array",
                    Render::GoTypeName => "a type name",
                    _ => "not comparable",
                }
            )));
        }
    })
}

fn condition(comparison: &Comparison, operand: &Operand, function: &str) -> Result<Condition> {
    let name = &comparison.name;
    let bad = |why: String| Error::Usage(format!("--where: `{name}` of {function} {why}"));
    let mut condition = Condition {
        operand: operand.operand,
        step: operand.step,
        offset: operand.offset,
        ..Condition::NONE
    };
    match &operand.kind {
        Kind::Text { prefix, exact } => {
            let Literal::Text(text) = &comparison.literal else {
                return Err(bad(
                    "is a string: compare it with a quoted string ('abc', or 'abc*' with =~)"
                        .into(),
                ));
            };
            let (compare, wanted) = match comparison.op {
                Op::Eq => (compare::TEXT_EQ, text.as_str()),
                Op::Matches => match text.strip_suffix('*') {
                    Some(head) => (compare::TEXT_PREFIX, head),
                    None => (compare::TEXT_EQ, text.as_str()),
                },
                other => {
                    return Err(bad(format!(
                        "is a string: strings compare with == or =~ 'prefix*', not {}",
                        other.spelling()
                    )));
                }
            };
            if wanted.contains('*') {
                return Err(bad(format!(
                    "is compared with '{text}': only a final `*` (a prefix) is supported"
                )));
            }
            let bytes = wanted.as_bytes();
            if bytes.len() > MAX_CONDITION_TEXT {
                return Err(bad(format!(
                    "is compared with '{wanted}', {} bytes; the kernel compares at most \
                     {MAX_CONDITION_TEXT}",
                    bytes.len()
                )));
            }
            if bytes.len() > usize::from(*exact) {
                return Err(bad(format!(
                    "has only its first {exact} bytes captured, fewer than '{wanted}' has \
                     (raise --string-size)"
                )));
            }
            condition.compare = compare;
            condition.width = *prefix;
            condition.text_len = bytes.len() as u8;
            condition.text[..bytes.len()].copy_from_slice(bytes);
        }
        Kind::Interface => {
            let nil = matches!(&comparison.literal, Literal::Integer(0))
                || matches!(&comparison.literal, Literal::Word(w) if is_null(w));
            let compare = match comparison.op {
                Op::Eq => compare::EQ,
                Op::Ne => compare::NE,
                _ => {
                    return Err(bad(
                        "is an interface: compare it with == nil or != nil".into()
                    ));
                }
            };
            if !nil {
                return Err(bad(
                    "is an interface: compare it with == nil or != nil".into()
                ));
            }
            condition.compare = compare;
            condition.width = 8;
        }
        Kind::Integer {
            width,
            signed,
            render,
        } => {
            if comparison.op == Op::Matches {
                return Err(bad("is a number: =~ compares strings".into()));
            }
            let value =
                integer_literal(&comparison.literal, render, *width, *signed).map_err(&bad)?;
            condition.compare = match comparison.op {
                Op::Eq => compare::EQ,
                Op::Ne => compare::NE,
                Op::Lt => compare::LT,
                Op::Gt => compare::GT,
                Op::Le => compare::LE,
                Op::Ge => compare::GE,
                Op::Matches => unreachable!("refused above"),
            };
            condition.width = *width;
            // A raw register of unknown type compares as unsigned unless the value is
            // negative (an address and a -1 both read as the user means them).
            let signed = match render {
                Render::RawWord => value < 0,
                _ => *signed,
            };
            condition.signed = u8::from(signed);
            // The value's 64 bits: two's complement for a negative one (in range, as checked).
            condition.value = value as u64;
        }
    }
    Ok(condition)
}

fn is_null(word: &str) -> bool {
    matches!(word, "NULL" | "null" | "nil" | "nullptr")
}

/// The integer `literal` means for a slot shown as `render`, checked to fit it.
fn integer_literal(
    literal: &Literal,
    render: &Render,
    width: u8,
    signed: bool,
) -> std::result::Result<i128, String> {
    let value = match literal {
        Literal::Integer(n) => *n,
        Literal::Word(word) => match render {
            Render::Bool if word == "true" => 1,
            Render::Bool if word == "false" => 0,
            Render::Pointer | Render::RawWord if is_null(word) => 0,
            Render::Enum { enumerators, .. } => {
                let found = enumerators.iter().find(|(_, name)| {
                    name == word || name.rsplit("::").next() == Some(word.as_str())
                });
                match found {
                    Some((value, _)) => i128::from(*value),
                    None => {
                        return Err(format!(
                            "has no enumerator `{word}` (it has {})",
                            enumerators
                                .iter()
                                .map(|(_, n)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
            Render::Bool => return Err(format!("is a boolean: true or false, not `{word}`")),
            _ => return Err(format!("is a number, not `{word}`")),
        },
        Literal::Text(text) => {
            return Err(format!("is a number, not the string '{text}'"));
        }
    };
    let bits = 8 * u32::from(width);
    let (low, high) = match (render, signed) {
        // A raw register: any 64-bit pattern, written signed or not.
        (Render::RawWord, _) => (-(1i128 << 63), (1i128 << 64) - 1),
        (_, true) => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
        (_, false) => (0, (1i128 << bits) - 1),
    };
    if value < low || value > high {
        return Err(format!(
            "is a {width}-byte {} integer: {value} does not fit",
            if signed { "signed" } else { "unsigned" }
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ArgSlot, raw_register_args};

    fn plan_with(args: Vec<ArgSlot>, ret: Option<ReturnValue>) -> Plan {
        let mut plan = raw_register_args(0).unwrap();
        plan.args = args;
        plan.ret = ret;
        plan
    }

    fn captured(name: &str, offset: u16, step: u8, size: u16, render: Render) -> ArgSlot {
        ArgSlot {
            name: name.into(),
            value: SlotValue::Captured {
                offset,
                size,
                step,
                render,
            },
        }
    }

    fn int(size: u8, signed: bool) -> Render {
        Render::Int { size, signed }
    }

    fn sample() -> Plan {
        plan_with(
            vec![
                captured("status", 16, 0, 4, int(4, true)),
                captured("path", 24, 1, 4 + 62, Render::CString),
                captured(
                    "mode",
                    96,
                    2,
                    4,
                    Render::Enum {
                        size: 4,
                        signed: false,
                        enumerators: vec![(0, "READ".into()), (1, "mode::WRITE".into())],
                    },
                ),
                ArgSlot {
                    name: "req".into(),
                    value: SlotValue::Struct {
                        pointer: None,
                        fields: vec![captured("len", 104, 3, 8, int(8, false))],
                    },
                },
                ArgSlot {
                    name: "ratio".into(),
                    value: SlotValue::Missing {
                        reason: "xmm".into(),
                    },
                },
            ],
            Some(ReturnValue::Register {
                render: int(4, true),
            }),
        )
    }

    fn conditions(text: &str) -> Result<Option<Vec<Condition>>> {
        compile(&text.parse().unwrap(), &sample(), "handle")
    }

    #[test]
    fn integers_enums_fields_and_returns_read_their_slots() {
        let c = conditions("status >= -1 && mode == WRITE && req.len < 10 && ret != 0")
            .unwrap()
            .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            (c[0].operand, c[0].compare, c[0].offset),
            (operand::SLOT, compare::GE, 16)
        );
        assert_eq!((c[0].width, c[0].signed, c[0].value), (4, 1, u64::MAX));
        assert_eq!((c[1].value, c[1].step, c[1].width), (1, 2, 4));
        assert_eq!((c[2].offset, c[2].step, c[2].signed), (104, 3, 0));
        assert_eq!((c[3].operand, c[3].compare), (operand::RETURN, compare::NE));
    }

    #[test]
    fn strings_compare_equal_or_by_prefix() {
        let c = conditions("path == '/a' && path =~ '/api/*'")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c[0].compare, c[0].width, c[0].text_len),
            (compare::TEXT_EQ, 4, 2)
        );
        assert_eq!(&c[0].text[..2], b"/a");
        assert_eq!((c[1].compare, c[1].text_len), (compare::TEXT_PREFIX, 5));
        assert_eq!(&c[1].text[..5], b"/api/");
    }

    #[test]
    fn a_name_the_function_lacks_leaves_it_untestable() {
        assert_eq!(conditions("nope == 1").unwrap(), None);
    }

    #[test]
    fn what_cannot_be_compared_is_a_usage_error_naming_it() {
        for (text, says) in [
            ("ratio == 1", "`ratio` of handle is not captured (xmm)"),
            ("req == 1", "is a struct"),
            ("req.size == 1", "`req.size` is not captured"),
            ("status.x == 1", "not a struct"),
            ("status == 'a'", "is a number, not the string 'a'"),
            (
                "status == 3000000000",
                "4-byte signed integer: 3000000000 does not fit",
            ),
            (
                "mode == OTHER",
                "has no enumerator `OTHER` (it has READ, mode::WRITE)",
            ),
            ("path != 'a'", "strings compare with == or =~"),
            ("path == 1", "compare it with a quoted string"),
            ("path =~ 'a*b*'", "only a final `*`"),
            ("status =~ 'a'", "is a number: =~ compares strings"),
        ] {
            let err = conditions(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        let long = format!("path == '{}'", "x".repeat(65));
        assert!(
            conditions(&long)
                .unwrap_err()
                .to_string()
                .contains("at most 64")
        );
        let beyond = format!("path == '{}'", "x".repeat(61));
        assert!(
            conditions(&beyond)
                .unwrap_err()
                .to_string()
                .contains("raise --string-size"),
            "60 bytes are captured exactly"
        );
        let void = plan_with(Vec::new(), None);
        let err = compile(&"ret == 0".parse().unwrap(), &void, "f").unwrap_err();
        assert!(err.to_string().contains("returns nothing"), "{err}");
    }

    #[test]
    fn errors_follow_the_return_type() {
        let negative = errors_predicate(&sample()).unwrap();
        assert_eq!(
            (negative.compare, negative.signed, negative.width),
            (compare::LT, 1, 4)
        );
        let null = errors_predicate(&plan_with(
            Vec::new(),
            Some(ReturnValue::Register {
                render: Render::Pointer,
            }),
        ))
        .unwrap();
        assert_eq!((null.compare, null.value), (compare::EQ, 0));
        let unsigned = plan_with(
            Vec::new(),
            Some(ReturnValue::Register {
                render: int(8, false),
            }),
        );
        assert_eq!(errors_predicate(&unsigned), None);
        assert_eq!(errors_predicate(&plan_with(Vec::new(), None)), None);
        // A Rust `Result`: `Err` by its own tag, or (a niche) by not being `Ok`'s.
        let result = |ok: Option<u64>, err: Option<u64>| {
            let variant = |name: &str, value| VariantSlot {
                name: name.into(),
                value,
                fields: Vec::new(),
            };
            plan_with(
                Vec::new(),
                Some(ReturnValue::Captured {
                    value: SlotValue::Variants {
                        family: Family::Result,
                        discriminant: Some(Box::new(SlotValue::Captured {
                            offset: 24,
                            size: 1,
                            step: 2,
                            render: int(1, false),
                        })),
                        variants: vec![variant("Ok", ok), variant("Err", err)],
                    },
                    hidden: None,
                }),
            )
        };
        let tagged = errors_predicate(&result(Some(0), Some(1))).unwrap();
        assert_eq!(
            (tagged.operand, tagged.compare, tagged.value, tagged.width),
            (operand::SLOT, compare::EQ, 1, 1)
        );
        assert_eq!((tagged.step, tagged.offset), (2, 24));
        let niche = errors_predicate(&result(Some(0x80), None)).unwrap();
        assert_eq!((niche.compare, niche.value), (compare::NE, 0x80));
    }

    #[test]
    fn at_most_the_kernels_conditions() {
        let c = conditions("status == 1").unwrap().unwrap();
        let five = vec![c[0]; MAX_CONDITIONS + 1];
        assert!(kernel_predicate(&five, "f").is_err());
        let one = kernel_predicate(&c, "f").unwrap();
        assert_eq!(one.count, 1);
    }
}
