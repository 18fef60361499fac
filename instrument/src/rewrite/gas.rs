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
pub(crate) fn charge(code: &mut Code<'_>, counter: u32, gas: u32, amount: Amount) {
    Charger::new(counter, gas).charge(code.0, amount);
}

/// The charges of one function: they differ only in their amount, so the rest (the counter's
/// and the local's indices) is encoded once, and a charge is five copies of known size into
/// a buffer on the stack and one append to the output (about a fifth of the instructions of
/// encoding it piece by piece; a charge goes into almost every metered block).
pub(crate) struct Charger {
    /// `local.get $gas`
    head: Small,
    /// `i64.lt_s  if  i64.const -1  global.set $counter  unreachable  end  local.get $gas`
    middle: Small,
    /// `i64.sub  local.tee $gas  global.set $counter`
    tail: Small,
}

impl Charger {
    pub(crate) fn new(counter: u32, gas: u32) -> Self {
        let (mut head, mut middle, mut tail) = (Small::new(), Small::new(), Small::new());
        Code(&mut head).local_get(gas);
        Code(&mut middle)
            .op(I64_LT_S)
            .trap_marking(counter)
            .local_get(gas);
        Code(&mut tail)
            .op(I64_SUB)
            .local_tee(gas)
            .global_set(counter);
        Charger { head, middle, tail }
    }

    /// Appends a charge of `amount` to `out`. Each part (at most 6, 11, 19, 11 and 13 bytes)
    /// is copied with its whole [`Small`] buffer, the next part overwriting what was unused;
    /// the charge takes at most 60 bytes, and the last copy ends by byte 79.
    #[inline]
    pub(crate) fn charge(&self, out: &mut Vec<u8>, amount: Amount) {
        let mut value = Small::new();
        amount.push(&mut Code(&mut value));
        let mut buffer = [0u8; 128];
        let mut at = 0;
        for part in [&self.head, &value, &self.middle, &value, &self.tail] {
            if let Some(window) = buffer.get_mut(at..at + Small::CAPACITY) {
                window.copy_from_slice(part.window());
            }
            at += part.len();
        }
        out.extend_from_slice(&buffer[..at.min(buffer.len())]);
    }
}

/// Emits `global.get $counter  local.set $gas`.
pub(crate) fn reload(code: &mut Code<'_>, counter: u32, gas: u32) {
    code.global_get(counter).local_set(gas);
}

#[cfg(test)]
mod tests {
    use super::{charge, Amount, Charger};
    use crate::rewrite::code::Code;

    /// The charge as the plain encoders write it, one instruction at a time into the output.
    fn reference(counter: u32, gas: u32, amount: Amount) -> Vec<u8> {
        let mut out = Vec::new();
        let code = &mut Code(&mut out);
        code.local_get(gas);
        amount.push(code);
        code.op(super::I64_LT_S)
            .trap_marking(counter)
            .local_get(gas);
        amount.push(code);
        code.op(super::I64_SUB).local_tee(gas).global_set(counter);
        out
    }

    #[test]
    fn charges_of_every_length_fit_and_match_the_plain_encoding() {
        for (counter, gas) in [(0, 1), (127, 128), (u32::MAX, u32::MAX)] {
            let charger = Charger::new(counter, gas);
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
                // One function's charger, used again and again.
                let mut twice = Vec::new();
                charger.charge(&mut twice, amount);
                charger.charge(&mut twice, Amount::Const(3));
                let expected = [
                    reference(counter, gas, amount),
                    reference(counter, gas, Amount::Const(3)),
                ];
                assert_eq!(twice, expected.concat());
            }
        }
    }
}
