//! The output's size is bounded by a fixed multiple of the input's (README, "Size and time
//! bounds"): these modules are built to make the instrumenter insert as much as it can per
//! input byte (a charge after every two-byte branch, a canonicalization per float operation,
//! stack accounting in one-byte functions, an entry point per exported function, a state
//! export per global, the largest prices, eager canonicalization, helper locals whose indices
//! take three bytes), and each must stay within [`max_output_len`].

use ri_sandbox_instrument::{instrument, max_output_len, Options};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction, MemArg, MemorySection,
    MemoryType, Module, TypeSection, ValType,
};

/// Every option on, entry points included (the runtime's configuration).
fn options() -> Options {
    let mut options = Options::default();
    options.entry_points = true;
    options
}

fn check(name: &str, wasm: &[u8]) -> usize {
    check_with(name, wasm, &options())
}

fn check_with(name: &str, wasm: &[u8], options: &Options) -> usize {
    wasmparser::Validator::new_with_features(ri_sandbox_instrument::supported_features())
        .validate_all(wasm)
        .unwrap_or_else(|e| panic!("{name}: the test module is invalid: {e}"));
    let out = instrument(wasm, options).unwrap_or_else(|e| panic!("{name}: {e}"));
    wasmparser::Validator::new_with_features(ri_sandbox_instrument::supported_features())
        .validate_all(&out.module)
        .unwrap_or_else(|e| panic!("{name}: the output is invalid: {e}"));
    println!(
        "{name}: {} -> {} bytes ({:.2}x)",
        wasm.len(),
        out.module.len(),
        out.module.len() as f64 / wasm.len() as f64
    );
    assert!(
        out.module.len() <= max_output_len(wasm.len()),
        "{name}: {} -> {} bytes, over the bound",
        wasm.len(),
        out.module.len()
    );
    out.module.len()
}

/// [`BODIES`] functions whose body is `before`, then `repeat` [`REPEAT`] times, then `after`.
struct Shape {
    name: &'static str,
    bodies: u32,
    times: u32,
    /// How many f64 locals each body declares (from 16,384 on, the helper locals metering
    /// appends have indices of three bytes).
    locals: u32,
    before: Vec<Instruction<'static>>,
    repeat: Vec<Instruction<'static>>,
    after: Vec<Instruction<'static>>,
}

const BODIES: u32 = 200;
const REPEAT: u32 = 200;

impl Shape {
    fn new(name: &'static str, repeat: Vec<Instruction<'static>>) -> Shape {
        Shape {
            name,
            bodies: BODIES,
            times: REPEAT,
            locals: 1,
            before: Vec::new(),
            repeat,
            after: Vec::new(),
        }
    }

    /// A module of functions of type `(param i32 f64 v128) (result i32)` with this body, one
    /// memory, the first function exported.
    fn module(&self) -> Vec<u8> {
        let mut types = TypeSection::new();
        types
            .ty()
            .function([ValType::I32, ValType::F64, ValType::V128], [ValType::I32]);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut f = Function::new([(self.locals, ValType::F64)]);
        for instruction in &self.before {
            f.instruction(instruction);
        }
        for _ in 0..self.times {
            for instruction in &self.repeat {
                f.instruction(instruction);
            }
        }
        for instruction in &self.after {
            f.instruction(instruction);
        }
        f.instruction(&Instruction::LocalGet(0));
        f.instruction(&Instruction::End);
        for _ in 0..self.bodies {
            functions.function(0);
            code.function(&f);
        }
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("f", ExportKind::Func, 0);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&memories)
            .section(&exports)
            .section(&code);
        module.finish()
    }
}

/// `f(x, y, v)` with this function's own parameters.
const CALL: [Instruction<'static>; 4] = [
    Instruction::LocalGet(0),
    Instruction::LocalGet(1),
    Instruction::LocalGet(2),
    Instruction::Call(0),
];

#[test]
fn shapes_that_insert_the_most_per_byte_stay_within_the_bound() {
    use Instruction::*;
    let empty = BlockType::Empty;
    let store = I32Store(MemArg {
        offset: 0,
        align: 2,
        memory_index: 0,
    });
    let shapes = [
        // A charge after every conditional branch.
        Shape {
            before: vec![Block(empty)],
            after: vec![End],
            ..Shape::new("br_if", vec![LocalGet(0), BrIf(0)])
        },
        // Charges in both arms and after every `if`.
        Shape::new("if/else", vec![LocalGet(0), If(empty), Else, End]),
        Shape::new("loop", vec![Loop(empty), LocalGet(0), BrIf(0), End]),
        Shape::new(
            "counted loop",
            vec![
                Loop(empty),
                LocalGet(0),
                I32Const(-1),
                I32Add,
                LocalTee(0),
                BrIf(0),
                End,
            ],
        ),
        // `neg` observes the sign of a NaN `sqrt` may produce: a canonicalization per 2 bytes.
        Shape {
            before: vec![LocalGet(1)],
            after: vec![Drop],
            ..Shape::new("f64 sqrt/neg", vec![F64Sqrt, F64Neg])
        },
        // A 2-byte NaN producer whose vector results are canonicalized right after each one,
        // with three-byte helper local indices.
        Shape {
            locals: 20_000,
            before: vec![LocalGet(2)],
            after: vec![Drop],
            ..Shape::new("f32x4.ceil, 20,000 locals", vec![F32x4Ceil])
        },
        Shape::new(
            "memory.fill",
            vec![LocalGet(0), LocalGet(0), LocalGet(0), MemoryFill(0)],
        ),
        Shape::new(
            "call/return",
            [
                vec![LocalGet(0), If(empty)],
                CALL.to_vec(),
                vec![Return, End],
            ]
            .concat(),
        ),
        Shape::new(
            "call/store",
            [vec![LocalGet(0)], CALL.to_vec(), vec![store]].concat(),
        ),
    ];
    for shape in &shapes {
        check(shape.name, &shape.module());
    }

    // Eager canonicalization (an option) after every 1-byte operation.
    let mut eager = options();
    eager.eager_nan_canonicalization = true;
    let shape = Shape {
        locals: 20_000,
        before: vec![LocalGet(1)],
        after: vec![Drop],
        ..Shape::new("f64.sqrt eager, 20,000 locals", vec![F64Sqrt])
    };
    check_with(shape.name, &shape.module(), &eager);

    // Every operator at the highest price: each charge's constants take five bytes or more,
    // and `if`, `else` and `end` start charged blocks of their own.
    let mut costly = options();
    costly.costs = ri_sandbox_instrument::CostModel::flat(u32::MAX);
    let shapes = [
        Shape {
            locals: 20_000,
            ..Shape::new(
                "if/else, flat u32::MAX prices",
                vec![LocalGet(0), If(empty), Else, End],
            )
        },
        // Leaves the function when taken: the frame is released before, and recharged after
        // when not (the call makes the frame accounted).
        Shape {
            locals: 20_000,
            after: [CALL.to_vec(), vec![Drop]].concat(),
            ..Shape::new(
                "br_if to the function, flat u32::MAX prices",
                vec![LocalGet(0), LocalGet(0), BrIf(0), Drop],
            )
        },
    ];
    for shape in &shapes {
        check_with(shape.name, &shape.module(), &costly);
    }
}

/// `count` functions of type `params` -> (), each exported (names of one or two characters)
/// and with the smallest body there is; `locals` f64 locals each.
fn exported_functions(count: u32, params: usize, locals: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function(vec![ValType::I32; params], []);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut exports = ExportSection::new();
    let mut f = Function::new([(locals, ValType::F64)]);
    f.instruction(&Instruction::End);
    for i in 0..count {
        functions.function(0);
        code.function(&f);
        exports.export(&short_name(i), ExportKind::Func, i);
    }
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&exports)
        .section(&code);
    module.finish()
}

fn short_name(i: u32) -> String {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let base = DIGITS.len() as u32;
    let mut name = vec![DIGITS[(i % base) as usize]];
    if i >= base {
        name.push(DIGITS[(i / base % base) as usize]);
    }
    String::from_utf8(name).unwrap()
}

#[test]
fn an_entry_point_per_exported_function() {
    // The most parameters an entry point is made for, and one more (no entry point).
    let max = ri_sandbox_instrument::abi::MAX_ENTRY_POINT_PARAMS;
    check("exports, 16 params", &exported_functions(3_000, max, 0));
    assert_eq!(entry_points(&exported_functions(10, max, 0)), 10);
    check("exports, 17 params", &exported_functions(3_000, max + 1, 0));
    assert_eq!(entry_points(&exported_functions(10, max + 1, 0)), 0);
    // As many as wasmparser's limit on the total size of exported function types allows
    // (the state exports name every exported function again).
    check("exports, 1000 params", &exported_functions(450, 1_000, 0));
}

/// How many entry points the instrumented `wasm` exports.
fn entry_points(wasm: &[u8]) -> usize {
    let out = instrument(wasm, &options()).unwrap().module;
    let mut count = 0;
    for payload in wasmparser::Parser::new(0).parse_all(&out) {
        if let wasmparser::Payload::ExportSection(exports) = payload.unwrap() {
            for export in exports {
                count += usize::from(export.unwrap().name.starts_with("ri_sandbox_call_"));
            }
        }
    }
    count
}

#[test]
fn empty_functions_with_big_frames() {
    // A frame over the leaf limit needs stack accounting even in a one-byte body.
    check("big frames", &exported_functions(3_000, 0, 1_000));
}

#[test]
fn a_state_export_per_mutable_global() {
    let mut imports = ImportSection::new();
    let mut globals = GlobalSection::new();
    let mut exports = ExportSection::new();
    let ty = GlobalType {
        val_type: ValType::I32,
        mutable: true,
        shared: false,
    };
    for i in 0..5_000 {
        if i % 2 == 0 {
            imports.import("", &short_name(i), EntityType::Global(ty));
        } else {
            globals.global(ty, &ConstExpr::i32_const(0));
        }
    }
    exports.export("g", ExportKind::Global, 0);
    let mut module = Module::new();
    module.section(&imports).section(&globals).section(&exports);
    check("globals", &module.finish());
}

#[test]
fn additions_that_would_break_an_engine_limit_are_refused() {
    use ri_sandbox_instrument::ErrorKind;
    // 450 exported 1,000-parameter functions: the state exports name each again, and the
    // module's effective type size (1 + 1,002 per such import or export) stays under
    // wasmparser's 1,000,000.
    check("type size, under", &exported_functions(450, 1_000, 0));
    // 500 of them: valid, but not with the state exports.
    let wasm = exported_functions(500, 1_000, 0);
    let err = instrument(&wasm, &options()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Limit { message } if message.contains("effective type size")),
        "{err}"
    );
    let mut without_state = options();
    without_state.export_state = false;
    let out = instrument(&wasm, &without_state).unwrap();
    wasmparser::Validator::new_with_features(ri_sandbox_instrument::supported_features())
        .validate_all(&out.module)
        .unwrap();

    // A body that metering would take over the 7,654,321-byte function size limit.
    let huge = Shape {
        bodies: 1,
        times: 300_000,
        before: vec![Instruction::Block(BlockType::Empty)],
        after: vec![Instruction::End],
        ..Shape::new("huge", vec![Instruction::LocalGet(0), Instruction::BrIf(0)])
    };
    let err = instrument(&huge.module(), &options()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Limit { message } if message.contains("function body")),
        "{err}"
    );
}
