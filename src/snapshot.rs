//! Snapshot and restore of a sandbox's whole state, between calls.
//!
//! A [`Snapshot`] holds every linear memory, every mutable global (the ABI's gas and stack
//! counters included), every table's funcref elements as function indices, the ChaCha20
//! stream's position, the event timestamp and the deterministic metrics counters. The
//! instrumenter's state exports (ABI section 9) make all of it reachable. The wire format is
//! in [`format`](mod@format).
//!
//! Restore first resolves the snapshot against the sandbox's instance (every export found,
//! every value converted, every size checked) without changing anything. When nothing would
//! have to shrink, it then writes the state in place, skipping pages that are already right.
//! Otherwise (WebAssembly memories and tables cannot shrink) it builds a fresh instance of the
//! module, writes the state there, and only then swaps it in. Either way, when restore fails
//! the sandbox is as it was.

pub mod format;

use crate::error::{Error, ErrorKind};
use crate::metrics::SandboxMetrics;
use crate::sandbox::{Loaded, Sandbox, Status, StoreState};
use format::{
    Body, Counters, GlobalImage, GlobalValue, MemoryImage, Page, RngState, TableImage, PAGE_SIZE,
};
use ri_sandbox_instrument::abi;
use std::collections::HashMap;
use wasmtime::{Extern, Ref, Store, Val};

/// What is wrong with a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic number.
    #[error("not a ri-sandbox snapshot (wrong magic number)")]
    WrongMagic,
    /// Made by a format version this build cannot read.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Shorter or longer than its header says.
    #[error("snapshot is truncated or padded: {found} bytes, expected {expected}")]
    Truncated {
        /// Bytes the header implies.
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// The checksum does not match the contents.
    #[error("snapshot checksum mismatch: the snapshot is corrupt")]
    ChecksumMismatch,
    /// The body does not decode, or breaks an invariant.
    #[error("malformed snapshot: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The snapshot belongs to another module.
    #[error("the snapshot was taken from a different module")]
    WrongModule,
    /// The snapshot's memory is larger than the sandbox's limit.
    #[error("the snapshot holds {bytes} bytes of memory, over the sandbox's limit of {limit}")]
    MemoryTooLarge {
        /// Memory in the snapshot.
        bytes: u64,
        /// The sandbox's limit.
        limit: u64,
    },
    /// Some state cannot be saved (a non-null externref, a funcref to a function the module
    /// cannot name).
    #[error("state that cannot be saved: {what}")]
    Unsaveable {
        /// What.
        what: String,
    },
    /// The snapshot does not fit the module (a memory or global it does not have).
    #[error("the snapshot does not match the module's shape: {what}")]
    ShapeMismatch {
        /// What does not match.
        what: String,
    },
}

/// A sandbox's state at one point between calls. Serialize it with [`Snapshot::to_bytes`];
/// read it back with [`Snapshot::from_bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    module: [u8; 32],
    body: Body,
}

fn snapshot_error(error: SnapshotError) -> Error {
    Error::new(ErrorKind::Snapshot(error))
}

impl Snapshot {
    /// The snapshot in its wire format (see [`format`](mod@format)).
    pub fn to_bytes(&self) -> Vec<u8> {
        format::encode(&self.module, &self.body).expect("encoding a snapshot in memory cannot fail")
    }

    /// Reads a snapshot, checking magic, version, length, checksum and shape.
    ///
    /// # Errors
    /// [`ErrorKind::Snapshot`] with the [`SnapshotError`] that says what is wrong. Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, Error> {
        let (module, body) = format::decode(bytes)?;
        Ok(Snapshot { module, body })
    }

    pub(crate) fn body(&self) -> &Body {
        &self.body
    }

    /// The fingerprint of the module the snapshot belongs to
    /// ([`CompiledModule::fingerprint`](crate::CompiledModule::fingerprint)).
    pub fn module_fingerprint(&self) -> [u8; 32] {
        self.module
    }

    /// Linear memory the snapshot restores, in bytes, all memories together.
    pub fn memory_bytes(&self) -> u64 {
        self.body
            .memories
            .iter()
            .map(|m| m.size)
            .fold(0, u64::saturating_add)
    }
}

/// Whether a page (or its last, shorter part) is all zero; compares against a zero page, which
/// the standard library does with a vectorised memcmp.
fn is_zero(page: &[u8]) -> bool {
    static ZERO: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
    page == &ZERO[..page.len()]
}

/// The index in an export named `{prefix}{index}`.
fn indexed(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// The identity of a funcref (its `VMFuncRef` pointer), for mapping back to an index.
fn func_key(store: &mut Store<StoreState>, func: &wasmtime::Func) -> usize {
    func.to_raw(&mut *store) as usize
}

impl Sandbox {
    /// Captures the sandbox's whole state. The sandbox must be loaded (not running).
    ///
    /// # Errors
    /// A wrong status; [`SnapshotError::Unsaveable`] for state that cannot be saved.
    pub fn snapshot(&mut self) -> Result<Snapshot, Error> {
        self.expect_status(Status::Loaded, "snapshot")?;
        let loaded = self
            .loaded
            .as_ref()
            .ok_or_else(|| Error::engine("no module is loaded"))?;
        let (instance, gas, stack, module) = (
            loaded.instance,
            loaded.gas,
            loaded.stack,
            loaded.module.module_hash,
        );
        let store = self.store.as_mut().ok_or_else(crate::sandbox::no_store)?;
        let exports: Vec<(String, Extern)> = instance
            .exports(&mut *store)
            .map(|e| (e.name().to_string(), e.into_extern()))
            .collect();
        let mut functions = HashMap::new();
        for (name, item) in &exports {
            if let (Some(index), Extern::Func(func)) =
                (indexed(name, abi::FUNC_EXPORT_PREFIX), item)
            {
                functions.insert(func_key(store, func), index);
            }
        }
        let funcref = |store: &mut Store<StoreState>, func: Option<&wasmtime::Func>| match func {
            None => Ok(None),
            Some(func) => functions
                .get(&func_key(store, func))
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    snapshot_error(SnapshotError::Unsaveable {
                        what: "a funcref to a function the module does not declare".into(),
                    })
                }),
        };

        let mut body = Body {
            memories: Vec::new(),
            globals: Vec::new(),
            tables: Vec::new(),
            gas_left: gas.get(&mut *store).i64().unwrap_or(0),
            stack_left: stack.map(|s| s.get(&mut *store).i64().unwrap_or(0)),
            rng: {
                let rng = &store.data().rng;
                RngState {
                    seed: rng.get_seed(),
                    stream: rng.get_stream(),
                    word_pos: rng.get_word_pos().to_le_bytes(),
                }
            },
            timestamp: store.data().timestamp,
            counters: Counters {
                calls: self.metrics.calls,
                gas_used: self.metrics.gas_used,
                host_calls: self.metrics.host_calls,
                peak_memory_bytes: self.metrics.peak_memory_bytes,
            },
            wasi: match store.data().wasi.as_ref().map(|w| w.image()) {
                None => None,
                Some(Ok(image)) => Some(image),
                Some(Err(what)) => {
                    return Err(snapshot_error(SnapshotError::Unsaveable { what }));
                }
            },
        };
        for (name, item) in &exports {
            match item {
                Extern::Memory(memory) => {
                    let Some(index) = indexed(name, abi::MEMORY_EXPORT_PREFIX) else {
                        continue;
                    };
                    let data = memory.data(&*store);
                    let pages = data
                        .chunks(PAGE_SIZE)
                        .enumerate()
                        .filter(|(_, page)| !is_zero(page))
                        .map(|(number, page)| Page {
                            number: number as u32,
                            bytes: page.to_vec(),
                        })
                        .collect();
                    body.memories.push(MemoryImage {
                        index,
                        size: data.len() as u64,
                        pages,
                    });
                }
                Extern::Global(global) => {
                    let Some(index) = indexed(name, abi::GLOBAL_EXPORT_PREFIX) else {
                        continue;
                    };
                    let value = match global.get(&mut *store) {
                        Val::I32(v) => GlobalValue::I32(v),
                        Val::I64(v) => GlobalValue::I64(v),
                        Val::F32(v) => GlobalValue::F32(v),
                        Val::F64(v) => GlobalValue::F64(v),
                        Val::V128(v) => GlobalValue::V128(v.as_u128().to_le_bytes()),
                        Val::FuncRef(f) => GlobalValue::FuncRef(funcref(store, f.as_ref())?),
                        Val::ExternRef(None) | Val::ExnRef(None) | Val::AnyRef(None) => {
                            GlobalValue::NullRef
                        }
                        other => {
                            return Err(snapshot_error(SnapshotError::Unsaveable {
                                what: format!("global {index} holds {other:?}"),
                            }))
                        }
                    };
                    body.globals.push(GlobalImage { index, value });
                }
                Extern::Table(table) => {
                    let Some(index) = indexed(name, abi::TABLE_EXPORT_PREFIX) else {
                        continue;
                    };
                    let size = table.size(&*store);
                    let mut elements = Vec::with_capacity(size as usize);
                    for slot in 0..size {
                        let element = match table.get(&mut *store, slot) {
                            Some(Ref::Func(f)) => funcref(store, f.as_ref())?,
                            Some(Ref::Extern(None))
                            | Some(Ref::Exn(None))
                            | Some(Ref::Any(None)) => None,
                            _ => {
                                return Err(snapshot_error(SnapshotError::Unsaveable {
                                    what: format!("table {index} element {slot} is not a funcref"),
                                }))
                            }
                        };
                        elements.push(element);
                    }
                    body.tables.push(TableImage { index, elements });
                }
                _ => {}
            }
        }
        body.memories.sort_by_key(|m| m.index);
        body.globals.sort_by_key(|g| g.index);
        body.tables.sort_by_key(|t| t.index);
        Ok(Snapshot { module, body })
    }

    /// Puts the sandbox back into the captured state, status [`Status::Loaded`]. Works
    /// whatever happened since (memory growth included), in this sandbox or in another one
    /// loaded with the same module.
    ///
    /// Atomic: on error the sandbox is unchanged.
    ///
    /// # Errors
    /// A wrong status; [`SnapshotError::WrongModule`], [`SnapshotError::MemoryTooLarge`],
    /// [`SnapshotError::ShapeMismatch`].
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        self.expect_status(Status::Loaded, "restore")?;
        let module = match &self.loaded {
            Some(loaded) => loaded.module.clone(),
            None => return Err(Error::engine("no module is loaded")),
        };
        if snapshot.module != module.module_hash {
            return Err(snapshot_error(SnapshotError::WrongModule));
        }
        let bytes = snapshot.memory_bytes();
        if bytes > self.config.max_memory_bytes {
            return Err(snapshot_error(SnapshotError::MemoryTooLarge {
                bytes,
                limit: self.config.max_memory_bytes,
            }));
        }
        let table_limit = self.config.max_table_elements;
        // In place when nothing has to shrink: no new instance, and no page of memory that is
        // already right gets written. Resolving changes nothing, so a refusal leaves the
        // sandbox as it was.
        let loaded = self
            .loaded
            .as_ref()
            .ok_or_else(|| Error::engine("no module is loaded"))?;
        let store = self.store.as_mut().ok_or_else(crate::sandbox::no_store)?;
        match resolve(store, loaded, &snapshot.body, table_limit) {
            Ok(resolved) => write(store, loaded, resolved, &snapshot.body)?,
            Err(_) => {
                let (mut store, loaded) = self.instantiate(&module)?;
                let resolved = resolve(&mut store, &loaded, &snapshot.body, table_limit)?;
                write(&mut store, &loaded, resolved, &snapshot.body)?;
                self.store = Some(store);
                self.store_token = crate::sandbox::next_token();
                self.loaded = Some(loaded);
            }
        }
        let counters = snapshot.body.counters;
        self.metrics = SandboxMetrics {
            calls: counters.calls,
            gas_used: counters.gas_used,
            host_calls: counters.host_calls,
            peak_memory_bytes: counters.peak_memory_bytes,
            gas_limit: self.config.max_gas,
            memory_limit_bytes: self.config.max_memory_bytes,
            ..SandboxMetrics::default()
        };
        self.status = Status::Loaded;
        Ok(())
    }
}

/// A snapshot resolved against one instance: every export found, every value converted, every
/// size checked. Writing it cannot fail for a reason the snapshot or module controls.
struct Resolved<'a> {
    memories: Vec<(wasmtime::Memory, &'a MemoryImage)>,
    globals: Vec<(wasmtime::Global, Val)>,
    tables: Vec<(wasmtime::Table, Vec<Option<wasmtime::Func>>)>,
}

/// Checks a snapshot against an instance without changing anything.
fn resolve<'a>(
    store: &mut Store<StoreState>,
    loaded: &Loaded,
    body: &'a Body,
    table_limit: u64,
) -> Result<Resolved<'a>, Error> {
    let mismatch = |what: String| snapshot_error(SnapshotError::ShapeMismatch { what });
    let mut functions = HashMap::new();
    let mut exports = Vec::new();
    for export in loaded.instance.exports(&mut *store) {
        let name = export.name().to_string();
        let item = export.into_extern();
        if let (Some(index), Extern::Func(func)) = (indexed(&name, abi::FUNC_EXPORT_PREFIX), &item)
        {
            functions.insert(index, *func);
        }
        exports.push((name, item));
    }
    let find = |prefix: &str, index: u32| {
        exports
            .iter()
            .find(|(name, _)| indexed(name, prefix) == Some(index))
            .map(|(_, item)| item.clone())
    };
    let funcref = |index: Option<u32>| -> Result<Option<wasmtime::Func>, Error> {
        match index {
            None => Ok(None),
            Some(i) => functions
                .get(&i)
                .copied()
                .map(Some)
                .ok_or_else(|| mismatch(format!("the module cannot name function {i}"))),
        }
    };
    match (&body.wasi, &store.data().wasi) {
        (Some(_), None) => {
            return Err(mismatch(
                "the snapshot has WASI state and the sandbox has no WASI".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(mismatch(
                "the sandbox has WASI and the snapshot has no WASI state".into(),
            ))
        }
        _ => {}
    }
    let mut resolved = Resolved {
        memories: Vec::new(),
        globals: Vec::new(),
        tables: Vec::new(),
    };
    for image in &body.memories {
        let Some(Extern::Memory(memory)) = find(abi::MEMORY_EXPORT_PREFIX, image.index) else {
            return Err(mismatch(format!(
                "the module has no memory {}",
                image.index
            )));
        };
        let current = memory.data_size(&*store) as u64;
        if image.size < current {
            return Err(mismatch(format!(
                "memory {} is {} bytes in the snapshot but {current} now",
                image.index, image.size
            )));
        }
        if memory
            .ty(&*store)
            .maximum()
            .is_some_and(|max| image.size / PAGE_SIZE as u64 > max)
        {
            return Err(mismatch(format!(
                "memory {} is over its maximum",
                image.index
            )));
        }
        resolved.memories.push((memory, image));
    }
    for image in &body.globals {
        let Some(Extern::Global(global)) = find(abi::GLOBAL_EXPORT_PREFIX, image.index) else {
            return Err(mismatch(format!(
                "the module has no mutable global {}",
                image.index
            )));
        };
        let ty = global.ty(&*store);
        let value = match image.value {
            GlobalValue::I32(v) => Val::I32(v),
            GlobalValue::I64(v) => Val::I64(v),
            GlobalValue::F32(v) => Val::F32(v),
            GlobalValue::F64(v) => Val::F64(v),
            GlobalValue::V128(v) => Val::V128(u128::from_le_bytes(v).into()),
            GlobalValue::FuncRef(f) => Val::FuncRef(funcref(f)?),
            GlobalValue::NullRef => match ty.content() {
                wasmtime::ValType::Ref(r) => Val::null_ref(r.heap_type()),
                _ => {
                    return Err(mismatch(format!(
                        "global {} is not a reference",
                        image.index
                    )))
                }
            },
        };
        if !value.matches_ty(&*store, ty.content()).unwrap_or(false) {
            return Err(mismatch(format!("global {} has another type", image.index)));
        }
        resolved.globals.push((global, value));
    }
    let mut elements_total = 0u64;
    for image in &body.tables {
        let Some(Extern::Table(table)) = find(abi::TABLE_EXPORT_PREFIX, image.index) else {
            return Err(mismatch(format!("the module has no table {}", image.index)));
        };
        let wanted = image.elements.len() as u64;
        if wanted < table.size(&*store) {
            return Err(mismatch(format!(
                "table {} would have to shrink",
                image.index
            )));
        }
        if !matches!(
            table.ty(&*store).element().heap_type(),
            wasmtime::HeapType::Func
        ) && image.elements.iter().any(Option::is_some)
        {
            return Err(mismatch(format!(
                "table {} does not hold funcrefs",
                image.index
            )));
        }
        elements_total = elements_total.saturating_add(wanted);
        let funcs = image
            .elements
            .iter()
            .map(|e| funcref(*e))
            .collect::<Result<Vec<_>, _>>()?;
        resolved.tables.push((table, funcs));
    }
    if elements_total > table_limit {
        return Err(mismatch(format!(
            "{elements_total} table elements, over the limit of {table_limit}"
        )));
    }
    Ok(resolved)
}

/// Writes resolved state. Growth stays within the limits `resolve` and `restore` checked.
fn write(
    store: &mut Store<StoreState>,
    loaded: &Loaded,
    resolved: Resolved<'_>,
    body: &Body,
) -> Result<(), Error> {
    for (memory, image) in resolved.memories {
        let current = memory.data_size(&*store) as u64;
        if image.size > current {
            memory
                .grow(&mut *store, (image.size - current) / PAGE_SIZE as u64)
                .map_err(Error::engine)?;
        }
        let data = memory.data_mut(&mut *store);
        // Lay the saved pages in; zero only the other pages that are not zero already
        // (comparing costs far less than writing, which faults pages in).
        let mut saved = image.pages.iter().peekable();
        for (number, chunk) in data.chunks_mut(PAGE_SIZE).enumerate() {
            match saved.peek() {
                Some(page) if page.number as usize == number => {
                    chunk.copy_from_slice(&page.bytes);
                    saved.next();
                }
                _ if !is_zero(chunk) => chunk.fill(0),
                _ => {}
            }
        }
    }
    for (global, value) in resolved.globals {
        global.set(&mut *store, value).map_err(Error::engine)?;
    }
    for (table, funcs) in resolved.tables {
        let current = table.size(&*store);
        let wanted = funcs.len() as u64;
        if wanted > current {
            table
                .grow(&mut *store, wanted - current, Ref::Func(None))
                .map_err(Error::engine)?;
        }
        for (slot, func) in funcs.into_iter().enumerate() {
            table
                .set(&mut *store, slot as u64, Ref::Func(func))
                .map_err(Error::engine)?;
        }
    }
    loaded
        .gas
        .set(&mut *store, Val::I64(body.gas_left))
        .map_err(Error::engine)?;
    if let (Some(stack), Some(value)) = (loaded.stack, body.stack_left) {
        stack
            .set(&mut *store, Val::I64(value))
            .map_err(Error::engine)?;
    }
    let state = store.data_mut();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(body.rng.seed);
    rng.set_stream(body.rng.stream);
    rng.set_word_pos(u128::from_le_bytes(body.rng.word_pos));
    state.rng = rng;
    state.timestamp = body.timestamp;
    if let (Some(wasi), Some(image)) = (state.wasi.as_mut(), &body.wasi) {
        wasi.restore(image);
    }
    Ok(())
}
