//! Sandbox settings. Every field documents its default; `Config::default()` is the seed's
//! configuration.

use crate::host::HostFunction;
use crate::limits::{
    DEFAULT_MAX_EXECUTION_MS, DEFAULT_MAX_GAS, DEFAULT_MAX_LOCALS, DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_TABLE_ELEMENTS, DEFAULT_STACK_LIMIT,
};
use crate::wasi::WasiConfig;
use ri_sandbox_instrument::{CostModel, Options};

/// How a sandbox runs. Build it with `Config::default()` and the `with_*` methods, or set the
/// fields directly.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Linear memory limit in bytes, all memories together. A module whose initial memory is
    /// larger is refused at load; growth past it ends the call with
    /// [`ErrorKind::MemoryExceeded`](crate::ErrorKind::MemoryExceeded). Default: 16 MiB.
    pub max_memory_bytes: u64,
    /// Gas budget of each call (and of the start function). Default: 1,000,000.
    pub max_gas: u64,
    /// Wall-clock limit of each call in milliseconds; 0 disables it. Default: 50.
    ///
    /// # Determinism
    /// A timeout depends on the machine and its load: it is the one outcome that is not
    /// deterministic. Use gas to bound work; use this to bound latency.
    pub max_execution_ms: u64,
    /// Seed of the ChaCha20 stream `env.__get_random` draws from. Default: 0.
    pub seed: u64,
    /// What `env.__get_time` returns, e.g. milliseconds since the Unix epoch of the event
    /// being processed. The host sets it; nothing reads a clock. Default: 0.
    pub event_timestamp: i64,
    /// The deterministic stack-height limit, in the instrumenter's stack units (a frame weighs
    /// 64 + 8 per parameter, local and operand slot). Default: 262,144.
    pub stack_limit: u64,
    /// Limit on table elements, all tables together. Default: 100,000.
    pub max_table_elements: u64,
    /// Limit on locals (parameters included), all function bodies of a module together; a
    /// module with more is refused when compiled, before wasmtime spends time on it (see
    /// [`DEFAULT_MAX_LOCALS`]). Default: 1,000,000.
    pub max_locals: u64,
    /// Operator prices for metering. Default: [`CostModel::default`].
    pub costs: CostModel,
    /// Functions the guest may import, besides the deterministic `env.__get_time` and
    /// `env.__get_random`. Default: none.
    pub host_functions: Vec<HostFunction>,
    /// Whether calls read the clock to report their wall time in the metrics (two clock reads
    /// per call, about a third of a fast call's overhead). The timeout works either way.
    /// Default: `true`.
    pub measure_wall_time: bool,
    /// Deterministic WASI preview1 for programs compiled for `wasm32-wasip1` (see
    /// [`crate::wasi`]). `None` refuses every WASI import, by name. Default: `None`.
    pub wasi: Option<WasiConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_gas: DEFAULT_MAX_GAS,
            max_execution_ms: DEFAULT_MAX_EXECUTION_MS,
            seed: 0,
            event_timestamp: 0,
            stack_limit: DEFAULT_STACK_LIMIT,
            max_table_elements: DEFAULT_MAX_TABLE_ELEMENTS,
            max_locals: DEFAULT_MAX_LOCALS,
            costs: CostModel::default(),
            host_functions: Vec::new(),
            measure_wall_time: true,
            wasi: None,
        }
    }
}

impl Config {
    /// Enables deterministic WASI with this configuration ([`wasi`](Config::wasi)).
    pub fn with_wasi(mut self, wasi: WasiConfig) -> Config {
        self.wasi = Some(wasi);
        self
    }

    /// Sets [`max_memory_bytes`](Config::max_memory_bytes).
    pub fn with_max_memory_bytes(mut self, bytes: u64) -> Config {
        self.max_memory_bytes = bytes;
        self
    }

    /// Sets [`max_gas`](Config::max_gas).
    pub fn with_max_gas(mut self, gas: u64) -> Config {
        self.max_gas = gas;
        self
    }

    /// Sets [`max_execution_ms`](Config::max_execution_ms).
    pub fn with_max_execution_ms(mut self, ms: u64) -> Config {
        self.max_execution_ms = ms;
        self
    }

    /// Sets [`seed`](Config::seed).
    pub fn with_seed(mut self, seed: u64) -> Config {
        self.seed = seed;
        self
    }

    /// Sets [`event_timestamp`](Config::event_timestamp).
    pub fn with_event_timestamp(mut self, timestamp: i64) -> Config {
        self.event_timestamp = timestamp;
        self
    }

    /// Sets [`max_locals`](Config::max_locals).
    pub fn with_max_locals(mut self, locals: u64) -> Config {
        self.max_locals = locals;
        self
    }

    /// Sets [`stack_limit`](Config::stack_limit).
    pub fn with_stack_limit(mut self, units: u64) -> Config {
        self.stack_limit = units;
        self
    }

    /// Sets [`costs`](Config::costs).
    pub fn with_costs(mut self, costs: CostModel) -> Config {
        self.costs = costs;
        self
    }

    /// Sets [`measure_wall_time`](Config::measure_wall_time).
    pub fn with_wall_time(mut self, measure: bool) -> Config {
        self.measure_wall_time = measure;
        self
    }

    /// Adds a host function.
    pub fn with_host_function(mut self, function: HostFunction) -> Config {
        self.host_functions.push(function);
        self
    }

    /// The instrumentation this configuration asks for.
    pub(crate) fn instrument_options(&self) -> Options {
        let mut options = Options::with_costs(self.costs.clone());
        options.stack_limit = Some(self.stack_limit);
        options.canonicalize_nans = true;
        options.entry_points = true;
        options.max_locals = Some(self.max_locals);
        options
    }

    /// The gas budget as the `i64` the ABI's counter holds.
    pub(crate) fn gas_budget(&self) -> i64 {
        i64::try_from(self.max_gas).unwrap_or(i64::MAX)
    }
}
