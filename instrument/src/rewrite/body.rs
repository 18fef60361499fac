//! Applies a [`FunctionPlan`] to a function body by copying the original bytes around the
//! insertions. Operators that need no change are never decoded again or re-encoded, which is
//! what makes the pass faster than a parse-and-re-encode round trip.

use super::gas::ChargeEmitter;
use crate::analyze::FunctionPlan;
use std::ops::Range;
use wasm_encoder::Encode;

/// Appends the rewritten body (size-prefixed, as the code section stores it) to `out`.
/// `scratch` is a reusable buffer.
pub(crate) fn rewrite_body(
    wasm: &[u8],
    body: Range<usize>,
    plan: &FunctionPlan,
    charge: &ChargeEmitter,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    scratch.clear();
    let mut cursor = body.start;
    for insertion in plan.insertions.iter().filter(|i| i.gas > 0) {
        scratch.extend_from_slice(&wasm[cursor..insertion.offset]);
        charge.emit(insertion.gas, scratch);
        cursor = insertion.offset;
    }
    scratch.extend_from_slice(&wasm[cursor..body.end]);
    (scratch.len() as u32).encode(out);
    out.extend_from_slice(scratch);
}
