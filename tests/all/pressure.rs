//! Many sandboxes in one host: the memory-pressure monitor's levels and hysteresis, suspension
//! and resumption (nothing lost), the advisor's action at each level, destroy freeing memory,
//! and sandboxes created, called and destroyed from several threads.

use crate::common::{fixture, runtime};
use ri_sandbox::pressure::{EVENT_CAPACITY, WARNING_PERCENT};
use ri_sandbox::{
    Config, ErrorKind, Execution, Manager, Payload, PressureEvent, PressureLevel, PressureMonitor,
    Sandbox, Status, Value,
};
use std::sync::{Arc, Mutex};

const PAGE: u64 = 65536;

/// One page of memory; `bump` counts in memory, `grow` grows it.
const PAGED: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "bump") (result i32)
    (i32.store (i32.const 1000) (i32.add (i32.load (i32.const 1000)) (i32.const 1)))
    (i32.load (i32.const 1000)))
  (func (export "grow") (param i32) (result i32)
    (memory.grow (local.get 0))))"#;

/// State in a global, in memory that grows every call, in a data segment it rewrites, and in
/// the random stream: `step` returns a digest of all of it.
const STATEFUL: &str = r#"(module
  (import "env" "__get_random" (func $random (result i64)))
  (import "env" "__get_time" (func $time (result i64)))
  (memory 1)
  (data (i32.const 0) "\01")
  (global $calls (mut i64) (i64.const 0))
  (func (export "step") (result i64)
    (local $page i32) (local $i i32) (local $sum i64)
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (i64.store (i32.const 0) (i64.mul (i64.load (i32.const 0)) (i64.const 3)))
    (local.set $page (memory.grow (i32.const 1)))
    (i64.store (i32.mul (local.get $page) (i32.const 65536))
      (i64.xor (call $random) (i64.add (global.get $calls) (call $time))))
    (block $done
      (loop $pages
        (br_if $done (i32.ge_u (local.get $i) (memory.size)))
        (local.set $sum (i64.add (local.get $sum)
          (i64.load (i32.mul (local.get $i) (i32.const 65536)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $pages)))
    (local.get $sum)))"#;

fn level_after(monitor: &mut PressureMonitor, used: u64) -> PressureLevel {
    monitor.update(used);
    monitor.level()
}

// ---- the monitor ----------------------------------------------------------------------------

#[test]
fn levels_change_exactly_at_the_boundaries() {
    // Out of 10,000 bytes, one byte is 0.01 %.
    for (used, level) in [
        (0, PressureLevel::Normal),
        (6_999, PressureLevel::Normal),       // 69.99 %
        (7_000, PressureLevel::Warning),      // 70 %
        (8_499, PressureLevel::Warning),      // 84.99 %
        (8_500, PressureLevel::Pressure),     // 85 %
        (9_499, PressureLevel::Pressure),     // 94.99 %
        (9_500, PressureLevel::Critical),     // 95 %
        (9_999, PressureLevel::Critical),     // 99.99 %
        (10_000, PressureLevel::OutOfMemory), // 100 %
        (20_000, PressureLevel::OutOfMemory), // 200 %
    ] {
        // From a fresh monitor (rising) and as the raw level.
        let mut monitor = PressureMonitor::new(10_000);
        assert_eq!(level_after(&mut monitor, used), level, "{used} bytes");
        assert_eq!(PressureLevel::of_usage(used, 10_000), level, "{used} bytes");
    }
    // Rising one step at a time gives one event per level.
    let mut monitor = PressureMonitor::new(10_000);
    for used in [6_999, 7_000, 8_499, 8_500, 9_499, 9_500, 9_999, 10_000] {
        monitor.update(used);
    }
    let changes: Vec<_> = monitor
        .drain_events()
        .into_iter()
        .map(|e| (e.from, e.to, e.used_bytes))
        .collect();
    assert_eq!(
        changes,
        [
            (PressureLevel::Normal, PressureLevel::Warning, 7_000),
            (PressureLevel::Warning, PressureLevel::Pressure, 8_500),
            (PressureLevel::Pressure, PressureLevel::Critical, 9_500),
            (PressureLevel::Critical, PressureLevel::OutOfMemory, 10_000),
        ]
    );
    // Exact for budgets where a float percentage would round.
    let available = u64::MAX / 3;
    let seventy = (u128::from(available) * 70).div_ceil(100) as u64;
    assert_eq!(
        PressureLevel::of_usage(seventy - 1, available),
        PressureLevel::Normal
    );
    assert_eq!(
        PressureLevel::of_usage(seventy, available),
        PressureLevel::Warning
    );
    // Nothing available: out of memory.
    assert_eq!(PressureMonitor::new(0).level(), PressureLevel::OutOfMemory);
}

#[test]
fn a_level_is_left_only_five_points_below_its_lower_bound() {
    let mut monitor = PressureMonitor::new(10_000);
    assert_eq!(monitor.hysteresis_percent(), 5);
    assert_eq!(level_after(&mut monitor, 8_500), PressureLevel::Pressure);
    assert_eq!(level_after(&mut monitor, 8_499), PressureLevel::Pressure);
    assert_eq!(level_after(&mut monitor, 8_000), PressureLevel::Pressure); // 80 %: held
    assert_eq!(level_after(&mut monitor, 7_999), PressureLevel::Warning); // 79.99 %: left
    assert_eq!(level_after(&mut monitor, 6_999), PressureLevel::Warning);
    assert_eq!(level_after(&mut monitor, 6_500), PressureLevel::Warning); // 65 %: held
    assert_eq!(level_after(&mut monitor, 6_499), PressureLevel::Normal);

    // Each level above normal, held down to its bound minus 5 points.
    for (enter, hold, leave, below) in [
        (9_500, 9_000, 8_999, PressureLevel::Pressure),
        (10_000, 9_500, 9_499, PressureLevel::Critical),
    ] {
        let mut monitor = PressureMonitor::new(10_000);
        let level = level_after(&mut monitor, enter);
        assert_eq!(level_after(&mut monitor, hold), level);
        assert_eq!(level_after(&mut monitor, leave), below);
    }

    // A fall past several levels is one change, to the level usage is in.
    let mut monitor = PressureMonitor::new(10_000);
    monitor.update(10_000);
    monitor.drain_events();
    assert_eq!(level_after(&mut monitor, 7_200), PressureLevel::Warning);
    let events = monitor.drain_events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].from, events[0].to),
        (PressureLevel::OutOfMemory, PressureLevel::Warning)
    );
    // ... and the fall lands in a level that holds by hysteresis too: 82 % is a warning, but
    // after out of memory it is still pressure's held band (80-85 %).
    let mut monitor = PressureMonitor::new(10_000);
    monitor.update(10_000);
    assert_eq!(level_after(&mut monitor, 8_200), PressureLevel::Pressure);
}

#[test]
fn usage_that_hovers_around_a_bound_changes_the_level_once() {
    let mut monitor = PressureMonitor::new(10_000);
    for _ in 0..100 {
        monitor.update(7_000);
        monitor.update(6_999);
        monitor.update(6_600);
    }
    assert_eq!(monitor.level(), PressureLevel::Warning);
    assert_eq!(monitor.drain_events().len(), 1);
    // Without hysteresis the same usage flaps.
    let mut plain = PressureMonitor::new(10_000).with_hysteresis_percent(0);
    for _ in 0..100 {
        plain.update(7_000);
        plain.update(6_999);
    }
    assert_eq!(plain.drain_events().len(), 200);
}

#[test]
fn every_change_is_an_event_and_reaches_the_callback() {
    let seen: Arc<Mutex<Vec<PressureEvent>>> = Arc::default();
    let mut monitor = PressureMonitor::new(1_000);
    let sink = seen.clone();
    monitor.on_change(move |event| sink.lock().unwrap().push(event.clone()));
    assert!(monitor.update(100).is_none());
    let event = monitor.update(960).expect("a change");
    assert_eq!(
        (event.from, event.to),
        (PressureLevel::Normal, PressureLevel::Critical)
    );
    assert_eq!((event.used_bytes, event.available_bytes), (960, 1_000));
    assert_eq!(event.usage_percent(), 96.0);
    // A larger budget is a change too.
    let event = monitor.set_available(10_000).expect("a change");
    assert_eq!(event.to, PressureLevel::Normal);
    let drained = monitor.drain_events();
    assert_eq!(drained, *seen.lock().unwrap());
    assert_eq!(
        drained.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [0, 1]
    );
    assert!(monitor.drain_events().is_empty());

    // The list is bounded; sequence numbers show what was dropped.
    let mut monitor = PressureMonitor::new(10).with_hysteresis_percent(0);
    for _ in 0..EVENT_CAPACITY {
        monitor.update(10);
        monitor.update(0);
    }
    let events = monitor.drain_events();
    assert_eq!(events.len(), EVENT_CAPACITY);
    assert_eq!(events[0].sequence, EVENT_CAPACITY as u64);
}

// ---- suspension -----------------------------------------------------------------------------

fn sandbox(module: &[u8], config: Config) -> Sandbox {
    let mut sandbox = Sandbox::new(runtime(), config).unwrap();
    sandbox.load(module).unwrap();
    sandbox
}

/// What must be identical with and without suspensions.
fn same_run(a: &Execution, b: &Execution, what: &str) {
    assert_eq!(a.output, b.output, "{what}: output");
    let (a, b) = (a.metrics, b.metrics);
    assert_eq!(a.gas_used, b.gas_used, "{what}: gas");
    assert_eq!(a.memory_bytes, b.memory_bytes, "{what}: memory");
    assert_eq!(
        a.peak_memory_bytes, b.peak_memory_bytes,
        "{what}: peak memory"
    );
    assert_eq!(a.host_calls, b.host_calls, "{what}: host calls");
}

/// Runs `export` `calls` times on two sandboxes, suspending the second between calls (and
/// resuming it explicitly every third time, transparently otherwise); everything must match.
fn suspension_is_invisible(module: &[u8], config: Config, export: &str, calls: usize) {
    let mut plain = sandbox(module, config.clone());
    let mut suspended = sandbox(module, config);
    for call in 0..calls {
        suspended.suspend().unwrap();
        assert_eq!(suspended.status(), Status::Suspended);
        assert_eq!(suspended.metrics().memory_bytes, 0);
        if call % 3 == 0 {
            suspended.resume().unwrap();
            assert_eq!(suspended.status(), Status::Loaded);
        }
        let a = plain.call(export, &[]).unwrap();
        let b = suspended.call(export, &[]).unwrap();
        same_run(&a, &b, &format!("{export} call {call}"));
        assert_eq!(suspended.status(), Status::Loaded);
    }
    let (a, b) = (plain.metrics(), suspended.metrics());
    assert_eq!(
        (
            a.calls,
            a.gas_used,
            a.memory_bytes,
            a.peak_memory_bytes,
            a.host_calls
        ),
        (
            b.calls,
            b.gas_used,
            b.memory_bytes,
            b.peak_memory_bytes,
            b.host_calls
        )
    );
    assert_eq!(b.suspensions, calls as u64);
    assert_eq!(
        plain.snapshot().unwrap().to_bytes(),
        suspended.snapshot().unwrap().to_bytes()
    );
}

#[test]
fn suspend_and_resume_between_calls_change_nothing_counter() {
    suspension_is_invisible(&fixture("counter.wasm"), Config::default(), "increment", 10);
}

#[test]
fn suspend_and_resume_between_calls_change_nothing_random() {
    let config = Config::default().with_seed(42).with_event_timestamp(7);
    suspension_is_invisible(&fixture("time-random.wasm"), config, "random", 10);
}

#[test]
fn suspend_and_resume_between_calls_change_nothing_memory() {
    let config = Config::default().with_seed(9).with_event_timestamp(1_000);
    suspension_is_invisible(STATEFUL.as_bytes(), config, "step", 12);
}

#[test]
fn suspension_frees_memory_and_keeps_the_state() {
    let mut sandbox = sandbox(PAGED.as_bytes(), Config::default());
    sandbox.call("grow", &[Value::I32(15)]).unwrap();
    sandbox.call("bump", &[]).unwrap();
    assert_eq!(sandbox.metrics().memory_bytes, 16 * PAGE);
    let snapshot = sandbox.snapshot().unwrap();
    sandbox.suspend().unwrap();
    sandbox.suspend().unwrap(); // twice does nothing
    assert_eq!(sandbox.metrics().memory_bytes, 0);
    assert_eq!(sandbox.metrics().calls, 2);
    assert_eq!(sandbox.suspended_snapshot(), Some(&snapshot));
    // Only the non-zero page is kept.
    assert!(sandbox.suspended_snapshot().unwrap().to_bytes().len() < 2 * PAGE as usize);
    let run = sandbox.call("bump", &[]).unwrap();
    assert_eq!(run.values(), &[Value::I32(2)]);
    assert_eq!(sandbox.metrics().memory_bytes, 16 * PAGE);
    assert_eq!(sandbox.suspended_snapshot(), None);
    sandbox.resume().unwrap(); // resuming a loaded sandbox does nothing
}

#[test]
fn suspension_needs_a_loaded_sandbox() {
    let mut created = Sandbox::new(runtime(), Config::default()).unwrap();
    assert!(matches!(
        created.suspend().unwrap_err().kind(),
        ErrorKind::WrongStatus {
            status: Status::Created,
            ..
        }
    ));
    assert!(matches!(
        created.resume().unwrap_err().kind(),
        ErrorKind::WrongStatus { .. }
    ));
    let mut gone = sandbox(&fixture("counter.wasm"), Config::default());
    gone.suspend().unwrap();
    gone.destroy();
    assert_eq!(gone.status(), Status::Destroyed);
    assert!(gone.suspended_snapshot().is_none());
    for err in [gone.suspend().unwrap_err(), gone.resume().unwrap_err()] {
        assert!(matches!(err.kind(), ErrorKind::InstanceDestroyed { .. }));
    }
    // A suspended sandbox takes no new module.
    let mut suspended = sandbox(&fixture("counter.wasm"), Config::default());
    suspended.suspend().unwrap();
    assert!(matches!(
        suspended.load(&fixture("add.wasm")).unwrap_err().kind(),
        ErrorKind::WrongStatus {
            status: Status::Suspended,
            ..
        }
    ));
    assert_eq!(Status::Suspended.to_string(), "suspended");
}

#[test]
fn typed_exports_do_not_survive_a_suspension() {
    let mut sandbox = sandbox(&fixture("counter.wasm"), Config::default());
    let increment = sandbox.typed::<(), i32>("increment").unwrap();
    assert_eq!(increment.call(&mut sandbox, ()).unwrap(), 1);
    sandbox.suspend().unwrap();
    // The stale handle is refused (and the sandbox resumed); a new one works.
    assert!(matches!(
        increment.call(&mut sandbox, ()).unwrap_err().kind(),
        ErrorKind::Config { .. }
    ));
    let increment = sandbox.typed::<(), i32>("increment").unwrap();
    assert_eq!(increment.call(&mut sandbox, ()).unwrap(), 2);
}

#[test]
fn restore_into_a_suspended_sandbox() {
    let mut sandbox = sandbox(&fixture("counter.wasm"), Config::default());
    sandbox.call("increment", &[]).unwrap();
    let one = sandbox.snapshot().unwrap();
    sandbox.call("increment", &[]).unwrap();
    sandbox.suspend().unwrap();
    sandbox.restore(&one).unwrap();
    assert_eq!(sandbox.status(), Status::Loaded);
    assert_eq!(sandbox.call("get", &[]).unwrap().values(), &[Value::I32(1)]);
}

// ---- the advisor ----------------------------------------------------------------------------

/// A manager with a budget of `pages` pages and `count` sandboxes of [`PAGED`] (one page each).
fn paged_manager(pages: u64, count: usize) -> (Manager, Vec<String>) {
    let mut manager = Manager::with_memory_budget(runtime().clone(), pages * PAGE);
    let ids = (0..count)
        .map(|_| {
            let id = manager.create(Config::default()).unwrap();
            manager.load(&id, PAGED.as_bytes()).unwrap();
            id
        })
        .collect();
    (manager, ids)
}

fn bump(manager: &mut Manager, id: &str) -> i32 {
    match manager
        .execute(id, "bump", Payload::Args(vec![]))
        .unwrap()
        .values()
    {
        [Value::I32(n)] => *n,
        other => panic!("bump returned {other:?}"),
    }
}

fn statuses(manager: &Manager, ids: &[String]) -> Vec<Status> {
    ids.iter()
        .map(|id| manager.get(id).unwrap().status())
        .collect()
}

fn changes(manager: &mut Manager) -> Vec<(PressureLevel, PressureLevel)> {
    manager
        .drain_pressure_events()
        .into_iter()
        .map(|e| (e.from, e.to))
        .collect()
}

#[test]
fn warning_level_only_logs() {
    let (mut manager, ids) = paged_manager(10, 6);
    assert_eq!(manager.pressure().level(), PressureLevel::Normal);
    let id = manager.create(Config::default()).unwrap();
    manager.load(&id, PAGED.as_bytes()).unwrap();
    assert_eq!(manager.memory_used(), 7 * PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Warning);
    assert_eq!(
        changes(&mut manager),
        [(PressureLevel::Normal, PressureLevel::Warning)]
    );
    assert!(statuses(&manager, &ids)
        .iter()
        .all(|s| *s == Status::Loaded));
    assert_eq!(manager.resident().count(), 7);
}

#[test]
fn pressure_suspends_least_recently_used_until_under_warning() {
    let (mut manager, ids) = paged_manager(10, 8);
    assert_eq!(manager.pressure().level(), PressureLevel::Warning);
    // Sandbox 0 becomes the most recently used.
    assert_eq!(bump(&mut manager, &ids[0]), 1);
    assert_eq!(bump(&mut manager, &ids[0]), 2);
    let mut order: Vec<_> = ids[1..].to_vec();
    order.push(ids[0].clone());
    assert_eq!(manager.resident().collect::<Vec<_>>(), order);
    assert!(manager.last_use(&ids[0]).unwrap() > manager.last_use(&ids[7]).unwrap());
    changes(&mut manager);

    // The ninth page is 90 %: pressure. Sandboxes 1, 2, 3 (least recently used) are
    // suspended, which brings usage to 60 %, under the warning level.
    let ninth = manager.create(Config::default()).unwrap();
    manager.load(&ninth, PAGED.as_bytes()).unwrap();
    let mut all = ids.clone();
    all.push(ninth.clone());
    use Status::{Loaded, Suspended};
    assert_eq!(
        statuses(&manager, &all),
        [Loaded, Suspended, Suspended, Suspended, Loaded, Loaded, Loaded, Loaded, Loaded]
    );
    assert_eq!(manager.memory_used(), 6 * PAGE);
    assert!(manager.memory_used() * 100 < 10 * PAGE * u64::from(WARNING_PERCENT));
    assert_eq!(manager.pressure().used_bytes(), 6 * PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Normal);
    assert_eq!(
        changes(&mut manager),
        [
            (PressureLevel::Warning, PressureLevel::Pressure),
            (PressureLevel::Pressure, PressureLevel::Normal),
        ]
    );
    for id in &all[1..4] {
        assert_eq!(manager.metrics(id).unwrap().suspensions, 1);
    }

    // A suspended sandbox comes back on its next call, with its state.
    assert_eq!(bump(&mut manager, &ids[1]), 1);
    assert_eq!(manager.get(&ids[1]).unwrap().status(), Loaded);
    assert_eq!(manager.memory_used(), 7 * PAGE);
    // The manager hands out a suspended sandbox's snapshot without resuming it.
    let snapshot = manager.snapshot(&ids[2]).unwrap();
    assert_eq!(manager.get(&ids[2]).unwrap().status(), Suspended);
    assert_eq!(manager.memory_used(), 7 * PAGE);
    manager.restore(&ids[2], &snapshot).unwrap();
    assert_eq!(manager.memory_used(), 8 * PAGE);
    assert_eq!(bump(&mut manager, &ids[2]), 1);
}

#[test]
fn critical_suspends_everything_but_the_foreground() {
    let (mut manager, ids) = paged_manager(20, 10);
    assert_eq!(manager.pressure().level(), PressureLevel::Normal);
    // Sandbox 9 grows by 9 pages: 19 of 20 pages is 95 %, critical.
    manager
        .execute(&ids[9], "grow", Payload::Args(vec![Value::I32(9)]))
        .unwrap();
    let mut expected = vec![Status::Suspended; 9];
    expected.push(Status::Loaded);
    assert_eq!(statuses(&manager, &ids), expected);
    assert_eq!(manager.memory_used(), 10 * PAGE);
    assert_eq!(
        changes(&mut manager),
        [
            (PressureLevel::Normal, PressureLevel::Critical),
            (PressureLevel::Critical, PressureLevel::Normal),
        ]
    );
    assert_eq!(manager.resident().collect::<Vec<_>>(), [ids[9].as_str()]);
}

#[test]
fn out_of_memory_suspends_everything_but_the_foreground_after_every_operation() {
    let (mut manager, ids) = paged_manager(10, 4);
    // Sandbox 0 takes the whole budget by itself: out of memory, the others suspended.
    manager
        .execute(&ids[0], "grow", Payload::Args(vec![Value::I32(9)]))
        .unwrap();
    assert_eq!(
        statuses(&manager, &ids),
        [
            Status::Loaded,
            Status::Suspended,
            Status::Suspended,
            Status::Suspended
        ]
    );
    assert_eq!(manager.pressure().level(), PressureLevel::OutOfMemory);
    assert_eq!(
        changes(&mut manager),
        [(PressureLevel::Normal, PressureLevel::OutOfMemory)]
    );
    // Calling another sandbox brings it back and pushes sandbox 0 out.
    assert_eq!(bump(&mut manager, &ids[2]), 1);
    assert_eq!(
        statuses(&manager, &ids),
        [
            Status::Suspended,
            Status::Suspended,
            Status::Loaded,
            Status::Suspended
        ]
    );
    assert_eq!(manager.memory_used(), PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Normal);
    // Sandbox 0 comes back with its ten pages.
    assert_eq!(bump(&mut manager, &ids[0]), 1);
    assert_eq!(manager.metrics(&ids[0]).unwrap().memory_bytes, 10 * PAGE);
    assert_eq!(manager.get(&ids[2]).unwrap().status(), Status::Suspended);
}

#[test]
fn destroy_frees_memory_through_the_monitor() {
    let (mut manager, ids) = paged_manager(4, 3);
    assert_eq!(manager.memory_used(), 3 * PAGE);
    assert_eq!(manager.pressure().used_bytes(), 3 * PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Warning);
    manager.destroy(&ids[0]).unwrap();
    manager.destroy(&ids[0]).unwrap();
    assert_eq!(manager.pressure().used_bytes(), 2 * PAGE);
    manager.destroy(&ids[1]).unwrap();
    assert_eq!(manager.pressure().used_bytes(), PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Normal);
    assert_eq!(
        changes(&mut manager),
        [
            (PressureLevel::Normal, PressureLevel::Warning),
            (PressureLevel::Warning, PressureLevel::Normal),
        ]
    );
    // A suspended sandbox holds no linear memory; destroying it frees its snapshot.
    manager.suspend(&ids[2]).unwrap();
    assert_eq!(manager.memory_used(), 0);
    manager.destroy(&ids[2]).unwrap();
    assert_eq!(manager.memory_used(), 0);
    assert_eq!(manager.live().count(), 0);
    assert_eq!(manager.resident().count(), 0);
}

#[test]
fn changes_made_through_get_mut_are_accounted() {
    let (mut manager, ids) = paged_manager(100, 2);
    manager
        .get_mut(&ids[0])
        .unwrap()
        .call("grow", &[Value::I32(4)])
        .unwrap();
    manager.refresh();
    assert_eq!(manager.memory_used(), 6 * PAGE);
    manager.get_mut(&ids[1]).unwrap().destroy();
    manager.set_memory_available(7 * PAGE); // 5 of 7 pages: 71 %
    assert_eq!(manager.memory_used(), 5 * PAGE);
    assert_eq!(manager.pressure().level(), PressureLevel::Warning);
    // A smaller budget puts the manager under pressure at once; with no foreground, the only
    // resident sandbox is suspended.
    manager.set_memory_available(5 * PAGE + PAGE / 2);
    assert_eq!(manager.get(&ids[0]).unwrap().status(), Status::Suspended);
    assert_eq!(manager.memory_used(), 0);
}

// ---- many sandboxes, many threads ------------------------------------------------------------

#[test]
fn sandboxes_and_managers_are_send() {
    fn send<T: Send>() {}
    send::<Sandbox>();
    send::<Manager>();
    send::<PressureMonitor>();
}

#[test]
fn a_thousand_sandboxes_from_four_threads() {
    let config = Config::default();
    let add = runtime().compile(&fixture("add.wasm"), &config).unwrap();
    let threads: Vec<_> = (0..4i32)
        .map(|thread| {
            let (runtime, add, config) = (runtime().clone(), add.clone(), config.clone());
            std::thread::spawn(move || {
                let mut manager = Manager::new(runtime);
                // Half the sandboxes stay alive until the end, half go at once.
                let mut alive = Vec::new();
                for i in 0..250i32 {
                    let id = manager.create(config.clone()).unwrap();
                    manager.load_compiled(&id, &add).unwrap();
                    let run = manager
                        .execute(
                            &id,
                            "add",
                            Payload::Args(vec![Value::I32(i), Value::I32(thread * 1000)]),
                        )
                        .unwrap();
                    assert_eq!(run.values(), &[Value::I32(i + thread * 1000)]);
                    assert_eq!(run.metrics.gas_used, 3);
                    if i % 2 == 0 {
                        manager.destroy(&id).unwrap();
                    } else {
                        alive.push(id);
                    }
                }
                assert_eq!(manager.live().count(), 125);
                for id in alive {
                    manager.destroy(&id).unwrap();
                }
                assert_eq!(manager.live().count(), 0);
                250
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 1000);
}

#[test]
fn one_manager_shared_by_threads_under_a_budget() {
    // Budget for 20 one-page sandboxes; 3 threads keep 16 each: the advisor suspends and
    // calls resume, and every count still comes out right.
    let manager = Arc::new(Mutex::new(Manager::with_memory_budget(
        runtime().clone(),
        20 * PAGE,
    )));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let manager = manager.clone();
            std::thread::spawn(move || {
                let ids: Vec<String> = (0..16)
                    .map(|_| {
                        let mut m = manager.lock().unwrap();
                        let id = m.create(Config::default()).unwrap();
                        m.load(&id, PAGED.as_bytes()).unwrap();
                        id
                    })
                    .collect();
                for round in 1..=3 {
                    for id in &ids {
                        let n = bump(&mut manager.lock().unwrap(), id);
                        assert_eq!(n, round);
                    }
                }
                ids
            })
        })
        .collect();
    let ids: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut manager = manager.lock().unwrap();
    assert!(manager.memory_used() < 20 * PAGE);
    let suspensions: u64 = ids
        .iter()
        .map(|id| manager.metrics(id).unwrap().suspensions)
        .sum();
    assert!(suspensions > 0);
    for id in &ids {
        manager.destroy(id).unwrap();
    }
    assert_eq!(manager.memory_used(), 0);
}
