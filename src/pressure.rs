//! How close the sandboxes' memory is to what the host can give them.
//!
//! A host that runs hundreds or thousands of sandboxes has a memory budget for all of them
//! together, and needs to hear about it before the budget runs out, not when an allocation
//! fails. A [`PressureMonitor`] turns "bytes in use" and "bytes available" into a
//! [`PressureLevel`], and reports every change of level: as a [`PressureEvent`] in a list the
//! host drains, to a callback the host registers, and as a `tracing` log line. The
//! [`Manager`](crate::Manager) feeds it its sandboxes' linear memory after every operation and
//! acts on the level (see the manager's documentation); a host can also feed a monitor itself.
//!
//! # Levels
//!
//! With `u` the bytes in use and `a` the bytes available (the comparisons are exact integer
//! arithmetic, `u * 100 >= a * p`, so 69.99 % is normal and 70 % is a warning):
//!
//! | level | usage |
//! |---|---|
//! | [`Normal`](PressureLevel::Normal) | below 70 % |
//! | [`Warning`](PressureLevel::Warning) | 70 % to below 85 % |
//! | [`Pressure`](PressureLevel::Pressure) | 85 % to below 95 % |
//! | [`Critical`](PressureLevel::Critical) | 95 % to below 100 % |
//! | [`OutOfMemory`](PressureLevel::OutOfMemory) | 100 % and more |
//!
//! With nothing available (`a = 0`) every bound is met: the level is out of memory.
//!
//! # Hysteresis
//!
//! A level is entered upward at once: as soon as usage reaches a level's lower bound, the
//! monitor is at that level (or a higher one). A level is left downward only once usage falls
//! *below* its lower bound minus the hysteresis margin (5 percentage points by default,
//! [`DEFAULT_HYSTERESIS_PERCENT`]); the monitor then drops to the highest level whose own exit
//! threshold usage is still at or above. So with the default margin, pressure (entered at
//! 85 %) holds down to 80 % and is left at 79.99 %; a warning (entered at 70 %) holds down to
//! 65 %. Usage that hovers around a bound therefore produces one change, not one per update.

use std::collections::VecDeque;

/// Usage, in percent of the bytes available, at which the level becomes a warning.
pub const WARNING_PERCENT: u32 = 70;
/// Usage at which the level becomes pressure.
pub const PRESSURE_PERCENT: u32 = 85;
/// Usage at which the level becomes critical.
pub const CRITICAL_PERCENT: u32 = 95;
/// Usage at which the level becomes out of memory.
pub const OUT_OF_MEMORY_PERCENT: u32 = 100;
/// The default hysteresis margin, in percentage points (see the [module docs](self)).
pub const DEFAULT_HYSTERESIS_PERCENT: u32 = 5;
/// How many events the monitor keeps for [`PressureMonitor::drain_events`]; past that the
/// oldest are dropped (their [`sequence`](PressureEvent::sequence) numbers show the gap).
pub const EVENT_CAPACITY: usize = 1024;

/// How full the sandboxes' memory budget is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PressureLevel {
    /// Below 70 %: nothing to do.
    Normal,
    /// 70 % to below 85 %: worth logging.
    Warning,
    /// 85 % to below 95 %: free memory (the manager suspends the least recently used
    /// sandboxes).
    Pressure,
    /// 95 % to below 100 %: free everything that is not in use right now.
    Critical,
    /// 100 % and more: the budget is spent.
    OutOfMemory,
}

impl PressureLevel {
    /// All levels, lowest first.
    pub const ALL: [PressureLevel; 5] = [
        PressureLevel::Normal,
        PressureLevel::Warning,
        PressureLevel::Pressure,
        PressureLevel::Critical,
        PressureLevel::OutOfMemory,
    ];

    /// The usage, in percent, at which this level starts (0 for [`Normal`](Self::Normal)).
    pub fn lower_bound_percent(self) -> u32 {
        match self {
            PressureLevel::Normal => 0,
            PressureLevel::Warning => WARNING_PERCENT,
            PressureLevel::Pressure => PRESSURE_PERCENT,
            PressureLevel::Critical => CRITICAL_PERCENT,
            PressureLevel::OutOfMemory => OUT_OF_MEMORY_PERCENT,
        }
    }

    /// The level of `used` bytes out of `available`, without hysteresis.
    pub fn of_usage(used: u64, available: u64) -> PressureLevel {
        PressureLevel::ALL
            .into_iter()
            .rev()
            .find(|level| at_least(used, available, level.lower_bound_percent()))
            .unwrap_or(PressureLevel::Normal)
    }

    /// The next level down (`Normal` stays `Normal`).
    fn below(self) -> PressureLevel {
        match self {
            PressureLevel::Normal | PressureLevel::Warning => PressureLevel::Normal,
            PressureLevel::Pressure => PressureLevel::Warning,
            PressureLevel::Critical => PressureLevel::Pressure,
            PressureLevel::OutOfMemory => PressureLevel::Critical,
        }
    }
}

impl std::fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Warning => "warning",
            PressureLevel::Pressure => "pressure",
            PressureLevel::Critical => "critical",
            PressureLevel::OutOfMemory => "out of memory",
        })
    }
}

/// Whether `used` is at least `percent` % of `available`, exactly.
pub(crate) fn at_least(used: u64, available: u64, percent: u32) -> bool {
    u128::from(used) * 100 >= u128::from(available) * u128::from(percent)
}

/// One change of level.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PressureEvent {
    /// The level before.
    pub from: PressureLevel,
    /// The level now.
    pub to: PressureLevel,
    /// Bytes in use when the level changed.
    pub used_bytes: u64,
    /// Bytes available when the level changed.
    pub available_bytes: u64,
    /// 0 for the monitor's first change, then 1, 2, ...
    pub sequence: u64,
}

impl PressureEvent {
    /// Usage in percent, for display (levels are decided in exact integer arithmetic).
    pub fn usage_percent(&self) -> f64 {
        usage_percent(self.used_bytes, self.available_bytes)
    }
}

fn usage_percent(used: u64, available: u64) -> f64 {
    if available == 0 {
        return if used == 0 { 100.0 } else { f64::INFINITY };
    }
    used as f64 * 100.0 / available as f64
}

type Listener = Box<dyn FnMut(&PressureEvent) + Send>;

/// Computes the [`PressureLevel`] of a memory budget, with hysteresis, and reports each change
/// (see the [module docs](self)).
pub struct PressureMonitor {
    available: u64,
    used: u64,
    level: PressureLevel,
    hysteresis_percent: u32,
    events: VecDeque<PressureEvent>,
    next_sequence: u64,
    listener: Option<Listener>,
}

impl std::fmt::Debug for PressureMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PressureMonitor")
            .field("available", &self.available)
            .field("used", &self.used)
            .field("level", &self.level)
            .field("hysteresis_percent", &self.hysteresis_percent)
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl PressureMonitor {
    /// A monitor for a budget of `available_bytes`, with nothing in use yet: level
    /// [`Normal`](PressureLevel::Normal) (or [`OutOfMemory`](PressureLevel::OutOfMemory) for a
    /// budget of 0, which records no event: there was no level before).
    pub fn new(available_bytes: u64) -> PressureMonitor {
        PressureMonitor {
            available: available_bytes,
            used: 0,
            level: PressureLevel::of_usage(0, available_bytes),
            hysteresis_percent: DEFAULT_HYSTERESIS_PERCENT,
            events: VecDeque::new(),
            next_sequence: 0,
            listener: None,
        }
    }

    /// Sets the hysteresis margin in percentage points (0 turns hysteresis off).
    pub fn with_hysteresis_percent(mut self, percent: u32) -> PressureMonitor {
        self.hysteresis_percent = percent;
        self
    }

    /// The hysteresis margin in percentage points.
    pub fn hysteresis_percent(&self) -> u32 {
        self.hysteresis_percent
    }

    /// The current level.
    pub fn level(&self) -> PressureLevel {
        self.level
    }

    /// Bytes in use, as last reported.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Bytes available.
    pub fn available_bytes(&self) -> u64 {
        self.available
    }

    /// Usage in percent, for display.
    pub fn usage_percent(&self) -> f64 {
        usage_percent(self.used, self.available)
    }

    /// Reports the bytes in use now. Returns the change of level, if there is one (which is
    /// also recorded, passed to the callback and logged).
    pub fn update(&mut self, used_bytes: u64) -> Option<PressureEvent> {
        self.used = used_bytes;
        self.reassess()
    }

    /// Changes the bytes available. Returns the change of level, if there is one.
    pub fn set_available(&mut self, available_bytes: u64) -> Option<PressureEvent> {
        self.available = available_bytes;
        self.reassess()
    }

    /// Registers the callback every change of level is passed to (replacing any earlier one).
    /// It runs on the thread that reported the usage, before `update` returns.
    pub fn on_change(&mut self, callback: impl FnMut(&PressureEvent) + Send + 'static) {
        self.listener = Some(Box::new(callback));
    }

    /// Takes the changes recorded since the last call, oldest first (at most
    /// [`EVENT_CAPACITY`]).
    pub fn drain_events(&mut self) -> Vec<PressureEvent> {
        self.events.drain(..).collect()
    }

    /// The level `used` out of `available` gives from the current level, with hysteresis.
    fn next_level(&self) -> PressureLevel {
        let raw = PressureLevel::of_usage(self.used, self.available);
        if raw >= self.level {
            return raw;
        }
        let mut level = self.level;
        while level > raw {
            let exit = level
                .lower_bound_percent()
                .saturating_sub(self.hysteresis_percent);
            if at_least(self.used, self.available, exit) {
                break;
            }
            level = level.below();
        }
        level
    }

    fn reassess(&mut self) -> Option<PressureEvent> {
        let to = self.next_level();
        if to == self.level {
            return None;
        }
        let event = PressureEvent {
            from: self.level,
            to,
            used_bytes: self.used,
            available_bytes: self.available,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        self.level = to;
        let percent = event.usage_percent();
        if to > event.from && to >= PressureLevel::Warning {
            tracing::warn!(
                from = %event.from, to = %to, used = self.used, available = self.available,
                "ri-sandbox: memory pressure rose to {to} ({percent:.2} % of the budget in use)"
            );
        } else {
            tracing::info!(
                from = %event.from, to = %to, used = self.used, available = self.available,
                "ri-sandbox: memory pressure changed to {to} ({percent:.2} % of the budget in use)"
            );
        }
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        if let Some(listener) = &mut self.listener {
            listener(&event);
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_levels_at_the_exact_boundaries() {
        let at = |used| PressureLevel::of_usage(used, 10_000);
        assert_eq!(at(0), PressureLevel::Normal);
        assert_eq!(at(6_999), PressureLevel::Normal);
        assert_eq!(at(7_000), PressureLevel::Warning);
        assert_eq!(at(8_499), PressureLevel::Warning);
        assert_eq!(at(8_500), PressureLevel::Pressure);
        assert_eq!(at(9_499), PressureLevel::Pressure);
        assert_eq!(at(9_500), PressureLevel::Critical);
        assert_eq!(at(9_999), PressureLevel::Critical);
        assert_eq!(at(10_000), PressureLevel::OutOfMemory);
        assert_eq!(at(u64::MAX), PressureLevel::OutOfMemory);
        assert_eq!(
            PressureLevel::of_usage(u64::MAX, u64::MAX),
            PressureLevel::OutOfMemory
        );
        assert_eq!(PressureLevel::of_usage(0, 0), PressureLevel::OutOfMemory);
    }
}
