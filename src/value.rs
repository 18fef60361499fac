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
    /// Whether the value can be passed where `ty` is expected.
    pub(crate) fn has_type(&self, ty: &wasmtime::ValType) -> bool {
        use wasmtime::ValType as T;
        matches!(
            (self, ty),
            (Value::I32(_), T::I32)
                | (Value::I64(_), T::I64)
                | (Value::F32(_), T::F32)
                | (Value::F64(_), T::F64)
                | (Value::V128(_), T::V128)
        )
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cross_to_wasmtime_and_back_bit_for_bit() {
        let values = [
            Value::I32(-7),
            Value::I64(i64::MIN),
            // A NaN with a payload: its bits must survive, determinism depends on it.
            Value::F32(f32::from_bits(0x7fc0_1234)),
            Value::F64(f64::from_bits(0xfff8_0000_dead_beef)),
            Value::V128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        ];
        for v in values {
            let back = Value::from_wasmtime(&v.to_wasmtime()).unwrap();
            match (v, back) {
                (Value::F32(a), Value::F32(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (Value::F64(a), Value::F64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => assert_eq!(a, b),
            }
        }
        assert_eq!(Value::from_wasmtime(&wasmtime::Val::ExternRef(None)), None);
        let names: Vec<_> = values.iter().map(Value::type_name).collect();
        assert_eq!(names, ["i32", "i64", "f32", "f64", "v128"]);
    }

    #[test]
    fn values_parse_and_print() {
        assert_eq!(Value::parse("i32", "-3"), Some(Value::I32(-3)));
        assert_eq!(
            Value::parse("i64", "9000000000"),
            Some(Value::I64(9_000_000_000))
        );
        assert_eq!(Value::parse("f32", "1.5"), Some(Value::F32(1.5)));
        assert_eq!(Value::parse("f64", "-0.25"), Some(Value::F64(-0.25)));
        assert_eq!(Value::parse("i32", "x"), None);
        assert_eq!(Value::parse("v128", "1"), None);
        assert_eq!(Value::I64(-2).to_string(), "-2");
        assert_eq!(Value::F32(1.5).to_string(), "1.5");
        assert_eq!(Value::F64(0.25).to_string(), "0.25");
        assert_eq!(
            Value::V128(1).to_string(),
            "0x00000000000000000000000000000001"
        );
    }
}
