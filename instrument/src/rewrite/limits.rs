//! The output must be accepted wherever the input is: what metering adds (globals, exports,
//! entry points and their types, code in every body) must not push the module over the
//! implementation limits that wasmparser, and so wasmtime and the engines built on it,
//! enforce. An input just under one of them is refused here, with the limit named, rather
//! than turned into a module no engine loads.
//!
//! The limits are wasmparser's (`wasmparser/src/limits.rs`, private to that crate, so repeated
//! here); `tests/growth.rs` instruments modules at them. The configured limit on locals
//! ([`crate::Options::max_locals`]) is checked here too.

use crate::error::{Error, ErrorKind};

/// Types (every member of every recursion group).
pub(crate) const MAX_TYPES: u64 = 1_000_000;
/// Functions, imported and defined.
pub(crate) const MAX_FUNCTIONS: u64 = 1_000_000;
/// Exports.
pub(crate) const MAX_EXPORTS: u64 = 1_000_000;
/// Globals, imported and defined.
pub(crate) const MAX_GLOBALS: u64 = 1_000_000;
/// The "effective type size" of a module's imports and exports: 1, plus for each import and
/// export its type's size (below); valid while it stays *below* this.
pub(crate) const MAX_TYPE_SIZE: u64 = 1_000_000;
/// Bytes in one function body.
pub(crate) const MAX_FUNCTION_SIZE: usize = 7_654_321;

/// A type's size in the effective type size: 2 plus its parameters and results for a
/// function type (wasmparser's `SubType::type_info`).
pub(crate) fn func_type_size(params: usize, results: usize) -> u64 {
    2 + params as u64 + results as u64
}

/// The size of a type of the type section.
pub(crate) fn sub_type_size(ty: &wasmparser::SubType) -> u64 {
    1 + match &ty.composite_type.inner {
        wasmparser::CompositeInnerType::Func(f) => {
            1 + (f.params().len() + f.results().len()) as u64
        }
        wasmparser::CompositeInnerType::Array(_) => 2,
        wasmparser::CompositeInnerType::Struct(s) => 1 + 2 * s.fields.len() as u64,
        wasmparser::CompositeInnerType::Cont(_) => 1,
    }
}

/// What the input has, and what metering adds, of each counted thing.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Counts {
    pub types: u64,
    pub functions: u64,
    pub exports: u64,
    pub globals: u64,
    /// The sum of the import and export type sizes (without the initial 1).
    pub type_size: u64,
}

/// Refuses when `input` plus `added` is over a limit.
pub(crate) fn check(input: Counts, added: Counts) -> Result<(), Error> {
    let over = |what: &str, input: u64, added: u64, max: u64| {
        Error::new(ErrorKind::Limit {
            message: format!(
                "metering adds {added} {what} to the module's {input}, over the limit of {max} \
                 that wasmparser and wasmtime enforce"
            ),
        })
    };
    let checks = [
        ("types", input.types, added.types, MAX_TYPES),
        ("functions", input.functions, added.functions, MAX_FUNCTIONS),
        ("exports", input.exports, added.exports, MAX_EXPORTS),
        ("globals", input.globals, added.globals, MAX_GLOBALS),
    ];
    for (what, input, added, max) in checks {
        if added > 0 && input + added > max {
            return Err(over(what, input, added, max));
        }
    }
    if added.type_size > 0 && 1 + input.type_size + added.type_size >= MAX_TYPE_SIZE {
        return Err(over(
            "to the effective type size of the imports and exports",
            1 + input.type_size,
            added.type_size,
            MAX_TYPE_SIZE,
        ));
    }
    Ok(())
}

/// Refuses a module whose function bodies have more than `max` locals together
/// ([`crate::Options::max_locals`]).
pub(crate) fn check_locals(plans: &[crate::analyze::FunctionPlan], max: u64) -> Result<(), Error> {
    let total: u64 = plans.iter().map(|plan| u64::from(plan.locals)).sum();
    if total > max {
        return Err(Error::new(ErrorKind::Limit {
            message: format!(
                "the function bodies have {total} locals (parameters included), over the \
                 limit of {max}"
            ),
        }));
    }
    Ok(())
}

/// Refuses a rewritten function body (the one at `offset` in the input) over the size limit.
pub(crate) fn check_body(offset: usize, size: usize) -> Result<(), Error> {
    if size > MAX_FUNCTION_SIZE {
        return Err(Error::new(ErrorKind::Limit {
            message: format!(
                "the function body at offset {offset:#x} would be {size} bytes with metering, \
                 over the limit of {MAX_FUNCTION_SIZE} that wasmparser and wasmtime enforce"
            ),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, Counts, MAX_EXPORTS, MAX_TYPE_SIZE};

    #[test]
    fn a_limit_is_reached_only_by_additions() {
        let at = |exports| Counts {
            exports,
            ..Counts::default()
        };
        assert!(check(at(MAX_EXPORTS - 2), at(2)).is_ok());
        assert!(check(at(MAX_EXPORTS - 2), at(3)).is_err());
        // An input already over is the validator's to refuse, not ours.
        assert!(check(at(MAX_EXPORTS + 1), at(0)).is_ok());
        let size = |type_size| Counts {
            type_size,
            ..Counts::default()
        };
        assert!(check(size(MAX_TYPE_SIZE - 10), size(8)).is_ok());
        assert!(check(size(MAX_TYPE_SIZE - 10), size(9)).is_err());
    }
}
