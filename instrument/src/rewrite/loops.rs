//! The charge of a counted loop ([`CountedLoop`]): before the loop is entered, its body's
//! cost times the number of iterations it will run, computed from the counter and the bound
//! at entry. The body then charges nothing per iteration.
//!
//! With `u = counter + step` (the counter after the first iteration, wrapping as `i32`), the
//! loop runs:
//!
//! - `while counter < bound` (step 1): `max(bound - u, 0) + 1` times, the subtraction done in
//!   `i64` on the zero- (`lt_u`) or sign-extended (`lt_s`) values;
//! - `while counter != bound`: `((bound - u) mod 2^32) + 1` times for step 1,
//!   `((u - bound) mod 2^32) + 1` for step -1.
//!
//! ```wat
//! <iterations>  local.set $n64
//! local.get $n64  i64.const COST  i64.mul                       ;; COST < 2^31: no overflow
//! local.set $cost
//! <charge $cost (see `gas.rs`)>
//! ```
//!
//! At most 2^32 iterations, so with a cost below 2^31 the product stays below 2^63; a larger
//! cost is saturated at `i64::MAX`, which no budget pays.

use super::code::{
    Code, I32_ADD, I32_SUB, I64_ADD, I64_EXTEND_I32_S, I64_EXTEND_I32_U, I64_GT_S, I64_GT_U,
    I64_MUL, I64_SUB, SELECT,
};
use super::gas::{charge, Amount};
use super::LocalMap;
use crate::analyze::{CountedLoop, LoopBound, LoopExit};

/// Costs below this are multiplied by up to 2^32 + 1 iterations without overflow.
const SMALL_COST: u64 = 1 << 31;

pub(crate) fn loop_charge(
    code: &mut Code<'_>,
    gas_global: u32,
    locals: &LocalMap,
    counted: &CountedLoop,
    cost: u64,
) {
    if cost == 0 {
        return;
    }
    let bound = |code: &mut Code<'_>| {
        match counted.bound {
            LoopBound::Local(n) => code.local_get(n),
            LoopBound::Const(n) => code.i32_const(n),
        };
    };
    let after_first = |code: &mut Code<'_>| {
        code.local_get(counted.counter)
            .i32_const(counted.step)
            .op(I32_ADD);
    };
    match counted.exit {
        LoopExit::LtU | LoopExit::LtS => {
            let extend = if counted.exit == LoopExit::LtU {
                I64_EXTEND_I32_U
            } else {
                I64_EXTEND_I32_S
            };
            bound(code);
            code.op(extend);
            after_first(code);
            code.op(extend).op(I64_SUB).local_tee(locals.n64);
            // max(bound - u, 0) + 1
            code.i64_const(0)
                .local_get(locals.n64)
                .i64_const(0)
                .op(I64_GT_S)
                .op(SELECT)
                .i64_const(1)
                .op(I64_ADD);
        }
        LoopExit::Ne => {
            if counted.step == 1 {
                bound(code);
                after_first(code);
            } else {
                after_first(code);
                bound(code);
            }
            code.op(I32_SUB)
                .op(I64_EXTEND_I32_U)
                .i64_const(1)
                .op(I64_ADD);
        }
    }
    code.local_set(locals.n64);
    if cost < SMALL_COST {
        code.local_get(locals.n64)
            .i64_const(cost as i64)
            .op(I64_MUL);
    } else {
        // iterations > i64::MAX / cost ? i64::MAX : iterations * cost
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        code.i64_const(i64::MAX)
            .local_get(locals.n64)
            .i64_const(cost)
            .op(I64_MUL)
            .local_get(locals.n64)
            .i64_const(i64::MAX / cost)
            .op(I64_GT_U)
            .op(SELECT);
    }
    code.local_set(locals.cost);
    charge(code, gas_global, locals.gas, Amount::Local(locals.cost));
}
