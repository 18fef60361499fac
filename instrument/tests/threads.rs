//! Instrumenting on several threads changes nothing but the time it takes: the output, the
//! statistics and, for a broken module, the error are the same for every thread count.
//!
//! The modules here are large enough (over 16 KiB of code per thread) that the workers really
//! run. The helper threads are one pool for the whole process, which callers on several
//! threads at once contend for (one has them, the others work alone); that changes nothing
//! either. Nor do the planning buffers a thread
//! keeps from one call to the next.

use std::num::NonZeroUsize;

use ri_sandbox_instrument::{instrument, Options};
use wasm_encoder::{
    Encode, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module, RawSection,
    TypeSection, ValType,
};

const THREADS: [usize; 4] = [1, 2, 3, 8];

/// What instrumenting on `threads` threads gives: the module and its statistics, or the
/// error's message.
type Outcome = Result<(Vec<u8>, String), String>;

fn outcome(wasm: &[u8], threads: usize) -> Outcome {
    let mut options = Options::default();
    options.threads = NonZeroUsize::new(threads);
    instrument(wasm, &options)
        .map(|i| (i.module, format!("{:?}", i.stats)))
        .map_err(|e| e.to_string())
}

/// An outcome in a line (not the module's bytes).
fn summary(outcome: &Outcome) -> String {
    match outcome {
        Ok((module, stats)) => format!("{} bytes, {stats}", module.len()),
        Err(message) => message.clone(),
    }
}

/// Every thread count gives what one thread gives; returns that.
fn same_for_every_thread_count(wasm: &[u8]) -> Outcome {
    let one = outcome(wasm, 1);
    for threads in THREADS {
        let many = outcome(wasm, threads);
        assert!(
            many == one,
            "{threads} threads: {} where one thread gives {}",
            summary(&many),
            summary(&one)
        );
    }
    one
}

#[test]
fn real_programs_give_the_same_bytes_on_any_number_of_threads() {
    for program in ["prog_medium.wasm", "prog_large.wasm"] {
        let path = format!("{}/../fixtures/bench/{program}", env!("CARGO_MANIFEST_DIR"));
        let wasm = std::fs::read(&path).expect("the bench programs are committed");
        let (module, stats) = same_for_every_thread_count(&wasm).expect("instruments");
        assert!(module.len() > wasm.len(), "{program}: {stats}");
    }
}

#[test]
fn buffers_a_thread_keeps_carry_nothing_from_one_call_to_the_next() {
    let read = |program: &str| {
        std::fs::read(format!(
            "{}/../fixtures/bench/{program}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the bench programs are committed")
    };
    let modules = [
        read("prog_small.wasm"),
        read("prog_medium.wasm"),
        module(2000, &[1500, 700]),
        module(300, &[]),
    ];
    // Each module on a thread of its own, which has kept nothing yet.
    let alone: Vec<Outcome> = modules
        .iter()
        .map(|wasm| std::thread::scope(|scope| scope.spawn(|| outcome(wasm, 1)).join().unwrap()))
        .collect();
    assert!(alone[2].is_err(), "the broken module is refused");
    // All of them, twice and in both orders, on one thread.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let order = [0, 1, 2, 3, 3, 2, 1, 0, 1, 3, 0, 2];
            for index in order {
                let again = outcome(&modules[index], 1);
                assert!(
                    again == alone[index],
                    "module {index} after others: {} where alone it gives {}",
                    summary(&again),
                    summary(&alone[index])
                );
            }
        });
    });
}

#[test]
fn instrumenting_from_a_thread_local_destructor_works() {
    /// Instruments its module when dropped, and says whether that worked.
    struct Late(Vec<u8>, std::sync::mpsc::Sender<bool>);
    impl Drop for Late {
        fn drop(&mut self) {
            let _ = self.1.send(outcome(&self.0, 1).is_ok());
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    let (send, worked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Registered first, so destroyed after the thread's kept buffers (destructors run in
        // the reverse order): the late call finds them gone.
        LATE.with(|late| *late.borrow_mut() = Some(Late(module(300, &[]), send)));
        assert!(outcome(&module(300, &[]), 1).is_ok());
    })
    .join()
    .expect("the thread ends normally");
    assert_eq!(worked.recv().ok(), Some(true));
}

#[test]
fn callers_on_several_threads_at_once_share_the_helpers_and_get_the_same_bytes() {
    let medium = std::fs::read(format!(
        "{}/../fixtures/bench/prog_medium.wasm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the bench programs are committed");
    let generated = module(2000, &[]);
    let broken = module(2000, &[1500, 700]);
    let modules = [&medium, &generated, &broken];
    let expected = modules.map(|wasm| outcome(wasm, 1));
    assert!(expected[2].is_err(), "the broken module is refused");
    std::thread::scope(|scope| {
        let callers: Vec<_> = (0..6)
            .map(|caller| {
                scope.spawn(move || {
                    let threads = THREADS[caller % THREADS.len()];
                    (0..3)
                        .flat_map(|_| modules.map(|wasm| outcome(wasm, threads)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for caller in callers {
            let outcomes = caller.join().expect("no caller panics");
            for (got, expected) in outcomes.iter().zip(expected.iter().cycle()) {
                assert!(
                    got == expected,
                    "{} where one thread alone gives {}",
                    summary(got),
                    summary(expected)
                );
            }
        }
    });
}

/// `functions` bodies of about 300 bytes each (`big` ones about 30 KB, which workers take
/// first); `broken` ones pop from an empty stack. With `overrun`, the last body's size field
/// claims more bytes than the code section holds.
fn module_with(functions: u32, broken: &[u32], big: &[u32], overrun: bool) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = Vec::new();
    functions.encode(&mut code);
    for i in 0..functions {
        funcs.function(0);
        let mut f = Function::new([(1, ValType::F64)]);
        if broken.contains(&i) {
            f.instruction(&Instruction::I32Add);
        }
        f.instruction(&Instruction::LocalGet(0));
        let pairs = if big.contains(&i) { 5000 } else { 50 };
        for k in 0..pairs {
            f.instruction(&Instruction::I32Const(k * 1000 + i as i32));
            f.instruction(&Instruction::I32Xor);
        }
        f.instruction(&Instruction::End);
        let body = f.into_raw_body();
        let claimed = if overrun && i == functions - 1 {
            body.len() + 10
        } else {
            body.len()
        };
        claimed.encode(&mut code);
        code.extend_from_slice(&body);
    }
    let mut exports = ExportSection::new();
    exports.export("f0", ExportKind::Func, 0);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&exports)
        .section(&RawSection {
            id: 10,
            data: &code,
        });
    module.finish()
}

fn module(functions: u32, broken: &[u32]) -> Vec<u8> {
    module_with(functions, broken, &[], false)
}

#[test]
fn generated_modules_give_the_same_bytes_on_any_number_of_threads() {
    let wasm = module(4000, &[]);
    assert!(wasm.len() > 1_000_000);
    same_for_every_thread_count(&wasm).expect("instruments");
}

#[test]
fn the_error_is_the_first_broken_function_s_on_any_number_of_threads() {
    // Broken near the end and near the start: the error must name the one near the start,
    // however the functions are shared out.
    let wasm = module(4000, &[3900, 1200, 3999]);
    let err = same_for_every_thread_count(&wasm).expect_err("invalid");
    let alone = same_for_every_thread_count(&module(4000, &[1200])).expect_err("invalid");
    assert_eq!(err.to_string(), alone.to_string());
}

#[test]
fn a_big_body_taken_first_does_not_hide_an_earlier_error() {
    // Function 3500 is large, so a worker takes it before the others, and it is broken; the
    // error must still be function 1200's.
    let wasm = module_with(4000, &[3500, 1200], &[3500], false);
    let err = same_for_every_thread_count(&wasm).expect_err("invalid");
    let alone = same_for_every_thread_count(&module(4000, &[1200])).expect_err("invalid");
    assert_eq!(err.to_string(), alone.to_string());
    // And without the earlier error, the big body's own.
    let big_only = module_with(4000, &[3500], &[3500], false);
    let err = same_for_every_thread_count(&big_only).expect_err("invalid");
    assert_ne!(err.to_string(), alone.to_string());
}

#[test]
fn a_malformed_body_is_reported_before_any_invalid_one() {
    // Function 1200 fails validation; the last body overruns the section. The module's
    // framing is read before any body is validated, so the overrun is what every thread count
    // reports.
    let both =
        same_for_every_thread_count(&module_with(4000, &[1200], &[], true)).expect_err("invalid");
    assert!(
        both.to_string().ends_with("unexpected end-of-file"),
        "{both}"
    );
    let invalid = same_for_every_thread_count(&module(4000, &[1200])).expect_err("invalid");
    assert!(invalid.to_string().contains("type mismatch"), "{invalid}");
}
