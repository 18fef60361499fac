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

use super::code::{Code, Sink, Small, I64_LT_S, I64_SUB};

/// The amount a charge takes.
#[derive(Clone, Copy)]
pub(crate) enum Amount {
    /// A constant; costs above `i64::MAX` are charged as `i64::MAX`, which nothing can pay.
    Const(u64),
    /// The value of an `i64` local.
    Local(u32),
}

impl Amount {
    #[inline]
    fn push(self, code: &mut Code<'_, impl Sink>) {
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
/// (Built in a [`Small`] buffer: at most 6 + 11 + 1 + 12 + 6 + 11 + 1 + 6 + 6 = 60 bytes.)
pub(crate) fn charge(code: &mut Code<'_>, counter: u32, gas: u32, amount: Amount) {
    let mut small = Small::new();
    let built = &mut Code(&mut small);
    built.local_get(gas);
    amount.push(built);
    built.op(I64_LT_S).trap_marking(counter).local_get(gas);
    amount.push(built);
    built.op(I64_SUB).local_tee(gas).global_set(counter);
    code.0.extend_from_slice(small.as_slice());
}

/// Emits `global.get $counter  local.set $gas`.
pub(crate) fn reload(code: &mut Code<'_>, counter: u32, gas: u32) {
    code.global_get(counter).local_set(gas);
}

#[cfg(test)]
mod tests {
    use super::{charge, Amount};
    use crate::rewrite::code::Code;

    /// The charge as the plain encoders write it, one instruction at a time into the output.
    fn reference(counter: u32, gas: u32, amount: Amount) -> Vec<u8> {
        let mut out = Vec::new();
        let code = &mut Code(&mut out);
        let amount = |code: &mut Code<'_>| match amount {
            Amount::Const(gas) => {
                code.i64_const(i64::try_from(gas).unwrap_or(i64::MAX));
            }
            Amount::Local(index) => {
                code.local_get(index);
            }
        };
        code.local_get(gas);
        amount(code);
        code.op(super::I64_LT_S)
            .trap_marking(counter)
            .local_get(gas);
        amount(code);
        code.op(super::I64_SUB).local_tee(gas).global_set(counter);
        out
    }

    #[test]
    fn charges_of_every_length_fit_and_match_the_plain_encoding() {
        for (counter, gas) in [(0, 1), (127, 128), (u32::MAX, u32::MAX)] {
            for amount in [
                0,
                1,
                64,
                1 << 40,
                u64::from(u32::MAX),
                i64::MAX as u64,
                u64::MAX,
            ]
            .map(Amount::Const)
            .into_iter()
            .chain([Amount::Local(0), Amount::Local(u32::MAX)])
            {
                let mut out = vec![0xaa];
                charge(&mut Code(&mut out), counter, gas, amount);
                assert_eq!(out[0], 0xaa, "appends");
                assert_eq!(out[1..], reference(counter, gas, amount)[..]);
            }
        }
    }
}
