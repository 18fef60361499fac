//! The cost model: what each operator costs in gas.
//!
//! Gas is defined on the *input* module: a function's gas is the sum of the prices of the
//! original operators it executes, looked up in this table. The injected metering code is not
//! charged (price the operators it guards, such as branches, to cover it if you need to).
//!
//! Every operator wasmparser can decode has a price, chosen by [`default_price`]; there is no
//! fallback arm that makes an unknown operator free.

use crate::error::{Error, ErrorKind};
use crate::ops::{self, OpKind, OPERATORS};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Prices for every WebAssembly operator.
///
/// The default table ([`CostModel::default`]) charges 1 per instruction, with these
/// exceptions: structure markers that compile to no code (`block`, `loop`, `end`, `else`,
/// `try_table`) cost 0; `call` and `return_call` cost 2; indirect and reference calls cost 3;
/// integer division and remainder, float division and square root (scalar and SIMD) cost 4;
/// `throw`, `throw_ref`, `memory.grow`, `table.grow` and the bulk memory and table operations
/// cost 10 as their base price.
///
/// Costs are whole gas units (`u32`). Two models with equal prices have equal
/// [fingerprints](CostModel::fingerprint); the fingerprint is written into every instrumented
/// module so that a runtime can tell which table a module was metered with.
#[derive(Clone, PartialEq, Eq)]
pub struct CostModel {
    prices: Box<[u32]>,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            prices: OPERATORS
                .iter()
                .map(|op| default_price(op.name()))
                .collect(),
        }
    }
}

impl std::fmt::Debug for CostModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostModel")
            .field("fingerprint", &hex(&self.fingerprint()[..8]))
            .finish_non_exhaustive()
    }
}

/// The default price of an operator, by its cost-file name. Documented on [`CostModel`].
fn default_price(name: &str) -> u32 {
    const MARKERS: &[&str] = &["block", "loop", "end", "else", "try_table"];
    const DIRECT_CALLS: &[&str] = &["call", "return_call"];
    const INDIRECT_CALLS: &[&str] = &[
        "call_indirect",
        "return_call_indirect",
        "call_ref",
        "return_call_ref",
    ];
    const HEAVY: &[&str] = &[
        "throw",
        "throw_ref",
        "memory_grow",
        "memory_copy",
        "memory_fill",
        "memory_init",
        "table_grow",
        "table_copy",
        "table_fill",
        "table_init",
    ];
    let is_division = name.ends_with("_div_s")
        || name.ends_with("_div_u")
        || name.ends_with("_rem_s")
        || name.ends_with("_rem_u")
        || name.ends_with("_div")
        || name.ends_with("_sqrt");
    if MARKERS.contains(&name) {
        0
    } else if DIRECT_CALLS.contains(&name) {
        2
    } else if INDIRECT_CALLS.contains(&name) {
        3
    } else if HEAVY.contains(&name) {
        10
    } else if is_division {
        4
    } else {
        1
    }
}

/// The on-disk form of a cost model (`--costs FILE`), in TOML or JSON.
///
/// ```toml
/// # Price of every operator not listed below. Omit it to start from the default table.
/// default = 1
///
/// [operators]
/// # Names in text-format spelling ("i64.div_s") or wasmparser spelling ("i64_div_s").
/// "i64.div_s" = 8
/// call = 5
/// ```
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CostFile {
    default: Option<u32>,
    #[serde(default)]
    operators: BTreeMap<String, u32>,
}

impl CostModel {
    /// A model that charges `price` for every operator, structure markers included.
    pub fn flat(price: u32) -> CostModel {
        CostModel {
            prices: vec![price; OPERATORS.len()].into_boxed_slice(),
        }
    }

    /// Sets the price of one operator, named in text-format (`i32.add`) or wasmparser
    /// (`i32_add`) spelling.
    ///
    /// # Errors
    /// [`ErrorKind::CostModel`] when no operator has that name.
    pub fn set(&mut self, operator: &str, price: u32) -> Result<(), Error> {
        let index = ops::index_by_name(operator).ok_or_else(|| {
            Error::new(ErrorKind::CostModel {
                message: format!("unknown operator `{operator}`"),
            })
        })?;
        self.prices[index] = price;
        Ok(())
    }

    /// The price of one operator, or `None` when no operator has that name.
    pub fn price(&self, operator: &str) -> Option<u32> {
        ops::index_by_name(operator).map(|i| self.prices[i])
    }

    /// Reads a cost file in TOML.
    ///
    /// # Errors
    /// [`ErrorKind::CostModel`] for a syntax error, an unknown key or an unknown operator.
    pub fn from_toml(text: &str) -> Result<CostModel, Error> {
        let file: CostFile = toml::from_str(text).map_err(|e| {
            Error::new(ErrorKind::CostModel {
                message: e.to_string(),
            })
        })?;
        CostModel::from_file(file)
    }

    /// Reads a cost file in JSON (same keys as the TOML form).
    ///
    /// # Errors
    /// [`ErrorKind::CostModel`] for a syntax error, an unknown key or an unknown operator.
    pub fn from_json(text: &str) -> Result<CostModel, Error> {
        let file: CostFile = serde_json::from_str(text).map_err(|e| {
            Error::new(ErrorKind::CostModel {
                message: e.to_string(),
            })
        })?;
        CostModel::from_file(file)
    }

    fn from_file(file: CostFile) -> Result<CostModel, Error> {
        let mut model = match file.default {
            Some(price) => CostModel::flat(price),
            None => CostModel::default(),
        };
        for (name, price) in &file.operators {
            model.set(name, *price)?;
        }
        Ok(model)
    }

    /// A SHA-256 digest of every operator's name and price, in name order. Equal prices give
    /// equal fingerprints, whatever order they were set in.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut entries: Vec<(&str, u32)> = OPERATORS
            .iter()
            .zip(self.prices.iter())
            .map(|(op, price)| (op.name(), *price))
            .collect();
        entries.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(b"ri-sandbox cost model v1\n");
        for (name, price) in entries {
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(price.to_le_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().into()
    }

    pub(crate) fn op_price(&self, kind: OpKind) -> u32 {
        self.prices[kind as usize]
    }
}

/// Lower-case hexadecimal, for fingerprints in messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_table() {
        let m = CostModel::default();
        assert_eq!(m.price("i32.add"), Some(1));
        assert_eq!(m.price("block"), Some(0));
        assert_eq!(m.price("loop"), Some(0));
        assert_eq!(m.price("br"), Some(1));
        assert_eq!(m.price("call"), Some(2));
        assert_eq!(m.price("call_indirect"), Some(3));
        assert_eq!(m.price("i64.div_u"), Some(4));
        assert_eq!(m.price("f64.sqrt"), Some(4));
        assert_eq!(m.price("f32x4.div"), Some(4));
        assert_eq!(m.price("memory.fill"), Some(10));
        assert_eq!(m.price("nop"), Some(1));
    }

    #[test]
    fn only_structure_markers_are_free() {
        let m = CostModel::default();
        let free: Vec<_> = OPERATORS
            .iter()
            .filter(|op| m.price(op.name()) == Some(0))
            .map(|op| op.name())
            .collect();
        assert_eq!(free, ["block", "loop", "else", "end", "try_table"]);
    }

    #[test]
    fn cost_files_in_toml_and_json_agree() {
        let t = CostModel::from_toml("default = 2\n[operators]\n\"i64.div_s\" = 9\ncall = 5\n")
            .unwrap();
        let j = CostModel::from_json(r#"{"default": 2, "operators": {"i64_div_s": 9, "call": 5}}"#)
            .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.fingerprint(), j.fingerprint());
        assert_eq!(t.price("i32.add"), Some(2));
        assert_eq!(t.price("i64.div_s"), Some(9));
        assert_ne!(t.fingerprint(), CostModel::default().fingerprint());
    }

    #[test]
    fn bad_cost_files_are_typed_errors() {
        for bad in [
            "[operators]\n\"i32.frob\" = 1\n",
            "defualt = 1\n",
            "default = -1\n",
            "default = ",
        ] {
            let err = CostModel::from_toml(bad).unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::CostModel { .. }),
                "{bad:?}: {err}"
            );
        }
        let err = CostModel::from_json("{\"operators\": {\"nope\": 1}}").unwrap_err();
        assert!(err.to_string().contains("unknown operator `nope`"), "{err}");
    }

    #[test]
    fn empty_file_is_the_default_model() {
        assert_eq!(CostModel::from_toml("").unwrap(), CostModel::default());
    }
}
