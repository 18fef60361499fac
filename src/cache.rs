//! Compiled modules, kept so that loading a known module costs almost nothing.
//!
//! Instrumenting and compiling a large module takes tens of milliseconds to seconds. A
//! [`ModuleCache`] keeps the result in memory (least recently used out first) and, when given
//! a directory, on disk, keyed by a SHA-256 of everything the result depends on: the module's
//! bytes, the cost model, the stack limit, the instrumented-module ABI version, ri-sandbox's
//! version, and wasmtime's version and engine configuration (its precompile compatibility
//! hash). A change to any of them is a miss, never a stale hit.
//!
//! # Safety of what is loaded
//! wasmtime's deserialization trusts its input: loading a crafted artifact could run arbitrary
//! machine code. The cache therefore deserializes only entries it wrote itself, and checks
//! each one before use: its magic, version and key, and an XXH3-128 checksum over all of it.
//! A corrupt, truncated or mismatched entry is counted, removed and rebuilt, never loaded.
//! The checksum guards against corruption, not against an attacker: the cache directory must
//! be writable by the host alone. Files meant to travel (a deployment's ready files) carry an
//! HMAC-SHA256 under a key the host holds instead; see [`Runtime::precompile`].
//!
//! Writes go to a temporary file that is renamed into place, so concurrent threads and
//! processes sharing a directory never see half an entry. A size limit evicts the least
//! recently used entries (by modification time, which a hit refreshes).

use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::runtime::{CompiledModule, Runtime};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"RISBMODL";
const VERSION: u32 = 1;
const EXTENSION: &str = "rsm";
const CHECKSUM_LEN: usize = 16;
const MAC_LEN: usize = 32;

/// A module's identity in a [`ModuleCache`]: a SHA-256 of the module's bytes and of everything
/// its compiled form depends on (see the module documentation). Computing it hashes the whole
/// module; a host that loads the same module many times computes it once
/// ([`Runtime::cache_key`]) and looks the module up with [`ModuleCache::get`], which hashes
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", hex(&self.0))
    }
}

/// What a cache has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Loads served from memory.
    pub memory_hits: u64,
    /// Loads served from disk.
    pub disk_hits: u64,
    /// Loads that had to instrument and compile.
    pub misses: u64,
    /// Entries found corrupt, truncated or mismatched, removed and rebuilt.
    pub rebuilds: u64,
    /// Entries evicted to stay under the size limit.
    pub evictions: u64,
    /// Bytes the cache's entries take on disk.
    pub bytes_on_disk: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    rebuilds: AtomicU64,
    evictions: AtomicU64,
}

struct MemoryTier {
    entries: HashMap<[u8; 32], (CompiledModule, u64)>,
    clock: u64,
    capacity: usize,
}

/// A cache of compiled modules, in memory and optionally on disk. Share it between threads
/// (it is `Sync`); several processes may share one directory.
pub struct ModuleCache {
    memory: Mutex<MemoryTier>,
    dir: Option<(PathBuf, u64)>,
    counters: Counters,
}

impl std::fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCache")
            .field("dir", &self.dir)
            .field("metrics", &self.metrics())
            .finish()
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Config {
        reason: format!("{what} {}: {e}", path.display()),
    })
}

impl ModuleCache {
    /// A cache that keeps up to `capacity` compiled modules in memory.
    pub fn in_memory(capacity: usize) -> ModuleCache {
        ModuleCache {
            memory: Mutex::new(MemoryTier {
                entries: HashMap::new(),
                clock: 0,
                capacity: capacity.max(1),
            }),
            dir: None,
            counters: Counters::default(),
        }
    }

    /// A cache backed by `dir` (created if missing), holding at most `max_bytes` there, with
    /// up to `memory_capacity` modules in memory in front of it.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the directory cannot be created.
    pub fn on_disk(
        dir: impl Into<PathBuf>,
        max_bytes: u64,
        memory_capacity: usize,
    ) -> Result<ModuleCache, Error> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        let mut cache = ModuleCache::in_memory(memory_capacity);
        cache.dir = Some((dir, max_bytes));
        Ok(cache)
    }

    /// What the cache has done so far, and its size on disk.
    pub fn metrics(&self) -> CacheMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheMetrics {
            memory_hits: load(&self.counters.memory_hits),
            disk_hits: load(&self.counters.disk_hits),
            misses: load(&self.counters.misses),
            rebuilds: load(&self.counters.rebuilds),
            evictions: load(&self.counters.evictions),
            bytes_on_disk: self
                .dir
                .as_ref()
                .map(|(dir, _)| entries(dir).iter().map(|e| e.1).sum())
                .unwrap_or(0),
        }
    }

    /// The module filed under `key` in memory, if it is there (a hit is counted; a `None` is
    /// not a miss, since nothing was compiled): a lookup that hashes nothing, for hosts that
    /// keep the key of a module they load often. On `None`, load through
    /// [`Runtime::compile_cached`], which files the module under the same key.
    pub fn get(&self, key: &CacheKey) -> Option<CompiledModule> {
        let hit = self.memory_get(&key.0)?;
        self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    fn memory_get(&self, key: &[u8; 32]) -> Option<CompiledModule> {
        let mut tier = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        tier.clock += 1;
        let clock = tier.clock;
        let (module, last) = tier.entries.get_mut(key)?;
        *last = clock;
        Some(module.clone())
    }

    fn memory_put(&self, key: [u8; 32], module: CompiledModule) {
        let mut tier = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        tier.clock += 1;
        let clock = tier.clock;
        if tier.entries.len() >= tier.capacity && !tier.entries.contains_key(&key) {
            if let Some(oldest) = tier
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k)
            {
                tier.entries.remove(&oldest);
            }
        }
        tier.entries.insert(key, (module, clock));
    }
}

/// The cache entries in a directory, with their sizes and modification times.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(|e| {
        let e = e.ok()?;
        let path = e.path();
        if path.extension()? != EXTENSION {
            return None;
        }
        let meta = e.metadata().ok()?;
        Some((path, meta.len(), meta.modified().ok()?))
    })
    .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything a compiled module depends on, hashed.
fn cache_key(runtime: &Runtime, binary: &[u8], config: &Config) -> [u8; 32] {
    let mut engine = std::collections::hash_map::DefaultHasher::new();
    runtime
        .engine()
        .precompile_compatibility_hash()
        .hash(&mut engine);
    let mut hasher = Sha256::new();
    hasher.update(b"ri-sandbox module cache v1\n");
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(ri_sandbox_instrument::abi::ABI_VERSION.to_le_bytes());
    hasher.update(engine.finish().to_le_bytes());
    hasher.update(config.costs.fingerprint());
    hasher.update(config.stack_limit.to_le_bytes());
    hasher.update(config.max_locals.to_le_bytes());
    hasher.update(binary);
    hasher.finalize().into()
}

/// An entry's bytes: header, the instrumented module, the compiled artifact, a checksum.
fn encode_entry(key: &[u8; 32], module: &CompiledModule) -> Result<Vec<u8>, Error> {
    let compiled = module.module.serialize().map_err(Error::engine)?;
    let instrumented = &module.instrumented;
    let mut out = Vec::with_capacity(128 + instrumented.len() + compiled.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&module.module_hash);
    out.extend_from_slice(&module.stack_limit.to_le_bytes());
    out.extend_from_slice(&(instrumented.len() as u64).to_le_bytes());
    out.extend_from_slice(instrumented);
    out.extend_from_slice(&(compiled.len() as u64).to_le_bytes());
    out.extend_from_slice(&compiled);
    let checksum = xxhash_rust::xxh3::xxh3_128(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// A checked entry's parts.
struct Entry<'a> {
    key: [u8; 32],
    module_hash: [u8; 32],
    stack_limit: u64,
    instrumented: &'a [u8],
    compiled: &'a [u8],
}

/// Checks an entry's structure and checksum. `None` for anything amiss.
fn decode_entry(bytes: &[u8]) -> Option<Entry<'_>> {
    if bytes.len() < 8 + 4 + 32 + 32 + 8 + 8 + 8 + CHECKSUM_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if xxhash_rust::xxh3::xxh3_128(body).to_le_bytes() != checksum {
        return None;
    }
    let mut at: usize = 8;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    if u32::from_le_bytes(take(4)?.try_into().ok()?) != VERSION {
        return None;
    }
    let key = take(32)?.try_into().ok()?;
    let module_hash = take(32)?.try_into().ok()?;
    let stack_limit = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let n = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
    let instrumented = take(n)?;
    let n = usize::try_from(u64::from_le_bytes(take(8)?.try_into().ok()?)).ok()?;
    let compiled = take(n)?;
    if at != body.len() {
        return None;
    }
    Some(Entry {
        key,
        module_hash,
        stack_limit,
        instrumented,
        compiled,
    })
}

impl Runtime {
    /// The key [`Runtime::compile_cached`] files `module` (binary or text) under for sandboxes
    /// of `config` on this runtime's engine.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidModule`] for text that does not parse.
    pub fn cache_key(&self, module: &[u8], config: &Config) -> Result<CacheKey, Error> {
        let binary = crate::runtime::to_binary(module)?;
        Ok(CacheKey(cache_key(self, &binary, config)))
    }

    /// [`Runtime::compile`], through a cache: a module compiled before with the same bytes,
    /// configuration, versions and engine comes back from memory or disk instead.
    ///
    /// # Errors
    /// As [`Runtime::compile`]. A cache entry that fails its checks is rebuilt, not an error;
    /// failing to write the disk cache is not an error either (the module is still returned).
    pub fn compile_cached(
        &self,
        module: &[u8],
        config: &Config,
        cache: &ModuleCache,
    ) -> Result<CompiledModule, Error> {
        let binary = crate::runtime::to_binary(module)?;
        let key = cache_key(self, &binary, config);
        if let Some(hit) = cache.memory_get(&key) {
            cache.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        if let Some((dir, max_bytes)) = &cache.dir {
            let path = dir.join(format!("{}.{EXTENSION}", hex(&key)));
            if let Ok(bytes) = std::fs::read(&path) {
                match self.entry_module(&bytes, &key, config) {
                    Some(module) => {
                        cache.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                        // Refresh the entry's place in the eviction order.
                        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                            let _ = file.set_modified(std::time::SystemTime::now());
                        }
                        cache.memory_put(key, module.clone());
                        return Ok(module);
                    }
                    None => {
                        cache.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            cache.counters.misses.fetch_add(1, Ordering::Relaxed);
            let compiled = self.compile(&binary, config)?;
            if let Ok(bytes) = encode_entry(&key, &compiled) {
                write_atomically(dir, &path, &bytes);
                evict(dir, *max_bytes, &cache.counters);
            }
            cache.memory_put(key, compiled.clone());
            return Ok(compiled);
        }
        cache.counters.misses.fetch_add(1, Ordering::Relaxed);
        let compiled = self.compile(&binary, config)?;
        cache.memory_put(key, compiled.clone());
        Ok(compiled)
    }

    /// A compiled module from entry bytes that passed their checks and match `key`.
    fn entry_module(
        &self,
        bytes: &[u8],
        key: &[u8; 32],
        config: &Config,
    ) -> Option<CompiledModule> {
        let entry = decode_entry(bytes)?;
        if &entry.key != key || entry.stack_limit != config.stack_limit {
            return None;
        }
        self.module_from_entry(&entry, config).ok()
    }

    fn module_from_entry(
        &self,
        entry: &Entry<'_>,
        config: &Config,
    ) -> Result<CompiledModule, Error> {
        // SAFETY: wasmtime's deserialization trusts its input. These bytes were written by
        // this cache (or signed by the host's key) and passed their checksum (or MAC) before
        // they got here; wasmtime also refuses artifacts of another version or configuration.
        let module = unsafe { wasmtime::Module::deserialize(self.engine(), entry.compiled) }
            .map_err(Error::engine)?;
        Ok(CompiledModule {
            module,
            costs: Arc::new(config.costs.clone()),
            stack_limit: entry.stack_limit,
            // Part of the key the entry was found under.
            max_locals: config.max_locals,
            module_hash: entry.module_hash,
            instrumented: Arc::from(entry.instrumented),
            export_table: Arc::default(),
            pre: Arc::default(),
        })
    }

    /// Instruments and compiles a module into a *ready file* a deployment can ship: the
    /// instrumented module and wasmtime's compiled artifact for this engine configuration,
    /// authenticated with an HMAC-SHA256 under `key`. Only [`Runtime::load_precompiled`] with
    /// the same key (and a compatible engine) accepts it.
    ///
    /// # Errors
    /// As [`Runtime::compile`].
    pub fn precompile(&self, module: &[u8], config: &Config, key: &[u8]) -> Result<Vec<u8>, Error> {
        let binary = crate::runtime::to_binary(module)?;
        let cache_key = cache_key(self, &binary, config);
        let compiled = self.compile(&binary, config)?;
        let mut bytes = encode_entry(&cache_key, &compiled)?;
        let mac = hmac_sha256(key, &bytes);
        bytes.extend_from_slice(&mac);
        Ok(bytes)
    }

    /// Loads a ready file written by [`Runtime::precompile`]. The MAC is checked before
    /// anything else is read, so a file not signed with `key` (a forged one, or an unmetered
    /// module dressed up as metered) is never deserialized.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidModule`] for a file that fails its MAC or checks, was made for
    /// another cost model, stack limit or engine configuration.
    pub fn load_precompiled(
        &self,
        bytes: &[u8],
        config: &Config,
        key: &[u8],
    ) -> Result<CompiledModule, Error> {
        let refuse = |reason: &str| {
            Error::new(ErrorKind::InvalidModule {
                reason: format!("precompiled module refused: {reason}"),
                offset: None,
            })
        };
        if bytes.len() < MAC_LEN {
            return Err(refuse("too short"));
        }
        let (entry_bytes, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        if !constant_time_eq(&hmac_sha256(key, entry_bytes), mac) {
            return Err(refuse("its MAC does not match this key"));
        }
        let entry = decode_entry(entry_bytes).ok_or_else(|| refuse("malformed"))?;
        let info = ri_sandbox_instrument::abi::AbiInfo::read(entry.instrumented)
            .ok_or_else(|| refuse("no ri_sandbox section"))?;
        if info.version != ri_sandbox_instrument::abi::ABI_VERSION
            || info.cost_fingerprint != config.costs.fingerprint()
            || entry.stack_limit != config.stack_limit
        {
            return Err(refuse(
                "it was instrumented for another ABI version, cost model or stack limit",
            ));
        }
        self.module_from_entry(&entry, config).map_err(|e| {
            refuse(&format!(
                "wasmtime refused it ({e}); recompile for this engine"
            ))
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers see the whole file or none. Failures are ignored: the cache is an optimisation.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::write(&temp, bytes).is_err() || std::fs::rename(&temp, path).is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

/// Removes the least recently used entries until the directory holds at most `max_bytes`.
fn evict(dir: &Path, max_bytes: u64, counters: &Counters) {
    let mut all = entries(dir);
    let mut total: u64 = all.iter().map(|e| e.1).sum();
    all.sort_by_key(|e| e.2);
    for (path, len, _) in all {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaau8; 131];
        let mac = hmac_sha256(
            &long_key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn decode_refuses_anything_amiss() {
        assert!(decode_entry(b"").is_none());
        assert!(decode_entry(&[0u8; 200]).is_none());
        let mut fake = MAGIC.to_vec();
        fake.extend_from_slice(&[0u8; 150]);
        let sum = xxhash_rust::xxh3::xxh3_128(&fake);
        fake.extend_from_slice(&sum.to_le_bytes());
        assert!(decode_entry(&fake).is_none(), "version 0 and bogus lengths");
    }
}
