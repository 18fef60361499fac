//! The instrumented-module ABI, version 1: what the rewritten module promises its host.
//!
//! This module documentation *is* the specification. A host (the ri-sandbox runtime, or any
//! other engine) that follows it runs an instrumented module metered, with the same gas on
//! every engine.
//!
//! # 1. Interface preservation
//! The original module's imports and exports are kept with the same names, kinds and types,
//! imports in the same order. Instrumentation adds no import. Every export it adds is named
//! `ri_sandbox_*`; an input that already exports such a name is refused. Function, table,
//! memory, tag and type indices are unchanged; the globals the ABI adds are appended after the
//! module's own globals (gas, then stack), and the helper locals after each function's own,
//! so no index the module uses moves. The name section's label names are dropped, because the
//! inserted `if` blocks shift label numbering.
//!
//! # 2. The gas counter
//! The output exports a mutable `i64` global named [`GAS_LEFT_EXPORT`]
//! (`ri_sandbox_gas_left`), initial value 0. The host writes the budget into it before calling
//! in and reads what is left afterwards: gas used = budget - gas left. No instruction of the
//! original module can read or write it (it did not exist when the module was written, and
//! it is not in the index space any original instruction names).
//!
//! Every instance meters itself with its own counter. A call into another instance's function
//! (an import, or a table entry) is charged to the callee's counter, so a host that links
//! instances sets the budget of each. One consequence: when instantiation fails after active
//! element segments were written into an imported table (WebAssembly 2.0 keeps those writes),
//! the failed instance's functions stay reachable through the table, but their counter was
//! never handed to the host; it holds its initial 0, so they run out of gas at their first
//! charge. That is safe (nothing runs unpaid) but differs from an unmetered run.
//!
//! # 3. Charging
//! A function body is divided into *metered blocks*: maximal runs of reachable instructions
//! entered only at their first instruction. A new block starts at the function's first
//! instruction, after `loop`, after `if`, after `else`, after a conditional branch (`br_if`,
//! `br_on_null`, `br_on_non_null`), and after the `end` of a `block`, `if` or `try_table` that
//! control can reach other than by falling through (a reachable branch or catch clause names
//! it, or it is an `if` without `else`). Unreachable code is not metered.
//!
//! The cost of a block is the sum of the prices (from the cost model) of the original
//! operators in it; a function's entry block (its first) also costs the price of the locals
//! the function declares (parameters excluded; `CostModel::locals`, by default 1 gas per full
//! 16), which an engine zeroes on every call. At the block's first instruction the metered
//! code does, in effect:
//!
//! ```text
//! if gas_left < cost { gas_left = -1; trap (unreachable) }
//! gas_left = gas_left - cost
//! ```
//!
//! before any instruction of the block runs. (The metered code keeps a copy of the counter in
//! a local of each function, so a loop does not read the global back every iteration, but it
//! writes the global after every charge: the global is exact whenever the host, a host
//! function or a trap can see it.)
//!
//! **Pre-paid entry blocks.** A function's first metered block (its *entry block*) runs
//! exactly once per call. When a function can be reached only by direct calls from its own
//! module (it is not exported, not in an element segment, not named by `ref.func` in a
//! global initialiser, and not the start function), every `call` or `return_call` of it
//! charges its entry block as part of the calling block, and the function charges nothing on
//! entry. This applies bottom-up: the pre-paid amount of a function includes what its entry
//! block pre-pays for the functions it calls there, so a chain of small helpers costs its
//! first caller one charge. (Functions whose entry blocks call each other in a cycle charge
//! their own.) The prices paid are the same; only when they are paid changes.
//!
//! **Counted loops.** A `loop` whose body is a single metered block that ends with a counted
//! back edge, immediately followed by the loop's `end`,
//!
//! ```text
//! local.get $i  i32.const S  i32.add  local.tee $i  [BOUND  CMP]  br_if 0
//! ```
//!
//! where `S` is 1 or -1, `BOUND` is `local.get $n` or `i32.const N`, `CMP` is `i32.lt_u` or
//! `i32.lt_s` (with `S` = 1) or `i32.ne`, or `BOUND CMP` is absent (the loop runs while the
//! counter is not 0), and the body writes `$i` nowhere else and `$n` not at all, runs its body
//! a number of times the values of `$i` and `$n` at entry determine: with `u = $i + S`
//! (wrapping), `max(n - u, 0) + 1` for `lt_u`/`lt_s` (in 64-bit arithmetic on the zero- or
//! sign-extended values) and `((n - u) mod 2^32) + 1` (`S` = 1) or `((u - n) mod 2^32) + 1`
//! (`S` = -1) for `ne`. Such a loop is charged `iterations * cost` of its body once, right
//! before the `loop` instruction, and its body charges nothing per iteration. A loop the
//! budget cannot pay in full runs out of gas before its first iteration; a loop that a trap or
//! throw ends early leaves its remaining iterations paid.
//!
//! Consequences a host relies on:
//! - after a call that returns normally, gas used is exactly the sum of the prices of the
//!   instructions executed; a loop pays its body's price on every iteration;
//! - after a trap, `gas_left < 0` means the module ran out of gas (the block that could not
//!   be paid did not start), and `gas_left >= 0` means the trap is the module's own;
//! - when an instruction inside a block traps or a callee throws past it, the rest of that
//!   block has been paid and is not refunded, including the entry blocks of the calls it
//!   pre-paid and, in a counted loop, the iterations it did not run; this over-charge is
//!   deterministic;
//! - the counter never wraps: a budget of 0 or less runs out at the first non-free block,
//!   and a budget of `i64::MAX` is simply large;
//! - the metering code itself is not charged: gas measures the input module's instructions.
//!
//! **Size charges.** A bulk operation also pays for its length, before it runs: after its
//! block's charge, and right before the operation, the metered code charges
//! `ceil(n / 2^k) * gas` (a [`UnitPrice`](crate::UnitPrice) of the cost model) where `n` is
//! the length operand: bytes for `memory.copy`, `memory.fill` and `memory.init`, elements for
//! `table.copy`, `table.fill`, `table.init` and `table.grow`, pages for `memory.grow`. The
//! charge does not depend on whether the operation then succeeds, traps out of bounds or (for
//! grow) fails, so it is deterministic; a length above 2^32 units is charged `i64::MAX`.
//!
//! Gas is a function of the input module, the cost model and the inputs only, so it is the
//! same on every engine that implements WebAssembly correctly.
//!
//! # 4. The stack limit
//! When instrumented with a stack limit (the default), the output also exports a mutable
//! `i64` global [`STACK_LEFT_EXPORT`] (`ri_sandbox_stack_left`) whose initial value is the
//! limit. On entry, every function charges its *frame weight* to it exactly as a gas charge
//! does (`if stack_left < weight { stack_left = -1; trap }`, then subtract), except a function
//! whose call chains are *bounded*: it calls no import and nothing through a table or a
//! reference, no recursion can be reached from it, and the frames of its deepest possible call
//! chain, its own included, weigh at most [`LEAF_FRAME_LIMIT`](crate::LEAF_FRAME_LIMIT) units
//! together (a leaf of at most that weight is the simplest case). Such a function adds at most
//! that much on top of a chain that was charged, so skipping it keeps the limit both
//! deterministic and safe. The weight is
//! 64 plus 8 per parameter, local and operand-stack slot at the function's deepest point
//! (16 per slot for `v128`, and for the operand slots of a function that uses SIMD), so a few
//! huge frames are stopped as surely as many small ones. After a call returns, and where a
//! `catch` clause lands, the caller puts the counter back to its own level; before a tail call
//! it gives its own frame back. The limit is therefore a deterministic function of the call
//! chain, the same on every engine.
//!
//! After a trap the host classifies it: `ri_sandbox_gas_left < 0` means out of gas; otherwise
//! `ri_sandbox_stack_left < 0` means the stack limit; otherwise the trap is the module's own.
//! A trap leaves the counter wherever the unwound frames left it: before the next call into
//! the instance, the host writes the limit back (the value in the custom section).
//!
//! # 5. NaN canonicalization
//! When instrumented with it (the default, flag [`FLAG_CANONICAL_NANS`]), no NaN that a float
//! operation produces (arithmetic, `sqrt`, `min`, `max`, rounding, promotion and demotion,
//! scalar and SIMD) can be observed with other bits than the canonical NaN's (`0x7fc00000` /
//! `0x7ff8000000000000`, lane-wise for SIMD). Operations that only move bits (`abs`, `neg`,
//! `copysign`, loads, stores, reinterpretations, parameters, results) keep the bits they are
//! given: they are already deterministic, and NaN-boxing programs rely on them.
//!
//! SIMD results are canonicalized right after the operation. A scalar result is canonicalized
//! where it could first be observed: before it is stored, passed, returned, branched with,
//! reinterpreted, given to `abs`/`neg`/`copysign`, or put in a local that also holds other
//! bits; until then it may travel through the operand stack and through locals that hold only
//! arithmetic results, and feed more arithmetic, comparisons and truncations, which cannot
//! tell one NaN from another. The canonicalizing code sits right after the instruction that
//! put the value on top of the stack. Everything observable is bit-identical to
//! canonicalizing after every operation (`Options::eager_nan_canonicalization`).

//! # 6. The start function
//! A start function is no longer a start section: it is exported as [`START_EXPORT`]
//! (`ri_sandbox_start`). Instantiation therefore runs no code of the module; the host sets the
//! budget and then calls `ri_sandbox_start` (once, before any other export), metered like any
//! other call. A module without a start function has no such export.
//!
//! # 7. The `ri_sandbox` custom section
//! The output ends with a custom section named [`SECTION_NAME`] whose payload is exactly 48
//! bytes:
//!
//! | bytes  | content |
//! |--------|---------|
//! | 0..4   | ABI version, `u32` little-endian: 1 |
//! | 4..36  | cost-model fingerprint ([`CostModel::fingerprint`](crate::CostModel::fingerprint)) |
//! | 36..40 | option flags, `u32` little-endian: bit 0 = NaN canonicalization, bit 1 = state exports, bit 2 = entry points |
//! | 40..48 | stack limit, `u64` little-endian; 0 when there is none |
//!
//! The section states how a module was instrumented; it proves nothing, since anyone can
//! write it. A module that already carries it is refused (instrumenting twice would charge
//! twice).
//!
//! # 8. Reproducibility
//! The same input bytes and the same configuration give byte-identical output. Custom
//! sections, the name section included, are kept where they were.
//!
//! # 9. State exports
//! When instrumented with state exports (the default, flag [`FLAG_STATE_EXPORTS`]), the output
//! also exports, after the exports above and in this order: every memory the module defines as
//! `ri_sandbox_memory_{i}`, every table it defines as `ri_sandbox_table_{i}`, every mutable
//! global it defines as `ri_sandbox_global_{i}`, and every function a `funcref` value can name
//! (those in element segments, global initialisers and exports: the module's declared
//! references) as `ri_sandbox_func_{i}`, where `{i}` is the index in the module's own index
//! space, in decimal. With these a host can read and write the module's whole state, which is
//! what snapshots need; funcref table elements are saved as the `{i}` of the function they
//! hold.
//!
//! # 10. Features
//! The output uses no WebAssembly feature the input does not use, except that it exports a
//! mutable global: the metering code is MVP instructions (`global.get/set`, `local.*`,
//! `i64` arithmetic and comparisons, `if`, `select`, `unreachable`); NaN canonicalization of
//! a SIMD result uses SIMD instructions, which that module already uses. Accepted input: WebAssembly 2.0 (multi-value,
//! bulk memory, reference types, SIMD, sign extension, saturating conversions, mutable
//! globals), tail calls, multi-memory, memory64, exception handling (`try_table`, `throw`,
//! `throw_ref`), extended constant expressions and typed function references. Refused, with
//! the proposal named: GC (not metered), threads and relaxed SIMD (not deterministic), legacy
//! exception handling, stack switching, and anything newer.

//!
//! # 11. Entry points
//! When instrumented with entry points (an option, flag [`FLAG_ENTRY_POINTS`]; the ri-sandbox
//! runtime always asks for them), the output also exports, after everything above and in the
//! order of the module's exports, `ri_sandbox_call_{name}` for every function export `{name}`
//! whose function has at most [`MAX_ENTRY_POINT_PARAMS`] (16) parameters. (An entry point
//! forwards every parameter, so a tiny module of many exported 1,000-parameter functions would
//! otherwise grow two hundredfold; the host calls the others as in sections 2 and 4.)
//! Its type is the function's with an `i64` parameter put first and an `i64` result put last.
//! It sets `ri_sandbox_gas_left` to that first parameter, sets `ri_sandbox_stack_left` to the
//! stack limit (when there is one), calls the function with the other parameters, and returns
//! the function's results followed by `ri_sandbox_gas_left`. A successful call therefore
//! needs no global access by the host at all; after a trap the host reads the counters as in
//! sections 2 and 4. The entry point itself is not metered. Its type has at least two
//! results, which is why it is an option: a module without multi-value would otherwise need
//! it (section 10).

/// Version of this ABI, as written in the custom section.
pub const ABI_VERSION: u32 = 1;

/// Name of the custom section that records how a module was instrumented.
pub const SECTION_NAME: &str = "ri_sandbox";

/// The most parameters an exported function may have and get an entry point (section 11).
pub const MAX_ENTRY_POINT_PARAMS: usize = 16;

/// Export name of the gas counter.
pub const GAS_LEFT_EXPORT: &str = "ri_sandbox_gas_left";

/// Export name of the former start function.
pub const START_EXPORT: &str = "ri_sandbox_start";

/// Export name of the stack counter (when a stack limit is configured).
pub const STACK_LEFT_EXPORT: &str = "ri_sandbox_stack_left";

/// Custom-section flag: float results are NaN-canonicalized.
pub const FLAG_CANONICAL_NANS: u32 = 1;

/// Custom-section flag: the module's state is exported (section 9).
pub const FLAG_STATE_EXPORTS: u32 = 2;

/// Custom-section flag: the output has entry points (section 11).
pub const FLAG_ENTRY_POINTS: u32 = 4;
/// Prefix of the entry point of an exported function: `ri_sandbox_call_{name}`.
pub const ENTRY_EXPORT_PREFIX: &str = "ri_sandbox_call_";
/// Prefix of the exports of defined memories: `ri_sandbox_memory_{index}`.
pub const MEMORY_EXPORT_PREFIX: &str = "ri_sandbox_memory_";
/// Prefix of the exports of defined tables: `ri_sandbox_table_{index}`.
pub const TABLE_EXPORT_PREFIX: &str = "ri_sandbox_table_";
/// Prefix of the exports of defined mutable globals: `ri_sandbox_global_{index}`.
pub const GLOBAL_EXPORT_PREFIX: &str = "ri_sandbox_global_";
/// Prefix of the exports of functions a `funcref` can name: `ri_sandbox_func_{index}`.
pub const FUNC_EXPORT_PREFIX: &str = "ri_sandbox_func_";

/// Every export the ABI adds starts with this; inputs may not use it.
pub const RESERVED_PREFIX: &str = "ri_sandbox_";

/// Length of the custom section's payload in ABI version 1.
const SECTION_LEN: usize = 48;

/// What an instrumented module's `ri_sandbox` custom section says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiInfo {
    /// ABI version the module was instrumented for.
    pub version: u32,
    /// Fingerprint of the cost model it was metered with.
    pub cost_fingerprint: [u8; 32],
    /// Option flags ([`FLAG_CANONICAL_NANS`]).
    pub flags: u32,
    /// The stack limit the module was instrumented with, if any.
    pub stack_limit: Option<u64>,
}

impl AbiInfo {
    /// The section payload.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SECTION_LEN);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.cost_fingerprint);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.stack_limit.unwrap_or(0).to_le_bytes());
        out
    }

    /// Parses a section payload; `None` when it is not a version-1 payload.
    pub fn decode(payload: &[u8]) -> Option<AbiInfo> {
        if payload.len() != SECTION_LEN {
            return None;
        }
        let version = u32::from_le_bytes(payload[0..4].try_into().ok()?);
        let cost_fingerprint = payload[4..36].try_into().ok()?;
        let flags = u32::from_le_bytes(payload[36..40].try_into().ok()?);
        let stack_limit = u64::from_le_bytes(payload[40..48].try_into().ok()?);
        Some(AbiInfo {
            version,
            cost_fingerprint,
            flags,
            stack_limit: (stack_limit != 0).then_some(stack_limit),
        })
    }

    /// Reads the `ri_sandbox` section of a module, if it has a well-formed one. This reads
    /// section headers only; it does not validate the module.
    pub fn read(module: &[u8]) -> Option<AbiInfo> {
        for payload in wasmparser::Parser::new(0).parse_all(module) {
            match payload.ok()? {
                wasmparser::Payload::CustomSection(s) if s.name() == SECTION_NAME => {
                    return AbiInfo::decode(s.data());
                }
                wasmparser::Payload::End(_) => return None,
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_round_trips() {
        let info = AbiInfo {
            version: ABI_VERSION,
            cost_fingerprint: [7; 32],
            flags: FLAG_CANONICAL_NANS,
            stack_limit: Some(4096),
        };
        let bytes = info.encode();
        assert_eq!(bytes.len(), 48);
        assert_eq!(AbiInfo::decode(&bytes), Some(info));
        assert_eq!(AbiInfo::decode(&bytes[..47]), None);
    }
}
