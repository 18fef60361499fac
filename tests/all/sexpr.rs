//! A small s-expression reader for the test directive files (`fixtures/gas/*.wast`, hostile
//! fixtures): it splits a file into top-level forms, keeping each form's source text (so a
//! `(module ...)` can go to the `wat` crate as is) and its line number (for messages).

use crate::engines::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Sexpr {
    Atom(String),
    Str(String),
    List(Vec<Sexpr>),
}

pub struct Form {
    pub line: usize,
    pub text: String,
    pub expr: Sexpr,
}

pub fn parse_forms(source: &str) -> Result<Vec<Form>, String> {
    let bytes = source.as_bytes();
    let mut forms = Vec::new();
    let mut i = 0;
    let mut stack: Vec<(Vec<Sexpr>, usize)> = Vec::new();
    let mut form_start = 0;
    let line_of = |pos: usize| source[..pos].matches('\n').count() + 1;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b';' && bytes.get(i + 1) == Some(&b';') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c == b'(' && bytes.get(i + 1) == Some(&b';') {
            let end = source[i..]
                .find(";)")
                .ok_or_else(|| format!("line {}: unterminated block comment", line_of(i)))?;
            i += end + 2;
        } else if c == b'(' {
            if stack.is_empty() {
                form_start = i;
            }
            stack.push((Vec::new(), i));
            i += 1;
        } else if c == b')' {
            let (items, _) = stack
                .pop()
                .ok_or_else(|| format!("line {}: unbalanced `)`", line_of(i)))?;
            i += 1;
            let list = Sexpr::List(items);
            match stack.last_mut() {
                Some((parent, _)) => parent.push(list),
                None => forms.push(Form {
                    line: line_of(form_start),
                    text: source[form_start..i].to_string(),
                    expr: list,
                }),
            }
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            let start = i + 1;
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let s = source[start..i.min(bytes.len())].to_string();
            i += 1;
            push_atom(&mut stack, Sexpr::Str(s), line_of(start))?;
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !b"()".contains(&bytes[i]) {
                i += 1;
            }
            push_atom(
                &mut stack,
                Sexpr::Atom(source[start..i].to_string()),
                line_of(start),
            )?;
        }
    }
    if let Some((_, open)) = stack.last() {
        return Err(format!("line {}: unclosed `(`", line_of(*open)));
    }
    Ok(forms)
}

fn push_atom(stack: &mut [(Vec<Sexpr>, usize)], atom: Sexpr, line: usize) -> Result<(), String> {
    match stack.last_mut() {
        Some((items, _)) => {
            items.push(atom);
            Ok(())
        }
        None => Err(format!("line {line}: atom outside any form")),
    }
}

impl Sexpr {
    pub fn head(&self) -> Option<&str> {
        match self {
            Sexpr::List(items) => match items.first() {
                Some(Sexpr::Atom(a)) => Some(a),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn items(&self) -> &[Sexpr] {
        match self {
            Sexpr::List(items) => items,
            _ => &[],
        }
    }

    pub fn atom(&self) -> Option<&str> {
        match self {
            Sexpr::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// `(i32.const 5)`, `(f64.const -1.5)` and friends.
    pub fn value(&self) -> Result<Value, String> {
        let items = self.items();
        let (Some(ty), Some(text)) = (
            items.first().and_then(Sexpr::atom),
            items.get(1).and_then(Sexpr::atom),
        ) else {
            return Err(format!("expected a constant, found {self:?}"));
        };
        let text = text.replace('_', "");
        let int = |t: &str| -> Result<i128, String> {
            let (neg, digits) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let v = match digits.strip_prefix("0x") {
                Some(hex) => i128::from_str_radix(hex, 16),
                None => digits.parse::<i128>(),
            }
            .map_err(|e| format!("bad integer `{t}`: {e}"))?;
            Ok(if neg { -v } else { v })
        };
        Ok(match ty {
            "i32.const" => Value::I32(int(&text)? as i32),
            "i64.const" => Value::I64(int(&text)? as i64),
            "f32.const" => Value::F32(
                text.parse::<f32>()
                    .map_err(|e| format!("bad f32 `{text}`: {e}"))?
                    .to_bits(),
            ),
            "f64.const" => Value::F64(
                text.parse::<f64>()
                    .map_err(|e| format!("bad f64 `{text}`: {e}"))?
                    .to_bits(),
            ),
            other => return Err(format!("unknown constant type `{other}`")),
        })
    }
}
