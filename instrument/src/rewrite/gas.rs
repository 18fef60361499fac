//! The gas charge: the instruction sequence that takes an amount from the gas counter,
//! trapping when the counter cannot pay.
//!
//! Each function keeps the counter's value in a local of its own, `$gas`, reloaded from the
//! global where a `catch` lands and, after the function's entry or a call that may have
//! charged, before the local is next read (`analyze::calls` places these), and written back
//! to the global after every charge:
//!
//! ```wat
//! local.get $gas
//! AMOUNT                  ;; i64.const COST, or local.get $cost for a computed charge
//! i64.lt_s
//! if
//!   i64.const -1
//!   global.set $counter
//!   unreachable
//! end
//! local.get $gas
//! AMOUNT
//! i64.sub
//! local.tee $gas
//! global.set $counter
//! ```
//!
//! So the global is always exact (the host, a host function or a trap sees the same value as
//! without the local), but a loop never *reads* it: reading a global just written makes every
//! iteration wait for the store to reach the load, which on some CPUs costs more than the
//! loop's own work; with the local, the counter lives in a register and the store is never
//! waited for.
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

/// Emits a charge of `amount` to `counter`, whose value the local `gas` holds.
pub(crate) fn charge(code: &mut Code<'_>, counter: u32, gas: u32, amount: Amount) {
    code.local_get(gas);
    amount.push(code);
    code.op(I64_LT_S).trap_marking(counter).local_get(gas);
    amount.push(code);
    code.op(I64_SUB).local_tee(gas).global_set(counter);
}

/// Emits `global.get $counter  local.set $gas`.
pub(crate) fn reload(code: &mut Code<'_>, counter: u32, gas: u32) {
    code.global_get(counter).local_set(gas);
}
