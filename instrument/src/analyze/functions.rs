//! Plans every function body of a code section, on several threads when the section is large
//! enough to gain from them.
//!
//! Function bodies validate and analyse independently of each other: each gets its own
//! `FuncValidator` over the module's shared, read-only type information. So the workers (the
//! calling thread and up to `threads - 1` more) each take the next function not yet taken
//! (very large bodies first, then module order) until none is left. Every plan lands in its
//! function's slot, so the output never depends on the number of threads or on scheduling.
//! Nor does an error: every function is planned and the one reported is that of the first
//! failing function in module order, exactly what one thread planning the bodies in order
//! (and stopping at the first failure, as it does) reports.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use super::nans::Trace;
use super::{analyze_function, FunctionPlan, Plan, PlanLists, Plans, Scratch};
use crate::error::{Error, ErrorKind};
use crate::pool::helpers;
use wasmparser::{
    FuncToValidate, FuncValidatorAllocations, FunctionBody, ValidatorResources, WasmFeatures,
};

/// A function body read from the code section, with what validating it needs.
pub(crate) struct PendingFunction<'a> {
    pub func: FuncToValidate<ValidatorResources>,
    pub body: FunctionBody<'a>,
}

/// A body this large (most of a millisecond of planning) is planned before the others.
const BIG_BODY: usize = 16 * 1024;

/// Validates and plans `functions`; returns their plans in module order, or the error of the
/// first function (in module order) that fails.
pub(crate) fn plan_functions(
    functions: Vec<PendingFunction<'_>>,
    features: WasmFeatures,
    plan: Plan<'_>,
    threads: Option<NonZeroUsize>,
) -> Result<Plans, Error> {
    let count = functions.len();
    let bytes = functions.iter().map(|f| f.body.range().len()).sum();
    let helpers = helpers(threads, bytes);
    let mut queue: Vec<(usize, PendingFunction<'_>)> = functions.into_iter().enumerate().collect();
    if helpers.is_some() {
        // Bodies much larger than the rest first (the rest in module order, which reads the
        // input front to back), so that no thread is left alone with a big function at the
        // end while the others wait.
        let big = |(_, f): &(usize, PendingFunction<'_>)| f.body.range().len() >= BIG_BODY;
        let (mut first, rest): (Vec<_>, Vec<_>) = queue.into_iter().partition(big);
        first.extend(rest);
        queue = first;
    }
    let queue = Mutex::new(queue.into_iter());
    // (Each worker's lists are sized for an equal share of the code.)
    let share = bytes / helpers.as_ref().map_or(1, |helpers| helpers.workers);
    let work = || vec![worker(&queue, helpers.is_none(), share, features, plan)];
    let workers = match &helpers {
        None => work(),
        Some(helpers) => helpers.run(|| (), work).1,
    };
    // Each worker's plans point at its lists.
    let mut lists = Vec::with_capacity(workers.len());
    let mut results = Vec::with_capacity(count);
    for (index, (worker_lists, done)) in workers.into_iter().enumerate() {
        lists.push(worker_lists);
        results.extend(done.into_iter().map(|(function, result)| {
            let result = result.map(|plan| FunctionPlan {
                lists: index,
                ..plan
            });
            (function, result)
        }));
    }
    results.sort_unstable_by_key(|(function, _)| *function);
    let mut functions = Vec::with_capacity(count);
    for (_, result) in results {
        functions.push(result?);
    }
    if functions.len() != count {
        return Err(Error::new(ErrorKind::Internal {
            message: format!(
                "{} of {count} function bodies were planned",
                functions.len()
            ),
        }));
    }
    Ok(Plans { functions, lists })
}

/// A worker's reusable buffers, kept by each thread for its next call when no body it planned
/// was larger than [`KEPT_UP_TO`]: a module with small functions then plans without growing
/// a buffer (a tenth of a small module's allocations), and no thread keeps buffers sized for
/// an unusually large body.
type Buffers = Box<(Scratch, FuncValidatorAllocations)>;

/// The largest body whose buffers a thread keeps: a body's buffers grow with its size.
const KEPT_UP_TO: usize = 64 * 1024;

thread_local! {
    static SPARE: Cell<Option<Buffers>> = const { Cell::new(None) };
}

/// What one worker planned: the lists its plans share, and the plans with their functions'
/// indices.
type Planned = (PlanLists, Vec<(usize, Result<FunctionPlan, Error>)>);

/// One worker: plans functions from the queue until it is empty (or, when it works alone and
/// so in module order, until one fails). `share`: about how many bytes of code it will plan.
fn worker<'a>(
    queue: &Mutex<std::vec::IntoIter<(usize, PendingFunction<'a>)>>,
    alone: bool,
    share: usize,
    features: WasmFeatures,
    plan: Plan<'_>,
) -> Planned {
    // (`try_with`: a call from a thread-local's destructor, late in a thread's life, finds
    // none and keeps none rather than panic.)
    let spare = SPARE.try_with(Cell::take).ok().flatten();
    let (mut scratch, mut allocations) = *spare.unwrap_or_default();
    let mut largest = 0;
    let mut trace = Trace::new();
    let mut lists = PlanLists::for_code(share);
    // (Alone, it plans every function.)
    let expected = match queue.lock() {
        Ok(queue) if alone => queue.len(),
        _ => 0,
    };
    let mut done = Vec::with_capacity(expected);
    // A poisoned lock means another worker panicked; the scope re-raises that panic.
    while let Some((index, function)) = queue.lock().ok().and_then(|mut queue| queue.next()) {
        largest = largest.max(function.body.range().len());
        let mut validator = function
            .func
            .into_validator(std::mem::take(&mut allocations));
        let result = analyze_function(
            &function.body,
            &mut validator,
            features,
            plan,
            &mut scratch,
            &mut trace,
            &mut lists,
        );
        allocations = validator.into_allocations();
        let failed = result.is_err();
        done.push((index, result));
        if failed && alone {
            break;
        }
    }
    if largest <= KEPT_UP_TO {
        let _ = SPARE.try_with(|spare| spare.set(Some(Box::new((scratch, allocations)))));
    }
    (lists, done)
}
