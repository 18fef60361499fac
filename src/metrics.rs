//! Resource figures of one call and of a sandbox's life.

use std::time::Duration;

/// What one call used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallMetrics {
    /// Gas used (the whole budget when the call ran out).
    pub gas_used: u64,
    /// The call's gas budget.
    pub gas_limit: u64,
    /// Linear memory after the call, in bytes.
    pub memory_bytes: u64,
    /// The most linear memory the call had, in bytes.
    pub peak_memory_bytes: u64,
    /// The memory limit in bytes.
    pub memory_limit_bytes: u64,
    /// Wall-clock time of the call (not deterministic).
    pub wall_time: Duration,
    /// The wall-clock limit.
    pub time_limit: Duration,
    /// Host function calls the guest made.
    pub host_calls: u64,
}

/// What a sandbox has used since it was created (or restored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxMetrics {
    /// Calls made, failed ones included (the start function counts).
    pub calls: u64,
    /// Gas used by all calls.
    pub gas_used: u64,
    /// The gas budget of each call.
    pub gas_limit: u64,
    /// Linear memory now, in bytes (0 while the sandbox is suspended or destroyed).
    pub memory_bytes: u64,
    /// The most linear memory the sandbox has had, in bytes.
    pub peak_memory_bytes: u64,
    /// The memory limit in bytes.
    pub memory_limit_bytes: u64,
    /// Wall-clock time of all calls (not deterministic).
    pub wall_time: Duration,
    /// Host function calls.
    pub host_calls: u64,
    /// Times the sandbox was suspended ([`Sandbox::suspend`](crate::Sandbox::suspend)).
    pub suspensions: u64,
    /// The last call's figures.
    pub last_call: Option<CallMetrics>,
}

impl SandboxMetrics {
    #[inline]
    pub(crate) fn record(&mut self, call: CallMetrics) {
        self.calls += 1;
        self.gas_used = self.gas_used.saturating_add(call.gas_used);
        self.memory_bytes = call.memory_bytes;
        self.peak_memory_bytes = self.peak_memory_bytes.max(call.peak_memory_bytes);
        if !call.wall_time.is_zero() {
            self.wall_time = self.wall_time.saturating_add(call.wall_time);
        }
        self.host_calls += call.host_calls;
        self.last_call = Some(call);
    }
}
