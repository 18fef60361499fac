//! The operator catalogue: one entry for every operator wasmparser can decode.
//!
//! The list is generated from `wasmparser::for_each_operator!`, so an operator added to
//! wasmparser appears here (and therefore in the cost table and in the proposal policy) the
//! moment the dependency is upgraded; nothing can reach the metering pass without a price.

/// Static facts about one operator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpInfo {
    /// wasmparser's visitor name, `visit_i32_add`.
    visit: &'static str,
    /// The proposal wasmparser files the operator under (`mvp`, `simd`, `gc`, ...).
    pub(crate) proposal: &'static str,
    /// Whether ri-sandbox meters the operator's proposal (see [`metered_proposal`]).
    pub(crate) metered: bool,
    /// Whether the operator belongs to the SIMD proposal (its values are 16 bytes).
    pub(crate) simd: bool,
    /// How many values it pops and pushes, when that does not depend on its immediates or on
    /// the module (wasmparser's `arity` annotation); `None` for calls, blocks, branches and
    /// the like.
    pub(crate) arity: Option<(u8, u8)>,
}

/// wasmparser's arity annotation as a value.
macro_rules! fixed_arity {
    (arity $pop:literal -> $push:literal) => {
        Some(($pop, $push))
    };
    (arity custom) => {
        None
    };
}

/// The proposals ri-sandbox meters.
const METERED: &[&str] = &[
    "mvp",
    "sign_extension",
    "saturating_float_to_int",
    "bulk_memory",
    "reference_types",
    "tail_call",
    "simd",
    "exceptions",
    "function_references",
];

const fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && starts_with(a.as_bytes(), b.as_bytes())
}

/// `name` starts with `prefix` (usable in constant tables).
pub(crate) const fn starts_with(name: &[u8], prefix: &[u8]) -> bool {
    if name.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if name[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `name` contains `part` (usable in constant tables).
pub(crate) const fn contains(name: &[u8], part: &[u8]) -> bool {
    let mut start = 0;
    while start + part.len() <= name.len() {
        let mut i = 0;
        while i < part.len() && name[start + i] == part[i] {
            i += 1;
        }
        if i == part.len() {
            return true;
        }
        start += 1;
    }
    false
}

/// Whether operators of this proposal are metered; decided at compile time so the hot loop
/// reads a flag instead of comparing strings.
pub(crate) const fn metered_proposal(proposal: &str) -> bool {
    let mut i = 0;
    while i < METERED.len() {
        if same(METERED[i], proposal) {
            return true;
        }
        i += 1;
    }
    false
}

impl OpInfo {
    /// [`OpInfo::name`]'s bytes, for tables built at compile time.
    pub(crate) const fn name_bytes(&self) -> &'static [u8] {
        self.visit.as_bytes().split_at("visit_".len()).1
    }

    /// The operator's name in the cost-file spelling: the visitor name without `visit_`
    /// (`i32_add`, `memory_grow`, `call_indirect`).
    pub(crate) fn name(&self) -> &'static str {
        &self.visit["visit_".len()..]
    }
}

macro_rules! define_catalogue {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        /// Every operator, as a dense index into [`OPERATORS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(clippy::enum_variant_names)]
        pub(crate) enum OpKind {
            $($op,)*
        }

        /// Facts about every operator, indexed by `OpKind as usize`.
        /// Every operator kind, in catalogue order.
        pub(crate) const ALL: &[OpKind] = &[$(OpKind::$op,)*];

        pub(crate) const OPERATORS: &[OpInfo] = &[
            $(OpInfo {
                visit: stringify!($visit),
                proposal: stringify!($proposal),
                metered: metered_proposal(stringify!($proposal)),
                simd: same(stringify!($proposal), "simd"),
                arity: fixed_arity!($($ann)*),
            },)*
        ];

        impl OpKind {
            /// The kind of a decoded operator (`None` only for operators of a wasmparser newer
            /// than the catalogue, which cannot happen: both come from the same crate).
            pub(crate) fn of(op: &wasmparser::Operator<'_>) -> Option<OpKind> {
                #[allow(unreachable_patterns)]
                match op {
                    $(wasmparser::Operator::$op { .. } => Some(OpKind::$op),)*
                    _ => None,
                }
            }
        }

    };
}

wasmparser::for_each_operator!(define_catalogue);

impl OpKind {
    pub(crate) fn info(self) -> &'static OpInfo {
        &OPERATORS[self as usize]
    }
}

/// Looks up an operator by its cost-file name. Accepts the visitor spelling (`i32_add`) and
/// the text-format spelling (`i32.add`, `memory.atomic.notify`).
pub(crate) fn index_by_name(name: &str) -> Option<usize> {
    let snake: String = name
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .collect();
    OPERATORS.iter().position(|op| op.name() == snake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_resolvable() {
        let mut names: Vec<_> = OPERATORS.iter().map(|o| o.name()).collect();
        let len = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), len, "duplicate operator names");
        assert!(len > 500, "catalogue unexpectedly small: {len}");
        assert_eq!(index_by_name("i32.add"), index_by_name("i32_add"));
        assert!(index_by_name("i32.add").is_some());
        assert!(index_by_name("memory.atomic.notify").is_some());
        assert!(index_by_name("i32.frobnicate").is_none());
    }

    #[test]
    fn all_is_in_discriminant_order() {
        assert_eq!(ALL.len(), OPERATORS.len());
        for (index, kind) in ALL.iter().enumerate() {
            assert_eq!(*kind as usize, index);
        }
    }

    #[test]
    fn operator_facts() {
        let k = OpKind::I64DivS;
        assert_eq!(k.info().name(), "i64_div_s");
        assert_eq!(k.info().proposal, "mvp");
        assert!(k.info().metered && !k.info().simd);
        assert!(OpKind::F32x4Add.info().simd);
        assert!(!OpKind::StructNew.info().metered);
        assert!(!OpKind::I32AtomicLoad.info().metered);
        assert_eq!(OpKind::I32Add.info().arity, Some((2, 1)));
        assert_eq!(OpKind::Call.info().arity, None);
        assert_eq!(
            OpKind::of(&wasmparser::Operator::F64Mul),
            Some(OpKind::F64Mul)
        );
    }
}
