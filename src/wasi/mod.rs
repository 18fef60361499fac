//! Deterministic WASI preview1: ordinary programs compiled for `wasm32-wasip1` run metered and
//! reproducibly, when the host opts in with [`Config::wasi`](crate::Config::wasi).
//!
//! ri-sandbox implements `wasi_snapshot_preview1` itself instead of linking `wasmtime-wasi`:
//! every call must be charged gas before it does its work (a base price and a price per byte
//! moved), its whole state must fit in a snapshot, and nothing may reach the host's clocks,
//! entropy, environment or files. A small implementation whose every answer is written here
//! does all three; `wasmtime-wasi` has no hook for the first and keeps its state opaque.
//!
//! ```
//! use ri_sandbox::{Config, Runtime, Sandbox, WasiConfig};
//!
//! let wasi = WasiConfig::default().with_args(["hello", "world"]);
//! let config = Config::default().with_max_gas(100_000_000).with_wasi(wasi);
//! let mut sandbox = Sandbox::new(&Runtime::new()?, config)?;
//! sandbox.load(&std::fs::read("fixtures/wasi/hello.wasm").unwrap())?; // C, wasi-libc
//! let outcome = sandbox.run_command()?;
//! assert_eq!(outcome.exit_code, 0);
//! assert_eq!(sandbox.take_stdout(), b"hello, world\nargv[0]=hello\nargv[1]=world\n");
//! assert_eq!(sandbox.take_stderr(), b"to stderr\n");
//! # Ok::<(), ri_sandbox::Error>(())
//! ```
//!
//! # What the guest sees
//! - **Arguments and environment**: exactly [`WasiConfig::args`] and [`WasiConfig::env`].
//! - **stdin**: the bytes in [`WasiConfig::stdin`], then end of file.
//! - **stdout and stderr**: captured into buffers the host reads ([`Sandbox::stdout`],
//!   [`Sandbox::stderr`]) and may drain ([`Sandbox::take_stdout`]). A write that would make a
//!   buffer hold more than [`WasiConfig::max_output_bytes`] ends the call with
//!   [`ErrorKind::OutputLimit`](crate::ErrorKind::OutputLimit).
//! - **Clocks**: the realtime clock always reads the configured event timestamp, taken as
//!   milliseconds since the Unix epoch ([`Config::event_timestamp`](crate::Config) x 10^6 ns;
//!   negative reads as 0). The monotonic and CPU-time clocks read, in nanoseconds, the gas the
//!   sandbox has used in all its calls so far plus the time it has slept: they advance
//!   deterministically, and two reads in a row differ (a clock read costs gas). Resolution: 1 ns.
//! - **Randomness**: `random_get` draws from the sandbox's seeded ChaCha20 stream, the one
//!   `env.__get_random` uses; its position is snapshot state.
//! - **Sleeping** (`poll_oneoff` on a clock): returns at once and moves the monotonic clock on
//!   by the time asked for. Subscriptions on stdin are ready (with the bytes left), on
//!   stdout/stderr ready to write.
//! - **Files**: none, unless the host grants directories ([`WasiConfig::with_dir`]): they
//!   are preopened as descriptors 3, 4, ..., read-only or writable, and paths cannot leave
//!   them. Listings are sorted by name; time stamps, devices and inodes read 0; the files'
//!   contents are the host's responsibility. Without a grant every `path_*` call fails
//!   (`EBADF`). Symbolic and hard links cannot be made or read (`ENOTSUP`), time stamps not
//!   set. Sockets: none. `fd_close` on a standard stream closes it.
//! - **`proc_exit(n)`**: ends the call with [`ErrorKind::Exit`](crate::ErrorKind::Exit);
//!   [`Sandbox::run_command`] reports it as a normal outcome with its code.
//! - **`proc_raise`**: `ENOSYS`. `sched_yield`: success.
//!
//! Pointers outside the guest's memory give `EFAULT`; unknown descriptors `EBADF`.
//!
//! # Gas
//! Every WASI call costs [`WasiConfig::call_gas`] plus [`WasiConfig::byte_gas`] per byte it
//! moves between the host and the guest (data written or read, iovec arrays, argument and
//! environment strings, random bytes, poll records; for `fd_readdir`, the whole directory's
//! listing, which every call reads), charged before the work is done (`fd_readdir`: once the
//! directory is read, before anything is copied). A call the budget cannot pay ends with [`ErrorKind::GasExhausted`](crate::ErrorKind::GasExhausted)
//! having done nothing.
//!
//! # Snapshots
//! Captured output, the stdin position, closed streams and the slept time are part of a
//! snapshot. The configuration (arguments, environment, stdin's bytes, granted directories) is
//! not: it belongs to the sandbox, like its host functions; neither are the files in granted
//! directories. A snapshot is refused while the program holds a file it opened open; a
//! restore closes whatever the program had opened.
//!
//! [`Sandbox::stdout`]: crate::Sandbox::stdout
//! [`Sandbox::stderr`]: crate::Sandbox::stderr
//! [`Sandbox::take_stdout`]: crate::Sandbox::take_stdout
//! [`Sandbox::run_command`]: crate::Sandbox::run_command

mod calls;
mod command;
mod errno;
mod files;
mod guest;

pub use command::CommandOutcome;
pub use files::GrantedDir;

use crate::sandbox::StoreState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The import module WASI preview1 functions come from.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// The export a WASI reactor initializes itself with; loading runs it (metered) after the
/// start function.
pub const INITIALIZE_EXPORT: &str = "_initialize";

/// Default [`WasiConfig::max_output_bytes`]: 1 MiB per stream.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1 << 20;
/// Default [`WasiConfig::call_gas`].
pub const DEFAULT_CALL_GAS: u64 = 100;
/// Default [`WasiConfig::byte_gas`].
pub const DEFAULT_BYTE_GAS: u64 = 1;

/// What a WASI program is given. Build it with `WasiConfig::default()` and the `with_*`
/// methods; set it on [`Config::wasi`](crate::Config::wasi).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WasiConfig {
    /// The program's arguments, `argv[0]` (conventionally its name) included. Default: none.
    pub args: Vec<String>,
    /// Its environment variables, in this order. Default: none.
    pub env: Vec<(String, String)>,
    /// What it reads from stdin. Default: nothing (end of file at once).
    pub stdin: Arc<[u8]>,
    /// The most bytes each of stdout and stderr may hold; a write past it ends the call with
    /// [`ErrorKind::OutputLimit`](crate::ErrorKind::OutputLimit). Default: 1 MiB.
    pub max_output_bytes: u64,
    /// Gas every WASI call costs. Default: 100.
    pub call_gas: u64,
    /// Gas per byte a WASI call moves between the host and the guest. Default: 1.
    pub byte_gas: u64,
    /// Directories the program may use, preopened as descriptors 3, 4, ... in this order.
    /// Default: none (no file system at all). See [`WasiConfig::with_dir`].
    pub dirs: Vec<GrantedDir>,
}

impl Default for WasiConfig {
    fn default() -> WasiConfig {
        WasiConfig {
            args: Vec::new(),
            env: Vec::new(),
            stdin: Arc::from(&[][..]),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            call_gas: DEFAULT_CALL_GAS,
            byte_gas: DEFAULT_BYTE_GAS,
            dirs: Vec::new(),
        }
    }
}

impl WasiConfig {
    /// Sets [`args`](WasiConfig::args).
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> WasiConfig {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> WasiConfig {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets [`stdin`](WasiConfig::stdin).
    pub fn with_stdin(mut self, bytes: impl Into<Vec<u8>>) -> WasiConfig {
        self.stdin = Arc::from(bytes.into());
        self
    }

    /// Sets [`max_output_bytes`](WasiConfig::max_output_bytes).
    pub fn with_max_output_bytes(mut self, bytes: u64) -> WasiConfig {
        self.max_output_bytes = bytes;
        self
    }

    /// Grants the program the host directory `host`, which it sees as the preopened directory
    /// `guest`; `writable` lets it create, write, rename and remove there. Paths cannot leave
    /// the directory (`..`, absolute paths and symlinks out are refused).
    ///
    /// # Determinism
    /// Granting a directory makes the program's behaviour depend on the files in it: their
    /// contents, sizes and existence are the host's responsibility. Everything else the
    /// program could observe is fixed: listings are sorted by name, every time stamp, device
    /// and inode reads 0, and descriptors are numbered lowest-free first. A snapshot cannot be
    /// taken while the program holds a file or directory it opened itself open
    /// ([`SnapshotError::Unsaveable`](crate::SnapshotError::Unsaveable)): that state lives in
    /// the host's kernel, and the files are not part of a snapshot.
    pub fn with_dir(
        mut self,
        host: impl Into<std::path::PathBuf>,
        guest: impl Into<String>,
        writable: bool,
    ) -> WasiConfig {
        self.dirs.push(GrantedDir {
            host: host.into(),
            guest: guest.into(),
            writable,
        });
        self
    }

    /// Checks that every granted directory can be opened.
    pub(crate) fn check_dirs(&self) -> Result<(), String> {
        for dir in &self.dirs {
            files::open_granted(dir).map_err(|e| {
                format!(
                    "cannot open the granted directory {}: {e}",
                    dir.host.display()
                )
            })?;
        }
        Ok(())
    }

    /// Sets [`call_gas`](WasiConfig::call_gas) and [`byte_gas`](WasiConfig::byte_gas).
    pub fn with_prices(mut self, call_gas: u64, byte_gas: u64) -> WasiConfig {
        self.call_gas = call_gas;
        self.byte_gas = byte_gas;
        self
    }
}

/// Which standard stream an [`ErrorKind::OutputLimit`](crate::ErrorKind::OutputLimit) is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// A WASI program's state in its store.
pub(crate) struct WasiState {
    pub config: Arc<WasiConfig>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// How far the program has read stdin.
    pub stdin_pos: u64,
    /// Bit `fd` is set when standard stream `fd` was closed.
    pub closed: u8,
    /// Nanoseconds the program has slept (`poll_oneoff` on a clock).
    pub slept_ns: u64,
    /// The instance's gas counter, set once it is instantiated.
    pub gas: Option<wasmtime::Global>,
    /// Gas the sandbox used in earlier calls, and this call's budget: the monotonic clock.
    pub gas_before_call: u64,
    pub budget: i64,
    /// Descriptors 3 and up: granted directories and what the program opened in them.
    pub files: files::FdTable,
}

impl WasiState {
    pub fn new(config: Arc<WasiConfig>) -> WasiState {
        WasiState {
            files: files::FdTable::new(&config),
            config,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdin_pos: 0,
            closed: 0,
            slept_ns: 0,
            gas: None,
            gas_before_call: 0,
            budget: 0,
        }
    }

    /// The state to keep in a snapshot; an error names a descriptor the program opened itself
    /// and still holds, which cannot be saved.
    pub fn image(&self) -> Result<WasiImage, String> {
        if let Some(fd) = self.files.opened_by_program() {
            return Err(format!(
                "descriptor {fd}, a file or directory the WASI program opened and has not closed"
            ));
        }
        Ok(WasiImage {
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            stdin_pos: self.stdin_pos,
            closed: self.closed,
            slept_ns: self.slept_ns,
        })
    }

    /// Puts a snapshot's state back; every descriptor the program opened is closed, the
    /// granted directories are open again.
    pub fn restore(&mut self, image: &WasiImage) {
        self.stdout.clone_from(&image.stdout);
        self.stderr.clone_from(&image.stderr);
        self.stdin_pos = image.stdin_pos;
        self.closed = image.closed;
        self.slept_ns = image.slept_ns;
        self.files.reset();
    }
}

/// A WASI program's state in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WasiImage {
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    pub stdin_pos: u64,
    pub closed: u8,
    pub slept_ns: u64,
}

/// `proc_exit`'s trap: the sandbox turns it into `ErrorKind::Exit`.
#[derive(Debug)]
pub(crate) struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the program exited with code {}", self.0)
    }
}

impl std::error::Error for ProcExit {}

/// The trap of a write past the output limit.
#[derive(Debug)]
pub(crate) struct OutputLimitHit {
    pub stream: Stream,
    pub limit: u64,
}

impl std::fmt::Display for OutputLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} would hold more than {} bytes",
            self.stream, self.limit
        )
    }
}

impl std::error::Error for OutputLimitHit {}

/// Every WASI preview1 function with its type: parameters and results, `i` for `i32` and `I`
/// for `i64`. The import check accepts exactly these; `calls::define` links exactly these (a
/// test instantiates a module importing all of them).
pub(crate) const SIGNATURES: &[(&str, &str, &str)] = &[
    ("args_get", "ii", "i"),
    ("args_sizes_get", "ii", "i"),
    ("environ_get", "ii", "i"),
    ("environ_sizes_get", "ii", "i"),
    ("clock_res_get", "ii", "i"),
    ("clock_time_get", "iIi", "i"),
    ("fd_advise", "iIIi", "i"),
    ("fd_allocate", "iII", "i"),
    ("fd_close", "i", "i"),
    ("fd_datasync", "i", "i"),
    ("fd_fdstat_get", "ii", "i"),
    ("fd_fdstat_set_flags", "ii", "i"),
    ("fd_fdstat_set_rights", "iII", "i"),
    ("fd_filestat_get", "ii", "i"),
    ("fd_filestat_set_size", "iI", "i"),
    ("fd_filestat_set_times", "iIIi", "i"),
    ("fd_pread", "iiiIi", "i"),
    ("fd_prestat_get", "ii", "i"),
    ("fd_prestat_dir_name", "iii", "i"),
    ("fd_pwrite", "iiiIi", "i"),
    ("fd_read", "iiii", "i"),
    ("fd_readdir", "iiiIi", "i"),
    ("fd_renumber", "ii", "i"),
    ("fd_seek", "iIii", "i"),
    ("fd_sync", "i", "i"),
    ("fd_tell", "ii", "i"),
    ("fd_write", "iiii", "i"),
    ("path_create_directory", "iii", "i"),
    ("path_filestat_get", "iiiii", "i"),
    ("path_filestat_set_times", "iiiiIIi", "i"),
    ("path_link", "iiiiiii", "i"),
    ("path_open", "iiiiiIIii", "i"),
    ("path_readlink", "iiiiii", "i"),
    ("path_remove_directory", "iii", "i"),
    ("path_rename", "iiiiii", "i"),
    ("path_symlink", "iiiii", "i"),
    ("path_unlink_file", "iii", "i"),
    ("poll_oneoff", "iiii", "i"),
    ("proc_exit", "i", ""),
    ("proc_raise", "i", "i"),
    ("random_get", "ii", "i"),
    ("sched_yield", "", "i"),
    ("sock_accept", "iii", "i"),
    ("sock_recv", "iiiiii", "i"),
    ("sock_send", "iiiii", "i"),
    ("sock_shutdown", "ii", "i"),
];

/// Every WASI preview1 function ri-sandbox links, with its type: `(name, params, results)`,
/// `i` for `i32` and `I` for `i64` (`proc_exit` has no result).
pub fn signatures() -> &'static [(&'static str, &'static str, &'static str)] {
    SIGNATURES
}

/// The type of WASI function `name` (`() -> ()` for a name that is not one).
pub(crate) fn func_type(engine: &wasmtime::Engine, name: &str) -> wasmtime::FuncType {
    let types = |letters: &'static str| {
        letters.chars().map(|c| match c {
            'I' => wasmtime::ValType::I64,
            _ => wasmtime::ValType::I32,
        })
    };
    let (params, results) = SIGNATURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, r)| (*p, *r))
        .unwrap_or(("", ""));
    wasmtime::FuncType::new(engine, types(params), types(results))
}

/// Whether `ty` is the type of WASI function `name`.
pub(crate) fn is_wasi_function(name: &str, ty: &wasmtime::FuncType) -> bool {
    let letters = |types: &mut dyn Iterator<Item = wasmtime::ValType>| -> Option<String> {
        types
            .map(|t| match t {
                wasmtime::ValType::I32 => Some('i'),
                wasmtime::ValType::I64 => Some('I'),
                _ => None,
            })
            .collect()
    };
    SIGNATURES.iter().any(|(n, params, results)| {
        *n == name
            && letters(&mut ty.params()).as_deref() == Some(*params)
            && letters(&mut ty.results()).as_deref() == Some(*results)
    })
}

/// Links every WASI function into `linker`. They act only in stores whose state has WASI;
/// the import check keeps them from modules of sandboxes without it.
pub(crate) fn define(linker: &mut wasmtime::Linker<StoreState>) -> wasmtime::Result<()> {
    calls::define(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_unique_and_typed() {
        let mut names: Vec<_> = SIGNATURES.iter().map(|s| s.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SIGNATURES.len());
        assert_eq!(SIGNATURES.len(), 46);
        let engine = wasmtime::Engine::default();
        let fd_write = wasmtime::FuncType::new(
            &engine,
            std::iter::repeat_n(wasmtime::ValType::I32, 4),
            [wasmtime::ValType::I32],
        );
        assert!(is_wasi_function("fd_write", &fd_write));
        assert!(!is_wasi_function("fd_read_x", &fd_write));
        assert!(!is_wasi_function("fd_close", &fd_write));
    }

    #[test]
    fn traps_and_streams_describe_themselves() {
        let error = crate::Error::new(crate::ErrorKind::OutputLimit {
            stream: Stream::Stderr,
            limit: 5,
        });
        assert_eq!(
            error.to_string(),
            "output limit exceeded: stderr would hold more than 5 bytes"
        );
        let hit = OutputLimitHit {
            stream: Stream::Stdout,
            limit: 7,
        };
        assert_eq!(hit.to_string(), "stdout would hold more than 7 bytes");
        assert_eq!(ProcExit(3).to_string(), "the program exited with code 3");
    }

    #[test]
    fn images_round_trip() {
        let mut state = WasiState::new(Arc::new(WasiConfig::default()));
        state.stdout.extend_from_slice(b"out");
        state.stdin_pos = 7;
        state.closed = 0b100;
        state.slept_ns = 42;
        let image = state.image().unwrap();
        let mut other = WasiState::new(Arc::new(WasiConfig::default()));
        other.restore(&image);
        assert_eq!(other.image().unwrap(), image);
    }
}
