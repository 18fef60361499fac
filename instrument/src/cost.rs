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
/// cost 10 as their base price. Per-unit prices come on top: by length for the bulk
/// operations and `memory.grow`, and per declared local on every call ([`CostModel::locals`]).
///
/// Costs are whole gas units (`u32`). Two models with equal prices have equal
/// [fingerprints](CostModel::fingerprint); the fingerprint is written into every instrumented
/// module so that a runtime can tell which table a module was metered with.
#[derive(Clone)]
pub struct CostModel {
    /// Shared between clones (a sandbox configuration is cloned per sandbox); copied on write.
    prices: std::sync::Arc<[u32]>,
    /// SHA-256 of the operator prices, computed on first use (hashing ~700 names is the
    /// expensive part of a fingerprint) and dropped by every change to them.
    prices_digest: std::sync::OnceLock<[u8; 32]>,
    /// The whole fingerprint, with the per-unit prices it was computed for (public fields a
    /// caller may change after): instrumenting writes it into every module.
    kept_fingerprint: std::sync::OnceLock<([UnitPrice; 4], [u8; 32])>,
    /// What `memory.copy`, `memory.fill` and `memory.init` pay per byte, on top of their base
    /// price. Default: 1 gas per 8 bytes.
    pub memory_bytes: UnitPrice,
    /// What `table.copy`, `table.fill`, `table.init` and `table.grow` pay per element, on top
    /// of their base price. Default: 1 gas per element.
    pub table_elements: UnitPrice,
    /// What `memory.grow` pays per page requested, on top of its base price. Default: 64 gas
    /// per page.
    pub memory_pages: UnitPrice,
    /// What a function pays for the locals it declares (parameters excluded), on every call,
    /// as part of its entry block: `gas` per *full* group of `2^units_log2` locals (rounded
    /// down, unlike the other unit prices, so a function with fewer locals than a group pays
    /// nothing). An engine sets each local to zero when the function is entered (wasmi: 5.5 us
    /// a call for 30,000 locals, against 30 ns for none), and a body declares 50,000 in five
    /// bytes. Default: 1 gas per 16 locals.
    pub locals: UnitPrice,
}

/// A price proportional to an operand: `gas` for every `2^units_log2` units (bytes, elements
/// or pages), rounding up. The amount is charged before the operation runs, whether it then
/// succeeds or traps, so an operation can never be cheaper than its length says.
///
/// `gas` must stay below 2^31 so that no length can make the charge wrap; a length above
/// 2^32 units is charged `i64::MAX`, which no budget can pay (such an operation needs a memory
/// or table larger than 4 Gi units).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitPrice {
    /// Gas per group of units.
    pub gas: u32,
    /// The group size, as a power of two: 0 charges every unit, 3 every 8 units.
    #[serde(default)]
    pub units_log2: u8,
}

impl UnitPrice {
    /// The largest `gas` a unit price may have.
    pub const MAX_GAS: u32 = (1 << 31) - 1;

    /// `gas` for every `2^units_log2` units.
    pub const fn new(gas: u32, units_log2: u8) -> UnitPrice {
        UnitPrice { gas, units_log2 }
    }

    /// The charge for `units` units, as the instrumented code computes it.
    pub fn charge(self, units: u64) -> i64 {
        if units > 1 << 32 {
            return i64::MAX;
        }
        let groups = (units + (1u64 << self.units_log2) - 1) >> self.units_log2;
        (groups * u64::from(self.gas)) as i64
    }

    fn check(self, what: &str) -> Result<(), Error> {
        if self.gas > UnitPrice::MAX_GAS || self.units_log2 > 32 {
            return Err(Error::new(ErrorKind::CostModel {
                message: format!(
                    "{what}: gas must be at most {} and units_log2 at most 32",
                    UnitPrice::MAX_GAS
                ),
            }));
        }
        Ok(())
    }
}

impl PartialEq for CostModel {
    fn eq(&self, other: &CostModel) -> bool {
        (std::sync::Arc::ptr_eq(&self.prices, &other.prices) || self.prices == other.prices)
            && self.memory_bytes == other.memory_bytes
            && self.table_elements == other.table_elements
            && self.memory_pages == other.memory_pages
            && self.locals == other.locals
    }
}

impl Eq for CostModel {}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            prices: default_prices(),
            prices_digest: std::sync::OnceLock::new(),
            kept_fingerprint: std::sync::OnceLock::new(),
            memory_bytes: UnitPrice::new(1, 3),
            table_elements: UnitPrice::new(1, 0),
            memory_pages: UnitPrice::new(64, 0),
            locals: UnitPrice::new(1, 4),
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

/// The default table, computed once per process and shared.
fn default_prices() -> std::sync::Arc<[u32]> {
    static DEFAULT: std::sync::OnceLock<std::sync::Arc<[u32]>> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            OPERATORS
                .iter()
                .map(|op| default_price(op.name()))
                .collect()
        })
        .clone()
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
///
/// [per_unit]
/// # Size-proportional prices, on top of the operator's own price (omitted: the defaults).
/// memory_bytes = { gas = 1, units_log2 = 3 }     # 1 gas per 8 bytes copied/filled/initialised
/// table_elements = { gas = 1 }                    # 1 gas per table element
/// memory_pages = { gas = 64 }                     # 64 gas per page memory.grow asks for
/// locals = { gas = 1, units_log2 = 4 }             # 1 gas per 16 declared locals, per call
/// ```
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CostFile {
    default: Option<u32>,
    #[serde(default)]
    operators: BTreeMap<String, u32>,
    #[serde(default)]
    per_unit: PerUnitFile,
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PerUnitFile {
    memory_bytes: Option<UnitPrice>,
    table_elements: Option<UnitPrice>,
    memory_pages: Option<UnitPrice>,
    locals: Option<UnitPrice>,
}

impl CostModel {
    /// A model that charges `price` for every operator, structure markers included.
    /// Per-unit prices keep their defaults.
    pub fn flat(price: u32) -> CostModel {
        CostModel {
            prices: vec![price; OPERATORS.len()].into(),
            prices_digest: std::sync::OnceLock::new(),
            kept_fingerprint: std::sync::OnceLock::new(),
            ..CostModel::default()
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
        let mut prices = self.prices.to_vec();
        prices[index] = price;
        self.prices = prices.into();
        self.prices_digest = std::sync::OnceLock::new();
        self.kept_fingerprint = std::sync::OnceLock::new();
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
        let per_unit = file.per_unit;
        model.memory_bytes = per_unit.memory_bytes.unwrap_or(model.memory_bytes);
        model.table_elements = per_unit.table_elements.unwrap_or(model.table_elements);
        model.memory_pages = per_unit.memory_pages.unwrap_or(model.memory_pages);
        model.locals = per_unit.locals.unwrap_or(model.locals);
        model.check()?;
        Ok(model)
    }

    /// Checks that the per-unit prices cannot make a charge wrap.
    ///
    /// # Errors
    /// [`ErrorKind::CostModel`] naming the offending price.
    pub fn check(&self) -> Result<(), Error> {
        self.memory_bytes.check("memory_bytes")?;
        self.table_elements.check("table_elements")?;
        self.memory_pages.check("memory_pages")?;
        self.locals.check("locals")
    }

    /// A SHA-256 digest of every operator's name and price (in name order) and of the
    /// per-unit prices. Equal prices give equal fingerprints, whatever order they were set in.
    pub fn fingerprint(&self) -> [u8; 32] {
        let units = [
            self.memory_bytes,
            self.table_elements,
            self.memory_pages,
            self.locals,
        ];
        match self.kept_fingerprint.get() {
            Some((computed_for, fingerprint)) if *computed_for == units => *fingerprint,
            _ => {
                let fingerprint = self.compute_fingerprint();
                // Kept for the first per-unit prices asked about only (the usual case: they
                // are set once, before anything is instrumented).
                let _ = self.kept_fingerprint.set((units, fingerprint));
                fingerprint
            }
        }
    }

    /// [`CostModel::fingerprint`], computed.
    fn compute_fingerprint(&self) -> [u8; 32] {
        let prices = self.prices_digest.get_or_init(|| {
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
        });
        let mut hasher = Sha256::new();
        hasher.update(prices);
        for (name, unit) in [
            ("per_unit.memory_bytes", self.memory_bytes),
            ("per_unit.table_elements", self.table_elements),
            ("per_unit.memory_pages", self.memory_pages),
            ("per_unit.locals", self.locals),
        ] {
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(unit.gas.to_le_bytes());
            hasher.update([unit.units_log2]);
            hasher.update(b"\n");
        }
        hasher.finalize().into()
    }

    /// What a function that declares `declared` locals pays on every call ([`CostModel::locals`]).
    pub fn locals_charge(&self, declared: u64) -> u64 {
        let groups = declared
            .checked_shr(u32::from(self.locals.units_log2))
            .unwrap_or(0);
        groups.saturating_mul(u64::from(self.locals.gas))
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
    fn per_unit_prices_from_files_and_their_limits() {
        let m = CostModel::from_toml(
            "[per_unit]\nmemory_bytes = { gas = 3, units_log2 = 2 }\nmemory_pages = { gas = 1 }\n",
        )
        .unwrap();
        assert_eq!(m.memory_bytes, UnitPrice::new(3, 2));
        assert_eq!(m.memory_pages, UnitPrice::new(1, 0));
        assert_eq!(m.table_elements, CostModel::default().table_elements);
        assert_ne!(m.fingerprint(), CostModel::default().fingerprint());
        let too_big =
            CostModel::from_json(r#"{"per_unit": {"memory_bytes": {"gas": 4294967295}}}"#);
        assert!(matches!(
            too_big.unwrap_err().kind(),
            ErrorKind::CostModel { .. }
        ));
    }

    #[test]
    fn the_fingerprint_follows_per_unit_prices_changed_after_it_was_computed() {
        let mut m = CostModel::default();
        let first = m.fingerprint();
        assert_eq!(m.fingerprint(), first);
        m.memory_pages = UnitPrice::new(65, 0);
        let changed = m.fingerprint();
        assert_ne!(changed, first);
        let fresh = CostModel {
            memory_pages: UnitPrice::new(65, 0),
            ..CostModel::default()
        };
        assert_eq!(changed, fresh.fingerprint());
        m.memory_pages = CostModel::default().memory_pages;
        assert_eq!(m.fingerprint(), first);
        // A copy made after the fingerprint was kept, then changed, follows its own prices.
        let mut copy = m.clone();
        copy.locals = UnitPrice::new(2, 4);
        assert_ne!(copy.fingerprint(), first);
        // Setting an operator's price drops what was kept.
        m.set("i32.add", 7).unwrap();
        assert_ne!(m.fingerprint(), first);
    }

    #[test]
    fn unit_charges_round_up_and_saturate() {
        let p = UnitPrice::new(1, 3);
        assert_eq!(p.charge(0), 0);
        assert_eq!(p.charge(1), 1);
        assert_eq!(p.charge(8), 1);
        assert_eq!(p.charge(9), 2);
        assert_eq!(p.charge(1 << 32), 1 << 29);
        assert_eq!(p.charge((1 << 32) + 1), i64::MAX);
        let max = UnitPrice::new(UnitPrice::MAX_GAS, 0);
        assert_eq!(
            max.charge(1 << 32),
            (1i64 << 32) * i64::from(UnitPrice::MAX_GAS)
        );
    }

    #[test]
    fn locals_pay_per_full_group_on_every_call() {
        let default = CostModel::default();
        assert_eq!(default.locals_charge(0), 0);
        assert_eq!(default.locals_charge(15), 0);
        assert_eq!(default.locals_charge(16), 1);
        assert_eq!(default.locals_charge(50_000), 3_125);
        let m = CostModel::from_toml("[per_unit]\nlocals = { gas = 3, units_log2 = 1 }\n").unwrap();
        assert_eq!(m.locals, UnitPrice::new(3, 1));
        assert_eq!(m.locals_charge(5), 6);
        assert_ne!(m.fingerprint(), default.fingerprint());
        // A group larger than any function (units_log2 up to 32 passes `check`).
        let mut wide = CostModel {
            locals: UnitPrice::new(1, 32),
            ..CostModel::default()
        };
        assert_eq!(wide.locals_charge(50_000), 0);
        wide.locals = UnitPrice::new(1, 200);
        assert!(wide.check().is_err());
        assert_eq!(wide.locals_charge(50_000), 0);
    }

    #[test]
    fn empty_file_is_the_default_model() {
        assert_eq!(CostModel::from_toml("").unwrap(), CostModel::default());
    }
}
