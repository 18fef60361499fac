//! NaN canonicalization: after a float operation that can produce a NaN, replace any NaN
//! with the canonical one (positive, quiet, zero payload), so float results are bit-identical
//! on every engine and CPU.
//!
//! ```wat
//! local.tee $x
//! f32.const nan          ;; 0x7fc00000
//! local.get $x
//! local.get $x
//! f32.eq                 ;; false only for NaN
//! select                 ;; x == x ? x : nan
//! ```
//!
//! SIMD results do the same lane-wise with `f32x4.eq` / `f64x2.eq` and `v128.bitselect`.

use super::code::{Code, F32X4_EQ, F32_EQ, F64X2_EQ, F64_EQ, SELECT, V128_BITSELECT};
use super::LocalMap;
use crate::analyze::FloatKind;

const F32_NAN: u32 = 0x7fc0_0000;
const F64_NAN: u64 = 0x7ff8_0000_0000_0000;

pub(crate) fn canonicalize(code: &mut Code<'_>, kind: FloatKind, locals: &LocalMap) {
    match kind {
        FloatKind::F32 => {
            code.local_tee(locals.f32)
                .f32_const_bits(F32_NAN)
                .local_get(locals.f32)
                .local_get(locals.f32)
                .op(F32_EQ)
                .op(SELECT);
        }
        FloatKind::F64 => {
            code.local_tee(locals.f64)
                .f64_const_bits(F64_NAN)
                .local_get(locals.f64)
                .local_get(locals.f64)
                .op(F64_EQ)
                .op(SELECT);
        }
        FloatKind::F32x4 | FloatKind::F64x2 => {
            let (nan, eq) = if kind == FloatKind::F32x4 {
                let lane = F32_NAN.to_le_bytes();
                let mut all = [0u8; 16];
                for chunk in all.chunks_mut(4) {
                    chunk.copy_from_slice(&lane);
                }
                (all, F32X4_EQ)
            } else {
                let lane = F64_NAN.to_le_bytes();
                let mut all = [0u8; 16];
                for chunk in all.chunks_mut(8) {
                    chunk.copy_from_slice(&lane);
                }
                (all, F64X2_EQ)
            };
            code.local_tee(locals.v128)
                .v128_const(nan)
                .local_get(locals.v128)
                .local_get(locals.v128)
                .simd(eq)
                .simd(V128_BITSELECT);
        }
    }
}
