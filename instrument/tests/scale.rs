//! Instrumentation stays near-linear on the shapes that made other instrumenters quadratic:
//! many functions, deep nesting, huge bodies. These tests build such modules and instrument
//! them; the outputs must validate. How long it takes is measured in `benches/instrument.rs`
//! (group `scale`), not asserted here; a quadratic pass would make these tests take minutes.

use ri_sandbox_instrument::{instrument, Options};
use wasm_encoder::{
    BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction,
    Module, TypeSection, ValType,
};

/// A module of `functions` bodies, each produced by `body`.
fn module(functions: u32, body: impl Fn(u32) -> Function) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..functions {
        funcs.function(0);
        code.function(&body(i));
    }
    let mut exports = ExportSection::new();
    exports.export("f0", ExportKind::Func, 0);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&exports)
        .section(&code);
    module.finish()
}

fn validate(wasm: &[u8]) {
    wasmparser::Validator::new_with_features(ri_sandbox_instrument::supported_features())
        .validate_all(wasm)
        .expect("output validates");
}

pub fn many_functions(n: u32) -> Vec<u8> {
    module(n, |i| {
        let mut f = Function::new([]);
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::I32Const(i as i32));
        f.instruction(&Instruction::I32Add);
        f.instruction(&Instruction::End);
        f
    })
}

pub fn deep_nesting(depth: u32) -> Vec<u8> {
    module(1, |_| {
        let mut f = Function::new([]);
        for _ in 0..depth {
            f.instruction(&Instruction::Block(BlockType::Empty));
            f.instruction(&Instruction::LocalGet(0));
            f.instruction(&Instruction::BrIf(0));
        }
        for _ in 0..depth {
            f.instruction(&Instruction::End);
        }
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::End);
        f
    })
}

pub fn huge_body(instructions: u32) -> Vec<u8> {
    module(1, |_| {
        let mut f = Function::new([]);
        f.instruction(&Instruction::LocalGet(0));
        for i in 0..instructions / 2 {
            f.instruction(&Instruction::I32Const(i as i32));
            f.instruction(&Instruction::I32Xor);
        }
        f.instruction(&Instruction::End);
        f
    })
}

#[test]
fn fifty_thousand_small_functions() {
    let wasm = many_functions(50_000);
    let out = instrument(&wasm, &Options::default()).unwrap();
    assert_eq!(out.stats.functions, 50_000);
    validate(&out.module);
}

#[test]
fn ten_thousand_nested_blocks() {
    let wasm = deep_nesting(10_000);
    let out = instrument(&wasm, &Options::default()).unwrap();
    // One block before the first br_if, one after each br_if, one after each targeted end.
    assert!(out.stats.blocks_metered >= 10_000, "{:?}", out.stats);
    validate(&out.module);
}

#[test]
fn a_million_instructions_in_one_function() {
    let wasm = huge_body(1_000_000);
    let out = instrument(&wasm, &Options::default()).unwrap();
    // Straight-line code: a single metered block, however long.
    assert_eq!(out.stats.blocks_metered, 1);
    // Output grows by a bounded amount, not in proportion to the body.
    assert!(
        out.module.len() < wasm.len() + 200,
        "{} -> {}",
        wasm.len(),
        out.module.len()
    );
    validate(&out.module);
}

/// `functions` bodies that each declare `locals` f64 locals in a single declaration (five
/// bytes) and compute with one of them.
pub fn many_locals(functions: u32, locals: u32) -> Vec<u8> {
    module(functions, |_| {
        let mut f = Function::new([(locals, ValType::F64)]);
        f.instruction(&Instruction::LocalGet(1));
        f.instruction(&Instruction::LocalGet(1));
        f.instruction(&Instruction::F64Add);
        f.instruction(&Instruction::LocalSet(2));
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::End);
        f
    })
}

#[test]
fn ten_thousand_functions_of_fifty_thousand_locals() {
    // Half a billion locals in 150 KB: the work must follow the declarations, not the
    // locals they declare (the stack frame's size, the NaN analysis's local table).
    let wasm = many_locals(10_000, 49_990);
    let out = instrument(&wasm, &Options::default()).unwrap();
    assert_eq!(out.stats.functions, 10_000);
    validate(&out.module);
}

#[test]
fn a_module_over_the_limit_on_locals_is_refused() {
    // Ten bodies of one parameter and 1,000 locals: 10,010 locals.
    let wasm = many_locals(10, 1_000);
    let mut options = Options::default();
    options.max_locals = Some(10_010);
    validate(&instrument(&wasm, &options).unwrap().module);
    options.max_locals = Some(10_009);
    let err = instrument(&wasm, &options).unwrap_err();
    assert!(
        matches!(err.kind(), ri_sandbox_instrument::ErrorKind::Limit { message }
            if message.contains("10010 locals")),
        "{err}"
    );
}
