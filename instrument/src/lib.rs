//! `ri-sandbox-instrument` rewrites a WebAssembly module so that it meters itself.
//!
//! The output is an ordinary module that follows the [instrumented-module ABI](abi): it counts
//! down a gas global at the start of every metered block, traps when the budget runs out, and
//! runs its start function only when the host asks. Because the metering is in the module,
//! any engine runs it metered and reports the same gas.
//!
//! The pipeline, in order:
//! 1. `rewrite` surveys section headers (the gas global's index and the start function);
//! 2. it validates the module section by section while copying it;
//! 3. for each function body, `analyze` validates the operators and finds the metered
//!    blocks and their costs from the [`CostModel`];
//!    (and the stack accounting, size charges and NaN canonicalization points);
//! 4. `rewrite::body` copies the body with that code inserted;
//! 5. the ABI's globals, exports and custom section are added;
//! 6. in debug builds, the output is validated again.
//!
//! ```
//! use ri_sandbox_instrument::{instrument, Options};
//! let wasm = wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 7))"#).unwrap();
//! let out = instrument(&wasm, &Options::default()).unwrap();
//! assert_eq!(out.stats.functions, 1);
//! ```

#![warn(missing_docs)]

pub mod abi;
mod analyze;
mod cost;
mod error;
mod ops;
mod pool;
mod rewrite;

pub use analyze::LEAF_FRAME_LIMIT;
pub use cost::{CostModel, UnitPrice};
pub use error::{Error, ErrorKind};

use wasmparser::Validator;
pub use wasmparser::WasmFeatures;

/// How to instrument.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Operator prices. Default: [`CostModel::default`].
    pub costs: CostModel,
    /// The WebAssembly features a module may use. Only features in [`supported_features`]
    /// take effect: a host can narrow the set (to accept only MVP modules, say), never widen
    /// it. Default: [`supported_features`].
    pub features: WasmFeatures,
    /// The deterministic stack-height limit, in stack units (see the [ABI](abi), section 4):
    /// each call charges its callee's frame weight, and a call that would exceed the limit
    /// traps with `ri_sandbox_stack_left` set to -1. `None` leaves recursion depth to the
    /// engine, which is not deterministic. Default: [`DEFAULT_STACK_LIMIT`].
    pub stack_limit: Option<u64>,
    /// Replace every NaN a float operation produces with the canonical NaN, so results are
    /// bit-identical across engines and CPUs. Default: `true`.
    ///
    /// # Determinism
    /// Without it, the bits of a NaN produced by arithmetic (its sign and payload) may differ
    /// between x86 and ARM, and between engines.
    pub canonicalize_nans: bool,
    /// With `canonicalize_nans`: canonicalize right after every scalar float operation that
    /// can produce a NaN, instead of only where such a NaN could first be observed (stored,
    /// passed, returned, reinterpreted, or mixed with other bits; see the [ABI](abi),
    /// section 5). The results are bit-identical either way (a test compares them on
    /// generated modules); the eager strategy is slower and exists for that comparison.
    /// Default: `false`.
    pub eager_nan_canonicalization: bool,
    /// Export every memory, table and mutable global the module defines, and every function a
    /// `funcref` can name, under `ri_sandbox_*` names (see the [ABI](abi), section 9), so a
    /// host can save and restore the whole state. Default: `true`.
    pub export_state: bool,
    /// Export, for every exported function `f`, an entry point `ri_sandbox_call_f` that
    /// takes the gas budget as an extra first parameter and returns the gas left as an extra
    /// last result (see the [ABI](abi), section 11), so a host calls in with one call
    /// instead of writing and reading the counters around it. Its type has two or more
    /// results, which needs multi-value: off by default, so that the output uses no feature
    /// the input does not (section 10); the ri-sandbox runtime turns it on.
    pub entry_points: bool,
    /// How many threads may validate, plan and write function bodies. The output is
    /// byte-identical whatever the number (and so is the error for an invalid module); more
    /// threads only finish a module sooner. A code section gets one thread per 16 KiB of code,
    /// up to this many: the calling thread and helpers from a pool of one thread fewer than the
    /// machine has cores, started on first use and kept for the process (so more threads than
    /// cores only split the work finer). One call at a time has the helpers; a call made
    /// meanwhile on another thread works on its calling thread alone rather than wait for
    /// them. A process forked after the pool
    /// started works on its calling thread alone, since the pool's threads are not copied
    /// into it. `None`: as many as the machine runs at once
    /// ([`std::thread::available_parallelism`], asked once per process). Default: `None`.
    pub threads: Option<std::num::NonZeroUsize>,
    /// The most locals (parameters included) the module's function bodies may have together;
    /// a module with more is refused with [`ErrorKind::Limit`]. Engines do work per local
    /// when they compile (wasmtime zero-initializes each, about 75 ns a local here), and a
    /// body declares 50,000 in five bytes: 10,000 such functions are 150 KB that take wasmtime
    /// most of a minute to compile. The instrumenter's own work does not depend on it.
    /// Default: `None` (no limit; the ri-sandbox runtime sets one).
    pub max_locals: Option<u64>,
}

/// An upper bound on the size of [`instrument`]'s output for an input of `input_len` bytes:
/// 32 times the input plus 1 KiB, whatever the options and cost model, so a host can budget
/// memory and storage before instrumenting. Real programs grow about 2x; the shapes built to
/// insert the most per input byte reach 23x (README, "Size and time bounds").
/// `instrument/tests/growth.rs` and the fuzz targets hold every output to it.
pub const fn max_output_len(input_len: usize) -> usize {
    input_len.saturating_mul(32).saturating_add(1024)
}

/// The default stack limit: 256 Ki stack units. A frame weighs 64 units plus 8 per parameter,
/// local and operand-stack slot (16 for `v128`), so this allows recursion about 3,600 deep for
/// a small function, and it stops every frame mix well before wasmtime's default 512 KiB of
/// native stack runs out.
pub const DEFAULT_STACK_LIMIT: u64 = 256 * 1024;

impl Default for Options {
    fn default() -> Options {
        Options {
            costs: CostModel::default(),
            features: supported_features(),
            stack_limit: Some(DEFAULT_STACK_LIMIT),
            canonicalize_nans: true,
            eager_nan_canonicalization: false,
            export_state: true,
            entry_points: false,
            threads: None,
            max_locals: None,
        }
    }
}

impl Options {
    /// Options with the given cost model.
    pub fn with_costs(costs: CostModel) -> Options {
        Options {
            costs,
            ..Options::default()
        }
    }
}

/// What instrumentation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Function bodies rewritten.
    pub functions: usize,
    /// Charges inserted (metered blocks that cost more than nothing).
    pub blocks_metered: usize,
    /// Size of the input.
    pub bytes_in: usize,
    /// Size of the output.
    pub bytes_out: usize,
}

/// An instrumented module.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Instrumented {
    /// The rewritten module's bytes.
    pub module: Vec<u8>,
    /// What the pass did.
    pub stats: Stats,
}

/// The WebAssembly features ri-sandbox meters (see the [ABI](abi), section 7).
pub fn supported_features() -> WasmFeatures {
    WasmFeatures::WASM2
        | WasmFeatures::TAIL_CALL
        | WasmFeatures::MULTI_MEMORY
        | WasmFeatures::MEMORY64
        | WasmFeatures::EXCEPTIONS
        | WasmFeatures::EXTENDED_CONST
        | WasmFeatures::FUNCTION_REFERENCES
}

/// Features a module may use and still be a valid module, just not one ri-sandbox meters;
/// used to tell "unsupported" from "invalid".
fn known_features() -> WasmFeatures {
    WasmFeatures::WASM3
        | WasmFeatures::LEGACY_EXCEPTIONS
        | WasmFeatures::STACK_SWITCHING
        | WasmFeatures::WIDE_ARITHMETIC
        | WasmFeatures::CUSTOM_PAGE_SIZES
        | WasmFeatures::SHARED_EVERYTHING_THREADS
}

/// Instruments a binary module.
///
/// # Errors
/// - [`ErrorKind::NotWasm`] when the bytes are not a binary WebAssembly module;
/// - [`ErrorKind::Invalid`] when the module is malformed or fails validation (with the byte
///   offset);
/// - [`ErrorKind::Unsupported`] when it is valid but uses a proposal ri-sandbox does not meter;
/// - [`ErrorKind::AlreadyInstrumented`] and [`ErrorKind::ReservedName`] when it carries the
///   ABI's names already.
///
/// Never panics, whatever the input.
pub fn instrument(wasm: &[u8], options: &Options) -> Result<Instrumented, Error> {
    check_header(wasm)?;
    options.costs.check()?;
    let features = options.features & supported_features();
    let (module, stats) = match rewrite::rewrite_module(wasm, options, features) {
        Ok(done) => done,
        Err(err) => return Err(classify(err, wasm)),
    };
    if cfg!(debug_assertions) {
        Validator::new_with_features(features)
            .validate_all(&module)
            .map_err(|e| {
                Error::new(ErrorKind::Internal {
                    message: format!("{} at offset {:#x}", e.message(), e.offset()),
                })
            })?;
    }
    Ok(Instrumented { module, stats })
}

/// Turns "invalid" into "unsupported" when the module is valid under a wider feature set.
fn classify(err: Error, wasm: &[u8]) -> Error {
    match err.kind() {
        ErrorKind::Invalid { message, offset }
            if Validator::new_with_features(known_features())
                .validate_all(wasm)
                .is_ok() =>
        {
            Error::new(ErrorKind::Unsupported {
                message: message.clone(),
                offset: *offset,
            })
        }
        _ => err,
    }
}

fn check_header(wasm: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8] = b"\0asm";
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        let reason = if wasm.is_empty() {
            "the input is empty".to_string()
        } else if wasm.starts_with(b"(") || wasm.iter().take(64).all(|b| b.is_ascii()) {
            "it looks like text; convert WAT to binary first (the CLIs accept .wat)".to_string()
        } else {
            "it does not start with the magic bytes \\0asm".to_string()
        };
        return Err(Error::new(ErrorKind::NotWasm { reason }));
    }
    if wasm[4..8] != [1, 0, 0, 0] {
        return Err(Error::new(ErrorKind::NotWasm {
            reason: format!(
                "binary version {:?} is not 1 (components are not supported)",
                &wasm[4..8]
            ),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{instrument, ErrorKind, Options};

    /// Valid modules of proposals the pass does not meter are refused as unsupported, naming
    /// the proposal, whatever `Options::features` allows: the analysis never sees their
    /// operators (legacy exception handling's `try` and `catch`, for one, open frames the
    /// analysis does not mirror).
    #[test]
    fn unmetered_proposals_are_refused_as_unsupported() {
        let modules = [
            ("(module (tag $e) (func try nop catch $e end))", "exception"),
            (
                "(module (memory 1 1 shared) (func (drop (i32.atomic.load (i32.const 0)))))",
                "thread",
            ),
        ];
        for (text, proposal) in modules {
            let wasm = wat::parse_str(text).expect("the test module parses");
            let everything = Options {
                features: super::WasmFeatures::all(),
                ..Options::default()
            };
            for options in [Options::default(), everything] {
                let err = instrument(&wasm, &options).expect_err(text);
                assert!(
                    matches!(err.kind(), ErrorKind::Unsupported { .. }),
                    "{text}: {err}"
                );
                assert!(
                    err.to_string().contains(proposal),
                    "{text}: {err} does not name {proposal}"
                );
            }
        }
    }
}
