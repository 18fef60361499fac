//! A few instruction encoders for the inserted code. Only MVP instructions (plus the SIMD
//! ones NaN canonicalization uses on SIMD results) are ever emitted.

/// Where encoded bytes go: the output buffer, or a [`Small`] one on the stack.
pub(crate) trait Sink {
    fn put(&mut self, byte: u8);
    fn put_all(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, byte: u8) {
        self.push(byte);
    }
    #[inline]
    fn put_all(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A piece of code of at most [`Small::CAPACITY`] bytes, built on the stack and copied as a
/// whole (`gas::Charger` keeps a charge's fixed parts in them: at most 19 bytes each, tested
/// with the longest encodings).
pub(crate) struct Small {
    bytes: [u8; Small::CAPACITY],
    len: usize,
}

impl Small {
    pub const CAPACITY: usize = 32;

    #[inline]
    pub fn new() -> Self {
        Small {
            bytes: [0; Small::CAPACITY],
            len: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The whole buffer, used or not: a copy of a known size is a few moves, where one of a
    /// variable size is a call (see `gas::Charger`).
    #[inline]
    pub fn window(&self) -> &[u8; Small::CAPACITY] {
        &self.bytes
    }
}

impl Sink for Small {
    #[inline]
    fn put(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }
    #[inline]
    fn put_all(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// Appends an unsigned LEB128 `u32`; indices are almost always below 128, so that case is a
/// single byte.
#[inline]
fn uleb(out: &mut impl Sink, mut value: u32) {
    if value < 0x80 {
        out.put(value as u8);
        return;
    }
    while value >= 0x80 {
        out.put((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put(value as u8);
}

/// Appends a signed LEB128 `i64`, with the one-byte case first.
#[inline]
fn sleb(out: &mut impl Sink, mut value: i64) {
    if (-64..64).contains(&value) {
        out.put(value as u8 & 0x7f);
        return;
    }
    loop {
        let byte = value as u8 & 0x7f;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.put(byte);
            return;
        }
        out.put(byte | 0x80);
    }
}

/// Appends encoded instructions to a byte buffer.
pub(crate) struct Code<'a, S: Sink = Vec<u8>>(pub &'a mut S);

impl<S: Sink> Code<'_, S> {
    #[inline]
    pub fn global_get(&mut self, index: u32) -> &mut Self {
        self.0.put(0x23);
        uleb(self.0, index);
        self
    }
    #[inline]
    pub fn global_set(&mut self, index: u32) -> &mut Self {
        self.0.put(0x24);
        uleb(self.0, index);
        self
    }
    #[inline]
    pub fn local_get(&mut self, index: u32) -> &mut Self {
        self.0.put(0x20);
        uleb(self.0, index);
        self
    }
    #[inline]
    pub fn local_set(&mut self, index: u32) -> &mut Self {
        self.0.put(0x21);
        uleb(self.0, index);
        self
    }
    #[inline]
    pub fn local_tee(&mut self, index: u32) -> &mut Self {
        self.0.put(0x22);
        uleb(self.0, index);
        self
    }
    #[inline]
    pub fn i64_const(&mut self, value: i64) -> &mut Self {
        self.0.put(0x42);
        sleb(self.0, value);
        self
    }
    #[inline]
    pub fn i32_const(&mut self, value: i32) -> &mut Self {
        self.0.put(0x41);
        sleb(self.0, i64::from(value));
        self
    }
    #[inline]
    pub fn f32_const_bits(&mut self, bits: u32) -> &mut Self {
        self.0.put(0x43);
        self.0.put_all(&bits.to_le_bytes());
        self
    }
    #[inline]
    pub fn f64_const_bits(&mut self, bits: u64) -> &mut Self {
        self.0.put(0x44);
        self.0.put_all(&bits.to_le_bytes());
        self
    }
    #[inline]
    pub fn v128_const(&mut self, bytes: [u8; 16]) -> &mut Self {
        self.0.put_all(&[0xfd, 0x0c]);
        self.0.put_all(&bytes);
        self
    }
    /// A one-byte opcode (`i64.sub`, `select`, ...).
    #[inline]
    pub fn op(&mut self, opcode: u8) -> &mut Self {
        self.0.put(opcode);
        self
    }
    /// A SIMD opcode below 128.
    #[inline]
    pub fn simd(&mut self, opcode: u8) -> &mut Self {
        self.0.put_all(&[0xfd, opcode]);
        self
    }
}

pub(crate) const UNREACHABLE: u8 = 0x00;
pub(crate) const END: u8 = 0x0b;
pub(crate) const SELECT: u8 = 0x1b;
pub(crate) const F32_EQ: u8 = 0x5b;
pub(crate) const F64_EQ: u8 = 0x61;
pub(crate) const I64_LT_S: u8 = 0x53;
pub(crate) const I64_GT_S: u8 = 0x55;
pub(crate) const I64_GT_U: u8 = 0x56;
pub(crate) const I32_ADD: u8 = 0x6a;
pub(crate) const I32_SUB: u8 = 0x6b;
pub(crate) const I64_ADD: u8 = 0x7c;
pub(crate) const I64_SUB: u8 = 0x7d;
pub(crate) const I64_MUL: u8 = 0x7e;
pub(crate) const I64_SHR_U: u8 = 0x88;
pub(crate) const I64_EXTEND_I32_S: u8 = 0xac;
pub(crate) const I64_EXTEND_I32_U: u8 = 0xad;
pub(crate) const F32X4_EQ: u8 = 0x41;
pub(crate) const F64X2_EQ: u8 = 0x47;
pub(crate) const V128_BITSELECT: u8 = 0x52;

impl<S: Sink> Code<'_, S> {
    /// `if (empty) i64.const -1 global.set $counter unreachable end`: the trap path of every
    /// charge. Storing -1 first lets the host tell which counter ran out.
    #[inline]
    pub fn trap_marking(&mut self, counter: u32) -> &mut Self {
        self.0.put_all(&[0x04, 0x40]);
        self.i64_const(-1)
            .global_set(counter)
            .op(UNREACHABLE)
            .op(END)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::Encode;

    #[test]
    fn leb_encodings_match_wasm_encoder() {
        for v in [
            0i64,
            1,
            63,
            64,
            -1,
            -64,
            -65,
            127,
            128,
            300,
            i64::MAX,
            i64::MIN,
            -12345678,
        ] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            sleb(&mut ours, v);
            v.encode(&mut theirs);
            assert_eq!(ours, theirs, "{v}");
        }
        for v in [0u32, 1, 127, 128, 16383, 16384, u32::MAX] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            uleb(&mut ours, v);
            v.encode(&mut theirs);
            assert_eq!(ours, theirs, "{v}");
        }
    }
}
