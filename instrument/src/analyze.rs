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

use crate::cost::CostModel;
use crate::error::{Error, ErrorKind};
use crate::ops::OpKind;
use wasmparser::{
    BinaryReader, Catch, FuncValidator, FunctionBody, Operator, OperatorsReader,
    ValidatorResources, WasmFeatures,
};

/// What to insert before the original byte at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insertion {
    /// Absolute byte offset into the input module.
    pub offset: usize,
    /// Gas to charge there. Zero means nothing is emitted.
    pub gas: u64,
}

/// The metering plan for one function.
#[derive(Debug, Default)]
pub(crate) struct FunctionPlan {
    /// Charges, in increasing offset order.
    pub insertions: Vec<Insertion>,
}

impl FunctionPlan {
    /// How many metered blocks cost more than nothing.
    pub fn charged_blocks(&self) -> usize {
        self.insertions.iter().filter(|i| i.gas > 0).count()
    }
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
    /// Whether a reachable branch or catch clause targets the frame's end.
    targeted: bool,
    /// For `if` frames that reached `else`: whether the then-arm fell through to it.
    then_fell_through: bool,
}

/// The metered block being accumulated.
#[derive(Debug)]
struct Current {
    /// Index of this block's charge in `FunctionPlan::insertions`, when it is reachable.
    slot: Option<usize>,
    gas: u64,
}

/// Reusable buffers, so that analysing many functions does not allocate per function.
#[derive(Default)]
pub(crate) struct Scratch {
    frames: Vec<Frame>,
}

/// Analyses and validates one function body.
pub(crate) fn analyze_function(
    body: &FunctionBody<'_>,
    validator: &mut FuncValidator<ValidatorResources>,
    features: WasmFeatures,
    costs: &CostModel,
    scratch: &mut Scratch,
) -> Result<FunctionPlan, Error> {
    let mut reader: BinaryReader<'_> = body.get_binary_reader();
    validator.read_locals(&mut reader).map_err(invalid)?;
    reader.set_features(features);
    let ops_start = reader.original_position();
    let mut ops = OperatorsReader::new(reader);

    let mut analysis = Analysis {
        plan: FunctionPlan {
            insertions: Vec::new(),
        },
        frames: std::mem::take(&mut scratch.frames),
        current: Current { slot: None, gas: 0 },
    };
    analysis.frames.clear();
    analysis.frames.push(Frame {
        kind: FrameKind::Function,
        reachable_at_start: true,
        targeted: false,
        then_fell_through: false,
    });
    analysis.start_block(ops_start, true);

    while !ops.eof() {
        let (op, offset) = ops.read_with_offset().map_err(invalid)?;
        validator.op(offset, &op).map_err(invalid)?;
        let kind = OpKind::of(&op).ok_or_else(|| {
            Error::new(ErrorKind::Unsupported {
                message: format!("operator {op:?} is newer than ri-sandbox's cost table"),
                offset,
            })
        })?;
        check_proposal(kind, offset)?;
        let next = ops.original_position();
        analysis.operator(&op, kind, costs, next);
    }
    ops.finish().map_err(invalid)?;
    scratch.frames = analysis.frames;
    Ok(analysis.plan)
}

struct Analysis {
    plan: FunctionPlan,
    frames: Vec<Frame>,
    current: Current,
}

impl Analysis {
    fn reachable(&self) -> bool {
        self.current.slot.is_some()
    }

    /// Ends the current metered block and starts a new one whose leader is at `leader`.
    fn start_block(&mut self, leader: usize, reachable: bool) {
        self.finish_block();
        self.current.slot = if reachable {
            self.plan.insertions.push(Insertion {
                offset: leader,
                gas: 0,
            });
            Some(self.plan.insertions.len() - 1)
        } else {
            None
        };
    }

    fn finish_block(&mut self) {
        if let Some(slot) = self.current.slot.take() {
            self.plan.insertions[slot].gas = self.current.gas;
        }
        self.current.gas = 0;
    }

    /// Marks the frame `depth` levels out as the target of a reachable branch.
    fn target(&mut self, depth: u32) {
        if !self.reachable() {
            return;
        }
        // The validator has already checked the depth.
        let index = self.frames.len() - 1 - depth as usize;
        self.frames[index].targeted = true;
    }

    fn push(&mut self, kind: FrameKind) {
        self.frames.push(Frame {
            kind,
            reachable_at_start: self.reachable(),
            targeted: false,
            then_fell_through: false,
        });
    }

    /// Nothing after the current instruction is reachable until the enclosing frame ends.
    fn dead_end(&mut self) {
        self.finish_block();
    }

    fn operator(&mut self, op: &Operator<'_>, kind: OpKind, costs: &CostModel, next: usize) {
        if self.reachable() {
            self.current.gas = self
                .current
                .gas
                .saturating_add(u64::from(costs.op_price(kind)));
        }
        match op {
            Operator::Block { .. } => self.push(FrameKind::Block),
            Operator::TryTable { try_table } => {
                // Catch labels are relative to the frames *outside* the try_table.
                for catch in &try_table.catches {
                    let (Catch::One { label, .. }
                    | Catch::OneRef { label, .. }
                    | Catch::All { label }
                    | Catch::AllRef { label }) = *catch;
                    self.target(label);
                }
                self.push(FrameKind::TryTable);
            }
            Operator::Loop { .. } => {
                self.push(FrameKind::Loop);
                let reachable = self.reachable();
                self.start_block(next, reachable);
            }
            Operator::If { .. } => {
                self.push(FrameKind::If);
                let reachable = self.reachable();
                self.start_block(next, reachable);
            }
            Operator::Else => {
                let fell_through = self.reachable();
                let frame = self.frames.last_mut().expect("validated: else inside if");
                frame.kind = FrameKind::Else;
                frame.then_fell_through = fell_through;
                let reachable = frame.reachable_at_start;
                self.start_block(next, reachable);
            }
            Operator::End => self.end(next),
            Operator::Br { relative_depth } => {
                self.target(*relative_depth);
                self.dead_end();
            }
            Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth } => {
                self.target(*relative_depth);
                let reachable = self.reachable();
                self.start_block(next, reachable);
            }
            Operator::BrTable { targets } => {
                for depth in targets.targets().flatten() {
                    self.target(depth);
                }
                self.target(targets.default());
                self.dead_end();
            }
            Operator::Return
            | Operator::Unreachable
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => self.dead_end(),
            _ => {}
        }
    }

    fn end(&mut self, next: usize) {
        let frame = self.frames.pop().expect("validated: end matches a frame");
        let fell_through = self.reachable();
        let other_entry = match frame.kind {
            FrameKind::Function => {
                self.finish_block();
                return;
            }
            FrameKind::Loop => false,
            FrameKind::Block | FrameKind::TryTable => frame.targeted,
            FrameKind::If => frame.targeted || frame.reachable_at_start,
            FrameKind::Else => frame.targeted || frame.then_fell_through,
        };
        if other_entry {
            self.start_block(next, true);
        } else if !fell_through {
            // Neither fallthrough nor a branch reaches the code after this `end`.
            self.finish_block();
        }
        // Otherwise only fallthrough reaches it: the current block simply continues.
    }
}

/// Rejects operators of proposals ri-sandbox does not meter or cannot make deterministic.
fn check_proposal(kind: OpKind, offset: usize) -> Result<(), Error> {
    let info = kind.info();
    let why = match info.proposal {
        "mvp"
        | "sign_extension"
        | "saturating_float_to_int"
        | "bulk_memory"
        | "reference_types"
        | "tail_call"
        | "simd"
        | "exceptions"
        | "function_references" => return Ok(()),
        "relaxed_simd" => "relaxed SIMD results differ between CPUs",
        "threads" | "shared_everything_threads" => "threads and atomics are not deterministic",
        "gc" => "GC allocations are not metered",
        "legacy_exceptions" => "legacy exception handling is not metered (use try_table)",
        "stack_switching" => "stack switching is not metered",
        _ => "its proposal is not metered",
    };
    Err(Error::new(ErrorKind::Unsupported {
        message: format!(
            "operator `{}` of the `{}` proposal: {why}",
            info.name(),
            info.proposal
        ),
        offset,
    }))
}

pub(crate) fn invalid(e: wasmparser::BinaryReaderError) -> Error {
    Error::new(ErrorKind::Invalid {
        message: e.message().to_string(),
        offset: e.offset(),
    })
}
