//! The gas charge: the instruction sequence inserted at every metered block's leader.
//!
//! ```wat
//! global.get $ri_sandbox_gas_left
//! i64.const COST
//! i64.lt_s
//! if
//!   i64.const -1
//!   global.set $ri_sandbox_gas_left
//!   unreachable
//! end
//! global.get $ri_sandbox_gas_left
//! i64.const COST
//! i64.sub
//! global.set $ri_sandbox_gas_left
//! ```
//!
//! Comparing before subtracting means the counter can never wrap, whatever budget the host
//! set (a negative budget simply runs out at the first charge). The sequence is stack-neutral
//! and uses only MVP instructions, so it is valid anywhere an instruction is.

use wasm_encoder::Encode;

/// Emits charge sequences for one gas global.
pub(crate) struct ChargeEmitter {
    /// The LEB128 encoding of the gas global's index.
    global: Vec<u8>,
}

impl ChargeEmitter {
    pub(crate) fn new(gas_global: u32) -> ChargeEmitter {
        let mut global = Vec::with_capacity(5);
        gas_global.encode(&mut global);
        ChargeEmitter { global }
    }

    /// Appends the charge of `gas` units to `out`. Costs above `i64::MAX` are charged as
    /// `i64::MAX`, which no budget can pay.
    pub(crate) fn emit(&self, gas: u64, out: &mut Vec<u8>) {
        let cost = i64::try_from(gas).unwrap_or(i64::MAX);
        out.push(0x23); // global.get
        out.extend_from_slice(&self.global);
        out.push(0x42); // i64.const
        cost.encode(out);
        out.push(0x53); // i64.lt_s
        out.extend_from_slice(&[0x04, 0x40]); // if (empty block type)
        out.extend_from_slice(&[0x42, 0x7f]); // i64.const -1
        out.push(0x24); // global.set
        out.extend_from_slice(&self.global);
        out.push(0x00); // unreachable
        out.push(0x0b); // end
        out.push(0x23); // global.get
        out.extend_from_slice(&self.global);
        out.push(0x42); // i64.const
        cost.encode(out);
        out.push(0x7d); // i64.sub
        out.push(0x24); // global.set
        out.extend_from_slice(&self.global);
    }
}
