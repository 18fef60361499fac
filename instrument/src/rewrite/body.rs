//! Applies a [`FunctionPlan`] to a function body by copying the original bytes around the
//! insertions. Operators that need no change are never decoded again or re-encoded, which is
//! what makes the pass faster than a parse-and-re-encode round trip. The local declarations
//! are copied too, with the helper locals the insertions need appended after them, so no
//! existing local index moves.

use super::code::Code;
use super::{bulk, gas, loops, nan, stack};
use crate::analyze::{FunctionPlan, Insert, Insertion, PlanLists, UnitKind};
use crate::cost::CostModel;
use crate::error::{Error, ErrorKind};
use std::ops::Range;
use wasm_encoder::Encode;
use wasmparser::BinaryReader;

/// The most locals a function may have (wasmparser's limit, which engines share).
const MAX_LOCALS: u32 = 50_000;

/// Indices of the helper locals (only those the plan asks for are declared).
#[derive(Default)]
pub(crate) struct LocalMap {
    pub gas: u32,
    pub level: u32,
    pub n32: u32,
    pub n64: u32,
    pub cost: u32,
    pub f32: u32,
    pub f64: u32,
    pub v128: u32,
}

/// Module-wide facts the emitted code refers to.
pub(crate) struct Context<'a> {
    pub gas_global: u32,
    pub stack_global: Option<u32>,
    pub costs: &'a CostModel,
}

/// Reusable buffers for [`rewrite_body`], so that rewriting a module's bodies does not
/// allocate per function.
pub(crate) struct Buffers {
    /// The inserted code.
    code: Vec<u8>,
    /// Each insertion's offset in the original body, and where its code ends in `code`.
    ends: Vec<(u32, usize)>,
    /// The local declarations, with the helper locals appended.
    declarations: Vec<u8>,
}

impl Default for Buffers {
    /// Buffers with room for a typical function's insertions (a few dozen), so that most
    /// modules never grow them.
    fn default() -> Self {
        Buffers {
            code: Vec::with_capacity(4096),
            ends: Vec::with_capacity(256),
            declarations: Vec::with_capacity(64),
        }
    }
}

/// Appends the rewritten body (size-prefixed, as the code section stores it) to `out`, with
/// gas reloads at the offsets `reloads` (in increasing order, from
/// [`Reloads::place`](crate::analyze::calls::Reloads::place); each emitted before the
/// insertions at its offset).
///
/// The inserted code is emitted into a buffer first (it is small), so the body's size is
/// known before anything is written; the original bytes are then copied once, straight into
/// `out`.
pub(crate) fn rewrite_body(
    wasm: &[u8],
    body: Range<usize>,
    (plan, lists): (&FunctionPlan, &[PlanLists]),
    reloads: &[u32],
    cx: &Context<'_>,
    buffers: &mut Buffers,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let Buffers {
        code: scratch,
        ends,
        declarations,
    } = buffers;
    scratch.clear();
    ends.clear();
    let locals = declare_locals(wasm, body.start, plan, declarations)?;

    // The insertions merged with the gas reloads (first at the same offset), and where each
    // one's code ends in `scratch`.
    let charger = gas::Charger::new(cx.gas_global, locals.gas);
    let mut reloads = reloads.iter().copied().peekable();
    let blocks = plan.blocks(lists);
    let mut insertions = plan.insertions(lists).iter().copied().peekable();
    loop {
        let reload_first = match (reloads.peek(), insertions.peek()) {
            (Some(&offset), Some(next)) => offset <= next.offset,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let insertion = match (reload_first, reloads.next_if(|_| reload_first)) {
            (true, Some(offset)) => Insertion {
                offset,
                insert: Insert::GasReload,
            },
            _ => match insertions.next() {
                Some(insertion) => insertion,
                None => break,
            },
        };
        let code = &mut Code(scratch);
        match insertion.insert {
            Insert::Charge(block) => match blocks[block as usize] {
                0 => {}
                cost => charger.charge(code.0, gas::Amount::Const(cost)),
            },
            // Without the local (nothing reads it), catch landings reload nothing.
            Insert::GasReload if !plan.extra.gas => {}
            Insert::GasReload => gas::reload(code, cx.gas_global, locals.gas),
            Insert::SizeCharge { unit, wide } => {
                let price = match unit {
                    UnitKind::MemoryBytes => cx.costs.memory_bytes,
                    UnitKind::TableElements => cx.costs.table_elements,
                    UnitKind::MemoryPages => cx.costs.memory_pages,
                };
                bulk::size_charge(code, cx.gas_global, &locals, price, wide);
            }
            // A function whose call chains are bounded skips its stack accounting.
            Insert::StackEnter | Insert::StackRelease | Insert::StackRecharge
                if !plan.extra.level => {}
            Insert::StackEnter | Insert::StackRelease | Insert::StackRecharge => {
                let Some(stack_global) = cx.stack_global else {
                    return Err(internal("stack accounting without a stack counter"));
                };
                match insertion.insert {
                    Insert::StackEnter => {
                        stack::enter(code, stack_global, plan.frame_cost, locals.level)
                    }
                    Insert::StackRelease => stack::release(code, stack_global, locals.level),
                    _ => stack::recharge(code, stack_global, plan.frame_cost, locals.level),
                }
            }
            Insert::Canonicalize(kind) => nan::canonicalize(code, kind, &locals),
            Insert::LoopCharge(index) => {
                let counted = &plan.loops[index as usize];
                let cost = blocks[counted.block as usize];
                loops::loop_charge(code, cx.gas_global, &locals, counted, cost)
            }
        }
        ends.push((insertion.offset, scratch.len()));
    }

    let size = declarations.len() + (body.end - plan.ops_start) + scratch.len();
    super::limits::check_body(body.start, size)?;
    (size as u32).encode(out);
    out.reserve(size);
    out.extend_from_slice(declarations);
    let mut cursor = plan.ops_start;
    let mut inserted = 0;
    for &(offset, end) in ends.iter() {
        let offset = offset as usize;
        out.extend_from_slice(&wasm[cursor..offset]);
        out.extend_from_slice(&scratch[inserted..end]);
        cursor = offset;
        inserted = end;
    }
    out.extend_from_slice(&wasm[cursor..body.end]);
    Ok(())
}

fn internal(message: &str) -> Error {
    Error::new(ErrorKind::Internal {
        message: message.to_string(),
    })
}

/// Writes the local declarations with the helper locals appended to `out` (cleared first);
/// returns where each helper lives.
fn declare_locals(
    wasm: &[u8],
    body_start: usize,
    plan: &FunctionPlan,
    out: &mut Vec<u8>,
) -> Result<LocalMap, Error> {
    const I32: u8 = 0x7f;
    const I64: u8 = 0x7e;
    const F32: u8 = 0x7d;
    const F64: u8 = 0x7c;
    const V128: u8 = 0x7b;

    let extra = plan.extra;
    let mut map = LocalMap::default();
    // At most eight helpers, one type byte each.
    let mut added = [0u8; 8];
    let mut count = 0;
    let mut next = plan.locals;
    let mut add = |ty: u8, slot: &mut u32| {
        *slot = next;
        next += 1;
        added[count] = ty;
        count += 1;
    };
    if extra.gas {
        add(I64, &mut map.gas);
    }
    if extra.level {
        add(I64, &mut map.level);
    }
    if extra.size {
        add(I32, &mut map.n32);
        add(I64, &mut map.n64);
        add(I64, &mut map.cost);
    }
    if extra.f32 {
        add(F32, &mut map.f32);
    }
    if extra.f64 {
        add(F64, &mut map.f64);
    }
    if extra.v128 {
        add(V128, &mut map.v128);
    }
    let added = &added[..count];
    let original = &wasm[body_start..plan.ops_start];
    out.clear();
    if added.is_empty() {
        out.extend_from_slice(original);
        return Ok(map);
    }
    if next > MAX_LOCALS {
        return Err(Error::new(ErrorKind::Limit {
            message: format!(
                "a function with {} locals leaves no room for the {} helper locals metering needs",
                plan.locals,
                added.len()
            ),
        }));
    }
    let mut reader = BinaryReader::new(original, body_start);
    let groups = reader
        .read_var_u32()
        .map_err(|_| internal("local declarations do not parse"))?;
    let rest = &original[reader.current_position()..];
    (groups + added.len() as u32).encode(out);
    out.extend_from_slice(rest);
    for &ty in added {
        out.extend_from_slice(&[1, ty]);
    }
    Ok(map)
}
