//! The gas charge: the instruction sequence that takes an amount from the gas counter,
//! trapping when the counter cannot pay.
//!
//! ```wat
//! global.get $counter
//! AMOUNT                  ;; i64.const COST, or local.get $cost for a computed charge
//! i64.lt_s
//! if
//!   i64.const -1
//!   global.set $counter
//!   unreachable
//! end
//! global.get $counter
//! AMOUNT
//! i64.sub
//! global.set $counter
//! ```
//!
//! Comparing before subtracting means the counter can never wrap, whatever value the host
//! set (a negative budget simply runs out at the first charge). The sequence is stack-neutral
//! and uses only MVP instructions, so it is valid anywhere an instruction is.

use super::code::{Code, I64_LT_S, I64_SUB};

/// The amount a charge takes.
#[derive(Clone, Copy)]
pub(crate) enum Amount {
    /// A constant; costs above `i64::MAX` are charged as `i64::MAX`, which nothing can pay.
    Const(u64),
    /// The value of an `i64` local.
    Local(u32),
}

impl Amount {
    fn push(self, code: &mut Code<'_>) {
        match self {
            Amount::Const(gas) => {
                code.i64_const(i64::try_from(gas).unwrap_or(i64::MAX));
            }
            Amount::Local(index) => {
                code.local_get(index);
            }
        }
    }
}

/// Emits a charge of `amount` to `counter`.
pub(crate) fn charge(code: &mut Code<'_>, counter: u32, amount: Amount) {
    code.global_get(counter);
    amount.push(code);
    code.op(I64_LT_S).trap_marking(counter).global_get(counter);
    amount.push(code);
    code.op(I64_SUB).global_set(counter);
}
