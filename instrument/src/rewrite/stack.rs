//! Stack accounting: the deterministic stack-height limit.
//!
//! On entry a function saves the caller's level of the `ri_sandbox_stack_left` counter in a
//! local and charges its frame weight to the counter (trapping, with the counter set to -1,
//! when the counter cannot pay). Before every way out (`return`, the final `end`, a branch to
//! the function's label, a tail call) it puts the caller's level back, so calls from anywhere
//! (the host, another instance, a host function calling back in) leave the counter as they
//! found it. Where control stays in the function after a branch that released the frame for
//! its exiting targets only, and where a `catch` lands (the frames an exception unwound never
//! gave theirs back), it recharges: sets the counter to its own level again. A trap leaves
//! the counter low; the host resets it before the next call.
//!
//! ```wat
//! global.get $stack_left  local.tee $caller_level  i64.const FRAME  i64.lt_s
//! if  i64.const -1  global.set $stack_left  unreachable  end
//! local.get $caller_level  i64.const FRAME  i64.sub  global.set $stack_left
//! ```

use super::code::{Code, I64_LT_S, I64_SUB};

pub(crate) fn enter(code: &mut Code<'_>, stack_global: u32, frame_cost: u64, level: u32) {
    let frame = i64::try_from(frame_cost).unwrap_or(i64::MAX);
    code.global_get(stack_global)
        .local_tee(level)
        .i64_const(frame)
        .op(I64_LT_S)
        .trap_marking(stack_global);
    recharge(code, stack_global, frame_cost, level);
}

pub(crate) fn release(code: &mut Code<'_>, stack_global: u32, level: u32) {
    code.local_get(level).global_set(stack_global);
}

pub(crate) fn recharge(code: &mut Code<'_>, stack_global: u32, frame_cost: u64, level: u32) {
    code.local_get(level)
        .i64_const(i64::try_from(frame_cost).unwrap_or(i64::MAX))
        .op(I64_SUB)
        .global_set(stack_global);
}
