//! Plain WebAssembly values for direct-mode calls.

/// A numeric WebAssembly value. Floats compare by value; use `to_bits` for bit equality.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `v128`, little-endian
    V128(u128),
}

impl Value {
    pub(crate) fn to_wasmtime(self) -> wasmtime::Val {
        match self {
            Value::I32(v) => wasmtime::Val::I32(v),
            Value::I64(v) => wasmtime::Val::I64(v),
            Value::F32(v) => wasmtime::Val::F32(v.to_bits()),
            Value::F64(v) => wasmtime::Val::F64(v.to_bits()),
            Value::V128(v) => wasmtime::Val::V128(v.into()),
        }
    }

    pub(crate) fn from_wasmtime(val: &wasmtime::Val) -> Option<Value> {
        Some(match val {
            wasmtime::Val::I32(v) => Value::I32(*v),
            wasmtime::Val::I64(v) => Value::I64(*v),
            wasmtime::Val::F32(v) => Value::F32(f32::from_bits(*v)),
            wasmtime::Val::F64(v) => Value::F64(f64::from_bits(*v)),
            wasmtime::Val::V128(v) => Value::V128(v.as_u128()),
            _ => return None,
        })
    }

    /// The value's WebAssembly type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::V128(_) => "v128",
        }
    }

    /// Parses `text` as a value of the WebAssembly type `ty` (`i32`, `i64`, `f32`, `f64`).
    pub fn parse(ty: &str, text: &str) -> Option<Value> {
        Some(match ty {
            "i32" => Value::I32(text.parse().ok()?),
            "i64" => Value::I64(text.parse().ok()?),
            "f32" => Value::F32(text.parse().ok()?),
            "f64" => Value::F64(text.parse().ok()?),
            _ => return None,
        })
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::V128(v) => write!(f, "{v:#034x}"),
        }
    }
}
