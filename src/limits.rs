//! The hard limits a sandbox runs under, with their defaults, and the wasmtime
//! `ResourceLimiter` that enforces the memory limit and records peak memory.
//!
//! Gas and the stack limit are enforced by the instrumented module itself (the ABI's
//! counters); memory by this limiter; wall-clock time by epoch interruption (see
//! [`crate::runtime`]).

/// Default memory limit: 16 MiB of linear memory, all memories together.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
/// Default gas budget per call: 1,000,000.
pub const DEFAULT_MAX_GAS: u64 = 1_000_000;
/// Default wall-clock limit per call: 50 ms.
pub const DEFAULT_MAX_EXECUTION_MS: u64 = 50;
/// Default limit on table elements, all tables together: 100,000.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u64 = 100_000;
/// Default limit on locals (parameters included), all function bodies of a module together:
/// 1,000,000. wasmtime's compile time grows with them (about 75 ns a local here) and a body
/// declares 50,000 in five bytes, so without a limit 150 KB take most of a minute to compile.
pub const DEFAULT_MAX_LOCALS: u64 = 1_000_000;
/// Default stack limit, in the instrumenter's stack units.
pub const DEFAULT_STACK_LIMIT: u64 = ri_sandbox_instrument::DEFAULT_STACK_LIMIT;

/// Enforces the memory and table limits and keeps the memory figures for metrics.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub memory_limit: u64,
    pub table_limit: u64,
    /// Bytes of linear memory now, all memories together.
    pub memory_bytes: u64,
    /// The most `memory_bytes` has been since the last reset.
    pub peak_bytes: u64,
    table_elements: u64,
    /// Set when a growth was refused, so the resulting trap is reported as such.
    pub exceeded: Option<u64>,
}

impl Limiter {
    pub fn new(memory_limit: u64, table_limit: u64) -> Limiter {
        Limiter {
            memory_limit,
            table_limit,
            memory_bytes: 0,
            peak_bytes: 0,
            table_elements: 0,
            exceeded: None,
        }
    }
}

/// The error a refused memory growth traps with.
#[derive(Debug)]
pub(crate) struct MemoryLimitHit;

impl std::fmt::Display for MemoryLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory limit exceeded")
    }
}

impl std::error::Error for MemoryLimitHit {}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_bytes - current as u64 + desired as u64;
        if total > self.memory_limit {
            self.exceeded = Some(total);
            // Trap rather than let `memory.grow` return -1: the host learns why.
            return Err(wasmtime::Error::new(MemoryLimitHit));
        }
        self.memory_bytes = total;
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements - current as u64 + desired as u64;
        if total > self.table_limit {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }
}
