//! The host's side of a WASI program: running it as a command and reading what it wrote.

use crate::error::{Error, ErrorKind};
use crate::metrics::CallMetrics;
use crate::sandbox::{Sandbox, Status};

/// How a WASI command ended: [`Sandbox::run_command`]'s result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// The exit code: `proc_exit`'s argument, or 0 when `_start` returned.
    pub exit_code: i32,
    /// What the run used.
    pub metrics: CallMetrics,
}

impl Sandbox {
    /// Runs a WASI command: calls its `_start` export under the call's limits. A `proc_exit(n)`
    /// is the normal end of a program, not a failure: the outcome carries `n` (0 when
    /// `_start` returns). Read the output with [`Sandbox::stdout`] and [`Sandbox::stderr`].
    ///
    /// # Errors
    /// [`ErrorKind::UnknownExport`] when the module exports no `_start`; every outcome of a
    /// call ([`ErrorKind::GasExhausted`], [`ErrorKind::OutputLimit`], a trap, ...) but
    /// [`ErrorKind::Exit`].
    pub fn run_command(&mut self) -> Result<CommandOutcome, Error> {
        match self.call("_start", &[]) {
            Ok(run) => Ok(CommandOutcome {
                exit_code: 0,
                metrics: run.metrics,
            }),
            Err(e) => match e.kind() {
                ErrorKind::Exit { code } => Ok(CommandOutcome {
                    exit_code: *code,
                    metrics: self.metrics.last_call.unwrap_or_default(),
                }),
                _ => Err(e),
            },
        }
    }

    /// What the WASI program has written to stdout and not been taken yet (empty without
    /// WASI or once destroyed; a suspended sandbox's comes from its snapshot).
    pub fn stdout(&self) -> &[u8] {
        self.wasi_image()
            .map(|w| &w.stdout[..])
            .or_else(|| self.wasi_state().map(|w| &w.stdout[..]))
            .unwrap_or_default()
    }

    /// What the WASI program has written to stderr and not been taken yet.
    pub fn stderr(&self) -> &[u8] {
        self.wasi_image()
            .map(|w| &w.stderr[..])
            .or_else(|| self.wasi_state().map(|w| &w.stderr[..]))
            .unwrap_or_default()
    }

    /// Takes what the program has written to stdout, leaving the buffer empty (a suspended
    /// sandbox is resumed first; nothing is taken if that fails): a host that
    /// drains the buffer between calls can let a program write more than
    /// [`WasiConfig::max_output_bytes`](crate::WasiConfig::max_output_bytes) in all.
    pub fn take_stdout(&mut self) -> Vec<u8> {
        self.wasi_state_mut()
            .map(|w| std::mem::take(&mut w.stdout))
            .unwrap_or_default()
    }

    /// Takes what the program has written to stderr, leaving the buffer empty.
    pub fn take_stderr(&mut self) -> Vec<u8> {
        self.wasi_state_mut()
            .map(|w| std::mem::take(&mut w.stderr))
            .unwrap_or_default()
    }

    /// A suspended sandbox's WASI state, in its snapshot.
    fn wasi_image(&self) -> Option<&super::WasiImage> {
        self.suspended.as_ref()?.snapshot.body().wasi.as_ref()
    }

    fn wasi_state(&self) -> Option<&super::WasiState> {
        self.store.as_ref()?.data().wasi.as_deref()
    }

    fn wasi_state_mut(&mut self) -> Option<&mut super::WasiState> {
        if self.status == Status::Suspended {
            self.resume().ok()?;
        }
        self.store.as_mut()?.data_mut().wasi.as_deref_mut()
    }
}
