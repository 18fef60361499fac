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

use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

use super::{analyze_function, FunctionPlan, Plan, Scratch};
use crate::error::{Error, ErrorKind};
use wasmparser::{
    FuncToValidate, FuncValidatorAllocations, FunctionBody, ValidatorResources, WasmFeatures,
};

/// A function body read from the code section, with what validating it needs.
pub(crate) struct PendingFunction<'a> {
    pub func: FuncToValidate<ValidatorResources>,
    pub body: FunctionBody<'a>,
}

/// Code a thread should have to itself before one more is worth starting: starting a thread
/// costs tens of microseconds, planning this much code more than a millisecond.
const MIN_BYTES_PER_THREAD: usize = 32 * 1024;

/// A body this large (most of a millisecond of planning) is planned before the others.
const BIG_BODY: usize = 16 * 1024;

/// How many threads work on a code section of `bytes` bytes when `threads` may (`None`: one
/// per core).
pub(crate) fn workers(threads: Option<NonZeroUsize>, bytes: usize) -> usize {
    let useful = bytes / MIN_BYTES_PER_THREAD;
    if useful <= 1 {
        return 1;
    }
    threads.map_or_else(cores, NonZeroUsize::get).min(useful)
}

/// How many threads the machine runs at once, asked once per process: the answer comes from
/// system files (cgroup quotas), which takes longer than instrumenting a small module.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// Validates and plans `functions`; returns their plans in module order, or the error of the
/// first function (in module order) that fails.
pub(crate) fn plan_functions(
    functions: Vec<PendingFunction<'_>>,
    features: WasmFeatures,
    plan: Plan<'_>,
    threads: Option<NonZeroUsize>,
) -> Result<Vec<FunctionPlan>, Error> {
    let count = functions.len();
    let bytes = functions.iter().map(|f| f.body.range().len()).sum();
    let workers = workers(threads, bytes);
    let mut queue: Vec<(usize, PendingFunction<'_>)> = functions.into_iter().enumerate().collect();
    if workers > 1 {
        // Bodies much larger than the rest first (the rest in module order, which reads the
        // input front to back), so that no thread is left alone with a big function at the
        // end while the others wait.
        let big = |(_, f): &(usize, PendingFunction<'_>)| f.body.range().len() >= BIG_BODY;
        let (mut first, rest): (Vec<_>, Vec<_>) = queue.into_iter().partition(big);
        first.extend(rest);
        queue = first;
    }
    let queue = Mutex::new(queue.into_iter());
    let work = || worker(&queue, workers == 1, features, plan);
    let mut results = if workers == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
            let mut results = work();
            for helper in helpers {
                match helper.join() {
                    Ok(mut more) => results.append(&mut more),
                    // A bug, not an input: surface it as the sequential pass would have.
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            results
        })
    };
    results.sort_unstable_by_key(|(index, _)| *index);
    let mut plans = Vec::with_capacity(count);
    for (_, result) in results {
        plans.push(result?);
    }
    if plans.len() != count {
        return Err(Error::new(ErrorKind::Internal {
            message: format!("{} of {count} function bodies were planned", plans.len()),
        }));
    }
    Ok(plans)
}

/// One worker: plans functions from the queue until it is empty (or, when it works alone and
/// so in module order, until one fails).
fn worker(
    queue: &Mutex<std::vec::IntoIter<(usize, PendingFunction<'_>)>>,
    alone: bool,
    features: WasmFeatures,
    plan: Plan<'_>,
) -> Vec<(usize, Result<FunctionPlan, Error>)> {
    let mut scratch = Scratch::default();
    let mut allocations = FuncValidatorAllocations::default();
    let mut done = Vec::new();
    // A poisoned lock means another worker panicked; the scope re-raises that panic.
    while let Some((index, function)) = queue.lock().ok().and_then(|mut queue| queue.next()) {
        let mut validator = function
            .func
            .into_validator(std::mem::take(&mut allocations));
        let result = analyze_function(&function.body, &mut validator, features, plan, &mut scratch);
        allocations = validator.into_allocations();
        let failed = result.is_err();
        done.push((index, result));
        if failed && alone {
            break;
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::{workers, MIN_BYTES_PER_THREAD};
    use std::num::NonZeroUsize;

    #[test]
    fn small_code_sections_stay_on_one_thread() {
        let threads = |n| NonZeroUsize::new(n);
        assert_eq!(workers(threads(8), 0), 1);
        assert_eq!(workers(threads(8), 2 * MIN_BYTES_PER_THREAD - 1), 1);
        assert_eq!(workers(None, 2 * MIN_BYTES_PER_THREAD - 1), 1);
        assert_eq!(workers(threads(8), 2 * MIN_BYTES_PER_THREAD), 2);
        assert_eq!(workers(threads(8), 3 * MIN_BYTES_PER_THREAD), 3);
        assert_eq!(workers(threads(2), 100 * MIN_BYTES_PER_THREAD), 2);
        assert_eq!(workers(threads(1), 100 * MIN_BYTES_PER_THREAD), 1);
        assert!(workers(None, 100 * MIN_BYTES_PER_THREAD) >= 1);
    }
}
