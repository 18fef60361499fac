//! Writes every function body of the code section, on several threads when the section is
//! large enough to gain from them.
//!
//! Once the module-level decisions are taken (`analyze::calls`), each body is written from
//! its own plan alone. The functions are cut into contiguous pieces of about equal code size,
//! a few per thread, which the threads take in turn; the calling thread writes the first piece
//! straight into the output, and every other piece goes into a buffer of its own, appended in
//! order. So the output is byte-identical whatever the number of threads, an error is the
//! first failing function's in module order, and a helper that is late (still freeing an
//! earlier module's plans, say) only leaves more pieces to the calling thread.

use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Mutex;

use super::body::{rewrite_body, Buffers, Context};
use crate::analyze::calls::Reloads;
use crate::analyze::{FunctionPlan, PlanLists, Plans};
use crate::error::Error;
use crate::pool::helpers;

/// Pieces per thread: enough that no thread is left with a long piece at the end.
const PIECES_PER_WORKER: usize = 4;

/// One contiguous piece of the code section: the plans and bodies of its functions.
type Piece<'p, 'b> = (&'p mut [FunctionPlan], &'b [Range<usize>]);

/// Places each function's gas reloads and appends its rewritten body to `out`, in order.
/// Returns how many blocks charge gas.
pub(crate) fn write_bodies(
    wasm: &[u8],
    mut plans: Plans,
    bodies: &[Range<usize>],
    cx: &Context<'_>,
    reloads: &Reloads,
    threads: Option<NonZeroUsize>,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let total: usize = bodies.iter().map(Range::len).sum();
    let lists = &plans.lists;
    // (`out` was allocated for an output twice the input's size, which is about what the
    // defaults make of a compiled program.)
    let Some(helpers) = helpers(threads, total) else {
        return write_piece(wasm, &mut plans.functions, lists, bodies, cx, reloads, out);
    };
    let count = helpers.workers * PIECES_PER_WORKER;
    let mut pieces = cut(&mut plans.functions, bodies, total, count).into_iter();
    let Some((first_plans, first_bodies)) = pieces.next() else {
        return Ok(0);
    };
    let queue = Mutex::new(pieces.enumerate());
    // Takes pieces until none is left; returns them written, with their indices.
    let work = || {
        let mut done = Vec::new();
        // A poisoned lock means another thread panicked; the scope re-raises that panic.
        while let Some((index, (plans, bodies))) = queue.lock().ok().and_then(|mut q| q.next()) {
            let mut buffer = Vec::with_capacity(estimate(plans, lists, bodies));
            let blocks = write_piece(wasm, plans, lists, bodies, cx, reloads, &mut buffer);
            done.push((index, blocks, buffer));
        }
        done
    };
    let first = || write_piece(wasm, first_plans, lists, first_bodies, cx, reloads, out);
    let (mut blocks, mut written) = helpers.run(first, work);
    helpers.drop_later(plans);
    written.sort_unstable_by_key(|(index, _, _)| *index);
    for (_, more, buffer) in written {
        // The first error in module order wins.
        blocks = blocks.and_then(|blocks| {
            out.extend_from_slice(&buffer);
            Ok(blocks + more?)
        });
    }
    blocks
}

/// Cuts the functions into `count` contiguous pieces of about equal code size (fewer when
/// there are fewer functions): after the function where the running size passes each share.
fn cut<'p, 'b>(
    mut plans: &'p mut [FunctionPlan],
    mut bodies: &'b [Range<usize>],
    total: usize,
    count: usize,
) -> Vec<Piece<'p, 'b>> {
    let mut pieces = Vec::with_capacity(count);
    let mut written = 0usize;
    for piece in 1..count {
        let share = total / count * piece;
        let mut cut = 0;
        while cut < bodies.len() && written < share {
            written += bodies[cut].len();
            cut += 1;
        }
        if cut == 0 {
            continue;
        }
        let (piece_plans, rest_plans) = std::mem::take(&mut plans).split_at_mut(cut);
        let (piece_bodies, rest_bodies) = bodies.split_at(cut);
        pieces.push((piece_plans, piece_bodies));
        (plans, bodies) = (rest_plans, rest_bodies);
    }
    if !bodies.is_empty() {
        pieces.push((plans, bodies));
    }
    pieces
}

/// About how many bytes a run's rewritten bodies take (a charge with its write-back is about
/// 20 bytes), so the buffer is allocated once.
fn estimate(plans: &[FunctionPlan], lists: &[PlanLists], bodies: &[Range<usize>]) -> usize {
    let inserted: usize = plans
        .iter()
        .map(|plan| plan.insertions(lists).len() * 20)
        .sum();
    bodies.iter().map(Range::len).sum::<usize>() + inserted
}

/// Writes one piece: consecutive functions.
fn write_piece(
    wasm: &[u8],
    plans: &mut [FunctionPlan],
    lists: &[PlanLists],
    bodies: &[Range<usize>],
    cx: &Context<'_>,
    reloads: &Reloads,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let mut buffers = Buffers::default();
    let mut offsets = Vec::with_capacity(64);
    let mut blocks = 0;
    for (plan, body) in plans.iter_mut().zip(bodies) {
        reloads.place(plan, lists, &mut offsets);
        blocks += plan.charged_blocks(lists);
        rewrite_body(
            wasm,
            body.clone(),
            (plan, lists),
            &offsets,
            cx,
            &mut buffers,
            out,
        )?;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::cut;
    use crate::analyze::FunctionPlan;
    use std::ops::Range;

    /// Bodies of the given sizes, laid out one after another.
    fn bodies(sizes: &[usize]) -> Vec<Range<usize>> {
        let mut start = 0;
        sizes
            .iter()
            .map(|&size| {
                start += size;
                start - size..start
            })
            .collect()
    }

    /// The sizes of the pieces `cut` makes.
    fn pieces(sizes: &[usize], count: usize) -> Vec<Vec<usize>> {
        let bodies = bodies(sizes);
        let mut plans: Vec<FunctionPlan> = sizes.iter().map(|_| FunctionPlan::default()).collect();
        let total = sizes.iter().sum();
        let pieces = cut(&mut plans, &bodies, total, count);
        for (plans, bodies) in &pieces {
            assert_eq!(plans.len(), bodies.len());
        }
        pieces
            .iter()
            .map(|(_, bodies)| bodies.iter().map(Range::len).collect())
            .collect()
    }

    #[test]
    fn pieces_are_contiguous_non_empty_and_cover_every_function_in_order() {
        let sizes: Vec<usize> = (0..100).map(|i| 10 + i * 7 % 50).collect();
        for count in [1, 2, 3, 8, 100, 1000] {
            let pieces = pieces(&sizes, count);
            assert!(
                pieces.len() <= count.min(sizes.len()),
                "{count}: {pieces:?}"
            );
            assert!(pieces.iter().all(|piece| !piece.is_empty()));
            assert_eq!(pieces.concat(), sizes, "{count} pieces");
        }
    }

    #[test]
    fn pieces_share_the_code_about_equally() {
        let sizes = vec![100; 80];
        let even = pieces(&sizes, 8);
        assert_eq!(even.len(), 8);
        assert!(even.iter().all(|piece| piece.len() == 10), "{even:?}");
        // One body larger than a share: it is a piece of its own, the rest still spread.
        let mut sizes = vec![100; 80];
        sizes[3] = 5000;
        let uneven = pieces(&sizes, 8);
        assert!(uneven.iter().any(|piece| piece.last() == Some(&5000)));
        assert!(uneven.len() >= 6, "{uneven:?}");
    }

    #[test]
    fn no_functions_no_pieces() {
        assert!(pieces(&[], 4).is_empty());
    }
}
