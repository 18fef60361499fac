//! Many sandboxes by id, sharing one runtime: the seed's seven operations (create, load,
//! execute, destroy, snapshot, restore, metrics) as methods.

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::execution::{Execution, Payload};
use crate::metrics::SandboxMetrics;
use crate::runtime::Runtime;
use crate::sandbox::Sandbox;
use crate::snapshot::Snapshot;
use std::collections::HashMap;

/// Holds sandboxes by id. A destroyed sandbox's id stays known, so operations on it fail with
/// [`ErrorKind::InstanceDestroyed`] rather than "unknown sandbox".
#[derive(Debug)]
pub struct Manager {
    runtime: Runtime,
    sandboxes: HashMap<String, Sandbox>,
}

impl Manager {
    /// A manager whose sandboxes share `runtime`'s engine.
    pub fn new(runtime: Runtime) -> Manager {
        Manager {
            runtime,
            sandboxes: HashMap::new(),
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
        let sandbox = Sandbox::new(&self.runtime, config)?;
        let id = sandbox.id().to_string();
        self.sandboxes.insert(id.clone(), sandbox);
        Ok(id)
    }

    /// The sandbox with this id.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn get(&self, id: &str) -> Result<&Sandbox, Error> {
        self.sandboxes.get(id).ok_or_else(|| unknown(id))
    }

    /// The sandbox with this id, mutably.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Sandbox, Error> {
        self.sandboxes.get_mut(id).ok_or_else(|| unknown(id))
    }

    /// Loads a module into a sandbox.
    ///
    /// # Errors
    /// As [`Sandbox::load`].
    pub fn load(&mut self, id: &str, module: &[u8]) -> Result<(), Error> {
        self.get_mut(id)?.load(module)
    }

    /// Calls an export of a sandbox.
    ///
    /// # Errors
    /// As [`Sandbox::call`] and [`Sandbox::call_json`].
    pub fn execute(
        &mut self,
        id: &str,
        export: &str,
        payload: Payload,
    ) -> Result<Execution, Error> {
        let sandbox = self.get_mut(id)?;
        match payload {
            Payload::Args(args) => sandbox.call(export, &args),
            Payload::Json(value) => sandbox.call_json(export, &value),
        }
    }

    /// Destroys a sandbox, freeing its memory. Destroying twice does nothing.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`].
    pub fn destroy(&mut self, id: &str) -> Result<(), Error> {
        self.get_mut(id)?.destroy();
        Ok(())
    }

    /// Captures a sandbox's state.
    ///
    /// # Errors
    /// As [`Sandbox::snapshot`].
    pub fn snapshot(&mut self, id: &str) -> Result<Snapshot, Error> {
        self.get_mut(id)?.snapshot()
    }

    /// Puts a sandbox back into a captured state.
    ///
    /// # Errors
    /// As [`Sandbox::restore`].
    pub fn restore(&mut self, id: &str, snapshot: &Snapshot) -> Result<(), Error> {
        self.get_mut(id)?.restore(snapshot)
    }

    /// A sandbox's metrics.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownSandbox`], [`ErrorKind::InstanceDestroyed`].
    pub fn metrics(&self, id: &str) -> Result<SandboxMetrics, Error> {
        let sandbox = self.get(id)?;
        if sandbox.status() == crate::Status::Destroyed {
            return Err(Error::new(ErrorKind::InstanceDestroyed {
                id: id.to_string(),
            }));
        }
        Ok(sandbox.metrics())
    }

    /// Ids of the sandboxes that are not destroyed.
    pub fn live(&self) -> impl Iterator<Item = &str> {
        self.sandboxes
            .values()
            .filter(|s| s.status() != crate::Status::Destroyed)
            .map(Sandbox::id)
    }
}

fn unknown(id: &str) -> Error {
    Error::new(ErrorKind::UnknownSandbox { id: id.to_string() })
}
