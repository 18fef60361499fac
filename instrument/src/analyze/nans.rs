//! Where scalar NaN canonicalization goes: where an arithmetic NaN could first be observed,
//! not after every float operation.
//!
//! A NaN that `f64.add` (or any other arithmetic, rounding, `min`/`max`, `sqrt`, promotion or
//! demotion) produces has engine- and CPU-dependent sign and payload bits. Canonicalizing it
//! right after the operation costs a compare and a select on the float dependency chain, which
//! doubles the time of a tight accumulation loop. Most such values are only ever consumed by
//! more arithmetic, by comparisons or by truncations, none of which can tell one NaN from
//! another; they need no canonicalization at all. This pass finds the few places where they
//! can be told apart and canonicalizes there, right where the value was produced.
//!
//! # The analysis
//! Each value on the operand stack and each local has a *kind*:
//! - `NotNan`: cannot be a NaN (a non-NaN constant, an integer converted to float, the zero a
//!   declared local starts with, an integer);
//! - `Bits`: any bits, but deterministic ones (loads, parameters, globals, call results,
//!   reinterpretations, NaN constants, values already canonicalized);
//! - `Arith`: the result of arithmetic, so possibly a NaN with undetermined bits; the value
//!   remembers its *origin*, the byte offset just after the instruction that put it on top
//!   of the stack, where it can be canonicalized;
//! - `Mixed` (locals only): assigned both `Bits` and `Arith` values.
//!
//! An `Arith` value may be consumed, uncanonicalized, by arithmetic (which returns a NaN for
//! any NaN input, and is `Arith` itself), comparisons, truncations (which trap or saturate the
//! same for every NaN), `drop`, and `local.set`/`local.tee` into a local that never holds
//! `Bits` values (its kind is `Arith` or `NotNan`; canonicalizing a non-NaN changes nothing).
//! Everything else is a *sink*: stores, `global.set`, call arguments, returns, branches and
//! block results, `select` between an `Arith` and a `Bits` value, `abs`/`neg`/`copysign`,
//! reinterpretations, SIMD splats, and any operator not listed. An `Arith` value that reaches
//! a sink is canonicalized at its origin. A `local.get` of an `Arith` local is a new `Arith`
//! value whose origin is right after the `local.get`. Values never flow across block
//! boundaries uncanonicalized; only locals carry them from one block to another.
//!
//! Local kinds are flow-insensitive joins over every assignment in the function, so they are
//! computed to a fixpoint: a run whose decisions read a local whose kind changed later in the
//! same run is repeated with the new kinds (usually a run or two; after [`MAX_RUNS`] every
//! local is treated as `Mixed`, which canonicalizes every arithmetic value stored in a local
//! and is always correct). The first run starts where the function's first float local read
//! or scalar NaN producer is ([`NanScratch::activate`]: nothing before it can matter), and
//! records what it steps in a [`Trace`]; a repeated run starts from the same state and steps
//! the trace again, without reading the body a second time.
//!
//! # Why it is exact
//! Every `Arith` value is canonicalized before anything observes its bits, and the only other
//! values that are ever canonicalized with it are `NotNan`, which canonicalization leaves
//! alone. So results are bit-identical to canonicalizing after every operation (the eager
//! strategy, kept as [`crate::Options::eager_nan_canonicalization`]; a test compares the two
//! on generated modules), and NaN bits the program moves on purpose, as NaN-boxing
//! interpreters do, are never touched.

use super::{follow_frames, nan_producer, FloatKind};
use crate::ops::{contains, starts_with, OpKind, OPERATORS};
use wasmparser::{
    BinaryReader, BlockType, CompositeInnerType, ContType, FrameKind, FrameStack, FuncType,
    FuncValidator, FunctionBody, ModuleArity, Operator, OperatorsReader, RefType, SubType, ValType,
    ValidatorResources, VisitOperator, VisitSimdOperator, WasmFeatures, WasmModuleResources,
};

/// Runs after which every local is treated as `Mixed`.
pub(crate) const MAX_RUNS: usize = 4;

/// Functions with more locals than this plus four per byte of body are canonicalized
/// eagerly (see [`NanScratch::reset_locals`]).
const MAX_LOCALS_BASE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    NotNan,
    Bits,
    Arith,
    Mixed,
}

fn join(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (x, y) if x == y => x,
        (NotNan, y) | (y, NotNan) => y,
        _ => Mixed,
    }
}

/// No local: a value that was not read from one.
const NO_LOCAL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Value {
    kind: Kind,
    /// For `Arith` values: where the value is on top of the stack.
    /// (Module offsets fit in 32 bits: `rewrite_module` refuses larger inputs.)
    origin: u32,
    /// For `Arith` values: its type.
    ty: FloatKind,
    /// The local the value was read from (or [`NO_LOCAL`]), and that local's version then.
    local: u32,
    version: u32,
}

impl Value {
    const BITS: Value = Value {
        kind: Kind::Bits,
        origin: 0,
        ty: FloatKind::F32,
        local: NO_LOCAL,
        version: 0,
    };
    const NOT_NAN: Value = Value {
        kind: Kind::NotNan,
        ..Value::BITS
    };
}

#[derive(Clone, Copy, Debug)]
struct Local {
    /// Whether the local is an `f32` or `f64`: no other local can hold an `Arith` value, so
    /// only these are followed (an integer index read before a later assignment would
    /// otherwise force another run for nothing).
    float: bool,
    kind: Kind,
    ty: FloatKind,
    /// Bumped whenever the kind changes during a run.
    version: u32,
    /// Whether this run used a value read from the local in a way its kind decided (a sink,
    /// an assignment, a `select`): a later change of kind invalidates the run.
    mattered: bool,
    /// Whether this run stored an `Arith` value in the local uncanonicalized: should the local
    /// become `Mixed` later in the run, that store needed canonicalizing.
    raw_arith: bool,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    block_type: BlockType,
    kind: FrameKind,
    /// Operand stack height below the frame's parameters.
    base: usize,
    params: u32,
    results: u32,
    reachable_at_start: bool,
}

/// Reusable buffers.
#[derive(Default)]
pub(crate) struct NanScratch {
    stack: Vec<Value>,
    frames: Vec<Frame>,
    locals: Vec<Local>,
    /// The current run's canonicalization points.
    points: Vec<(usize, FloatKind)>,
    reachable: bool,
    stable: bool,
    /// Whether the run has reached the function's final `end`.
    done: bool,
    /// The operand stack and control frames the first run started from, for the next runs.
    start_stack: Vec<Value>,
    start_frames: Vec<Frame>,
    /// The frame kinds a [`Resume`] reads with (a reusable buffer).
    resume_frames: Vec<FrameKind>,
}

/// Why the analysis gave up on a function (the caller then canonicalizes eagerly).
#[derive(Debug)]
pub(crate) struct GaveUp;

/// What the first run stepped, in order (each operator, its kind and the offset after it),
/// for the further runs to step again; a reusable buffer.
pub(crate) struct Trace<'a> {
    ops: Vec<(Operator<'a>, OpKind, usize)>,
    /// Whether `ops` holds everything the first run stepped (see [`TRACE_LIMIT`]).
    complete: bool,
}

/// The most operators a trace keeps (72 bytes each: 18 MiB). A first run that steps more
/// (a function of half a megabyte of code or more) keeps none, and its further runs read the
/// body again from the function's start instead, so memory stays bounded whatever one
/// function's size.
const TRACE_LIMIT: usize = 1 << 18;

#[cfg(test)]
thread_local! {
    /// [`TRACE_LIMIT`], lowered by tests to take the other path.
    pub(crate) static TEST_TRACE_LIMIT: std::cell::Cell<usize> =
        const { std::cell::Cell::new(TRACE_LIMIT) };
}

impl<'a> Trace<'a> {
    pub(crate) fn new() -> Self {
        Trace {
            ops: Vec::new(),
            complete: true,
        }
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.complete = true;
    }

    /// Records a stepped operator, unless the trace is over its limit.
    #[inline]
    pub(crate) fn push(&mut self, op: Operator<'a>, kind: OpKind, next: usize) {
        #[cfg(test)]
        let limit = TEST_TRACE_LIMIT.get();
        #[cfg(not(test))]
        let limit = TRACE_LIMIT;
        if !self.complete {
            return;
        }
        if self.ops.len() >= limit {
            // Given up: the memory goes back now.
            self.ops = Vec::new();
            self.complete = false;
            return;
        }
        self.ops.push((op, kind, next));
    }
}

/// Reads a validated body's operators from the middle of it, where the main pass armed the
/// analysis ([`NanScratch::replay`]): wasmparser's `OperatorsReader` starts at a body's first
/// operator, knows no frame opened before where it starts, and so refuses the `else` of an
/// enclosing `if`. This reader starts from the kinds of the frames open where it starts, and
/// keeps them.
struct Resume<'f> {
    frames: &'f mut Vec<FrameKind>,
}

impl Resume<'_> {
    /// Reads the operator at `reader`; returns it with its kind.
    fn read<'a>(
        &mut self,
        reader: &mut BinaryReader<'a>,
    ) -> Result<(Operator<'a>, OpKind), GaveUp> {
        let op = reader.visit_operator(self).map_err(|_| GaveUp)?;
        let kind = OpKind::of(&op).ok_or(GaveUp)?;
        // (Legacy exception handling is refused before the analysis runs.)
        if !follow_frames(self.frames, kind) {
            return Err(GaveUp);
        }
        Ok((op, kind))
    }
}

impl FrameStack for Resume<'_> {
    fn current_frame(&self) -> Option<FrameKind> {
        self.frames.last().copied()
    }
}

macro_rules! define_resume {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        $(
            fn $visit(&mut self $($(, $arg: $argty)*)?) -> Operator<'a> {
                Operator::$op $({ $($arg),* })?
            }
        )*
    };
}

impl<'a> VisitOperator<'a> for Resume<'_> {
    type Output = Operator<'a>;

    fn simd_visitor(&mut self) -> Option<&mut dyn VisitSimdOperator<'a, Output = Self::Output>> {
        Some(self)
    }

    wasmparser::for_each_visit_operator!(define_resume);
}

impl<'a> VisitSimdOperator<'a> for Resume<'_> {
    wasmparser::for_each_visit_simd_operator!(define_resume);
}

/// The type information operator arities need, with this pass's own control stack.
struct Arity<'a> {
    resources: &'a ValidatorResources,
    frames: &'a [Frame],
}

impl ModuleArity for Arity<'_> {
    fn sub_type_at(&self, type_idx: u32) -> Option<&SubType> {
        self.resources.sub_type_at(type_idx)
    }
    fn tag_type_arity(&self, at: u32) -> Option<(u32, u32)> {
        let ty = self.resources.tag_at(at)?;
        Some((ty.params().len() as u32, ty.results().len() as u32))
    }
    fn type_index_of_function(&self, function_idx: u32) -> Option<u32> {
        self.resources.type_index_of_function(function_idx)
    }
    fn func_type_of_cont_type(&self, c: &ContType) -> Option<&FuncType> {
        let id = c.0.as_core_type_id()?;
        func_type(self.resources.sub_type_at_id(id))
    }
    fn sub_type_of_ref_type(&self, rt: &RefType) -> Option<&SubType> {
        let id = rt.type_index()?.as_core_type_id()?;
        Some(self.resources.sub_type_at_id(id))
    }
    fn control_stack_height(&self) -> u32 {
        self.frames.len() as u32
    }
    fn label_block(&self, depth: u32) -> Option<(BlockType, FrameKind)> {
        let index = self.frames.len().checked_sub(1 + depth as usize)?;
        let frame = self.frames.get(index)?;
        Some((frame.block_type, frame.kind))
    }
}

/// The type of the block a `block`, `loop`, `if` or `try_table` opens.
fn opened_block(op: &Operator<'_>) -> Option<BlockType> {
    match op {
        Operator::Block { blockty } | Operator::Loop { blockty } | Operator::If { blockty } => {
            Some(*blockty)
        }
        Operator::TryTable { try_table } => Some(try_table.ty),
        _ => None,
    }
}

fn func_type(ty: &SubType) -> Option<&FuncType> {
    match &ty.composite_type.inner {
        CompositeInnerType::Func(f) => Some(f),
        _ => None,
    }
}

/// Whether [`hint`] can decide anything for operators of this kind.
pub(crate) const fn has_hint(kind: OpKind) -> bool {
    use OpKind as K;
    matches!(
        kind,
        K::F32Load
            | K::F64Load
            | K::Call
            | K::CallIndirect
            | K::GlobalGet
            | K::F32ReinterpretI32
            | K::F64ReinterpretI64
            | K::End
            | K::F32Const
            | K::F64Const
    ) || converts_integer(kind)
        || matches!(nan_producer(kind), Some(FloatKind::F32 | FloatKind::F64))
}

/// Integer-to-float conversions, whose results are never NaN.
const fn converts_integer(kind: OpKind) -> bool {
    use OpKind as K;
    matches!(
        kind,
        K::F32ConvertI32S
            | K::F32ConvertI32U
            | K::F32ConvertI64S
            | K::F32ConvertI64U
            | K::F64ConvertI32S
            | K::F64ConvertI32U
            | K::F64ConvertI64S
            | K::F64ConvertI64U
    )
}

/// The kind of the value `op` leaves on top of the stack, when `op` alone decides it. The main
/// pass records it for the `local.set` right after `op`, so that the analysis, when it starts
/// mid-function, knows what earlier assignments stored; [`NanScratch::step`] uses it for the
/// non-NaN results of constants and conversions.
pub(crate) fn hint(op: &Operator<'_>, kind: OpKind) -> Option<Kind> {
    use OpKind as K;
    match kind {
        K::F32Load | K::F64Load | K::Call | K::CallIndirect => Some(Kind::Bits),
        // Block results are plain bits to the analysis (branches and ends are sinks).
        K::GlobalGet | K::F32ReinterpretI32 | K::F64ReinterpretI64 | K::End => Some(Kind::Bits),
        K::F32Const => match op {
            Operator::F32Const { value } if f32::from_bits(value.bits()).is_nan() => {
                Some(Kind::Bits)
            }
            _ => Some(Kind::NotNan),
        },
        K::F64Const => match op {
            Operator::F64Const { value } if f64::from_bits(value.bits()).is_nan() => {
                Some(Kind::Bits)
            }
            _ => Some(Kind::NotNan),
        },
        kind if converts_integer(kind) => Some(Kind::NotNan),
        _ => match nan_producer(kind) {
            Some(FloatKind::F32 | FloatKind::F64) => Some(Kind::Arith),
            _ => None,
        },
    }
}

/// For each operator kind: whether it only takes and gives integers (`i32.*` and `i64.*`
/// operators that mention no float type), so [`NanScratch::step`] only moves the stack
/// height. (`i32.reinterpret_f32` and the truncations take a float: not listed.)
static INTEGER_ONLY: [bool; OPERATORS.len()] = {
    let mut table = [false; OPERATORS.len()];
    let mut i = 0;
    while i < OPERATORS.len() {
        let info = &OPERATORS[i];
        let name = info.name_bytes();
        table[i] = info.arity.is_some()
            && (starts_with(name, b"i32_") || starts_with(name, b"i64_"))
            && !contains(name, b"f32")
            && !contains(name, b"f64")
            && !contains(name, b"v128");
        i += 1;
    }
    table
};

impl NanScratch {
    /// Every local's kind as the function starts: parameters `Bits`, declared locals `NotNan`.
    /// Gives up on a function that declares many more locals than it has bytes of code: each
    /// run costs a step per local, and the pass must stay linear in the input's size (a body
    /// declares up to 50,000 locals in five bytes).
    fn reset_locals(
        &mut self,
        body: &FunctionBody<'_>,
        validator: &FuncValidator<ValidatorResources>,
    ) -> Result<(), GaveUp> {
        if validator.len_locals() as usize > MAX_LOCALS_BASE + 4 * body.range().len() {
            return Err(GaveUp);
        }
        let params = super::params_of(validator).ok_or(GaveUp)?;
        let local = |ty: ValType, kind: Kind| Local {
            float: matches!(ty, ValType::F32 | ValType::F64),
            kind,
            ty: match ty {
                ValType::F64 => FloatKind::F64,
                _ => FloatKind::F32,
            },
            version: 0,
            mattered: false,
            raw_arith: false,
        };
        self.locals.clear();
        // Parameters arrive with the caller's bits; declared locals start at zero.
        for &ty in params {
            self.locals.push(local(ty, Kind::Bits));
        }
        for declaration in body.get_locals_reader().map_err(|_| GaveUp)? {
            let (count, ty) = declaration.map_err(|_| GaveUp)?;
            let new_len = self.locals.len() + count as usize;
            self.locals.resize(new_len, local(ty, Kind::NotNan));
        }
        Ok(())
    }

    /// Starts the first run in the middle of the main pass, right after the first scalar NaN
    /// producer or `local.get` of an `f32`/`f64` local it meets (`op`, of kind `op_kind`;
    /// `next` is the offset after it). Nothing before it can be `Arith` or read a local that
    /// could hold an `Arith` value (in a loop, a later assignment reaches an earlier read), so
    /// the operand stack is plain bits (and then `op`'s result), the control frames are the
    /// validator's, and a local's kind is the join of what the main pass saw assigned to it
    /// so far (`assignments`: the kind each `local.set`/`local.tee` assigned when the operator
    /// before it decides it, `Bits` otherwise). Functions without scalar float arithmetic or
    /// float locals never pay for the analysis.
    /// The state the run starts from is kept, and the operators it steps from here on go into
    /// `trace` (the caller records those it steps itself), for [`NanScratch::finish`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn activate<'a>(
        &mut self,
        body: &FunctionBody<'_>,
        validator: &FuncValidator<ValidatorResources>,
        assignments: &[(u32, Option<Kind>)],
        op: &Operator<'a>,
        op_kind: OpKind,
        next: usize,
        trace: &mut Trace<'a>,
    ) -> Result<(), GaveUp> {
        trace.clear();
        let resources = validator.resources();
        self.reset_locals(body, validator)?;
        for &(index, kind) in assignments {
            if let Some(local) = self.locals.get_mut(index as usize) {
                local.kind = join(local.kind, kind.unwrap_or(Kind::Bits));
            }
        }
        self.restart();
        for depth in (0..validator.control_stack_height() as usize).rev() {
            let frame = validator.get_control_frame(depth).ok_or(GaveUp)?;
            let (params, results) = Arity {
                resources,
                frames: &self.frames,
            }
            .block_type_arity(frame.block_type)
            .ok_or(GaveUp)?;
            self.frames.push(Frame {
                block_type: frame.block_type,
                kind: frame.kind,
                base: frame.height,
                params,
                results,
                // The producer is reachable, so every frame around it started reachable.
                reachable_at_start: true,
            });
        }
        let height = (validator.operand_stack_height() as usize)
            .checked_sub(1)
            .ok_or(GaveUp)?;
        match (op, nan_producer(op_kind)) {
            (_, Some(ty @ (FloatKind::F32 | FloatKind::F64))) => {
                // The producer's result does not depend on any local: the runs start after it.
                self.stack.resize(height, Value::BITS);
                self.stack.push(Value {
                    kind: Kind::Arith,
                    origin: next as u32,
                    ty,
                    ..Value::BITS
                });
                self.keep_start();
                Ok(())
            }
            (Operator::LocalGet { .. }, _) => {
                // The stack as it was before the read, then the read (which the next runs
                // repeat: the local's kind may change).
                self.stack.resize(height, Value::BITS);
                self.keep_start();
                trace.push(op.clone(), op_kind, next);
                self.step(op, op_kind, next, resources)
            }
            _ => Err(GaveUp),
        }
    }

    /// Keeps the current operand stack and frames as where every run starts.
    fn keep_start(&mut self) {
        self.start_stack.clone_from(&self.stack);
        self.start_frames.clone_from(&self.frames);
    }

    /// An empty run: no frames, no values, no points, every local unused.
    fn restart(&mut self) {
        self.stack.clear();
        self.frames.clear();
        self.points.clear();
        for local in self.locals.iter_mut() {
            local.version = 0;
            local.mattered = false;
            local.raw_arith = false;
        }
        self.reachable = true;
        self.stable = true;
        self.done = false;
    }

    /// After the main pass fed the rest of the function to [`NanScratch::step`]: its points
    /// when that run was stable, else the points of further runs (from the local kinds found
    /// so far, over `trace`, everything the first run stepped, or over the whole body when
    /// the trace is incomplete) until one is. Appended to `out`, sorted, without duplicates.
    pub(crate) fn finish(
        &mut self,
        trace: &Trace<'_>,
        body: &FunctionBody<'_>,
        validator: &FuncValidator<ValidatorResources>,
        features: WasmFeatures,
        out: &mut Vec<(usize, FloatKind)>,
    ) -> Result<(), GaveUp> {
        if !self.done {
            return Err(GaveUp);
        }
        let resources = validator.resources();
        let mut run = 1;
        while !self.stable {
            if run == MAX_RUNS {
                for local in &mut self.locals {
                    local.kind = Kind::Mixed;
                }
            } else if run > MAX_RUNS {
                // All-`Mixed` locals never change: unreachable.
                return Err(GaveUp);
            }
            if trace.complete {
                self.rerun(trace, resources)?;
            } else {
                self.read_again(body, validator, features)?;
            }
            run += 1;
        }
        let start = out.len();
        out.append(&mut self.points);
        out[start..].sort_unstable_by_key(|&(offset, _)| offset);
        out.dedup_by_key(|&mut (offset, _)| offset);
        Ok(())
    }

    /// Catches up with the main pass: steps the operators from `from` up to `until` (the
    /// offset of the operator the main pass is at), which it did not follow while armed.
    pub(crate) fn replay<'a>(
        &mut self,
        mut from: BinaryReader<'a>,
        until: usize,
        resources: &ValidatorResources,
        trace: &mut Trace<'a>,
    ) -> Result<(), GaveUp> {
        // The frames open where the analysis was armed are the run's so far.
        let mut frames = std::mem::take(&mut self.resume_frames);
        frames.clear();
        frames.extend(self.frames.iter().map(|frame| frame.kind));
        let mut resume = Resume {
            frames: &mut frames,
        };
        let mut result = Ok(());
        while result.is_ok() && from.original_position() < until {
            result = resume.read(&mut from).and_then(|(op, kind)| {
                let next = from.original_position();
                let stepped = self.step(&op, kind, next, resources);
                trace.push(op, kind, next);
                stepped
            });
        }
        self.resume_frames = frames;
        result?;
        if from.original_position() == until && !self.done {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// One more run with the current local kinds, from where the first started, over what it
    /// stepped ([`NanScratch::activate`]). Leaves [`NanScratch::stable`] telling whether every
    /// decision the run made used a local's final kind (so the recorded points are final). A
    /// local read before its kind changed does not force another run when the value read only
    /// fed arithmetic, comparisons or truncations, as a loop's accumulator does.
    fn rerun(&mut self, trace: &Trace<'_>, resources: &ValidatorResources) -> Result<(), GaveUp> {
        self.restart();
        self.stack.clone_from(&self.start_stack);
        self.frames.clone_from(&self.start_frames);
        for (op, kind, next) in &trace.ops {
            self.step(op, *kind, *next, resources)?;
        }
        if self.done {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// [`NanScratch::rerun`] without a trace: reads the body from the function's start (the
    /// operators before the first run's start only move the stack and frames).
    fn read_again(
        &mut self,
        body: &FunctionBody<'_>,
        validator: &FuncValidator<ValidatorResources>,
        features: WasmFeatures,
    ) -> Result<(), GaveUp> {
        let resources = validator.resources();
        let type_index = resources
            .type_index_of_function(validator.index())
            .ok_or(GaveUp)?;
        let mut reader = body.get_binary_reader_for_operators().map_err(|_| GaveUp)?;
        reader.set_features(features);
        let mut ops = OperatorsReader::new(reader);
        self.restart();
        let function_type = BlockType::FuncType(type_index);
        let (_, results) = Arity {
            resources,
            frames: &self.frames,
        }
        .block_type_arity(function_type)
        .ok_or(GaveUp)?;
        self.frames.push(Frame {
            block_type: function_type,
            kind: FrameKind::Block,
            base: 0,
            params: 0,
            results,
            reachable_at_start: true,
        });
        while !ops.eof() && !self.done {
            let op = ops.read().map_err(|_| GaveUp)?;
            let kind = OpKind::of(&op).ok_or(GaveUp)?;
            self.step(&op, kind, ops.original_position(), resources)?;
        }
        if self.done {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// Simulates one operator (of kind `op_kind`); `next` is the offset right after it.
    pub(crate) fn step(
        &mut self,
        op: &Operator<'_>,
        op_kind: OpKind,
        next: usize,
        resources: &ValidatorResources,
    ) -> Result<(), GaveUp> {
        let NanScratch {
            stack,
            frames,
            locals,
            points: out,
            reachable,
            stable,
            done,
            ..
        } = self;
        if *done {
            return Err(GaveUp);
        }
        if *reachable && INTEGER_ONLY[op_kind as usize] {
            // Integer operands are never `Arith` and never read from a float local: nothing to
            // decide, only the stack height changes.
            if let Some((params, results)) = op_kind.info().arity {
                let from = stack.len().checked_sub(usize::from(params)).ok_or(GaveUp)?;
                stack.truncate(from);
                for _ in 0..results {
                    stack.push(Value::BITS);
                }
                return Ok(());
            }
        }
        // A decision depends on `value`'s kind: if it was read from a local, that read must have
        // seen the local's final kind.
        let uses = |value: &Value, locals: &mut [Local], stable: &mut bool| {
            if let Some(local) = locals.get_mut(value.local as usize) {
                if local.version != value.version {
                    *stable = false;
                } else {
                    local.mattered = true;
                }
            }
        };
        let sink = |value: Value,
                    locals: &mut [Local],
                    stable: &mut bool,
                    out: &mut Vec<(usize, FloatKind)>| {
            uses(&value, locals, stable);
            if value.kind == Kind::Arith {
                out.push((value.origin as usize, value.ty));
            }
        };
        let pop = |stack: &mut Vec<Value>| stack.pop().ok_or(GaveUp);
        // Pops `n` values, each a sink.
        let sink_n = |stack: &mut Vec<Value>,
                      n: u32,
                      locals: &mut [Local],
                      stable: &mut bool,
                      out: &mut Vec<(usize, FloatKind)>| {
            let from = stack.len().checked_sub(n as usize).ok_or(GaveUp)?;
            for value in &stack[from..] {
                sink(*value, locals, stable, out);
            }
            stack.truncate(from);
            Ok::<(), GaveUp>(())
        };

        if !*reachable {
            // Only the nesting matters until the frame that became unreachable ends.
            match op {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::If { .. }
                | Operator::TryTable { .. } => frames.push(Frame {
                    block_type: opened_block(op).ok_or(GaveUp)?,
                    kind: FrameKind::Block,
                    base: stack.len(),
                    params: 0,
                    results: 0,
                    reachable_at_start: false,
                }),
                Operator::Else => {
                    let frame = frames.last_mut().ok_or(GaveUp)?;
                    frame.kind = FrameKind::Else;
                    *reachable = frame.reachable_at_start;
                    stack.truncate(frame.base);
                    stack.resize(frame.base + frame.params as usize, Value::BITS);
                }
                Operator::End => {
                    let frame = frames.pop().ok_or(GaveUp)?;
                    if frames.is_empty() {
                        *done = true;
                        return Ok(());
                    }
                    *reachable = frame.reachable_at_start;
                    stack.truncate(frame.base);
                    stack.resize(frame.base + frame.results as usize, Value::BITS);
                }
                _ => {}
            }
            return Ok(());
        }
        let arith = |ty: FloatKind| Value {
            kind: Kind::Arith,
            origin: next as u32,
            ty,
            ..Value::BITS
        };
        match op {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                let blockty = opened_block(op).ok_or(GaveUp)?;
                let kind = match op {
                    Operator::Loop { .. } => FrameKind::Loop,
                    Operator::If { .. } => FrameKind::If,
                    Operator::TryTable { .. } => FrameKind::TryTable,
                    _ => FrameKind::Block,
                };
                if kind == FrameKind::If {
                    pop(stack)?;
                }
                let (params, results) = Arity { resources, frames }
                    .block_type_arity(blockty)
                    .ok_or(GaveUp)?;
                // Parameters cross into the block: a sink, so inside they are plain bits.
                sink_n(stack, params, locals, stable, out)?;
                let base = stack.len();
                stack.resize(base + params as usize, Value::BITS);
                frames.push(Frame {
                    block_type: blockty,
                    kind,
                    base,
                    params,
                    results,
                    reachable_at_start: true,
                });
            }
            Operator::Else => {
                let frame = frames.last_mut().ok_or(GaveUp)?;
                sink_n(stack, frame.results, locals, stable, out)?;
                frame.kind = FrameKind::Else;
                stack.truncate(frame.base);
                stack.resize(frame.base + frame.params as usize, Value::BITS);
            }
            Operator::End => {
                let frame = frames.pop().ok_or(GaveUp)?;
                sink_n(stack, frame.results, locals, stable, out)?;
                if frames.is_empty() {
                    *done = true;
                    return Ok(());
                }
                stack.truncate(frame.base);
                stack.resize(frame.base + frame.results as usize, Value::BITS);
            }
            Operator::LocalGet { local_index } => {
                let local = locals.get(*local_index as usize).ok_or(GaveUp)?;
                if !local.float {
                    stack.push(Value::BITS);
                    return Ok(());
                }
                let value = match local.kind {
                    Kind::NotNan => Value::NOT_NAN,
                    Kind::Arith => arith(local.ty),
                    Kind::Bits | Kind::Mixed => Value::BITS,
                };
                stack.push(Value {
                    local: *local_index,
                    version: local.version,
                    ..value
                });
            }
            Operator::LocalSet { local_index } | Operator::LocalTee { local_index } => {
                let value = pop(stack)?;
                if !locals.get(*local_index as usize).ok_or(GaveUp)?.float {
                    if let Operator::LocalTee { .. } = op {
                        stack.push(Value::BITS);
                    }
                    return Ok(());
                }
                uses(&value, locals, stable);
                let local = locals.get_mut(*local_index as usize).ok_or(GaveUp)?;
                let joined = join(local.kind, value.kind);
                if joined != local.kind {
                    // A `Bits` local that becomes `Mixed` is read as plain bits either way
                    // and never held an uncanonicalized `Arith` value: nothing this run
                    // decided from it changes, so its reads stay current.
                    let same_reads = local.kind == Kind::Bits && joined == Kind::Mixed;
                    if !same_reads {
                        if local.mattered || (joined == Kind::Mixed && local.raw_arith) {
                            *stable = false;
                        }
                        local.version += 1;
                        local.mattered = false;
                    }
                    local.kind = joined;
                    if value.kind == Kind::Arith {
                        local.ty = value.ty;
                    }
                }
                let stored = if value.kind != Kind::Arith {
                    value
                } else if joined == Kind::Mixed {
                    out.push((value.origin as usize, value.ty));
                    Value {
                        kind: Kind::Bits,
                        ..value
                    }
                } else {
                    local.raw_arith = true;
                    value
                };
                if let Operator::LocalTee { .. } = op {
                    stack.push(match stored.kind {
                        Kind::Arith => Value {
                            origin: next as u32,
                            ..stored
                        },
                        _ => stored,
                    });
                }
            }
            Operator::Select | Operator::TypedSelect { .. } => {
                pop(stack)?; // the condition
                let second = pop(stack)?;
                let first = pop(stack)?;
                uses(&first, locals, stable);
                uses(&second, locals, stable);
                match join(first.kind, second.kind) {
                    Kind::Mixed => {
                        sink(first, locals, stable, out);
                        sink(second, locals, stable, out);
                        stack.push(Value::BITS);
                    }
                    Kind::Arith => stack.push(arith(if first.kind == Kind::Arith {
                        first.ty
                    } else {
                        second.ty
                    })),
                    kind => stack.push(Value {
                        kind,
                        ..Value::BITS
                    }),
                }
            }
            Operator::Drop => {
                pop(stack)?;
            }
            // Results that do not depend on which NaN an operand is: comparisons and
            // truncations (which trap, or saturate, the same for every NaN).
            Operator::F32Eq
            | Operator::F32Ne
            | Operator::F32Lt
            | Operator::F32Gt
            | Operator::F32Le
            | Operator::F32Ge
            | Operator::F64Eq
            | Operator::F64Ne
            | Operator::F64Lt
            | Operator::F64Gt
            | Operator::F64Le
            | Operator::F64Ge
            | Operator::I32TruncF32S
            | Operator::I32TruncF32U
            | Operator::I32TruncF64S
            | Operator::I32TruncF64U
            | Operator::I64TruncF32S
            | Operator::I64TruncF32U
            | Operator::I64TruncF64S
            | Operator::I64TruncF64U
            | Operator::I32TruncSatF32S
            | Operator::I32TruncSatF32U
            | Operator::I32TruncSatF64S
            | Operator::I32TruncSatF64U
            | Operator::I64TruncSatF32S
            | Operator::I64TruncSatF32U
            | Operator::I64TruncSatF64S
            | Operator::I64TruncSatF64U => {
                let (params, _) = op_kind.info().arity.ok_or(GaveUp)?;
                let from = stack.len().checked_sub(usize::from(params)).ok_or(GaveUp)?;
                stack.truncate(from);
                stack.push(Value::BITS);
            }
            // Bit operations keep a NaN's payload: canonicalize first, as the eager strategy
            // does, so results match it bit for bit.
            Operator::F32Abs | Operator::F32Neg | Operator::F64Abs | Operator::F64Neg => {
                let value = pop(stack)?;
                sink(value, locals, stable, out);
                stack.push(if value.kind == Kind::NotNan {
                    Value::NOT_NAN
                } else {
                    Value::BITS
                });
            }
            Operator::F32Copysign | Operator::F64Copysign => {
                let sign = pop(stack)?;
                let value = pop(stack)?;
                sink(sign, locals, stable, out);
                sink(value, locals, stable, out);
                stack.push(if value.kind == Kind::NotNan {
                    Value::NOT_NAN
                } else {
                    Value::BITS
                });
            }
            _ => {
                let (params, results) = match op_kind.info().arity {
                    Some((params, results)) => (u32::from(params), u32::from(results)),
                    None => op
                        .operator_arity(&Arity { resources, frames })
                        .ok_or(GaveUp)?,
                };
                if let Some(ty @ (FloatKind::F32 | FloatKind::F64)) = nan_producer(op_kind) {
                    let from = stack.len().checked_sub(params as usize).ok_or(GaveUp)?;
                    stack.truncate(from);
                    stack.push(arith(ty));
                    return Ok(());
                }
                sink_n(stack, params, locals, stable, out)?;
                stack.resize(stack.len() + results as usize, Value::BITS);
                // Non-NaN constants and integers converted to float.
                if hint(op, op_kind) == Some(Kind::NotNan) {
                    if let Some(top) = stack.last_mut() {
                        *top = Value::NOT_NAN;
                    }
                }
                if matches!(
                    op,
                    Operator::Unreachable
                        | Operator::Br { .. }
                        | Operator::BrTable { .. }
                        | Operator::Return
                        | Operator::Throw { .. }
                        | Operator::ThrowRef
                        | Operator::ReturnCall { .. }
                        | Operator::ReturnCallIndirect { .. }
                        | Operator::ReturnCallRef { .. }
                ) {
                    *reachable = false;
                    let frame = frames.last().ok_or(GaveUp)?;
                    stack.truncate(frame.base);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{join, Kind::*, INTEGER_ONLY, TEST_TRACE_LIMIT, TRACE_LIMIT};

    #[test]
    fn further_runs_over_the_body_give_what_runs_over_the_trace_give() {
        // Clang output whose float code needs further runs in many functions.
        let wasm = include_bytes!("../../../fixtures/bench/prog_medium.wasm");
        let options = crate::Options {
            threads: std::num::NonZeroUsize::new(1),
            ..crate::Options::default()
        };
        let traced = crate::instrument(wasm, &options)
            .expect("instruments")
            .module;
        // A trace that keeps nothing: every further run reads the body again.
        TEST_TRACE_LIMIT.set(0);
        let read_again = crate::instrument(wasm, &options);
        TEST_TRACE_LIMIT.set(TRACE_LIMIT);
        let read_again = read_again.expect("instruments").module;
        assert!(traced == read_again, "the two ways of running again differ");
    }
    use crate::ops::OpKind;

    #[test]
    fn integer_only_operators_touch_no_float() {
        let integer_only = |kind: OpKind| INTEGER_ONLY[kind as usize];
        for kind in [
            OpKind::I32Add,
            OpKind::I64Load,
            OpKind::I32Store8,
            OpKind::I64ExtendI32S,
            OpKind::I32WrapI64,
            OpKind::I64Eqz,
        ] {
            assert!(integer_only(kind), "{kind:?}");
        }
        for kind in [
            OpKind::I32ReinterpretF32,
            OpKind::I64ReinterpretF64,
            OpKind::I32TruncF64S,
            OpKind::I64TruncSatF32U,
            OpKind::F32Add,
            OpKind::F64Store,
            OpKind::I32x4Add,
            OpKind::LocalGet,
            OpKind::Select,
            OpKind::Call,
        ] {
            assert!(!integer_only(kind), "{kind:?}");
        }
    }

    #[test]
    fn join_is_a_lattice() {
        assert_eq!(join(NotNan, Arith), Arith);
        assert_eq!(join(Arith, NotNan), Arith);
        assert_eq!(join(NotNan, Bits), Bits);
        assert_eq!(join(Bits, Arith), Mixed);
        assert_eq!(join(Arith, Bits), Mixed);
        assert_eq!(join(Mixed, NotNan), Mixed);
        assert_eq!(join(Arith, Arith), Arith);
    }
}
