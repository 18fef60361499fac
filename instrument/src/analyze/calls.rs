//! Metering decisions that need the whole module's call graph, taken once every function has
//! been analysed: which callees' entry blocks their callers pre-pay, which functions can
//! change the gas counter at all, and so where each function reloads its copy of it, and
//! which functions need no stack accounting.
//!
//! # Pre-paid entry blocks
//! A function's entry block runs exactly once per call (nothing can branch back to a
//! function's first instruction). When a function can only be reached by direct calls from
//! this module (it is not exported, not in an element segment, not named by `ref.func` in a
//! global's initialiser, and not the start function; a `ref.func` in code must name one of
//! those), every call site charges the callee's entry block as part of the calling block,
//! and the callee charges nothing on entry. Applied bottom-up, a call chain whose entry
//! blocks call each other is paid for by the first caller in one charge, and a small helper
//! such as `(func $clamp (param i64) (result i64) ...)` runs no metering code at all. Gas
//! after a call that returns is unchanged (the same prices, paid earlier); a trap or throw
//! between the calling block's start and the call leaves the callee's entry paid, which is
//! the over-charge ABI section 3 already allows for the rest of a block. Entry blocks that
//! call each other in a cycle (which can only recurse until the stack runs out) are left
//! alone.
//!
//! # Gas-local reloads
//! Each function keeps the counter in a local (`rewrite::gas`), which becomes stale at the
//! function's entry and after a call that may charge: a call through a table or reference, a
//! call to an import (a host function may charge), or a direct call to a function that
//! charges or calls something that may. The reload is placed lazily: a stale point becomes a
//! reload only if the local is read (a charge that is not 0, a size charge) or control may
//! leave the straight line (a branch, `if`, `else`) before the function ends or the next call
//! makes it stale again. So a function that calls helpers back to back, or returns right
//! after its last call, reloads nothing it does not use.
//!
//! # Bounded call chains
//! A function that calls no import and nothing through a table or reference, and from which
//! no recursion can be reached, has a deepest possible call chain, whose weight (the frames'
//! weights added up, its own included) is known. When that weight is at most
//! [`LEAF_FRAME_LIMIT`], the function skips stack accounting: whatever it calls, it adds at
//! most that much on top of a chain that was accounted for, the same bound a leaf gets (ABI
//! section 4). Every function it can call is then bounded too.

use super::{
    DirectCall, FunctionPlan, GasEvent, PlanLists, Plans, ENTRY, INDIRECT, LEAF_FRAME_LIMIT,
};
use std::collections::BTreeSet;

/// What the call-graph decisions need to know about the module besides the plans.
pub(crate) struct Module<'a> {
    /// How many functions are imported (defined function `i` has index `imported + i`).
    pub imported: u32,
    /// Functions a `funcref` value can name, and exported functions.
    pub referenced: &'a BTreeSet<u32>,
    /// The start function.
    pub start: Option<u32>,
}

/// Skips the stack accounting of bounded functions and pre-pays entry blocks; returns what
/// placing each function's gas-local reloads needs ([`Reloads::place`], independent for each
/// function, so the writers do it).
pub(crate) fn finish(plans: &mut Plans, module: &Module<'_>) -> Reloads {
    skip_bounded_stacks(plans, module.imported);
    prepay_entries(plans, module);
    Reloads {
        touches: touching(plans, module.imported),
        imported: module.imported,
    }
}

/// Which functions can change the gas counter, for placing reloads.
pub(crate) struct Reloads {
    touches: Vec<bool>,
    imported: u32,
}

impl Reloads {
    /// Places the gas-local reloads of one function's plan (its lists in `lists`), finished
    /// by [`finish`]: their offsets go into `reloads` (cleared first), in increasing order.
    pub(crate) fn place(
        &self,
        plan: &mut FunctionPlan,
        lists: &[PlanLists],
        reloads: &mut Vec<u32>,
    ) {
        place_reloads(plan, lists, &self.touches, self.imported, reloads);
    }
}

/// The defined function a function index names, if it is not imported.
fn defined(callee: u32, imported: u32, count: usize) -> Option<usize> {
    let index = callee.checked_sub(imported)? as usize;
    (index < count).then_some(index)
}

/// Moves the entry-block charge of every function only direct calls reach into its call
/// sites (see the module documentation).
fn prepay_entries(plans: &mut Plans, module: &Module<'_>) {
    let count = plans.functions.len();
    let mut foldable: Vec<bool> = (0..count as u32)
        .map(|i| {
            let index = module.imported + i;
            !module.referenced.contains(&index) && module.start != Some(index)
        })
        .collect();
    if !foldable.contains(&true) {
        return;
    }

    // What a call site pre-pays: the callee's entry block plus what the callees called from
    // that entry block pre-pay, computed callees first.
    let mut prepay = vec![0u64; count];
    depth_first(
        plans,
        module.imported,
        |call| call.block == 0,
        |visit, plans| {
            let function = match visit {
                // The entry blocks call each other in a cycle.
                Visit::Cycle { open, .. } => {
                    foldable[open] = false;
                    return;
                }
                Visit::Done(function) => function,
            };
            let plan = &plans.functions[function];
            let mut gas = plan.blocks(&plans.lists)[0];
            let calls = plan.direct_calls(&plans.lists);
            for call in calls.iter().filter(|c| c.block == 0) {
                if let Some(callee) = defined(call.callee, module.imported, count) {
                    if foldable[callee] {
                        gas = gas.saturating_add(prepay[callee]);
                    }
                }
            }
            prepay[function] = gas;
        },
    );

    let Plans { functions, lists } = plans;
    for (function, plan) in functions.iter().enumerate() {
        let (calls, blocks) = plan.calls_and_blocks_mut(lists);
        for call in calls {
            if let Some(callee) = defined(call.callee, module.imported, count) {
                if foldable[callee] {
                    let gas = &mut blocks[call.block as usize];
                    *gas = gas.saturating_add(prepay[callee]);
                }
            }
        }
        if foldable[function] {
            // Its callers pay it (`prepay[function]` is exactly this block's cost now).
            blocks[0] = 0;
        }
    }
}

/// What [`depth_first`] reports.
enum Visit {
    /// The call from `caller` to `open`, a function still being visited, closes a cycle.
    Cycle { open: usize, caller: usize },
    /// Every function this one calls has been visited (or closes a cycle).
    Done(usize),
}

/// Visits every defined function after the functions it calls (through the calls `follow`
/// accepts). Iterative, since call chains can be long.
fn depth_first(
    plans: &Plans,
    imported: u32,
    follow: impl Fn(&DirectCall) -> bool,
    mut visit: impl FnMut(Visit, &Plans),
) {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let count = plans.functions.len();
    let mut state = vec![NEW; count];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..count {
        if state[root] != NEW {
            continue;
        }
        state[root] = OPEN;
        stack.push((root, 0));
        while let Some(&mut (function, ref mut next)) = stack.last_mut() {
            let calls = plans.functions[function].direct_calls(&plans.lists);
            let mut descend = None;
            while *next < calls.len() {
                let call = calls[*next];
                *next += 1;
                if !follow(&call) {
                    continue;
                }
                let Some(callee) = defined(call.callee, imported, count) else {
                    continue;
                };
                match state[callee] {
                    NEW => {
                        descend = Some(callee);
                        break;
                    }
                    OPEN => visit(
                        Visit::Cycle {
                            open: callee,
                            caller: function,
                        },
                        plans,
                    ),
                    _ => {}
                }
            }
            if let Some(callee) = descend {
                state[callee] = OPEN;
                stack.push((callee, 0));
                continue;
            }
            stack.pop();
            state[function] = DONE;
            visit(Visit::Done(function), plans);
        }
    }
}

/// Removes the stack accounting of every function whose deepest call chain is bounded by
/// [`LEAF_FRAME_LIMIT`] (see the module documentation).
fn skip_bounded_stacks(plans: &mut Plans, imported: u32) {
    if !plans.functions.iter().any(|plan| plan.extra.level) {
        return;
    }
    const UNBOUNDED: u64 = u64::MAX;
    let count = plans.functions.len();
    // The weight of each function's deepest call chain, callees first.
    let mut chain = vec![0u64; count];
    let mut recursive = vec![false; count];
    depth_first(
        plans,
        imported,
        |_| true,
        |visit, plans| {
            let function = match visit {
                Visit::Cycle { caller, .. } => {
                    recursive[caller] = true;
                    return;
                }
                Visit::Done(function) => function,
            };
            let plan = &plans.functions[function];
            let mut deepest = 0u64;
            if plan.indirect_calls || recursive[function] {
                deepest = UNBOUNDED;
            }
            for call in plan.direct_calls(&plans.lists) {
                deepest = deepest.max(match defined(call.callee, imported, count) {
                    Some(callee) => chain[callee],
                    None => UNBOUNDED,
                });
            }
            chain[function] = plan.frame_cost.saturating_add(deepest);
        },
    );
    for (plan, chain) in plans.functions.iter_mut().zip(chain) {
        if chain <= LEAF_FRAME_LIMIT {
            // Its stack insertions emit nothing without the local.
            plan.extra.level = false;
        }
    }
}

/// Which defined functions can change the gas counter: those that charge, and those that
/// call an import, call indirectly, or call a function that can.
fn touching(plans: &Plans, imported: u32) -> Vec<bool> {
    let Plans { functions, lists } = plans;
    let count = functions.len();
    let mut touches: Vec<bool> = functions
        .iter()
        .map(|plan| {
            plan.indirect_calls
                || plan.blocks(lists).iter().any(|&gas| gas > 0)
                || plan.size_charges
                || plan
                    .direct_calls(lists)
                    .iter()
                    .any(|c| defined(c.callee, imported, count).is_none())
        })
        .collect();
    // Callers of each function, to spread `touches` backwards along calls: function `f`'s
    // are `callers[starts[f]..starts[f + 1]]` (two allocations, not one per callee).
    let callees = || {
        functions
            .iter()
            .enumerate()
            .flat_map(move |(caller, plan)| {
                let callees = plan.direct_calls(lists).iter();
                callees
                    .filter_map(move |call| Some((caller, defined(call.callee, imported, count)?)))
            })
    };
    let mut starts = vec![0usize; count + 1];
    for (_, callee) in callees() {
        starts[callee + 1] += 1;
    }
    for function in 0..count {
        starts[function + 1] += starts[function];
    }
    let mut callers = vec![0usize; starts[count]];
    let mut filled = starts[..count].to_vec();
    for (caller, callee) in callees() {
        callers[filled[callee]] = caller;
        filled[callee] += 1;
    }
    let mut work: Vec<usize> = (0..count).filter(|&f| touches[f]).collect();
    while let Some(function) = work.pop() {
        for &caller in &callers[starts[function]..starts[function + 1]] {
            if !touches[caller] {
                touches[caller] = true;
                work.push(caller);
            }
        }
    }
    touches
}

/// Turns a plan's gas events into reloads of its gas local (see the module documentation),
/// and declares the local only if something reads it.
fn place_reloads(
    plan: &mut FunctionPlan,
    lists: &[PlanLists],
    touches: &[bool],
    imported: u32,
    reloads: &mut Vec<u32>,
) {
    let mut pending: Option<u32> = None;
    reloads.clear();
    let mut reads = false;
    let (blocks, calls) = (plan.blocks(lists), plan.direct_calls(lists));
    for event in plan.gas_events(lists) {
        let read = match *event {
            GasEvent::Stale { offset, call } => {
                let stale = match call {
                    ENTRY | INDIRECT => true,
                    i => {
                        let callee = calls[i as usize].callee;
                        defined(callee, imported, touches.len()).is_none_or(|f| touches[f])
                    }
                };
                if stale {
                    // Nothing read the local since the previous stale point: that reload
                    // would be wasted.
                    pending = Some(offset);
                }
                false
            }
            GasEvent::Block(block) => blocks[block as usize] > 0,
            GasEvent::Read => true,
            GasEvent::Branch => {
                if let Some(offset) = pending.take() {
                    reloads.push(offset);
                }
                false
            }
            GasEvent::Exit => {
                pending = None;
                false
            }
        };
        if read {
            reads = true;
            if let Some(offset) = pending.take() {
                reloads.push(offset);
            }
        }
    }
    // Without any charge the local is not needed (and catch landings reload nothing).
    plan.extra.gas = reads;
    if !reads {
        reloads.clear();
    }
}
