//! A few instruction encoders for the inserted code. Only MVP instructions (plus the SIMD
//! ones NaN canonicalization uses on SIMD results) are ever emitted.

use wasm_encoder::Encode;

/// Appends encoded instructions to a byte buffer.
pub(crate) struct Code<'a>(pub &'a mut Vec<u8>);

impl Code<'_> {
    pub fn global_get(&mut self, index: u32) -> &mut Self {
        self.0.push(0x23);
        index.encode(self.0);
        self
    }
    pub fn global_set(&mut self, index: u32) -> &mut Self {
        self.0.push(0x24);
        index.encode(self.0);
        self
    }
    pub fn local_get(&mut self, index: u32) -> &mut Self {
        self.0.push(0x20);
        index.encode(self.0);
        self
    }
    pub fn local_set(&mut self, index: u32) -> &mut Self {
        self.0.push(0x21);
        index.encode(self.0);
        self
    }
    pub fn local_tee(&mut self, index: u32) -> &mut Self {
        self.0.push(0x22);
        index.encode(self.0);
        self
    }
    pub fn i64_const(&mut self, value: i64) -> &mut Self {
        self.0.push(0x42);
        value.encode(self.0);
        self
    }
    pub fn f32_const_bits(&mut self, bits: u32) -> &mut Self {
        self.0.push(0x43);
        self.0.extend_from_slice(&bits.to_le_bytes());
        self
    }
    pub fn f64_const_bits(&mut self, bits: u64) -> &mut Self {
        self.0.push(0x44);
        self.0.extend_from_slice(&bits.to_le_bytes());
        self
    }
    pub fn v128_const(&mut self, bytes: [u8; 16]) -> &mut Self {
        self.0.extend_from_slice(&[0xfd, 0x0c]);
        self.0.extend_from_slice(&bytes);
        self
    }
    /// A one-byte opcode (`i64.sub`, `select`, ...).
    pub fn op(&mut self, opcode: u8) -> &mut Self {
        self.0.push(opcode);
        self
    }
    /// A SIMD opcode below 128.
    pub fn simd(&mut self, opcode: u8) -> &mut Self {
        self.0.extend_from_slice(&[0xfd, opcode]);
        self
    }
}

pub(crate) const UNREACHABLE: u8 = 0x00;
pub(crate) const END: u8 = 0x0b;
pub(crate) const SELECT: u8 = 0x1b;
pub(crate) const F32_EQ: u8 = 0x5b;
pub(crate) const F64_EQ: u8 = 0x61;
pub(crate) const I64_LT_S: u8 = 0x53;
pub(crate) const I64_GT_U: u8 = 0x56;
pub(crate) const I64_ADD: u8 = 0x7c;
pub(crate) const I64_SUB: u8 = 0x7d;
pub(crate) const I64_MUL: u8 = 0x7e;
pub(crate) const I64_SHR_U: u8 = 0x88;
pub(crate) const I64_EXTEND_I32_U: u8 = 0xad;
pub(crate) const F32X4_EQ: u8 = 0x41;
pub(crate) const F64X2_EQ: u8 = 0x47;
pub(crate) const V128_BITSELECT: u8 = 0x52;

impl Code<'_> {
    /// `if (empty) i64.const -1 global.set $counter unreachable end`: the trap path of every
    /// charge. Storing -1 first lets the host tell which counter ran out.
    pub fn trap_marking(&mut self, counter: u32) -> &mut Self {
        self.0.extend_from_slice(&[0x04, 0x40]);
        self.i64_const(-1)
            .global_set(counter)
            .op(UNREACHABLE)
            .op(END)
    }
}
