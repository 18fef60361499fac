//! The helper threads that plan and write the function bodies of a large code section.
//!
//! Starting a thread costs a hundred microseconds or more on a loaded or virtual machine,
//! as long as instrumenting a small module takes; waking one that is already running costs
//! microseconds (up to a tenth of a millisecond on a virtual machine). So the helpers are a
//! rayon pool of one thread fewer than the machine has cores, started on first use and kept
//! for the life of the process: the calling thread is always the remaining worker, and a
//! pool no larger than that leaves no idle helper spinning for work on a core the caller
//! needs. One caller at a time uses them: a caller
//! that finds them taken works alone (the cores are busy with the other caller anyway), so
//! no caller ever waits for a helper to finish another caller's module before it can run
//! the job handed to it (a scope waits for every job it spawned). Which thread does what
//! never shows in the output (`analyze::functions`, `rewrite::bodies`).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rayon_core::{ThreadPool, ThreadPoolBuilder};

/// Code a thread should have to itself before one more is worth using: planning this much
/// takes a third of a millisecond or more, waking a helper up to a tenth of one on a virtual
/// machine (with 4 KiB, two threads took 0.80-1.04 of one thread's time on a 10 KB module,
/// the gain coming and going with the machine's speed).
const MIN_BYTES_PER_THREAD: usize = 16 * 1024;

/// Whether a caller holds the helpers (see the module documentation).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The helpers worth using on a code section of `bytes` bytes when `threads` may work on it
/// (`None`: one per core), held until the returned value is dropped; `None` when the calling
/// thread should work alone (or another caller holds them).
pub(crate) fn helpers(threads: Option<NonZeroUsize>, bytes: usize) -> Option<Helpers> {
    let workers = workers(threads, bytes);
    if workers <= 1 {
        return None;
    }
    let pool = pool()?;
    TAKEN
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .ok()?;
    Some(Helpers { pool, workers })
}

/// The helper pool, held by one caller, and how many threads (the calling one included)
/// should share the work.
pub(crate) struct Helpers {
    pool: &'static ThreadPool,
    pub workers: usize,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        TAKEN.store(false, Ordering::Release);
    }
}

impl Helpers {
    /// Runs `first` and then `work` on the calling thread, and `work` on `workers - 1`
    /// helpers meanwhile; returns `first`'s result and every run's results, in no particular
    /// order, once all have finished (re-raising a helper's panic). Each run of `work` takes
    /// work from a queue the runs share, until none is left.
    pub(crate) fn run<F: Send, T: Send>(
        &self,
        first: impl FnOnce() -> F + Send,
        work: impl Fn() -> Vec<T> + Sync,
    ) -> (F, Vec<T>) {
        let mut more: Vec<Vec<T>> = (1..self.workers).map(|_| Vec::new()).collect();
        let (first, mut all) = self.pool.in_place_scope(|scope| {
            for more in &mut more {
                let work = &work;
                scope.spawn(move |_| *more = work());
            }
            (first(), work())
        });
        for mut more in more {
            all.append(&mut more);
        }
        (first, all)
    }

    /// Drops `value` on a helper, later: freeing thousands of small allocations is work the
    /// caller need not wait for (and freeing memory another thread allocated is slower
    /// still while that thread allocates).
    pub(crate) fn drop_later<T: Send + 'static>(&self, value: T) {
        self.pool.spawn(move || drop(value));
    }
}

/// How many threads (the caller included) should work on a code section of `bytes` bytes
/// when `threads` may (`None`: one per core).
fn workers(threads: Option<NonZeroUsize>, bytes: usize) -> usize {
    let useful = bytes / MIN_BYTES_PER_THREAD;
    if useful <= 1 {
        return 1;
    }
    threads.map_or_else(cores, NonZeroUsize::get).min(useful)
}

/// The helper pool: one thread fewer than the machine has cores, at least one; `None` when
/// the operating system would not start them, or in a child process forked after they were
/// started (a fork copies only the forking thread, so the pool's threads do not exist there
/// and work handed to them would never run). Then everything runs on the calling thread.
fn pool() -> Option<&'static ThreadPool> {
    /// The pool, and the process that started it.
    static HELPERS: OnceLock<Option<(ThreadPool, u32)>> = OnceLock::new();
    let (pool, owner) = HELPERS
        .get_or_init(|| {
            let pool = ThreadPoolBuilder::new()
                .num_threads(cores().saturating_sub(1).max(1))
                .thread_name(|index| format!("ri-sandbox-instrument-{index}"))
                .build()
                .ok()?;
            Some((pool, std::process::id()))
        })
        .as_ref()?;
    (*owner == std::process::id()).then_some(pool)
}

/// How many threads the machine runs at once, asked once per process: the answer comes from
/// system files (cgroup quotas), which takes longer than instrumenting a small module.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

#[cfg(test)]
mod tests {
    use super::{helpers, workers, MIN_BYTES_PER_THREAD};
    use std::num::NonZeroUsize;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

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

    /// Held by the tests that take the helpers: one caller at a time gets them.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    #[test]
    fn one_caller_at_a_time_holds_the_helpers() {
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let large = 100 * MIN_BYTES_PER_THREAD;
        let first = helpers(NonZeroUsize::new(2), large).expect("free helpers are taken");
        let meanwhile = std::thread::scope(|scope| {
            scope
                .spawn(|| helpers(NonZeroUsize::new(2), large).is_some())
                .join()
                .expect("no panic")
        });
        assert!(!meanwhile, "another caller works alone while they are held");
        drop(first);
        assert!(
            helpers(NonZeroUsize::new(2), large).is_some(),
            "released when dropped"
        );
    }

    #[test]
    fn run_does_first_then_work_on_the_caller_and_work_on_each_helper() {
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let helpers = helpers(NonZeroUsize::new(3), 100 * MIN_BYTES_PER_THREAD)
            .expect("a large code section gets helpers");
        assert_eq!(helpers.workers, 3);
        let caller = std::thread::current().id();
        let runs = AtomicUsize::new(0);
        let (first, ran_on) = helpers.run(
            || std::thread::current().id(),
            || {
                runs.fetch_add(1, Ordering::SeqCst);
                vec![std::thread::current().id()]
            },
        );
        assert_eq!(first, caller, "first runs on the calling thread");
        assert_eq!(runs.load(Ordering::SeqCst), 3, "work runs once per worker");
        assert_eq!(ran_on.len(), 3, "every run's results come back");
        assert_eq!(ran_on.iter().filter(|id| **id == caller).count(), 1);
    }

    #[test]
    fn drop_later_drops_on_a_helper() {
        /// Sends the thread it is dropped on.
        struct Witness(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Witness {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let _turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let helpers = helpers(NonZeroUsize::new(2), 100 * MIN_BYTES_PER_THREAD)
            .expect("a large code section gets helpers");
        let (send, dropped_on) = std::sync::mpsc::channel();
        helpers.drop_later(Witness(send));
        let dropped_on = dropped_on
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the value is dropped");
        assert_ne!(dropped_on, std::thread::current().id());
    }
}
