//! Basic-block analysis of one function body, in a single pass that also validates it.
//!
//! The pass reads each operator once, feeds it to wasmparser's function validator, and
//! records where metering code must be inserted. It never rewrites anything: the result is a
//! [`FunctionPlan`], a list of byte offsets and what to insert there, that `rewrite::body`
//! applies by copying the original bytes around the insertions.
//!
//! # Where charges go
//!
//! A *metered block* is a maximal run of reachable instructions that is entered only at its
//! first instruction. Its cost (the sum of its operators' prices) is charged at that first
//! instruction, its *leader*, before anything in it runs. A new metered block starts:
//! - at the first instruction of the function;
//! - right after `loop` (so every iteration pays);
//! - right after `if` (the then-arm) and right after `else` (the else-arm);
//! - right after a conditional branch (`br_if`, `br_on_null`, `br_on_non_null`), for the
//!   not-taken path;
//! - right after the `end` of a `block`, `if` or `try_table` that control can reach other
//!   than by falling through its last instruction: a reachable branch or `catch` clause names
//!   it, or it is an `if` without `else` (the false edge).
//!
//! A block ends at the instruction before the next leader, or at an instruction after which
//! nothing is reachable (`br`, `br_table`, `return`, `unreachable`, `throw`, `throw_ref`,
//! `return_call*`). Code that cannot be reached is not charged, because it never runs. The
//! code after the `end` of a `loop`, or of a `block` no branch targets, is still the same
//! metered block: control can only arrive there by falling through.
//!
//! Calls do not end a block: a callee that returns normally lets the rest of the block run, so
//! charging it up front is exact. If the callee (or an instruction of the block itself) traps
//! or throws, the rest of the block stays paid; that over-charge is deterministic, the same in
//! every engine, and documented in the ABI.
//!
//! # What else the plan holds
//! - *Gas events*: each function keeps the counter in a local (see `rewrite::gas`); the plan
//!   records where it goes stale (entry, calls), where it is read and where control branches,
//!   and [`calls`] places the reloads once it knows which callees can charge. Direct calls are
//!   recorded too: [`calls`] moves the entry-block charge of functions only direct calls
//!   reach into their call sites.
//! - *Counted loops* ([`CountedLoop`]): a loop whose body is one metered block ending in a
//!   counted back edge has its body's charge replaced by one charge for all iterations,
//!   before the `loop`.
//! - *Size charges* before every bulk operation (`memory.copy/fill/init`, `table.copy/fill/
//!   init/grow`, `memory.grow`), computed at run time from its length operand.
//! - *Stack accounting* (when a stack limit is configured): a frame charge at function entry,
//!   weighted by the frame's size, a restore of the caller's level after every call and at
//!   every `catch` landing, and a release before every tail call.
//! - *NaN canonicalization* (when enabled): after every SIMD float operation that can produce a
//!   NaN, and for scalar floats where an arithmetic NaN could first be observed ([`nans`]).

pub(crate) mod calls;
mod functions;
mod nans;

pub(crate) use functions::{plan_functions, PendingFunction};

use std::ops::Range;

use crate::cost::CostModel;
use crate::error::{Error, ErrorKind};
use crate::ops::{OpKind, ALL, OPERATORS};
use wasmparser::{
    BinaryReader, BinaryReaderError, Catch, FrameKind as ValidatorFrame, FrameStack, FuncValidator,
    FunctionBody, Operator, ValType, ValidatorResources, VisitOperator, VisitSimdOperator,
    WasmFeatures, WasmModuleResources,
};

/// Which per-unit price a size charge uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnitKind {
    MemoryBytes,
    TableElements,
    MemoryPages,
}

/// The float shapes NaN canonicalization handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatKind {
    F32,
    F64,
    F32x4,
    F64x2,
}

/// What to insert before the original byte at an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Charge the cost of the metered block with this index in [`FunctionPlan::blocks`]
    /// (nothing is emitted for 0).
    Charge(u32),
    /// Charge the size-proportional part of the bulk operation that follows; its length
    /// operand, on top of the stack, is `i64` when `wide`, else `i32`.
    SizeCharge { unit: UnitKind, wide: bool },
    /// Remember the caller's stack level and charge this function's frame to it.
    StackEnter,
    /// Give this function's frame back: put the counter back to the caller's level (before
    /// every way out of the function: `return`, its final `end`, a branch to its label, a
    /// tail call).
    StackRelease,
    /// Put the counter back to this function's own level: where a `catch` lands (the frames
    /// an exception unwound never gave theirs back), and where control stays in the function
    /// after a branch that released the frame for its exiting targets only.
    StackRecharge,
    /// Replace a NaN on top of the stack with the canonical NaN.
    Canonicalize(FloatKind),
    /// Charge, before a counted loop, its single metered block's cost times the number of
    /// iterations the loop will run: the loop with this index in [`FunctionPlan::loops`].
    LoopCharge(u32),
    /// Copy the gas counter into the function's gas local: where a `catch` lands, and where
    /// [`calls::Reloads::place`] decides (after the function's entry or a call, when the local
    /// is read before it is stale again). Emitted before any other insertion at the same
    /// offset.
    GasReload,
}

/// A loop whose body is one metered block ending in a counted back edge, so that the number
/// of iterations is known when the loop is entered:
///
/// ```wat
/// loop
///   ...                                   ;; writes neither $i nor $n
///   local.get $i  i32.const STEP  i32.add  local.tee $i
///   local.get $n  i32.lt_u                ;; or i32.lt_s, i32.ne, a constant bound,
///   br_if 0                               ;; or nothing (`!= 0`)
/// end
/// ```
///
/// with STEP 1 or -1 (`lt_u`/`lt_s` with 1 only). `$i` and `$n` are written nowhere else in the
/// body, and nothing in a single metered block can branch, so the body runs exactly
/// `iterations($i, $n)` times unless something traps or throws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountedLoop {
    /// The loop's body, a metered block.
    pub block: u32,
    /// The counter local (`i32`).
    pub counter: u32,
    /// 1 or -1.
    pub step: i32,
    pub bound: LoopBound,
    pub exit: LoopExit,
}

/// What a counted loop's counter is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoopBound {
    Local(u32),
    Const(i32),
}

/// How a counted loop's back edge compares the counter with its bound: it loops while
/// `counter < bound` (unsigned or signed) or `counter != bound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoopExit {
    LtU,
    LtS,
    Ne,
}

/// One insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insertion {
    /// Absolute byte offset into the input module (which `rewrite_module` keeps below 4 GiB).
    pub offset: u32,
    /// What to insert there.
    pub insert: Insert,
}

/// Locals the inserted code needs, appended after the function's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExtraLocals {
    /// `i64`: the gas counter's value, kept in a local between reloads (decided by
    /// [`calls::Reloads::place`]).
    pub gas: bool,
    /// `i64`: the caller's stack level, saved on entry.
    pub level: bool,
    /// `i32`, `i64`, `i64`: a length operand of either width and the computed charge (size
    /// charges); counted loops use the two `i64`s for the iteration count and the charge.
    pub size: bool,
    pub f32: bool,
    pub f64: bool,
    pub v128: bool,
}

/// The metering plan for one function. Its lists are kept with those of the other functions
/// the same worker planned, in a [`PlanLists`]: one allocation per list and worker instead of
/// four per function.
#[derive(Debug, Default)]
pub(crate) struct FunctionPlan {
    /// Offset of the first operator (the end of the local declarations).
    pub ops_start: usize,
    /// Number of locals the function declares, parameters included.
    pub locals: u32,
    /// This function's frame weight for the stack limit.
    pub frame_cost: u64,
    /// Which helper locals the insertions use.
    pub extra: ExtraLocals,
    /// Whether reachable code calls through a table or a reference.
    pub indirect_calls: bool,
    /// Whether reachable code has size charges (which read the gas local).
    pub size_charges: bool,
    /// The counted loops, indexed by [`Insert::LoopCharge`] (rare: mostly empty, which
    /// allocates nothing).
    pub loops: Vec<CountedLoop>,
    /// Which of the code section's [`PlanLists`] hold its lists ([`Plans::lists`]).
    lists: usize,
    /// Where in them (what each list holds: the accessors of the same names).
    insertions: Range<usize>,
    blocks: Range<usize>,
    direct_calls: Range<usize>,
    gas_events: Range<usize>,
}

/// The lists of the plans one worker made, each plan's a contiguous span.
#[derive(Debug, Default)]
pub(crate) struct PlanLists {
    insertions: Vec<Insertion>,
    blocks: Vec<u64>,
    direct_calls: Vec<DirectCall>,
    gas_events: Vec<GasEvent>,
}

impl PlanLists {
    /// Lists with room for the plans of about `bytes` bytes of code: compiled programs have
    /// an insertion and a metered block per 20 bytes or so, a gas event per 10 and a direct
    /// call per 50, so they rarely grow (growing them costs more than the allocations per
    /// function they replace).
    pub fn for_code(bytes: usize) -> Self {
        PlanLists {
            insertions: Vec::with_capacity(bytes / 16),
            blocks: Vec::with_capacity(bytes / 16),
            direct_calls: Vec::with_capacity(bytes / 32),
            gas_events: Vec::with_capacity(bytes / 8),
        }
    }
}

/// Appends `list` to `to`; returns where it went.
fn append<T: Copy>(to: &mut Vec<T>, list: &[T]) -> Range<usize> {
    let start = to.len();
    to.extend_from_slice(list);
    start..to.len()
}

/// The plans of a code section's functions, in module order, and the lists they share.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    pub functions: Vec<FunctionPlan>,
    pub lists: Vec<PlanLists>,
}

impl FunctionPlan {
    /// Insertions, in increasing offset order (ties in the order they must be emitted).
    pub fn insertions<'l>(&self, lists: &'l [PlanLists]) -> &'l [Insertion] {
        &lists[self.lists].insertions[self.insertions.clone()]
    }
    /// The cost of each metered block, indexed by [`Insert::Charge`]; block 0 is the entry
    /// block.
    pub fn blocks<'l>(&self, lists: &'l [PlanLists]) -> &'l [u64] {
        &lists[self.lists].blocks[self.blocks.clone()]
    }
    /// [`FunctionPlan::direct_calls`], and [`FunctionPlan::blocks`] to change (direct callers
    /// pre-pay a callee's entry block: [`calls`]).
    pub fn calls_and_blocks_mut<'l>(
        &self,
        lists: &'l mut [PlanLists],
    ) -> (&'l [DirectCall], &'l mut [u64]) {
        let lists = &mut lists[self.lists];
        (
            &lists.direct_calls[self.direct_calls.clone()],
            &mut lists.blocks[self.blocks.clone()],
        )
    }
    /// Reachable direct calls (`call`, `return_call`), in program order.
    pub fn direct_calls<'l>(&self, lists: &'l [PlanLists]) -> &'l [DirectCall] {
        &lists[self.lists].direct_calls[self.direct_calls.clone()]
    }
    /// What touches the gas local, in program order, for [`calls::Reloads::place`].
    pub fn gas_events<'l>(&self, lists: &'l [PlanLists]) -> &'l [GasEvent] {
        &lists[self.lists].gas_events[self.gas_events.clone()]
    }
    /// How many metered blocks cost more than nothing.
    pub fn charged_blocks(&self, lists: &[PlanLists]) -> usize {
        self.blocks(lists).iter().filter(|&&gas| gas > 0).count()
    }
}

/// A function's plan while it is being made: all but its lists, and the lists in the
/// worker's reusable buffers (indices into them are the function's own).
#[derive(Debug, Default)]
struct Draft {
    plan: FunctionPlan,
    /// What [`FunctionPlan::insertions`] will hold.
    insertions: Vec<Insertion>,
    /// What [`FunctionPlan::blocks`] will hold.
    blocks: Vec<u64>,
    /// What [`FunctionPlan::direct_calls`] will hold.
    direct_calls: Vec<DirectCall>,
    /// What [`FunctionPlan::gas_events`] will hold.
    gas_events: Vec<GasEvent>,
}

impl Draft {
    /// The finished plan, its lists appended to `lists` (its worker's).
    fn finish(&mut self, lists: &mut PlanLists) -> FunctionPlan {
        FunctionPlan {
            insertions: append(&mut lists.insertions, &self.insertions),
            blocks: append(&mut lists.blocks, &self.blocks),
            direct_calls: append(&mut lists.direct_calls, &self.direct_calls),
            gas_events: append(&mut lists.gas_events, &self.gas_events),
            ..std::mem::take(&mut self.plan)
        }
    }
}

/// A reachable direct call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirectCall {
    /// The metered block the call is in.
    pub block: u32,
    /// The function called.
    pub callee: u32,
}

/// What the placement of gas-local reloads needs to know about the code, in program order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GasEvent {
    /// The counter may have changed: at the function's entry (`call` is [`ENTRY`]), after the
    /// call `direct_calls[call]`, or after an indirect call ([`INDIRECT`]); the reload would
    /// go at `offset`.
    Stale { offset: u32, call: u32 },
    /// The metered block with this index starts; its charge reads the local if its cost
    /// (after pre-payment) is not 0.
    Block(u32),
    /// A size charge reads the local.
    Read,
    /// Control may leave the straight line here (a branch, `if`, `else`): a pending reload
    /// must be emitted.
    Branch,
    /// Control leaves the function or ends here (`return`, `unreachable`, `throw`, tail calls,
    /// the function's `end`): a pending reload is not needed.
    Exit,
}

/// The `call` field of [`GasEvent::Stale`] after an indirect call.
pub(crate) const INDIRECT: u32 = u32::MAX;
/// The `call` field of [`GasEvent::Stale`] at the function's entry.
pub(crate) const ENTRY: u32 = u32::MAX - 1;

/// How the stack limit weighs a frame: a fixed part plus 8 units per value slot (16 for
/// `v128`), over parameters, locals and the deepest operand stack the function reaches.
pub const FRAME_BASE_COST: u64 = 64;

/// A function whose deepest possible call chain (its own frame included) weighs at most this
/// skips stack accounting (ABI section 4); a leaf whose frame weighs at most this is one.
pub const LEAF_FRAME_LIMIT: u64 = 4096;

/// What the analysis is asked to plan besides gas.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan<'a> {
    pub costs: &'a CostModel,
    pub stack_limit: bool,
    pub canonicalize_nans: bool,
    /// Canonicalize scalar results right after every operation instead of where they could
    /// first be observed ([`nans`]).
    pub eager_nans: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Function,
    Block,
    Loop,
    If,
    Else,
    TryTable,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    kind: FrameKind,
    /// Whether the instruction that opened the frame was reachable.
    reachable_at_start: bool,
    /// Whether a reachable branch or catch clause targets the frame's label.
    targeted: bool,
    /// Whether the stack counter must be recharged where the frame's label lands (a catch
    /// clause or a frame-releasing `br_table` targets it).
    recharge: bool,
    /// Whether the gas local must be reloaded where the frame's label lands (a catch clause
    /// targets it).
    reload: bool,
    /// For `if` frames that reached `else`: whether the then-arm fell through to it.
    then_fell_through: bool,
    /// Offset just after the opening instruction (a loop's label is there).
    start: usize,
}

/// The metered block being accumulated.
#[derive(Debug)]
struct Current {
    /// Index of this block in `FunctionPlan::blocks`, when it is reachable.
    slot: Option<u32>,
    /// Its cost so far (written to `FunctionPlan::blocks` when it ends).
    gas: u64,
}

/// Reusable buffers, so that analysing many functions does not allocate per function.
#[derive(Default)]
pub(crate) struct Scratch {
    frames: Vec<Frame>,
    /// Scalar NaN producers met in reachable code: where eager canonicalization would go.
    nan_producers: Vec<(usize, FloatKind)>,
    nan_points: Vec<(usize, FloatKind)>,
    nan_sets: Vec<(u32, Option<nans::Kind>)>,
    nans: nans::NanScratch,
    loop_writes: Vec<u32>,
    validator_frames: Vec<ValidatorFrame>,
    insertions: Vec<Insertion>,
    blocks: Vec<u64>,
    direct_calls: Vec<DirectCall>,
    gas_events: Vec<GasEvent>,
}

/// Analyses and validates one function body; its plan's lists go into `lists` (and the plan
/// says they are at index 0 of [`Plans::lists`]: the caller corrects that).
/// `trace` is a reusable buffer for the NaN analysis (see `nans::Trace`).
pub(crate) fn analyze_function<'a>(
    body: &FunctionBody<'a>,
    validator: &mut FuncValidator<ValidatorResources>,
    features: WasmFeatures,
    plan: Plan<'_>,
    scratch: &mut Scratch,
    trace: &mut nans::Trace<'a>,
    lists: &mut PlanLists,
) -> Result<FunctionPlan, Error> {
    let mut reader: BinaryReader<'a> = body.get_binary_reader();
    validator.read_locals(&mut reader).map_err(invalid)?;
    reader.set_features(features);
    let ops_start = reader.original_position();

    let locals = validator.len_locals();
    let locals_summary = count_locals(body, validator)?;
    let local_slots = if plan.stack_limit {
        locals_summary.slots
    } else {
        0
    };

    let mut analysis = Analysis {
        out: Draft {
            plan: FunctionPlan {
                ops_start,
                locals,
                ..FunctionPlan::default()
            },
            // Built in the worker's reusable buffers, then appended to its lists.
            insertions: std::mem::take(&mut scratch.insertions),
            blocks: std::mem::take(&mut scratch.blocks),
            direct_calls: std::mem::take(&mut scratch.direct_calls),
            gas_events: std::mem::take(&mut scratch.gas_events),
        },
        frames: std::mem::take(&mut scratch.frames),
        nan_producers: std::mem::take(&mut scratch.nan_producers),
        nan_sets: std::mem::take(&mut scratch.nan_sets),
        previous_hint: None,
        current: Current { slot: None, gas: 0 },
        plan,
        max_operands: 0,
        uses_v128: false,
        straight: None,
        loop_writes: std::mem::take(&mut scratch.loop_writes),
        counted: None,
    };
    analysis.out.insertions.clear();
    analysis.out.blocks.clear();
    analysis.out.direct_calls.clear();
    analysis.out.gas_events.clear();
    analysis.frames.clear();
    analysis.nan_producers.clear();
    analysis.nan_sets.clear();
    analysis.frames.push(Frame {
        kind: FrameKind::Function,
        reachable_at_start: true,
        targeted: false,
        recharge: false,
        reload: false,
        then_fell_through: false,
        start: ops_start,
    });
    analysis.event(GasEvent::Stale {
        offset: ops_start as u32,
        call: ENTRY,
    });
    if plan.stack_limit {
        analysis.out.plan.extra.level = true;
        analysis.insert(ops_start, Insert::StackEnter);
    }
    analysis.start_block(ops_start, true);
    // The entry block also pays for the declared locals the engine zeroes on every call.
    analysis.current.gas = plan.costs.locals_charge(locals_summary.declared);

    // Scalar NaN canonicalization points are found by `nans`, whose first run rides along
    // from the first float local read or scalar NaN producer on (`starts_nan_analysis`; the
    // driver lets reads through unseen in a function that declares no float local).
    let observed_nans = plan.canonicalize_nans && !plan.eager_nans;
    let float_locals = locals_summary.floats;
    let mut nan_state = NanState::Idle;
    // While `Armed`: the reader right after the read that armed the analysis.
    let mut armed_at: Option<BinaryReader<'_>> = None;
    // One driver for the whole body: the operator it keeps is read in place, not moved out.
    let mut driver = Driver {
        validator: &mut *validator,
        offset: ops_start,
        op: None,
        kind: None,
        frames: std::mem::take(&mut scratch.validator_frames),
        analysis,
        fast: Fast::for_state(observed_nans, float_locals, NanState::Idle),
    };
    driver.frames.clear();
    driver.frames.push(ValidatorFrame::Block);
    while !reader.eof() {
        let offset = reader.original_position();
        driver.offset = offset;
        reader
            .visit_operator(&mut driver)
            .and_then(|validated| validated)
            .map_err(invalid)?;
        if cfg!(debug_assertions) {
            let validator = &*driver.validator;
            let mirrored = (driver.frames.len(), driver.frames.last().copied());
            let actual = (
                validator.control_stack_height() as usize,
                validator.get_control_frame(0).map(|frame| frame.kind),
            );
            assert_eq!(mirrored, actual, "the frame mirror drifted at {offset:#x}");
        }
        // `None` when the driver analysed the operator itself (`Fast`).
        let (Some(op), Some(kind)) = (&driver.op, driver.kind) else {
            continue;
        };
        let analysis = &mut driver.analysis;
        let validator = &*driver.validator;
        if !METERED[kind as usize] {
            return Err(unmetered(kind, offset));
        }
        let next = reader.original_position();
        let was_reachable = analysis.reachable();
        analysis.operator(op, kind, offset, next, validator.resources());
        // Whether the NaN analysis stepped this operator in its first run, which its further
        // runs step again (the operator is moved into the trace once it is no longer read).
        let mut traced = false;
        if observed_nans {
            nan_state = match nan_state {
                NanState::Active => {
                    traced = true;
                    match scratch.nans.step(op, kind, next, validator.resources()) {
                        Ok(()) => NanState::Active,
                        Err(nans::GaveUp) => NanState::Failed,
                    }
                }
                NanState::Idle if was_reachable && starts_nan_analysis(op, kind, validator) => {
                    match scratch.nans.activate(
                        body,
                        validator,
                        &analysis.nan_sets,
                        op,
                        kind,
                        next,
                        trace,
                    ) {
                        // Started by a read: follow the body only once arithmetic shows up.
                        Ok(()) if !produces_scalar_nan(kind) => {
                            armed_at = Some(reader.clone());
                            NanState::Armed
                        }
                        Ok(()) => NanState::Active,
                        Err(nans::GaveUp) => NanState::Failed,
                    }
                }
                NanState::Armed if was_reachable && produces_scalar_nan(kind) => {
                    let replayed = match armed_at.take() {
                        Some(from) => {
                            scratch
                                .nans
                                .replay(from, offset, validator.resources(), trace)
                        }
                        None => Err(nans::GaveUp),
                    };
                    traced = true;
                    match replayed
                        .and_then(|()| scratch.nans.step(op, kind, next, validator.resources()))
                    {
                        Ok(()) => NanState::Active,
                        Err(nans::GaveUp) => NanState::Failed,
                    }
                }
                other => other,
            };
        }
        if traced {
            if let Some(op) = driver.op.take() {
                trace.push(op, kind, next);
            }
        }
        driver.fast = if driver.analysis.counted.is_none() {
            Fast::for_state(observed_nans, float_locals, nan_state)
        } else {
            Fast::Never
        };
    }
    scratch.validator_frames = std::mem::take(&mut driver.frames);
    let mut analysis = driver.analysis;
    reader
        .finish_expression(&Frames(validator))
        .map_err(invalid)?;

    if !analysis.nan_producers.is_empty() {
        // Scalar results are canonicalized where they could first be observed; should that
        // analysis give up, after every operation, as the eager strategy does.
        let planned = match nan_state {
            NanState::Active => {
                scratch
                    .nans
                    .finish(trace, body, validator, features, &mut scratch.nan_points)
            }
            _ => Err(nans::GaveUp),
        };
        if planned.is_err() {
            scratch.nan_points.clear();
            scratch.nan_points.append(&mut analysis.nan_producers);
        }
        for (offset, kind) in scratch.nan_points.drain(..) {
            match kind {
                FloatKind::F32 => analysis.out.plan.extra.f32 = true,
                _ => analysis.out.plan.extra.f64 = true,
            }
            analysis.insert(offset, Insert::Canonicalize(kind));
        }
    }
    let slot = if analysis.uses_v128 { 16 } else { 8 };
    analysis.out.plan.frame_cost = FRAME_BASE_COST + local_slots + analysis.max_operands * slot;
    let calls = !analysis.out.direct_calls.is_empty() || analysis.out.plan.indirect_calls;
    if analysis.out.plan.extra.level && !calls && analysis.out.plan.frame_cost <= LEAF_FRAME_LIMIT {
        // A leaf with a small frame needs no stack accounting (ABI section 4): its stack
        // insertions emit nothing.
        analysis.out.plan.extra.level = false;
    }
    // Insertions were pushed in program order except catch landings at loop starts and NaN
    // canonicalizations; a stable sort keeps ties in push order, gas reloads first.
    let key = |i: &Insertion| (i.offset, i.insert != Insert::GasReload);
    if !analysis.out.insertions.is_sorted_by_key(key) {
        analysis.out.insertions.sort_by_key(key);
    }
    scratch.frames = analysis.frames;
    scratch.nan_producers = analysis.nan_producers;
    scratch.nan_sets = analysis.nan_sets;
    scratch.loop_writes = analysis.loop_writes;
    let mut out = analysis.out;
    let plan = out.finish(lists);
    scratch.insertions = out.insertions;
    scratch.blocks = out.blocks;
    scratch.direct_calls = out.direct_calls;
    scratch.gas_events = out.gas_events;
    Ok(plan)
}

/// Whether the NaN analysis starts at this reachable operator: the first scalar NaN producer
/// or read of an `f32`/`f64` local (see [`nans::NanScratch::activate`]).
fn starts_nan_analysis(
    op: &Operator<'_>,
    kind: OpKind,
    validator: &FuncValidator<ValidatorResources>,
) -> bool {
    match op {
        Operator::LocalGet { local_index } => matches!(
            validator.get_local_type(*local_index),
            Some(ValType::F32 | ValType::F64)
        ),
        _ => produces_scalar_nan(kind),
    }
}

/// Whether operators of this kind can produce a scalar NaN with undetermined bits.
fn produces_scalar_nan(kind: OpKind) -> bool {
    matches!(nan_producer(kind), Some(FloatKind::F32 | FloatKind::F64))
}

/// Where the NaN analysis of the function being read stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NanState {
    /// No scalar NaN producer or float local read met yet.
    Idle,
    /// Started at a float local read, with no scalar NaN producer met since: the operators
    /// since the read are followed only when one is (see `nans::NanScratch::replay`), so a
    /// function that only moves floats never pays for the analysis.
    Armed,
    /// Following every operator since the first.
    Active,
    /// Gave up: canonicalize eagerly.
    Failed,
}

/// Which operators in [`FAST`] the [`Driver`] analyses itself, without building an
/// `Operator`, before validating them (most operators are in it, and this is the pass's
/// innermost loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fast {
    /// None: a counted loop's back edge was just read (its `end` must come next), or the
    /// NaN analysis follows every operator.
    Never,
    /// The [`PLAIN`] ones but `local.get`, which may start the NaN analysis; writes to
    /// locals, with the hint of the operator before, are recorded for it
    /// (`Analysis::nan_sets`).
    PlainButReads,
    /// All of them: nothing records writes or hints. (Before the NaN analysis starts no
    /// arithmetic result has been assigned, and what else was assigned matters only to
    /// declared float locals: a parameter holds the caller's bits anyway.)
    All,
}

impl Fast {
    /// What the NaN analysis allows, in this state, in a function that declares `f32` or `f64`
    /// locals or none.
    fn for_state(observed_nans: bool, float_locals: bool, state: NanState) -> Fast {
        match state {
            _ if !observed_nans => Fast::All,
            NanState::Active => Fast::Never,
            // A read of a float local starts it.
            NanState::Idle if float_locals => Fast::PlainButReads,
            NanState::Idle => Fast::All,
            // Only a scalar NaN producer moves these on, and none is plain.
            NanState::Armed | NanState::Failed => Fast::All,
        }
    }
}

/// Feeds each operator straight from the reader to the validator (no intermediate decoding
/// into an `Operator` and dispatching on it again), analyses plain operators itself when it
/// may ([`Fast`]), and keeps the others for the analysis.
struct Driver<'v, 'a, 'p> {
    validator: &'v mut FuncValidator<ValidatorResources>,
    offset: usize,
    /// The last operator kept, and its kind: `None` when the last operator read was analysed
    /// in its visit (or none was read).
    op: Option<Operator<'a>>,
    kind: Option<OpKind>,
    /// The kinds of the validator's control frames, innermost last (see `follow_frames`).
    frames: Vec<ValidatorFrame>,
    analysis: Analysis<'p>,
    fast: Fast,
}

/// The validator's control frames, which the reader consults to decode some operators.
struct Frames<'v>(&'v FuncValidator<ValidatorResources>);

impl FrameStack for Frames<'_> {
    fn current_frame(&self) -> Option<ValidatorFrame> {
        self.0.get_control_frame(0).map(|frame| frame.kind)
    }
}

impl FrameStack for Driver<'_, '_, '_> {
    // The reader asks before every operator (to refuse operators after the function's
    // `end`); the mirror answers without a call into the validator.
    #[inline]
    fn current_frame(&self) -> Option<ValidatorFrame> {
        self.frames.last().copied()
    }
}

impl<'a> Driver<'_, 'a, '_> {
    /// The full path of a visit: validates the operator (`validate`, which then builds it)
    /// and keeps it, with its kind, for the analysis. Out of line, so that a visit that
    /// takes the fast path does not pay for this one's registers.
    #[inline(never)]
    fn keep(
        &mut self,
        kind: OpKind,
        validate: impl FnOnce(&mut Self) -> Result<Operator<'a>, BinaryReaderError>,
    ) -> Result<(), BinaryReaderError> {
        self.analysis.operands_before(&*self.validator);
        let op = validate(self)?;
        // Legacy exception handling (`try`, `catch`, `delegate`), which `follow_frames` does
        // not follow, is never metered: the supported features refuse it, and should it
        // validate, the analysis refuses it (`METERED`) before the reader asks for the next
        // operator's frame.
        let _ = follow_frames(&mut self.frames, kind);
        self.op = Some(op);
        self.kind = Some(kind);
        Ok(())
    }

    /// Whether the operator of this kind, plain or a write to a local, is analysed in its
    /// visit.
    #[inline(always)]
    fn analyses(&self, kind: OpKind) -> bool {
        match self.fast {
            Fast::All => true,
            Fast::PlainButReads => PLAIN[kind as usize] && kind != OpKind::LocalGet,
            Fast::Never => false,
        }
    }
}

/// Keeps `frames`, the kinds of the control frames open in a validated body (innermost last,
/// which the reader asks for before every operator), up to date across an operator of this
/// kind. `false` when it cannot: legacy exception handling (`try`, `catch`, `delegate`)
/// changes frames in ways not followed here, and an `else` needs a frame.
#[inline(always)]
fn follow_frames(frames: &mut Vec<ValidatorFrame>, kind: OpKind) -> bool {
    let opened = match kind {
        OpKind::Block => ValidatorFrame::Block,
        OpKind::Loop => ValidatorFrame::Loop,
        OpKind::If => ValidatorFrame::If,
        OpKind::TryTable => ValidatorFrame::TryTable,
        OpKind::Else => match frames.last_mut() {
            Some(top) => {
                *top = ValidatorFrame::Else;
                return true;
            }
            None => return false,
        },
        OpKind::End => {
            frames.pop();
            return true;
        }
        OpKind::Try | OpKind::Catch | OpKind::CatchAll | OpKind::Delegate => return false,
        _ => return true,
    };
    frames.push(opened);
    true
}

/// [`straight_entry`] of the operator a visit of the [`Driver`] has the name and immediates
/// of, without building it (checked against [`straight_entry`] in debug builds).
macro_rules! straight_entry {
    (LocalGet { $local:ident }) => {
        (Recent::Get($local), None)
    };
    (LocalSet { $local:ident }) => {
        (Recent::Other, Some($local))
    };
    (LocalTee { $local:ident }) => {
        (Recent::Tee($local), Some($local))
    };
    (I32Const { $value:ident }) => {
        (Recent::Const($value), None)
    };
    (I32Add) => {
        (Recent::Add, None)
    };
    (I32LtU) => {
        (Recent::LtU, None)
    };
    (I32LtS) => {
        (Recent::LtS, None)
    };
    (I32Ne) => {
        (Recent::Ne, None)
    };
    ($($other:tt)*) => {
        (Recent::Other, None)
    };
}

macro_rules! define_driver {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        $(
            #[allow(clippy::clone_on_copy)]
            fn $visit(&mut self $($(, $arg: $argty)*)?) -> Self::Output {
                if const { FAST[OpKind::$op as usize] } && self.analyses(OpKind::$op) {
                    // Analysed first and validated last, so the validator's visit is the
                    // last thing done (an error ends the function's analysis anyway).
                    self.analysis.plain(OpKind::$op, &*self.validator);
                    if self.analysis.straight.is_some() {
                        let entry = straight_entry!($op $({ $($arg),* })?);
                        if cfg!(debug_assertions) {
                            let op = Operator::$op $({ $($arg: $arg.clone()),* })?;
                            assert_eq!(entry, straight_entry(&op), "{op:?}");
                        }
                        self.analysis.record_straight_entry(entry);
                    }
                    self.kind = None;
                    return self.validator.visitor(self.offset).$visit($($($arg.clone()),*)?);
                }
                self.keep(OpKind::$op, move |driver| {
                    driver.validator.visitor(driver.offset).$visit($($($arg.clone()),*)?)?;
                    Ok(Operator::$op $({ $($arg),* })?)
                })
            }
        )*
    };
}

macro_rules! define_simd_driver {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        $(
            #[allow(clippy::clone_on_copy)]
            fn $visit(&mut self $($(, $arg: $argty)*)?) -> Self::Output {
                self.analysis.operands_before(&*self.validator);
                self.validator.simd_visitor(self.offset).$visit($($($arg.clone()),*)?)?;
                self.op = Some(Operator::$op $({ $($arg),* })?);
                self.kind = Some(OpKind::$op);
                Ok(())
            }
        )*
    };
}

impl<'a> VisitOperator<'a> for Driver<'_, 'a, '_> {
    type Output = Result<(), BinaryReaderError>;

    fn simd_visitor(&mut self) -> Option<&mut dyn VisitSimdOperator<'a, Output = Self::Output>> {
        Some(self)
    }

    wasmparser::for_each_visit_operator!(define_driver);
}

impl<'a> VisitSimdOperator<'a> for Driver<'_, 'a, '_> {
    wasmparser::for_each_visit_simd_operator!(define_simd_driver);
}

/// Stack units a value of this type takes.
fn slot_size(ty: ValType) -> u64 {
    match ty {
        ValType::V128 => 16,
        _ => 8,
    }
}

/// The parameter types of the function being validated.
pub(crate) fn params_of(validator: &FuncValidator<ValidatorResources>) -> Option<&[ValType]> {
    let resources = validator.resources();
    let ty = resources.sub_type_at(resources.type_index_of_function(validator.index())?)?;
    match &ty.composite_type.inner {
        wasmparser::CompositeInnerType::Func(f) => Some(f.params()),
        _ => None,
    }
}

/// What a function's parameters and locals are, for the analysis.
struct LocalsSummary {
    /// How many locals the function declares (parameters excluded).
    declared: u64,
    /// The stack slots of its parameters and locals.
    slots: u64,
    /// Whether it declares an `f32` or `f64` local. A read of one starts the NaN analysis: a
    /// later assignment of an arithmetic result may reach it through a loop. (A parameter
    /// arrives with the caller's bits, so one that is assigned such a result too has it
    /// canonicalized there: its reads never need the analysis.)
    floats: bool,
}

/// Sums up a function's parameters and locals, per parameter and per local *declaration*: a
/// body declares up to 50,000 locals in five bytes, and the pass must stay linear in the
/// input's size, not in the number of locals it declares.
fn count_locals(
    body: &FunctionBody<'_>,
    validator: &FuncValidator<ValidatorResources>,
) -> Result<LocalsSummary, Error> {
    let params = params_of(validator).ok_or_else(|| {
        Error::new(ErrorKind::Internal {
            message: format!("function {} has no function type", validator.index()),
        })
    })?;
    let float = |ty: ValType| matches!(ty, ValType::F32 | ValType::F64);
    let mut summary = LocalsSummary {
        declared: 0,
        slots: params.iter().map(|&ty| slot_size(ty)).sum(),
        floats: false,
    };
    for declaration in body.get_locals_reader().map_err(invalid)? {
        let (count, ty) = declaration.map_err(invalid)?;
        summary.declared += u64::from(count);
        summary.slots += u64::from(count) * slot_size(ty);
        summary.floats |= count > 0 && float(ty);
    }
    Ok(summary)
}

struct Analysis<'a> {
    out: Draft,
    frames: Vec<Frame>,
    nan_producers: Vec<(usize, FloatKind)>,
    /// Every reachable `local.set`/`local.tee`, with what it assigns when the operator before
    /// it decides that (see `nans::hint`), for `nans` to start from.
    nan_sets: Vec<(u32, Option<nans::Kind>)>,
    /// `nans::hint` of the previous reachable operator.
    previous_hint: Option<nans::Kind>,
    current: Current,
    plan: Plan<'a>,
    max_operands: u64,
    uses_v128: bool,
    /// The innermost loop, while its body is still one metered block.
    straight: Option<StraightLoop>,
    /// Locals written in `straight`'s body so far.
    loop_writes: Vec<u32>,
    /// A counted back edge just read; the loop qualifies if its `end` comes next.
    counted: Option<PendingLoop>,
}

/// What counted-loop recognition keeps of an operator: how it may take part in a back edge,
/// and the local it writes.
fn straight_entry(op: &Operator<'_>) -> (Recent, Option<u32>) {
    match *op {
        Operator::LocalGet { local_index } => (Recent::Get(local_index), None),
        Operator::LocalSet { local_index } => (Recent::Other, Some(local_index)),
        Operator::LocalTee { local_index } => (Recent::Tee(local_index), Some(local_index)),
        Operator::I32Const { value } => (Recent::Const(value), None),
        Operator::I32Add => (Recent::Add, None),
        Operator::I32LtU => (Recent::LtU, None),
        Operator::I32LtS => (Recent::LtS, None),
        Operator::I32Ne => (Recent::Ne, None),
        _ => (Recent::Other, None),
    }
}

/// The operators a counted loop's back edge is recognised by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recent {
    Get(u32),
    Tee(u32),
    Const(i32),
    Add,
    LtU,
    LtS,
    Ne,
    Other,
}

/// A counted back edge waiting for its loop's `end`.
#[derive(Clone, Copy, Debug)]
struct PendingLoop {
    /// Index of the loop's frame.
    frame: usize,
    /// Index of the body's charge in the insertions, which the loop's charge replaces.
    charge: usize,
    /// Offset of the `loop` instruction, where the loop's charge goes.
    offset: usize,
    counted: CountedLoop,
}

/// A loop whose body has been one metered block so far.
#[derive(Clone, Copy, Debug)]
struct StraightLoop {
    /// Index of the loop's frame.
    frame: usize,
    /// The body's metered block.
    block: u32,
    /// Index of the body's charge in the insertions.
    charge: usize,
    /// Offset of the `loop` instruction.
    offset: usize,
    /// The last operators of the body, oldest first.
    recent: [Recent; 6],
}

impl Analysis<'_> {
    fn reachable(&self) -> bool {
        self.current.slot.is_some()
    }

    fn insert(&mut self, offset: usize, insert: Insert) {
        let offset = offset as u32;
        self.out.insertions.push(Insertion { offset, insert });
    }

    fn event(&mut self, event: GasEvent) {
        self.out.gas_events.push(event);
    }

    /// Ends the current metered block and starts a new one whose leader is at `leader`.
    fn start_block(&mut self, leader: usize, reachable: bool) {
        self.finish_block();
        self.straight = None;
        self.current.slot = if reachable {
            let block = self.out.blocks.len() as u32;
            self.out.blocks.push(0);
            self.insert(leader, Insert::Charge(block));
            self.event(GasEvent::Block(block));
            Some(block)
        } else {
            None
        };
    }

    fn finish_block(&mut self) {
        if let Some(slot) = self.current.slot.take() {
            self.out.blocks[slot as usize] = self.current.gas;
        }
        self.current.gas = 0;
    }

    /// Marks the frame `depth` levels out as the target of a reachable branch; returns
    /// whether the branch leaves the function (targets the function's own label).
    fn target(&mut self, depth: u32) -> bool {
        if !self.reachable() {
            return false;
        }
        // The validator has already checked the depth.
        let index = self.frames.len() - 1 - depth as usize;
        self.frames[index].targeted = true;
        index == 0
    }

    /// Asks for a stack recharge where the label of the frame `depth` levels out lands.
    fn recharge_at_label(&mut self, depth: u32) {
        if self.plan.stack_limit {
            self.at_label(depth, Insert::StackRecharge);
        }
    }

    /// Asks for a gas reload where the label of the frame `depth` levels out lands (a catch:
    /// the frames the exception unwound charged the counter).
    fn reload_at_label(&mut self, depth: u32) {
        self.at_label(depth, Insert::GasReload);
    }

    /// Asks for `insert` (a stack recharge or a gas reload) where the label of the frame
    /// `depth` levels out lands: once per frame, at a loop's start right away, after any
    /// other frame's `end` when it is reached.
    fn at_label(&mut self, depth: u32, insert: Insert) {
        if !self.reachable() {
            return;
        }
        let index = self.frames.len() - 1 - depth as usize;
        let frame = &mut self.frames[index];
        let asked = match insert {
            Insert::GasReload => &mut frame.reload,
            _ => &mut frame.recharge,
        };
        if index == 0 || *asked {
            return;
        }
        *asked = true;
        if frame.kind == FrameKind::Loop {
            let start = frame.start;
            self.insert(start, insert);
        }
    }

    /// Before a branch that may leave the function: give the frame back.
    fn release_before(&mut self, offset: usize) {
        if self.plan.stack_limit {
            self.insert(offset, Insert::StackRelease);
        }
    }

    fn push(&mut self, kind: FrameKind, start: usize) {
        self.frames.push(Frame {
            kind,
            reachable_at_start: self.reachable(),
            targeted: false,
            recharge: false,
            reload: false,
            then_fell_through: false,
            start,
        });
    }

    /// Records a reachable direct call in the current block; returns its index.
    fn direct_call(&mut self, callee: u32) -> u32 {
        let block = self.current.slot.unwrap_or(0);
        self.out.direct_calls.push(DirectCall { block, callee });
        self.out.direct_calls.len() as u32 - 1
    }

    /// Nothing after the current instruction is reachable until the enclosing frame ends.
    fn dead_end(&mut self) {
        self.finish_block();
    }

    /// Analyses one reachable or unreachable operator: the fast path for [`PLAIN`] ones,
    /// [`Analysis::full_operator`] for the rest.
    fn operator(
        &mut self,
        op: &Operator<'_>,
        kind: OpKind,
        offset: usize,
        next: usize,
        resources: &ValidatorResources,
    ) {
        let reachable = self.reachable();
        // Most operators only add their price; outside a loop that may be counted, nothing
        // else needs looking at. (Debug builds take the full path for them too and check
        // that it did nothing else, so the tests keep `PLAIN` honest.)
        let plain = PLAIN[kind as usize] && self.straight.is_none() && self.counted.is_none();
        if plain && !cfg!(debug_assertions) {
            self.price_only(kind);
            return;
        }
        let footprint = plain.then(|| self.footprint());
        self.full_operator(op, kind, offset, next, reachable, resources);
        if let Some(footprint) = footprint {
            assert_eq!(
                footprint,
                self.footprint(),
                "{kind:?} is in PLAIN but its analysis does more than add its price"
            );
            assert_eq!(
                self.previous_hint, None,
                "{kind:?} is in PLAIN but has a hint"
            );
        }
    }

    /// Analyses an operator the [`Driver`] does not keep (see [`Fast`]), before it is
    /// validated: what [`Analysis::operator`] does for it, and [`Analysis::operands_before`].
    #[inline(always)]
    fn plain(&mut self, kind: OpKind, validator: &FuncValidator<ValidatorResources>) {
        self.price_only(kind);
        self.operands_before(validator);
    }

    /// Keeps the deepest operand stack for the stack limit, from the height *before* every
    /// operator (so an operator's analysis can come before its validation): that is the
    /// height after the operator before it, and the height after the function's last
    /// operator (its `end`, which leaves only the results) is no more than before it.
    #[inline(always)]
    fn operands_before(&mut self, validator: &FuncValidator<ValidatorResources>) {
        if self.plan.stack_limit {
            self.max_operands = self
                .max_operands
                .max(u64::from(validator.operand_stack_height()));
        }
    }

    /// All the analysis of an operator that only adds its price: that, when reachable (and
    /// it leaves no hint for a write after it).
    #[inline(always)]
    fn price_only(&mut self, kind: OpKind) {
        if self.reachable() {
            self.add_price(kind);
        }
        self.previous_hint = None;
    }

    /// Adds an operator's price to the current block.
    fn add_price(&mut self, kind: OpKind) {
        self.current.gas = self
            .current
            .gas
            .saturating_add(u64::from(self.plan.costs.op_price(kind)));
    }

    /// What an operator in [`PLAIN`] must leave unchanged (all but the block's cost).
    fn footprint(&self) -> impl PartialEq + std::fmt::Debug {
        (
            self.out.insertions.len(),
            self.out.gas_events.len(),
            self.out.direct_calls.len(),
            (
                self.out.plan.indirect_calls,
                self.out.plan.size_charges,
                self.out.plan.extra,
            ),
            self.frames.len(),
            (self.nan_sets.len(), self.nan_producers.len()),
            (self.current.slot, self.uses_v128),
            (self.straight.is_some(), self.counted.is_some()),
        )
    }

    /// Everything an operator can need: its price, insertions before and after it, control
    /// frames, calls, NaN bookkeeping and counted-loop recognition.
    fn full_operator(
        &mut self,
        op: &Operator<'_>,
        kind: OpKind,
        offset: usize,
        next: usize,
        reachable: bool,
        resources: &ValidatorResources,
    ) {
        // (Checked first: the value is large, and almost always `None`.)
        let counted = if self.counted.is_some() {
            self.counted.take()
        } else {
            None
        };
        if reachable {
            self.add_price(kind);
            if kind.info().simd {
                self.uses_v128 = true;
            }
            if SIDE_EFFECTS[kind as usize] {
                self.side_effects(op, kind, offset, next, resources);
            } else if cfg!(debug_assertions) {
                // The tests keep `SIDE_EFFECTS` honest.
                let footprint = self.footprint();
                self.side_effects(op, kind, offset, next, resources);
                assert_eq!(
                    footprint,
                    self.footprint(),
                    "{kind:?} is not in SIDE_EFFECTS but has some"
                );
            }
            if self.plan.canonicalize_nans && !self.plan.eager_nans {
                if let Operator::LocalSet { local_index } | Operator::LocalTee { local_index } = op
                {
                    self.nan_sets.push((*local_index, self.previous_hint));
                }
                self.previous_hint = match op {
                    // A tee passes its value on (the hint can only over-approximate).
                    Operator::LocalTee { .. } => self.previous_hint,
                    _ => nans::hint(op, kind),
                };
            }
        } else {
            self.previous_hint = None;
        }
        match op {
            Operator::Block { .. } => self.push(FrameKind::Block, next),
            Operator::TryTable { try_table } => {
                // Catch labels are relative to the frames *outside* the try_table.
                for catch in &try_table.catches {
                    let (Catch::One { label, .. }
                    | Catch::OneRef { label, .. }
                    | Catch::All { label }
                    | Catch::AllRef { label }) = *catch;
                    // A catch that lands outside the function is a rethrow to the caller.
                    if !self.target(label) {
                        self.recharge_at_label(label);
                        self.reload_at_label(label);
                    }
                }
                self.push(FrameKind::TryTable, next);
            }
            Operator::Loop { .. } => {
                self.push(FrameKind::Loop, next);
                self.start_block(next, reachable);
                if let Some(block) = self.current.slot {
                    self.loop_writes.clear();
                    self.straight = Some(StraightLoop {
                        frame: self.frames.len() - 1,
                        block,
                        charge: self.out.insertions.len() - 1,
                        offset,
                        recent: [Recent::Other; 6],
                    });
                }
            }
            Operator::If { .. } => {
                self.event(GasEvent::Branch);
                self.push(FrameKind::If, next);
                self.start_block(next, reachable);
            }
            Operator::Else => {
                self.event(GasEvent::Branch);
                let frame = self.frames.last_mut().expect("validated: else inside if");
                frame.kind = FrameKind::Else;
                frame.then_fell_through = reachable;
                let arm_reachable = frame.reachable_at_start;
                self.start_block(next, arm_reachable);
            }
            Operator::End => {
                if let Some(pending) = counted {
                    if pending.frame == self.frames.len() - 1 {
                        // The back edge was the body's last instruction: pay every iteration
                        // on entry.
                        let index = self.out.plan.loops.len() as u32;
                        self.out.plan.loops.push(pending.counted);
                        self.out.insertions[pending.charge] = Insertion {
                            offset: pending.offset as u32,
                            insert: Insert::LoopCharge(index),
                        };
                        self.out.plan.extra.size = true;
                    }
                }
                self.end(offset, next)
            }
            Operator::Br { relative_depth } => {
                self.event(GasEvent::Branch);
                if self.target(*relative_depth) {
                    self.release_before(offset);
                }
                self.dead_end();
            }
            Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth } => {
                self.event(GasEvent::Branch);
                if *relative_depth == 0 && matches!(op, Operator::BrIf { .. }) {
                    self.counted = self.counted_back_edge();
                }
                let exits = self.target(*relative_depth);
                self.start_block(next, reachable);
                if exits && self.plan.stack_limit {
                    // Released for the taken branch; the fallthrough keeps its frame.
                    self.insert(offset, Insert::StackRelease);
                    self.insert(next, Insert::StackRecharge);
                }
            }
            Operator::BrTable { targets } => {
                self.event(GasEvent::Branch);
                let depths: Vec<u32> = targets
                    .targets()
                    .flatten()
                    .chain(std::iter::once(targets.default()))
                    .collect();
                let mut exits = false;
                for &depth in &depths {
                    exits |= self.target(depth);
                }
                if exits {
                    self.release_before(offset);
                    for &depth in &depths {
                        self.recharge_at_label(depth);
                    }
                }
                self.dead_end();
            }
            Operator::Return => {
                if reachable {
                    self.release_before(offset);
                }
                self.event(GasEvent::Exit);
                self.dead_end();
            }
            Operator::Unreachable
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {
                self.event(GasEvent::Exit);
                self.dead_end();
            }
            _ => {}
        }
        self.record_straight(op);
    }

    /// In a loop whose body is one metered block so far: keeps the body's last operators and
    /// the locals it writes, for [`Analysis::counted_back_edge`].
    #[inline(always)]
    fn record_straight(&mut self, op: &Operator<'_>) {
        if self.straight.is_some() {
            self.record_straight_entry(straight_entry(op));
        }
    }

    /// [`Analysis::record_straight`] with what it keeps of the operator
    /// ([`straight_entry`]).
    #[inline(always)]
    fn record_straight_entry(&mut self, (recent, written): (Recent, Option<u32>)) {
        if let Some(straight) = &mut self.straight {
            if let Some(local) = written {
                self.loop_writes.push(local);
            }
            straight.recent.rotate_left(1);
            straight.recent[5] = recent;
        }
    }

    /// At a `br_if 0`: whether it is the counted back edge of a loop whose body is one
    /// metered block ([`CountedLoop`]); the loop qualifies if its `end` follows.
    fn counted_back_edge(&self) -> Option<PendingLoop> {
        use Recent::*;
        let body = self.straight?;
        if body.frame != self.frames.len() - 1 || self.current.slot != Some(body.block) {
            return None;
        }
        let (counter, step, bound, exit) = match body.recent {
            [Get(i), Const(step), Add, Tee(t), bound, exit] if i == t => {
                let bound = match bound {
                    Get(n) => LoopBound::Local(n),
                    Const(n) => LoopBound::Const(n),
                    _ => return None,
                };
                let exit = match exit {
                    LtU if step == 1 => LoopExit::LtU,
                    LtS if step == 1 => LoopExit::LtS,
                    Ne => LoopExit::Ne,
                    _ => return None,
                };
                (i, step, bound, exit)
            }
            // `br_if` on the counter itself: loops while it is not 0.
            [_, _, Get(i), Const(step), Add, Tee(t)] if i == t => {
                (i, step, LoopBound::Const(0), LoopExit::Ne)
            }
            _ => return None,
        };
        if step != 1 && step != -1 {
            return None;
        }
        // The counter is written once per iteration (by the back edge), the bound never.
        if self.loop_writes.iter().filter(|&&w| w == counter).count() != 1 {
            return None;
        }
        if let LoopBound::Local(n) = bound {
            if n == counter || self.loop_writes.contains(&n) {
                return None;
            }
        }
        Some(PendingLoop {
            frame: body.frame,
            charge: body.charge,
            offset: body.offset,
            counted: CountedLoop {
                block: body.block,
                counter,
                step,
                bound,
                exit,
            },
        })
    }

    /// Insertions an operator needs besides its block's gas: size charges, stack
    /// accounting around calls, NaN canonicalization. Called for reachable operators only.
    fn side_effects(
        &mut self,
        op: &Operator<'_>,
        kind: OpKind,
        offset: usize,
        next: usize,
        resources: &ValidatorResources,
    ) {
        // The length operand is `i64` when the memory or table is 64-bit (both of them, for
        // a copy); `memory.init` and `table.init` always take an `i32`.
        let memory64 = |m: u32| resources.memory_at(m).is_some_and(|t| t.memory64);
        let table64 = |t: u32| resources.table_at(t).is_some_and(|t| t.table64);
        let wide = match *op {
            Operator::MemoryCopy { dst_mem, src_mem } => memory64(dst_mem) && memory64(src_mem),
            Operator::MemoryFill { mem } | Operator::MemoryGrow { mem } => memory64(mem),
            Operator::TableCopy {
                dst_table,
                src_table,
            } => table64(dst_table) && table64(src_table),
            Operator::TableFill { table } | Operator::TableGrow { table } => table64(table),
            _ => false,
        };
        let size = |unit| Insert::SizeCharge { unit, wide };
        let before = match op {
            Operator::MemoryCopy { .. } | Operator::MemoryFill { .. } => {
                Some(size(UnitKind::MemoryBytes))
            }
            // memory.init's length is always i32.
            Operator::MemoryInit { .. } => Some(Insert::SizeCharge {
                unit: UnitKind::MemoryBytes,
                wide: false,
            }),
            Operator::TableCopy { .. }
            | Operator::TableFill { .. }
            | Operator::TableGrow { .. } => Some(size(UnitKind::TableElements)),
            Operator::TableInit { .. } => Some(Insert::SizeCharge {
                unit: UnitKind::TableElements,
                wide: false,
            }),
            Operator::MemoryGrow { .. } => Some(size(UnitKind::MemoryPages)),
            Operator::Call { function_index } => {
                let call = self.direct_call(*function_index);
                self.event(GasEvent::Stale {
                    offset: next as u32,
                    call,
                });
                None
            }
            Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                self.out.plan.indirect_calls = true;
                self.event(GasEvent::Stale {
                    offset: next as u32,
                    call: INDIRECT,
                });
                None
            }
            Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {
                match op {
                    Operator::ReturnCall { function_index } => {
                        self.direct_call(*function_index);
                    }
                    _ => self.out.plan.indirect_calls = true,
                }
                self.plan.stack_limit.then_some(Insert::StackRelease)
            }
            _ => None,
        };
        if let Some(insert) = before {
            if matches!(insert, Insert::SizeCharge { .. }) {
                self.out.plan.extra.size = true;
                self.out.plan.size_charges = true;
                self.event(GasEvent::Read);
            }
            self.insert(offset, insert);
        }
        if !self.plan.canonicalize_nans {
            return;
        }
        match nan_producer(kind) {
            Some(float @ (FloatKind::F32 | FloatKind::F64)) if !self.plan.eager_nans => {
                // Placed after the whole function is read (`nans`).
                self.nan_producers.push((next, float));
            }
            Some(float) => {
                match float {
                    FloatKind::F32 => self.out.plan.extra.f32 = true,
                    FloatKind::F64 => self.out.plan.extra.f64 = true,
                    FloatKind::F32x4 | FloatKind::F64x2 => self.out.plan.extra.v128 = true,
                }
                self.insert(next, Insert::Canonicalize(float));
            }
            None => {}
        }
    }

    fn end(&mut self, offset: usize, next: usize) {
        let frame = self.frames.pop().expect("validated: end matches a frame");
        let fell_through = self.reachable();
        let other_entry = match frame.kind {
            FrameKind::Function => {
                if fell_through {
                    self.release_before(offset);
                }
                self.event(GasEvent::Exit);
                self.finish_block();
                return;
            }
            FrameKind::Loop => false,
            FrameKind::Block | FrameKind::TryTable => frame.targeted,
            FrameKind::If => frame.targeted || frame.reachable_at_start,
            FrameKind::Else => frame.targeted || frame.then_fell_through,
        };
        if frame.recharge && frame.kind != FrameKind::Loop {
            self.insert(next, Insert::StackRecharge);
        }
        if frame.reload && frame.kind != FrameKind::Loop {
            self.insert(next, Insert::GasReload);
        }
        if other_entry {
            self.start_block(next, true);
        } else if !fell_through {
            // Neither fallthrough nor a branch reaches the code after this `end`.
            self.finish_block();
        }
        // Otherwise only fallthrough reaches it: the current block simply continues.
    }
}

/// The float shape of an operator's result when the operator can produce a NaN whose bits
/// differ between engines or CPUs. Sign, absolute value, copysign, loads, stores,
/// reinterpretations, constants and integer conversions only move bits and are not listed.
const fn nan_producer(kind: OpKind) -> Option<FloatKind> {
    use OpKind as O;
    Some(match kind {
        O::F32Add
        | O::F32Sub
        | O::F32Mul
        | O::F32Div
        | O::F32Sqrt
        | O::F32Min
        | O::F32Max
        | O::F32Ceil
        | O::F32Floor
        | O::F32Trunc
        | O::F32Nearest
        | O::F32DemoteF64 => FloatKind::F32,
        O::F64Add
        | O::F64Sub
        | O::F64Mul
        | O::F64Div
        | O::F64Sqrt
        | O::F64Min
        | O::F64Max
        | O::F64Ceil
        | O::F64Floor
        | O::F64Trunc
        | O::F64Nearest
        | O::F64PromoteF32 => FloatKind::F64,
        O::F32x4Add
        | O::F32x4Sub
        | O::F32x4Mul
        | O::F32x4Div
        | O::F32x4Sqrt
        | O::F32x4Min
        | O::F32x4Max
        | O::F32x4Ceil
        | O::F32x4Floor
        | O::F32x4Trunc
        | O::F32x4Nearest
        | O::F32x4DemoteF64x2Zero => FloatKind::F32x4,
        O::F64x2Add
        | O::F64x2Sub
        | O::F64x2Mul
        | O::F64x2Div
        | O::F64x2Sqrt
        | O::F64x2Min
        | O::F64x2Max
        | O::F64x2Ceil
        | O::F64x2Floor
        | O::F64x2Trunc
        | O::F64x2Nearest
        | O::F64x2PromoteLowF32x4 => FloatKind::F64x2,
        _ => return None,
    })
}

/// A table indexed by `OpKind as usize`, computed at compile time from each kind and its
/// `OpInfo`.
macro_rules! kind_table {
    (|$kind:ident, $info:ident| $value:expr) => {{
        let mut table = [false; OPERATORS.len()];
        let mut i = 0;
        while i < ALL.len() {
            let $kind = ALL[i];
            let $info = &OPERATORS[i];
            table[i] = $value;
            i += 1;
        }
        table
    }};
}

/// For each operator kind (indexed by `OpKind as usize`): whether the analysis only adds its
/// price to the current block, so the main loop can skip everything else. Not plain: control
/// and calls, bulk operations (size charges), `local.set`/`local.tee` (NaN assignments,
/// counted loops), SIMD (frame slot size), NaN producers and what `nans::hint` decides, and
/// anything not metered. (Inside a loop that may be counted every operator takes the full
/// path.)
const PLAIN: [bool; OPERATORS.len()] =
    kind_table!(|kind, info| info.metered && !info.simd && is_plain(kind));

/// The classifier [`PLAIN`] is built from (the metered and SIMD checks aside).
const fn is_plain(kind: OpKind) -> bool {
    only_priced(kind) && !nans::has_hint(kind)
}

/// Whether, outside a loop that may be counted, the analysis of operators of this kind adds
/// their price and at most keeps their `nans::hint` (the metered and SIMD checks aside).
const fn only_priced(kind: OpKind) -> bool {
    use OpKind as K;
    let special = matches!(
        kind,
        K::Block
            | K::Loop
            | K::If
            | K::Else
            | K::End
            | K::TryTable
            | K::Br
            | K::BrIf
            | K::BrOnNull
            | K::BrOnNonNull
            | K::BrTable
            | K::Return
            | K::Unreachable
            | K::Throw
            | K::ThrowRef
            | K::LocalSet
            | K::LocalTee
    );
    !special && !calls_or_sized(kind) && nan_producer(kind).is_none()
}

/// Calls (which the call graph needs) and the bulk operations that pay by size.
const fn calls_or_sized(kind: OpKind) -> bool {
    use OpKind as K;
    matches!(
        kind,
        K::Call
            | K::CallIndirect
            | K::CallRef
            | K::ReturnCall
            | K::ReturnCallIndirect
            | K::ReturnCallRef
            | K::MemoryCopy
            | K::MemoryFill
            | K::MemoryInit
            | K::MemoryGrow
            | K::TableCopy
            | K::TableFill
            | K::TableInit
            | K::TableGrow
    )
}

/// The operators the [`Driver`] may analyse itself ([`Fast`]): the [`PLAIN`] ones, those
/// that only have a `nans::hint` besides (`global.get`, float loads and constants, ...), and
/// `local.set` and `local.tee`: these only add their price and feed the NaN analysis's
/// bookkeeping and, in a loop that may be counted, its recognition (`straight_entry!`, from
/// the visit's immediates).
const FAST: [bool; OPERATORS.len()] = kind_table!(|kind, info| {
    matches!(kind, OpKind::LocalSet | OpKind::LocalTee)
        || (info.metered && !info.simd && only_priced(kind))
});

/// The operators [`Analysis::side_effects`] has something to do for: bulk operations (size
/// charges), calls and NaN producers.
const SIDE_EFFECTS: [bool; OPERATORS.len()] =
    kind_table!(|kind, _info| nan_producer(kind).is_some() || calls_or_sized(kind));

/// For each operator kind: whether ri-sandbox meters its proposal (a compact copy of
/// `OpInfo::metered`, read for every operator).
static METERED: [bool; OPERATORS.len()] = kind_table!(|_kind, info| info.metered);

/// The error for an operator of a proposal ri-sandbox does not meter or cannot make
/// deterministic.
#[cold]
fn unmetered(kind: OpKind, offset: usize) -> Error {
    let info = kind.info();
    let why = match info.proposal {
        "relaxed_simd" => "relaxed SIMD results differ between CPUs",
        "threads" | "shared_everything_threads" => "threads and atomics are not deterministic",
        "gc" => "GC allocations are not metered",
        "legacy_exceptions" => "legacy exception handling is not metered (use try_table)",
        "stack_switching" => "stack switching is not metered",
        _ => "its proposal is not metered",
    };
    Error::new(ErrorKind::Unsupported {
        message: format!(
            "operator `{}` of the `{}` proposal: {why}",
            info.name(),
            info.proposal
        ),
        offset,
    })
}

pub(crate) fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(ErrorKind::Invalid {
        message: e.message().to_string(),
        offset: e.offset(),
    })
}
