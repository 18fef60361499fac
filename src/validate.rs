//! The double-execution determinism validator (seed milestone M6): run a call twice from the
//! same state and compare everything.

use crate::error::Error;
use crate::execution::{Execution, Payload};
use crate::sandbox::Sandbox;
use crate::snapshot::Snapshot;

/// What [`validate_determinism`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeterminismReport {
    /// The first run's outcome: its output and gas, or its error message.
    pub first: String,
    /// The second run's outcome.
    pub second: String,
    /// Every difference, in words; empty when the two runs agree byte for byte.
    pub differences: Vec<String>,
}

impl DeterminismReport {
    /// Whether the two runs agreed on results, gas, memory and globals.
    pub fn is_deterministic(&self) -> bool {
        self.differences.is_empty()
    }
}

fn describe(outcome: &Result<Execution, Error>) -> String {
    match outcome {
        Ok(run) => format!("{:?}, gas {}", run.output, run.metrics.gas_used),
        Err(e) => format!("error: {e}"),
    }
}

/// Snapshots the sandbox, runs the call, restores the snapshot, runs the call again, and
/// compares the two runs' results, gas, and resulting state (memory, globals, PRNG position,
/// counters) byte for byte. The sandbox is left in the state after the second run.
///
/// A timeout in either run is reported as a difference only if the other run did not time
/// out too; timeouts are not deterministic by nature.
///
/// # Errors
/// When the sandbox cannot be snapshotted or restored (wrong status, unsaveable state).
pub fn validate_determinism(
    sandbox: &mut Sandbox,
    export: &str,
    payload: &Payload,
) -> Result<DeterminismReport, Error> {
    let before = sandbox.snapshot()?;
    let first = run(sandbox, export, payload);
    let after_first = sandbox.snapshot()?;
    sandbox.restore(&before)?;
    let second = run(sandbox, export, payload);
    let after_second = sandbox.snapshot()?;

    let mut differences = Vec::new();
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            if a.output != b.output {
                differences.push(format!(
                    "results differ: {:?} then {:?}",
                    a.output, b.output
                ));
            }
            if a.metrics.gas_used != b.metrics.gas_used {
                differences.push(format!(
                    "gas differs: {} then {}",
                    a.metrics.gas_used, b.metrics.gas_used
                ));
            }
        }
        (Err(a), Err(b)) if a.to_string() == b.to_string() => {}
        _ => differences.push(format!(
            "outcomes differ: {} then {}",
            describe(&first),
            describe(&second)
        )),
    }
    differences.extend(compare_states(&after_first, &after_second));
    Ok(DeterminismReport {
        first: describe(&first),
        second: describe(&second),
        differences,
    })
}

fn run(sandbox: &mut Sandbox, export: &str, payload: &Payload) -> Result<Execution, Error> {
    match payload {
        Payload::Args(args) => sandbox.call(export, args),
        Payload::Json(value) => sandbox.call_json(export, value),
    }
}

fn compare_states(a: &Snapshot, b: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (a.body(), b.body());
    if a.memories != b.memories {
        out.push("memory differs after the two runs".to_string());
    }
    if a.globals != b.globals {
        out.push("globals differ after the two runs".to_string());
    }
    if a.tables != b.tables {
        out.push("tables differ after the two runs".to_string());
    }
    if a.rng != b.rng {
        out.push("the random stream's position differs after the two runs".to_string());
    }
    out
}
