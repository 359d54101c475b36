//! `--where 'EXPR'` and `--errors`: conditions on a call's captured arguments and return
//! value, decided in the kernel when the call returns.
//!
//! An expression is comparisons joined by `&&`: `status >= 500 && req.path =~ '/api/*'`.
//! This module parses it ([`Expression`]); [`compile`] turns it, for one probe's plan, into
//! the kernel's [`Predicate`](tracer_ebpf::Predicate), reading each name from the payload slot
//! the plan captures it in. A name the plan does not capture is a usage error naming it.

mod compile;

pub use compile::{IntegerSlot, compile, errors_predicate, integer_slot, kernel_predicate};

use crate::{
    error::{Error, Result},
    plan::ArgPath,
};

/// A parsed `--where` expression: every comparison must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    /// The text as the user wrote it, for summaries.
    pub text: String,
    pub comparisons: Vec<Comparison>,
}

/// `NAME OP LITERAL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub name: Name,
    pub op: Op,
    pub literal: Literal,
}

/// What a comparison reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// `ret` (or `return`): the return value.
    Return,
    /// A parameter (or Go result), or a field of one, as deep as it goes (`req.path`,
    /// `req->header.method`).
    Path(ArgPath),
}

impl std::str::FromStr for Name {
    type Err = Error;

    /// A name alone (`--by-arg status`, `--by-arg req.len`).
    fn from_str(text: &str) -> Result<Self> {
        match tokenize(text)?.as_slice() {
            [Token::Name(name)] => Ok(name.clone()),
            _ => Err(Error::Usage(format!(
                "`{}`: expected a parameter name, or NAME.FIELD",
                text.trim()
            ))),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Return => f.write_str("ret"),
            Self::Path(path) => path.fmt(f),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `=~ 'abc*'`: the string starts with `abc` (without a final `*`: equals it).
    Matches,
}

impl Op {
    fn spelling(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Ge => ">=",
            Self::Matches => "=~",
        }
    }
}

/// What a name is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A decimal or `0x` hexadecimal integer, maybe negative.
    Integer(i128),
    /// A quoted string.
    Text(String),
    /// A bare word: an enumerator, `true`/`false`, `NULL`/`nil`.
    Word(String),
}

impl std::str::FromStr for Expression {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let tokens = tokenize(text)?;
        let mut comparisons = Vec::new();
        let mut rest = tokens.as_slice();
        loop {
            let (comparison, after) = comparison(rest, text)?;
            comparisons.push(comparison);
            match after {
                [] => break,
                [Token::And, more @ ..] if !more.is_empty() => rest = more,
                [Token::And] => return Err(usage(text, "nothing after `&&`")),
                [other, ..] => {
                    return Err(usage(
                        text,
                        &format!("expected `&&` between comparisons, found {}", other.shown()),
                    ));
                }
            }
        }
        Ok(Self {
            text: text.trim().to_string(),
            comparisons,
        })
    }
}

fn usage(text: &str, why: &str) -> Error {
    Error::Usage(format!(
        "--where `{}`: {why} (expected NAME OP VALUE joined by &&, e.g. \
         `status >= 500 && path =~ '/api/*'`)",
        text.trim()
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(Name),
    Op(Op),
    Literal(Literal),
    And,
}

impl Token {
    fn shown(&self) -> String {
        match self {
            Self::Name(name) => format!("`{name}`"),
            Self::Op(op) => format!("`{}`", op.spelling()),
            Self::Literal(Literal::Integer(n)) => format!("`{n}`"),
            Self::Literal(Literal::Text(t)) => format!("'{t}'"),
            Self::Literal(Literal::Word(w)) => format!("`{w}`"),
            Self::And => "`&&`".into(),
        }
    }
}

/// One comparison at the start of `tokens`, and what follows it.
fn comparison<'a>(tokens: &'a [Token], text: &str) -> Result<(Comparison, &'a [Token])> {
    match tokens {
        [
            Token::Name(name),
            Token::Op(op),
            Token::Literal(literal),
            rest @ ..,
        ] => Ok((
            Comparison {
                name: name.clone(),
                op: *op,
                literal: literal.clone(),
            },
            rest,
        )),
        // `status == OK`: the tokenizer cannot tell an enumerator from a name.
        [
            Token::Name(name),
            Token::Op(op),
            Token::Name(word),
            rest @ ..,
        ] => match word {
            Name::Path(ArgPath { param, fields }) if fields.is_empty() => Ok((
                Comparison {
                    name: name.clone(),
                    op: *op,
                    literal: Literal::Word(param.clone()),
                },
                rest,
            )),
            other => Err(usage(
                text,
                &format!(
                    "`{other}` is not a value (compare with a number, a quoted string or an enumerator)"
                ),
            )),
        },
        [Token::Name(name), Token::Op(_), ..] => {
            Err(usage(text, &format!("no value after `{name}`")))
        }
        [Token::Name(name), ..] => Err(usage(
            text,
            &format!("`{name}` needs a comparison (== != < > <= >= =~)"),
        )),
        [] => Err(usage(text, "empty expression")),
        [other, ..] => Err(usage(
            text,
            &format!("a comparison starts with a name, not {}", other.shown()),
        )),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '&' if next == Some('&') => {
                tokens.push(Token::And);
                i += 2;
            }
            '|' if next == Some('|') => {
                return Err(usage(
                    text,
                    "`||` is not supported: a call must meet every comparison (trace twice, or \
                     widen one comparison)",
                ));
            }
            '=' | '!' | '<' | '>' => {
                let (op, width) = match (c, next) {
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('=', Some('~')) => (Op::Matches, 2),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => {
                        return Err(usage(
                            text,
                            &format!("`{c}` is not a comparison (== != < > <= >= =~)"),
                        ));
                    }
                };
                tokens.push(Token::Op(op));
                i += width;
            }
            '\'' | '"' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(usage(text, "a quoted string is not closed")),
                        Some(&q) if q == c => break,
                        Some('\\') => {
                            let escaped = chars
                                .get(j + 1)
                                .ok_or_else(|| usage(text, "a quoted string is not closed"))?;
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                '0' => '\0',
                                other => *other,
                            });
                            j += 2;
                        }
                        Some(&other) => {
                            value.push(other);
                            j += 1;
                        }
                    }
                }
                tokens.push(Token::Literal(Literal::Text(value)));
                i = j + 1;
            }
            '-' | '0'..='9' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().filter(|&&c| c != '_').collect();
                tokens.push(Token::Literal(Literal::Integer(
                    parse_integer(&word)
                        .ok_or_else(|| usage(text, &format!("`{word}` is not a number")))?,
                )));
            }
            c if c.is_alphabetic() || c == '_' => {
                let word = |from: usize| {
                    let mut end = from;
                    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                        end += 1;
                    }
                    (chars[from..end].iter().collect::<String>(), end)
                };
                let (param, end) = word(i);
                i = end;
                let mut fields = Vec::new();
                loop {
                    let from = if chars.get(i) == Some(&'.') {
                        i + 1
                    } else if chars.get(i) == Some(&'-') && chars.get(i + 1) == Some(&'>') {
                        i + 2
                    } else {
                        break;
                    };
                    let (field, end) = word(from);
                    if field.is_empty() {
                        return Err(usage(text, &format!("no field name after `{param}`")));
                    }
                    i = end;
                    fields.push(field);
                }
                let name = match (param.as_str(), fields.is_empty()) {
                    ("ret" | "return", true) => Name::Return,
                    _ => Name::Path(ArgPath { param, fields }),
                };
                tokens.push(Token::Name(name));
            }
            other => return Err(usage(text, &format!("unexpected `{other}`"))),
        }
    }
    Ok(tokens)
}

fn parse_integer(word: &str) -> Option<i128> {
    let (negative, digits) = match word.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    let magnitude = i128::from(magnitude);
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Expression> {
        text.parse()
    }

    fn path(param: &str, field: Option<&str>) -> Name {
        Name::Path(ArgPath {
            param: param.into(),
            fields: field
                .map(|f| f.split('.').map(Into::into).collect())
                .unwrap_or_default(),
        })
    }

    #[test]
    fn comparisons_joined_by_and() {
        let e = parse("status >= 500 && req.path =~ '/api/*' && ret != -1").unwrap();
        assert_eq!(
            e.comparisons,
            vec![
                Comparison {
                    name: path("status", None),
                    op: Op::Ge,
                    literal: Literal::Integer(500)
                },
                Comparison {
                    name: path("req", Some("path")),
                    op: Op::Matches,
                    literal: Literal::Text("/api/*".into())
                },
                Comparison {
                    name: Name::Return,
                    op: Op::Ne,
                    literal: Literal::Integer(-1)
                },
            ]
        );
        assert_eq!(e.text, "status >= 500 && req.path =~ '/api/*' && ret != -1");
    }

    #[test]
    fn every_operator_numbers_words_and_arrows() {
        for (text, op) in [
            ("a==1", Op::Eq),
            ("a!=1", Op::Ne),
            ("a<1", Op::Lt),
            ("a>1", Op::Gt),
            ("a<=1", Op::Le),
            ("a>=1", Op::Ge),
        ] {
            assert_eq!(parse(text).unwrap().comparisons[0].op, op, "{text}");
        }
        let e = parse("p->len == 0x1F && mode == READ && ok == true").unwrap();
        assert_eq!(e.comparisons[0].name, path("p", Some("len")));
        assert_eq!(e.comparisons[0].literal, Literal::Integer(31));
        assert_eq!(e.comparisons[1].literal, Literal::Word("READ".into()));
        assert_eq!(e.comparisons[2].literal, Literal::Word("true".into()));
        assert_eq!(
            parse(r#"name == "a \"b\"""#).unwrap().comparisons[0].literal,
            Literal::Text("a \"b\"".into())
        );
        assert_eq!(
            parse("n == 1_000").unwrap().comparisons[0].literal,
            Literal::Integer(1000)
        );
    }

    #[test]
    fn malformed_expressions_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("a", "needs a comparison"),
            ("a ==", "no value"),
            ("a == 1 &&", "nothing after"),
            ("a == 1 b == 2", "expected `&&`"),
            ("a == 1 || b == 2", "`||` is not supported"),
            ("a = 1", "not a comparison"),
            ("a == 'x", "not closed"),
            ("a == 12abc", "not a number"),
            ("== 1", "starts with a name"),
            ("a == b.c", "not a value"),
            ("a == 1 @", "unexpected `@`"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
