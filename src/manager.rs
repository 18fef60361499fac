//! Many sandboxes by id, sharing one runtime: the seed's seven operations (create, load,
//! execute, destroy, snapshot, restore, metrics) as methods, and the memory-pressure advisor
//! that keeps their memory within the host's budget.
//!
//! The advisor that acts on the level is documented on [`Manager`].

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::execution::{Execution, Payload};
use crate::metrics::SandboxMetrics;
use crate::pressure::{self, PressureEvent, PressureLevel, PressureMonitor};
use crate::runtime::{CompiledModule, Runtime};
use crate::sandbox::{Sandbox, Status};
use crate::snapshot::Snapshot;
use std::collections::{BTreeMap, HashMap};

/// Holds sandboxes by id and keeps their memory within a budget. A destroyed sandbox's id
/// stays known, so operations on it fail with [`ErrorKind::InstanceDestroyed`] rather than
/// "unknown sandbox".
///
/// A manager is `Send`: move it to another thread, or share it behind a `Mutex`. Managers on
/// several threads can share one [`Runtime`] (one engine, one epoch ticker).
///
/// # The advisor
///
/// A manager knows how much memory the host gives its sandboxes
/// ([`Manager::with_memory_budget`], [`Manager::set_memory_available`]; unlimited by default)
/// and reports their linear memory, all together, to a [`PressureMonitor`] after every
/// operation. It also keeps a logical clock, advanced by one for every operation on a sandbox
/// (create, load, execute, snapshot, restore, resume, [`Manager::get_mut`]), and remembers when
/// each sandbox was last used: the least recently used order is the same on every run, whatever
/// the wall clock does. After each operation it acts on the monitor's level:
///
/// | level | action |
/// |---|---|
/// | normal | none |
/// | warning | a log line when the level is entered |
/// | pressure | suspends the least recently used but the foreground until usage is under 70 % |
/// | critical, out of memory | suspends every sandbox but the foreground one |
///
/// The foreground sandbox is the one the operation was on (none for [`Manager::destroy`],
/// [`Manager::suspend`] and [`Manager::set_memory_available`]). The advisor acts after every
/// operation while the level is pressure or above, not only when the level changes, so a
/// sandbox that comes back while memory is short pushes another one out. A sandbox whose state
/// cannot be saved (a non-null externref) is skipped, with a log line.
///
/// A suspended sandbox resumes by itself on its next operation (see
/// [`Sandbox::suspend`]); [`Manager::execute`] resumes it first and lets the advisor make room
/// before the guest runs. Nothing is lost: the call gives exactly what it would have given
/// without the suspension.
///
/// Memory changed through [`Manager::get_mut`] (a call made directly on the sandbox, say) is
/// accounted at the manager's next `&mut` operation, or at once with [`Manager::refresh`].
#[derive(Debug)]
pub struct Manager {
    runtime: Runtime,
    sandboxes: HashMap<String, Entry>,
    /// The logical clock: one tick per operation on a sandbox.
    clock: u64,
    /// The sandboxes that hold an instance (loaded, not suspended), by last use: the least
    /// recently used first.
    resident: BTreeMap<u64, String>,
    /// Linear memory of all sandboxes together, as last accounted.
    used: u64,
    monitor: PressureMonitor,
    /// Sandboxes handed out by `get_mut` since they were last accounted.
    dirty: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    sandbox: Sandbox,
    last_use: u64,
    /// Its linear memory, as last accounted.
    memory: u64,
    /// Whether it is in `Manager::resident`, under the key `last_use`.
    resident: bool,
}

impl Manager {
    /// A manager whose sandboxes share `runtime`'s engine, with an unlimited memory budget
    /// (the advisor never acts until [`Manager::set_memory_available`] sets one).
    pub fn new(runtime: Runtime) -> Manager {
        Manager::with_memory_budget(runtime, u64::MAX)
    }

    /// A manager whose sandboxes may use `available_bytes` of linear memory together.
    pub fn with_memory_budget(runtime: Runtime, available_bytes: u64) -> Manager {
        Manager {
            runtime,
            sandboxes: HashMap::new(),
            clock: 0,
            resident: BTreeMap::new(),
            used: 0,
            monitor: PressureMonitor::new(available_bytes),
            dirty: Vec::new(),
        }
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Creates a sandbox; returns its id.
    ///
    /// # Errors
    /// As [`Sandbox::new`].
    pub fn create(&mut self, config: Config) -> Result<String, Error> {
        self.reconcile(None);
        let sandbox = Sandbox::new(&self.runtime, config)?;
        let id = sandbox.id().to_string();
        let last_use = self.tick();
        self.sandboxes.insert(
            id.clone(),
            Entry {
                sandbox,
                last_use,
                memory: 0,
                resident: false,
            },
        );
        Ok(id)
    }

    /// The sandbox with this id.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn get(&self, id: &str) -> Result<&Sandbox, Error> {
        self.sandboxes
            .get(id)
            .map(|e| &e.sandbox)
            .ok_or_else(|| unknown(id))
    }

    /// The sandbox with this id, mutably. Counts as a use; what is done with it is accounted
    /// at the manager's next `&mut` operation (or [`Manager::refresh`]).
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Sandbox, Error> {
        self.touch(id)?;
        if self.dirty.last().map(String::as_str) != Some(id) {
            self.dirty.push(id.to_string());
        }
        self.entry_mut(id).map(|e| &mut e.sandbox)
    }

    /// Loads a module into a sandbox.
    ///
    /// # Errors
    /// As [`Sandbox::load`].
    pub fn load(&mut self, id: &str, module: &[u8]) -> Result<(), Error> {
        self.touch(id)?;
        let result = self.entry_mut(id)?.sandbox.load(module);
        self.settle(id, Some(id));
        result
    }

    /// Loads a module compiled with [`Runtime::compile`] into a sandbox.
    ///
    /// # Errors
    /// As [`Sandbox::load_compiled`].
    pub fn load_compiled(&mut self, id: &str, module: &CompiledModule) -> Result<(), Error> {
        self.touch(id)?;
        let result = self.entry_mut(id)?.sandbox.load_compiled(module);
        self.settle(id, Some(id));
        result
    }

    /// Calls an export of a sandbox, resuming it first if it is suspended.
    ///
    /// # Errors
    /// As [`Sandbox::call`] and [`Sandbox::call_json`], and [`Sandbox::resume`].
    pub fn execute(
        &mut self,
        id: &str,
        export: &str,
        payload: Payload,
    ) -> Result<Execution, Error> {
        self.touch(id)?;
        if self.entry_mut(id)?.sandbox.status() == Status::Suspended {
            // Resume before the call, so the advisor makes room before the guest runs.
            let resumed = self.entry_mut(id)?.sandbox.resume();
            self.settle(id, Some(id));
            resumed?;
        }
        let sandbox = &mut self.entry_mut(id)?.sandbox;
        let result = match payload {
            Payload::Args(args) => sandbox.call(export, &args),
            Payload::Json(value) => sandbox.call_json(export, &value),
        };
        self.settle(id, Some(id));
        result
    }

    /// Destroys a sandbox, freeing its memory (the monitor sees it at once). Destroying twice
    /// does nothing.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn destroy(&mut self, id: &str) -> Result<(), Error> {
        self.reconcile(None);
        self.entry_mut(id)?.sandbox.destroy();
        self.settle(id, None);
        Ok(())
    }

    /// Captures a sandbox's state. A suspended sandbox is not resumed: its kept snapshot is
    /// returned.
    ///
    /// # Errors
    /// As [`Sandbox::snapshot`].
    pub fn snapshot(&mut self, id: &str) -> Result<Snapshot, Error> {
        self.touch(id)?;
        let sandbox = &mut self.entry_mut(id)?.sandbox;
        if let Some(snapshot) = sandbox.suspended_snapshot() {
            return Ok(snapshot.clone());
        }
        sandbox.snapshot()
    }

    /// Puts a sandbox back into a captured state (resuming it first if it is suspended).
    ///
    /// # Errors
    /// As [`Sandbox::restore`].
    pub fn restore(&mut self, id: &str, snapshot: &Snapshot) -> Result<(), Error> {
        self.touch(id)?;
        let result = self.entry_mut(id)?.sandbox.restore(snapshot);
        self.settle(id, Some(id));
        result
    }

    /// Suspends a sandbox, freeing its memory (see [`Sandbox::suspend`]). Not a use: its
    /// place in the least-recently-used order stays.
    ///
    /// # Errors
    /// As [`Sandbox::suspend`].
    pub fn suspend(&mut self, id: &str) -> Result<(), Error> {
        self.reconcile(None);
        let result = self.entry_mut(id)?.sandbox.suspend();
        self.settle(id, None);
        result
    }

    /// Resumes a suspended sandbox (see [`Sandbox::resume`]); the advisor then makes room if
    /// memory is short.
    ///
    /// # Errors
    /// As [`Sandbox::resume`].
    pub fn resume(&mut self, id: &str) -> Result<(), Error> {
        self.touch(id)?;
        let result = self.entry_mut(id)?.sandbox.resume();
        self.settle(id, Some(id));
        result
    }

    /// A sandbox's metrics.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`], [`ErrorKind::InstanceDestroyed`].
    pub fn metrics(&self, id: &str) -> Result<SandboxMetrics, Error> {
        let sandbox = self.get(id)?;
        if sandbox.status() == Status::Destroyed {
            return Err(Error::new(ErrorKind::InstanceDestroyed {
                id: id.to_string(),
            }));
        }
        Ok(sandbox.metrics())
    }

    /// Ids of the sandboxes that are not destroyed (suspended ones included).
    pub fn live(&self) -> impl Iterator<Item = &str> {
        self.sandboxes
            .values()
            .filter(|e| e.sandbox.status() != Status::Destroyed)
            .map(|e| e.sandbox.id())
    }

    /// Ids of the sandboxes that hold an instance (loaded, not suspended), least recently
    /// used first: the order the advisor suspends them in.
    pub fn resident(&self) -> impl Iterator<Item = &str> {
        self.resident.values().map(String::as_str)
    }

    /// When a sandbox was last used, on the manager's logical clock (see
    /// [the advisor](Manager#the-advisor)).
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn last_use(&self, id: &str) -> Result<u64, Error> {
        self.sandboxes
            .get(id)
            .map(|e| e.last_use)
            .ok_or_else(|| unknown(id))
    }

    /// The logical clock: operations on sandboxes so far.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Linear memory of all sandboxes together, in bytes, as last accounted.
    pub fn memory_used(&self) -> u64 {
        self.used
    }

    /// The memory-pressure monitor: the level, the budget, the usage.
    pub fn pressure(&self) -> &PressureMonitor {
        &self.monitor
    }

    /// Changes the memory budget; the advisor acts on the new level at once.
    pub fn set_memory_available(&mut self, available_bytes: u64) {
        self.reconcile(None);
        self.monitor.set_available(available_bytes);
        self.advise(None);
    }

    /// Registers the callback every change of pressure level is passed to (see
    /// [`PressureMonitor::on_change`]).
    pub fn on_pressure_change(&mut self, callback: impl FnMut(&PressureEvent) + Send + 'static) {
        self.monitor.on_change(callback);
    }

    /// Takes the changes of pressure level recorded since the last call, oldest first.
    pub fn drain_pressure_events(&mut self) -> Vec<PressureEvent> {
        self.monitor.drain_events()
    }

    /// Accounts now for what was done through [`Manager::get_mut`], and lets the advisor act.
    pub fn refresh(&mut self) {
        self.reconcile(None);
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn entry_mut(&mut self, id: &str) -> Result<&mut Entry, Error> {
        self.sandboxes.get_mut(id).ok_or_else(|| unknown(id))
    }

    /// Accounts for `get_mut` first, then marks `id` used now.
    fn touch(&mut self, id: &str) -> Result<(), Error> {
        self.reconcile(Some(id));
        let now = self.clock + 1;
        let entry = self.sandboxes.get_mut(id).ok_or_else(|| unknown(id))?;
        if entry.resident {
            if let Some(name) = self.resident.remove(&entry.last_use) {
                self.resident.insert(now, name);
            }
        }
        entry.last_use = now;
        self.clock = now;
        Ok(())
    }

    /// Accounts for the sandboxes handed out by `get_mut`, then lets the advisor act.
    fn reconcile(&mut self, foreground: Option<&str>) {
        if self.dirty.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.dirty) {
            self.account(&id);
        }
        self.report();
        self.advise(foreground);
    }

    /// After an operation on `changed`: account for it, report to the monitor, let the
    /// advisor act with `foreground` spared.
    fn settle(&mut self, changed: &str, foreground: Option<&str>) {
        self.account(changed);
        self.report();
        self.advise(foreground);
    }

    /// Re-reads one sandbox's memory and status into the totals and the resident order.
    fn account(&mut self, id: &str) {
        let Some(entry) = self.sandboxes.get_mut(id) else {
            return;
        };
        let memory = match entry.sandbox.status() {
            Status::Loaded | Status::Running => {
                (entry.sandbox.store.as_ref()).map_or(0, |store| store.data().limiter.memory_bytes)
            }
            _ => 0,
        };
        self.used = self
            .used
            .saturating_sub(entry.memory)
            .saturating_add(memory);
        entry.memory = memory;
        let resident = entry.sandbox.status() == Status::Loaded;
        if resident != entry.resident {
            if resident {
                self.resident.insert(entry.last_use, id.to_string());
            } else {
                self.resident.remove(&entry.last_use);
            }
            entry.resident = resident;
        }
    }

    /// Reports the total to the monitor; logs the advisor's view of a new warning.
    fn report(&mut self) {
        if let Some(event) = self.monitor.update(self.used) {
            if event.to == PressureLevel::Warning && event.from < PressureLevel::Warning {
                tracing::warn!(
                    resident = self.resident.len(),
                    used = self.used,
                    available = self.monitor.available_bytes(),
                    "ri-sandbox advisor: memory at the warning level; nothing suspended yet"
                );
            }
        }
    }

    /// Acts on the monitor's level (see the [module docs](crate::manager)).
    fn advise(&mut self, foreground: Option<&str>) {
        let level = self.monitor.level();
        let suspended = match level {
            PressureLevel::Normal | PressureLevel::Warning => return,
            PressureLevel::Pressure => self.suspend_least_recently_used(foreground),
            _ => self.suspend_all_but(foreground),
        };
        if suspended > 0 {
            tracing::info!(
                level = %level,
                suspended,
                used = self.used,
                available = self.monitor.available_bytes(),
                "ri-sandbox advisor: suspended {suspended} sandboxes at the {level} level"
            );
            self.report();
        }
    }

    /// Suspends the least recently used sandboxes but `foreground` until usage is below the
    /// warning level. Returns how many it suspended.
    fn suspend_least_recently_used(&mut self, foreground: Option<&str>) -> usize {
        let available = self.monitor.available_bytes();
        let mut from = 0;
        let mut suspended = 0;
        while pressure::at_least(self.used, available, pressure::WARNING_PERCENT) {
            let next = self
                .resident
                .range(from..)
                .find(|(_, id)| Some(id.as_str()) != foreground)
                .map(|(key, id)| (*key, id.clone()));
            let Some((key, id)) = next else {
                break;
            };
            from = key + 1;
            suspended += usize::from(self.advisor_suspend(&id));
        }
        suspended
    }

    /// Suspends every sandbox but `foreground`. Returns how many it suspended.
    fn suspend_all_but(&mut self, foreground: Option<&str>) -> usize {
        let victims: Vec<String> = self
            .resident
            .values()
            .filter(|id| Some(id.as_str()) != foreground)
            .cloned()
            .collect();
        victims
            .iter()
            .map(|id| usize::from(self.advisor_suspend(id)))
            .sum()
    }

    /// Suspends one sandbox for the advisor; whether it could.
    fn advisor_suspend(&mut self, id: &str) -> bool {
        let Some(entry) = self.sandboxes.get_mut(id) else {
            return false;
        };
        let done = match entry.sandbox.suspend() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "ri-sandbox advisor: cannot suspend");
                false
            }
        };
        self.account(id);
        done
    }
}

fn unknown(id: &str) -> Error {
    Error::new(ErrorKind::UnknownSandbox { id: id.to_string() })
}
