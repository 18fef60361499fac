//! The snapshot wire format, kept apart from the capture and restore logic.
//!
//! ```text
//! offset   size  field
//! 0        8     magic, the bytes "RISBSNAP"
//! 8        4     format version, u32 little-endian (this version writes 1)
//! 12       32    module fingerprint: SHA-256 of "ri-sandbox module\n", the ABI version (u32 LE)
//!                and the original (uninstrumented) module the state belongs to
//! 44       8     body length n, u64 little-endian
//! 52       n     body: the state in MessagePack (rmp-serde, structs as arrays; memory pages
//!                as MessagePack binary)
//! 52 + n   8     checksum: XXH3-64 of bytes 0 .. 52 + n, u64 little-endian
//! ```
//!
//! The body holds every linear memory as its size and its non-zero 64 KiB pages (an all-zero
//! page takes no space, so a 16 MiB memory with 1 MiB in use gives a snapshot of about 1 MiB),
//! every mutable global, every table's funcref elements as function indices, the ChaCha20
//! stream's seed, stream and position, the event timestamp, the deterministic metrics
//! counters (wall time is not saved: it is not deterministic), and, last and only for a WASI
//! sandbox, the WASI state (captured stdout and stderr, stdin position, closed streams, time
//! slept). A body written before WASI existed ends after the counters and still decodes.
//!
//! `decode` checks everything before anything is used: magic, version, length, checksum,
//! then the body's shape (page indices in range and increasing, page lengths, table sizes).
//! It never panics, and it allocates no more than the input's length justifies.

use crate::error::Error;
use crate::snapshot::SnapshotError;
use serde::{Deserialize, Serialize};

/// The magic number at the start of every snapshot.
pub const MAGIC: &[u8; 8] = b"RISBSNAP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Linear memory page size; snapshots store memory in pages of this size.
pub const PAGE_SIZE: usize = 65536;

const HEADER_LEN: usize = 8 + 4 + 32 + 8;
const CHECKSUM_LEN: usize = 8;

/// One linear memory: its size and its non-zero pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemoryImage {
    /// The memory's index in the module.
    pub index: u32,
    /// Its size in bytes (a multiple of the page size).
    pub size: u64,
    /// Its non-zero pages, in increasing page order.
    pub pages: Vec<Page>,
}

/// One 64 KiB page of a memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Page {
    pub number: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A mutable global's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum GlobalValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128([u8; 16]),
    /// A funcref: the function's index, or null.
    FuncRef(Option<u32>),
    /// A null reference of another type (externref, exnref).
    NullRef,
}

/// A mutable global: its index in the module and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GlobalImage {
    pub index: u32,
    pub value: GlobalValue,
}

/// A table's elements, as function indices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableImage {
    pub index: u32,
    pub elements: Vec<Option<u32>>,
}

/// The ChaCha20 stream's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    pub word_pos: [u8; 16],
}

/// The deterministic counters of a sandbox's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    pub calls: u64,
    pub gas_used: u64,
    pub host_calls: u64,
    pub peak_memory_bytes: u64,
}

/// Everything a snapshot holds besides its header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub memories: Vec<MemoryImage>,
    pub globals: Vec<GlobalImage>,
    pub tables: Vec<TableImage>,
    pub gas_left: i64,
    pub stack_left: Option<i64>,
    pub rng: RngState,
    pub timestamp: i64,
    pub counters: Counters,
    /// A WASI program's state; absent without WASI (and in snapshots older than WASI, which
    /// ended with `counters`).
    #[serde(default)]
    pub wasi: Option<crate::wasi::WasiImage>,
}

fn fail(error: SnapshotError) -> Error {
    Error::new(crate::ErrorKind::Snapshot(error))
}

/// Encodes a snapshot.
pub(crate) fn encode(module: &[u8; 32], body: &Body) -> Result<Vec<u8>, Error> {
    let payload = rmp_serde::to_vec(body).map_err(|e| {
        fail(SnapshotError::Malformed {
            reason: format!("cannot encode: {e}"),
        })
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(module);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Decodes and checks a snapshot.
pub(crate) fn decode(bytes: &[u8]) -> Result<([u8; 32], Body), Error> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(fail(SnapshotError::WrongMagic));
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(fail(SnapshotError::Truncated {
            expected: (HEADER_LEN + CHECKSUM_LEN) as u64,
            found: bytes.len() as u64,
        }));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(fail(SnapshotError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        }));
    }
    let mut module = [0u8; 32];
    module.copy_from_slice(&bytes[12..44]);
    let body_len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes"));
    let expected = (HEADER_LEN as u64 + CHECKSUM_LEN as u64).saturating_add(body_len);
    if expected != bytes.len() as u64 {
        return Err(fail(SnapshotError::Truncated {
            expected,
            found: bytes.len() as u64,
        }));
    }
    let end = bytes.len() - CHECKSUM_LEN;
    let stored = u64::from_le_bytes(bytes[end..].try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(&bytes[..end]) != stored {
        return Err(fail(SnapshotError::ChecksumMismatch));
    }
    let body: Body = rmp_serde::from_slice(&bytes[HEADER_LEN..end]).map_err(|e| {
        fail(SnapshotError::Malformed {
            reason: e.to_string(),
        })
    })?;
    check_shape(&body)?;
    Ok((module, body))
}

/// The body's invariants, which restore relies on.
fn check_shape(body: &Body) -> Result<(), Error> {
    let malformed = |reason: String| fail(SnapshotError::Malformed { reason });
    let mut last_memory = None;
    for memory in &body.memories {
        if last_memory.is_some_and(|last| memory.index <= last) {
            return Err(malformed("memories out of order".into()));
        }
        last_memory = Some(memory.index);
        if memory.size % PAGE_SIZE as u64 != 0 {
            return Err(malformed(format!(
                "memory {} has a size of {} bytes, not a whole number of pages",
                memory.index, memory.size
            )));
        }
        let pages = memory.size / PAGE_SIZE as u64;
        let mut last_page = None;
        for page in &memory.pages {
            if u64::from(page.number) >= pages || last_page.is_some_and(|l| page.number <= l) {
                return Err(malformed(format!(
                    "memory {} has page {} out of order or out of range",
                    memory.index, page.number
                )));
            }
            last_page = Some(page.number);
            if page.bytes.len() != PAGE_SIZE {
                return Err(malformed(format!(
                    "memory {} page {} has {} bytes",
                    memory.index,
                    page.number,
                    page.bytes.len()
                )));
            }
        }
    }
    Ok(())
}
