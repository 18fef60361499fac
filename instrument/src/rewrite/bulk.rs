//! Size charges: the gas a bulk operation owes for its length, computed from the length
//! operand at run time and charged before the operation runs.
//!
//! With the length `n` on top of the stack and a price of `gas` per `2^k` units:
//!
//! ```wat
//! local.set $n            ;; $n32 or $n64
//! [i64.const MAX]         ;; i64 lengths only
//! local.get $n
//! [i64.extend_i32_u]      ;; i32 lengths only
//! i64.const 2^k-1  i64.add  i64.const k  i64.shr_u     ;; when k > 0: round up to groups
//! i64.const gas    i64.mul                              ;; when gas > 1
//! [local.get $n  i64.const 2^32  i64.gt_u  select]      ;; i64 lengths: above 2^32, MAX
//! local.set $cost
//! <charge $cost (see `gas.rs`)>
//! local.get $n            ;; the operation gets its length back
//! ```
//!
//! With `n < 2^32` and `gas < 2^31` the product stays below 2^63, so the charge never
//! wraps; longer lengths cost `i64::MAX`, which no budget pays.

use super::code::{Code, I64_ADD, I64_EXTEND_I32_U, I64_GT_U, I64_MUL, I64_SHR_U, SELECT};
use super::gas::{charge, Amount};
use super::LocalMap;
use crate::cost::UnitPrice;

pub(crate) fn size_charge(
    code: &mut Code<'_>,
    gas_global: u32,
    locals: &LocalMap,
    price: UnitPrice,
    wide: bool,
) {
    if price.gas == 0 {
        return;
    }
    let n = if wide { locals.n64 } else { locals.n32 };
    code.local_set(n);
    if wide {
        code.i64_const(i64::MAX);
    }
    code.local_get(n);
    if !wide {
        code.op(I64_EXTEND_I32_U);
    }
    if price.units_log2 > 0 {
        code.i64_const((1i64 << price.units_log2) - 1)
            .op(I64_ADD)
            .i64_const(i64::from(price.units_log2))
            .op(I64_SHR_U);
    }
    if price.gas > 1 {
        code.i64_const(i64::from(price.gas)).op(I64_MUL);
    }
    if wide {
        code.local_get(n).i64_const(1 << 32).op(I64_GT_U).op(SELECT);
    }
    code.local_set(locals.cost);
    charge(code, gas_global, locals.gas, Amount::Local(locals.cost));
    code.local_get(n);
}
