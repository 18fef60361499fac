//! A process forked after the instrumenter's helper threads started still instruments, on
//! its calling thread alone: a fork copies only the forking thread, so work handed to the
//! pool in the child would wait forever for threads that are not there.

#![cfg(unix)]

use std::num::NonZeroUsize;

use ri_sandbox_instrument::{instrument, Options};

#[test]
fn a_child_forked_after_the_helpers_started_instruments_without_them() {
    let path = format!(
        "{}/../fixtures/bench/prog_medium.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    let wasm = std::fs::read(path).expect("the bench programs are committed");
    let mut options = Options::default();
    options.threads = NonZeroUsize::new(2);
    // Large enough for helpers: this starts the pool in the parent.
    let expected = instrument(&wasm, &options).expect("instruments").module;

    // SAFETY: the child runs only the instrumenter (no lock another thread could hold: the
    // test harness's thread waits on a channel, the pool's are idle) and leaves with `_exit`,
    // never returning into the test harness.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        // SAFETY: plain system calls. A child that hangs is killed by the alarm.
        unsafe { libc::alarm(30) };
        let same = std::panic::catch_unwind(|| {
            instrument(&wasm, &options).is_ok_and(|instrumented| instrumented.module == expected)
        });
        let code = match same {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(_) => 2,
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child started above.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(waited, child, "waitpid failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child did not instrument the module (wait status {status:#x}: exit code 1 means \
         different bytes, 2 a panic, SIGALRM (14) a hang)"
    );
}
