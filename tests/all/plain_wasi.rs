//! The reference: a WASI program on plain wasmtime with `wasmtime-wasi` (what `wasmtime run`
//! uses), output captured in memory. Shared by `tests/all/wasi.rs` and `benches/wasi.rs`.

use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// What a program printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainRun {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// An engine and a linker with WASI preview1, made once per caller.
pub struct PlainWasi {
    pub engine: wasmtime::Engine,
    linker: wasmtime::Linker<WasiP1Ctx>,
}

impl PlainWasi {
    pub fn new() -> PlainWasi {
        let engine = wasmtime::Engine::default();
        let mut linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).expect("link WASI");
        PlainWasi { engine, linker }
    }

    /// Runs `module`'s `_start` with `args` (`argv[0]` included) and `stdin`.
    pub fn run(&self, module: &wasmtime::Module, args: &[&str], stdin: &[u8]) -> PlainRun {
        let stdout = MemoryOutputPipe::new(64 << 20);
        let stderr = MemoryOutputPipe::new(64 << 20);
        let ctx = wasmtime_wasi::WasiCtxBuilder::new()
            .args(args)
            .stdin(MemoryInputPipe::new(stdin.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let mut store = wasmtime::Store::new(&self.engine, ctx);
        let instance = self
            .linker
            .instantiate(&mut store, module)
            .expect("instantiate");
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .expect("_start");
        let exit_code = match start.call(&mut store, ()) {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None => panic!("plain wasmtime: {e:?}"),
            },
        };
        drop(store);
        PlainRun {
            stdout: stdout.contents().to_vec(),
            stderr: stderr.contents().to_vec(),
            exit_code,
        }
    }
}
