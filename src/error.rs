//! What can go wrong in a sandbox, as a type a host can branch on.
//!
//! Every failure is an [`Error`] whose [`kind`](Error::kind) is one outcome: the seed's eight
//! (gas exhausted, memory exceeded, timeout, wasm trap, invalid module, host-function error,
//! instance destroyed, snapshot error) plus the stack limit, a rejected import, a call in the
//! wrong status, and the typed failures of JSON mode. Messages are written for a person.

use crate::sandbox::Status;

/// A sandbox failure. Match on [`Error::kind`]; print it for a person.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
}

/// Why a trap happened, when the module trapped on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrapCode {
    /// `unreachable` was executed.
    Unreachable,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// A table access outside the table.
    TableOutOfBounds,
    /// An indirect call to a null table entry.
    IndirectCallToNull,
    /// An indirect call whose signature does not match.
    BadSignature,
    /// Integer overflow (`i32.div_s` of `i32::MIN` by -1, say).
    IntegerOverflow,
    /// Integer division or remainder by zero.
    IntegerDivisionByZero,
    /// A float-to-integer conversion of NaN or an out-of-range value.
    BadConversionToInteger,
    /// A null reference was dereferenced.
    NullReference,
    /// The engine's own native stack guard (the deterministic limit normally comes first).
    StackOverflow,
    /// An exception was thrown and nothing caught it.
    UncaughtException,
    /// Any other trap; the message says which.
    Other,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call used its whole gas budget. `used` equals the budget.
    #[error("out of gas: the call used its whole budget of {limit} gas")]
    GasExhausted {
        /// Gas used: all of it.
        used: u64,
        /// The budget.
        limit: u64,
    },
    /// Linear memory would have grown past the sandbox's limit.
    #[error("memory limit exceeded: the module asked for {requested} bytes, the limit is {limit}")]
    MemoryExceeded {
        /// Bytes the module would have had.
        requested: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The wall-clock limit was reached. This is the one outcome that is not deterministic.
    #[error("timeout: the call ran for {elapsed_ms} ms, the limit is {limit_ms} ms (wall-clock, not deterministic)")]
    Timeout {
        /// Milliseconds the call ran.
        elapsed_ms: u64,
        /// The limit in milliseconds.
        limit_ms: u64,
    },
    /// The deterministic stack-height limit was reached.
    #[error("stack limit reached: the call chain needed more than {limit} stack units")]
    StackLimit {
        /// The limit in stack units.
        limit: u64,
    },
    /// The module trapped on its own.
    #[error("wasm trap ({code:?}): {message}")]
    Trap {
        /// Which trap.
        code: TrapCode,
        /// The engine's description, with a backtrace when there is one.
        message: String,
    },
    /// The module is not valid WebAssembly, or uses something ri-sandbox does not run.
    #[error("invalid module{}: {reason}", offset.map(|o| format!(" at byte offset {o:#x}")).unwrap_or_default())]
    InvalidModule {
        /// Why.
        reason: String,
        /// Byte offset into the module, when known.
        offset: Option<usize>,
    },
    /// The module imports something the sandbox does not provide.
    #[error("rejected import{}: the module asks for {}; the sandbox provides {}{}",
        if rejected.len() == 1 { "" } else { "s" },
        rejected.join(", "),
        if provided.is_empty() { "nothing".to_string() } else { provided.join(", ") },
        if rejected.iter().any(|r| r.starts_with("wasi")) { " (WASI is refused unless the sandbox enables it with Config::wasi)" } else { "" })]
    RejectedImport {
        /// The imports that were refused, as `module.name`.
        rejected: Vec<String>,
        /// What the sandbox provides, as `module.name`.
        provided: Vec<String>,
    },
    /// A host function returned an error or panicked. The sandbox stays usable.
    #[error("host function `{name}` failed: {message}")]
    HostFunction {
        /// The host function's import name.
        name: String,
        /// Its error message, or the panic message.
        message: String,
    },
    /// The sandbox was destroyed.
    #[error("sandbox {id} has been destroyed")]
    InstanceDestroyed {
        /// The sandbox's id.
        id: String,
    },
    /// The operation is not allowed in the sandbox's current status.
    #[error("cannot {operation} sandbox {id}: it is {status}")]
    WrongStatus {
        /// The sandbox's id.
        id: String,
        /// Its status.
        status: Status,
        /// What was attempted.
        operation: &'static str,
    },
    /// No sandbox has this id.
    #[error("no sandbox with id {id}")]
    UnknownSandbox {
        /// The id asked for.
        id: String,
    },
    /// The module has no function export of this name.
    #[error("the module exports no function `{name}`")]
    UnknownExport {
        /// The name asked for.
        name: String,
    },
    /// Arguments do not match the export's parameters.
    #[error("`{name}` takes {expected}, got {got}")]
    ArgumentMismatch {
        /// The export.
        name: String,
        /// Its parameter types.
        expected: String,
        /// The argument types given.
        got: String,
    },
    /// JSON mode needs an exported `__alloc(len: i32) -> i32`.
    #[error("JSON mode needs the module to export `__alloc(len: i32) -> i32`")]
    MissingAlloc,
    /// A pointer and length from the guest fall outside its memory.
    #[error(
        "the guest gave a range outside its memory: {ptr:#x}+{len} (memory is {memory_size} bytes)"
    )]
    OutOfBounds {
        /// Start of the range.
        ptr: u64,
        /// Its length.
        len: u64,
        /// The memory's size in bytes.
        memory_size: u64,
    },
    /// The guest's JSON result is not UTF-8 or not JSON.
    #[error("the guest returned invalid JSON: {reason}")]
    InvalidJson {
        /// What is wrong with it.
        reason: String,
    },
    /// A WASI program called `proc_exit`. Not a failure: the program ended itself, with this
    /// code; [`Sandbox::run_command`](crate::Sandbox::run_command) returns it as its outcome.
    #[error("the program exited with code {code}")]
    Exit {
        /// The exit code.
        code: i32,
    },
    /// A WASI program wrote more to stdout or stderr than the buffer may hold
    /// ([`WasiConfig::max_output_bytes`](crate::wasi::WasiConfig::max_output_bytes)).
    #[error("output limit exceeded: {stream} would hold more than {limit} bytes")]
    OutputLimit {
        /// Which stream.
        stream: crate::wasi::Stream,
        /// The limit in bytes.
        limit: u64,
    },
    /// Snapshot capture, decoding or restore failed.
    #[error("snapshot error: {0}")]
    Snapshot(crate::snapshot::SnapshotError),
    /// The configuration is not usable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// wasmtime failed in a way that is not the module's fault (out of host memory, say).
    #[error("engine error: {message}")]
    Engine {
        /// wasmtime's message.
        message: String,
    },
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error {
            kind: Box::new(kind),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Whether the outcome could differ between two runs of the same call: only a timeout.
    pub fn is_deterministic(&self) -> bool {
        !matches!(*self.kind, ErrorKind::Timeout { .. })
    }

    pub(crate) fn engine(e: impl std::fmt::Display) -> Error {
        Error::new(ErrorKind::Engine {
            message: e.to_string(),
        })
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

impl From<ri_sandbox_instrument::Error> for Error {
    fn from(e: ri_sandbox_instrument::Error) -> Error {
        Error::new(ErrorKind::InvalidModule {
            reason: e.kind().to_string(),
            offset: e.offset(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn only_timeouts_are_not_deterministic() {
        let timeout = Error::new(ErrorKind::Timeout {
            elapsed_ms: 51,
            limit_ms: 50,
        });
        assert!(!timeout.is_deterministic());
        assert!(timeout.to_string().contains("not deterministic"));
        let gas = Error::new(ErrorKind::GasExhausted {
            used: 10,
            limit: 10,
        });
        assert!(gas.is_deterministic());
    }

    #[test]
    fn rejected_wasi_import_says_why() {
        let e = Error::new(ErrorKind::RejectedImport {
            rejected: vec!["wasi_snapshot_preview1.fd_write".into()],
            provided: vec![],
        });
        let text = e.to_string();
        assert!(text.contains("wasi_snapshot_preview1.fd_write"), "{text}");
        assert!(text.contains("provides nothing"), "{text}");
        assert!(text.contains("WASI is refused unless"), "{text}");
    }
}
