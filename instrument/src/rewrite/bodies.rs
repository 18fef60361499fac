//! Writes every function body of the code section, on several threads when the section is
//! large enough to gain from them.
//!
//! Once the module-level decisions are taken (`analyze::calls`), each body is written from
//! its own plan alone. The functions are cut into contiguous runs of about equal code size, one
//! per thread; the first run is written straight into the output, every other into a buffer of
//! its own, appended in order. So the output is byte-identical whatever the number of threads,
//! and an error is the first failing function's, in module order.

use std::num::NonZeroUsize;
use std::ops::Range;

use super::body::{rewrite_body, Context};
use crate::analyze::calls::Reloads;
use crate::analyze::{workers, FunctionPlan};
use crate::error::Error;

/// Places each function's gas reloads and appends its rewritten body to `out`, in order,
/// consuming the plans (each is left empty). Returns how many blocks charge gas.
pub(crate) fn write_bodies(
    wasm: &[u8],
    plans: &mut [FunctionPlan],
    bodies: &[Range<usize>],
    cx: &Context<'_>,
    reloads: &Reloads,
    threads: Option<NonZeroUsize>,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let total: usize = bodies.iter().map(Range::len).sum();
    let workers = workers(threads, total);
    // Cut after the function where the running code size passes each share.
    let mut runs: Vec<(&mut [FunctionPlan], &[Range<usize>])> = Vec::with_capacity(workers);
    let (mut plans, mut bodies) = (plans, bodies);
    let mut written = 0usize;
    for run in 1..workers {
        let share = total / workers * run;
        let mut cut = 0;
        while cut < bodies.len() && written < share {
            written += bodies[cut].len();
            cut += 1;
        }
        let (run_plans, rest_plans) = plans.split_at_mut(cut);
        let (run_bodies, rest_bodies) = bodies.split_at(cut);
        runs.push((run_plans, run_bodies));
        (plans, bodies) = (rest_plans, rest_bodies);
    }
    runs.push((plans, bodies));

    let mut runs = runs.into_iter();
    let Some((first_plans, first_bodies)) = runs.next() else {
        return Ok(0);
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = runs
            .map(|(plans, bodies)| {
                scope.spawn(move || {
                    let mut buffer = Vec::with_capacity(estimate(plans, bodies));
                    let blocks = write_run(wasm, plans, bodies, cx, reloads, &mut buffer);
                    (blocks, buffer)
                })
            })
            .collect();
        out.reserve(estimate(first_plans, first_bodies));
        let mut blocks = write_run(wasm, first_plans, first_bodies, cx, reloads, out);
        for helper in helpers {
            let (more, buffer) = match helper.join() {
                Ok(done) => done,
                // A bug, not an input: surface it as the sequential pass would have.
                Err(panic) => std::panic::resume_unwind(panic),
            };
            // The first error in module order wins.
            blocks = blocks.and_then(|blocks| {
                out.extend_from_slice(&buffer);
                Ok(blocks + more?)
            });
        }
        blocks
    })
}

/// About how many bytes a run's rewritten bodies take (a charge with its write-back is about
/// 20 bytes), so the buffer is allocated once.
fn estimate(plans: &[FunctionPlan], bodies: &[Range<usize>]) -> usize {
    let inserted: usize = plans.iter().map(|plan| plan.insertions.len() * 20).sum();
    bodies.iter().map(Range::len).sum::<usize>() + inserted
}

/// Writes one run of consecutive functions.
fn write_run(
    wasm: &[u8],
    plans: &mut [FunctionPlan],
    bodies: &[Range<usize>],
    cx: &Context<'_>,
    reloads: &Reloads,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let mut scratch = Vec::new();
    let mut blocks = 0;
    for (plan, body) in plans.iter_mut().zip(bodies) {
        reloads.place(plan);
        blocks += plan.charged_blocks();
        rewrite_body(wasm, body.clone(), plan, cx, &mut scratch, out)?;
        // Freed here, on this run's thread, rather than all at once on the caller's.
        *plan = FunctionPlan::default();
    }
    Ok(blocks)
}
