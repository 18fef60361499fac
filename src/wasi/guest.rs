//! The calling guest as WASI functions see it: its gas counter (every call pays before it
//! acts), its memory (every pointer checked, nothing allocated before the range is known to
//! be inside), and the store's WASI state.

use super::errno::*;
use super::WasiState;
use crate::host::HostOutOfGas;
use crate::sandbox::StoreState;
use wasmtime::{Caller, Extern, Val};

pub(super) type Ctx<'a> = Caller<'a, StoreState>;
pub(super) type Errno = wasmtime::Result<i32>;

/// The size of an iovec record (pointer and length).
pub(super) const IOVEC_SIZE: u64 = 8;

pub(super) fn not_enabled() -> wasmtime::Error {
    wasmtime::Error::msg("WASI is not enabled for this sandbox")
}

/// Charges `gas` to the call, or sets the counter to -1 and traps when it cannot pay.
pub(super) fn charge(c: &mut Ctx<'_>, gas: u64) -> wasmtime::Result<()> {
    let Some(global) = c.data().wasi.as_ref().and_then(|w| w.gas) else {
        return Err(not_enabled());
    };
    let left = global.get(&mut *c).i64().unwrap_or(0);
    let cost = i64::try_from(gas).unwrap_or(i64::MAX);
    if left < cost {
        global.set(&mut *c, Val::I64(-1))?;
        return Err(wasmtime::Error::new(HostOutOfGas));
    }
    global.set(&mut *c, Val::I64(left - cost))
}

pub(super) fn prices(c: &Ctx<'_>) -> wasmtime::Result<(u64, u64)> {
    let wasi = c.data().wasi.as_ref().ok_or_else(not_enabled)?;
    Ok((wasi.config.call_gas, wasi.config.byte_gas))
}

/// The start of every call: counts it and charges its base price plus `bytes` moved.
pub(super) fn enter(c: &mut Ctx<'_>, bytes: u64) -> wasmtime::Result<()> {
    c.data_mut().host_calls += 1;
    let (call, byte) = prices(c)?;
    charge(c, call.saturating_add(bytes.saturating_mul(byte)))
}

/// Charges `bytes` moved, after `enter`.
pub(super) fn pay_bytes(c: &mut Ctx<'_>, bytes: u64) -> wasmtime::Result<()> {
    let (_, byte) = prices(c)?;
    charge(c, bytes.saturating_mul(byte))
}

/// The guest's memory and the store's state, borrowed together.
pub(super) fn parts<'a>(c: &'a mut Ctx<'_>) -> Option<(&'a mut [u8], &'a mut StoreState)> {
    let Some(Extern::Memory(memory)) = c.get_export("memory") else {
        return None;
    };
    Some(memory.data_and_store_mut(c))
}

pub(super) fn wasi(state: &StoreState) -> wasmtime::Result<&WasiState> {
    state.wasi.as_deref().ok_or_else(not_enabled)
}

pub(super) fn wasi_mut(state: &mut StoreState) -> wasmtime::Result<&mut WasiState> {
    state.wasi.as_deref_mut().ok_or_else(not_enabled)
}

/// The standard stream `fd`, when it is one and still open.
pub(super) fn stdio(c: &Ctx<'_>, fd: i32) -> wasmtime::Result<Option<u32>> {
    let wasi = wasi(c.data())?;
    Ok(match u32::try_from(fd) {
        Ok(fd @ 0..=2) if wasi.closed & (1 << fd) == 0 => Some(fd),
        _ => None,
    })
}

pub(super) fn range(memory: &[u8], ptr: u32, len: u64) -> Option<std::ops::Range<usize>> {
    let end = u64::from(ptr).checked_add(len)?;
    (end <= memory.len() as u64).then_some(ptr as usize..end as usize)
}

pub(super) fn read_u32(memory: &[u8], ptr: u32) -> Option<u32> {
    let bytes = memory.get(range(memory, ptr, 4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

pub(super) fn write(memory: &mut [u8], ptr: u32, bytes: &[u8]) -> Option<()> {
    let range = range(memory, ptr, bytes.len() as u64)?;
    memory[range].copy_from_slice(bytes);
    Some(())
}

/// Writes `bytes` at `ptr`: `SUCCESS`, or `FAULT` when the memory is missing or too small.
pub(super) fn store(c: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> Errno {
    Ok(
        match parts(c).and_then(|(memory, _)| write(memory, ptr, bytes)) {
            Some(()) => SUCCESS,
            None => FAULT,
        },
    )
}

/// The iovec array at `iovs`, as memory ranges; `None` when any of it is outside memory.
pub(super) fn iovecs(memory: &[u8], iovs: u32, count: u32) -> Option<Vec<std::ops::Range<usize>>> {
    // The whole array must be in memory before anything is allocated for it.
    range(memory, iovs, u64::from(count) * IOVEC_SIZE)?;
    (0..count)
        .map(|i| {
            let at = iovs + i * IOVEC_SIZE as u32;
            let ptr = read_u32(memory, at)?;
            let len = read_u32(memory, at + 4)?;
            range(memory, ptr, u64::from(len))
        })
        .collect()
}

/// The guest's iovec array at `iovs` as memory ranges, with their total length; `None` when
/// the memory is missing or any of it is outside memory (EFAULT).
pub(super) fn guest_iovecs(
    c: &mut Ctx<'_>,
    iovs: u32,
    count: u32,
) -> Option<(Vec<std::ops::Range<usize>>, u64)> {
    let (memory, _) = parts(c)?;
    let ranges = iovecs(memory, iovs, count)?;
    let total = ranges.iter().map(|r| r.len() as u64).sum();
    Some((ranges, total))
}

/// A path argument: the guest's bytes at `ptr`, which must be UTF-8.
pub(super) fn path_arg(c: &mut Ctx<'_>, ptr: u32, len: u32) -> Result<String, i32> {
    let (memory, _) = parts(c).ok_or(FAULT)?;
    let bytes = memory
        .get(range(memory, ptr, u64::from(len)).ok_or(FAULT)?)
        .ok_or(FAULT)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| ILSEQ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_never_overflow() {
        let memory = [0u8; 16];
        assert_eq!(range(&memory, 0, 16), Some(0..16));
        assert_eq!(range(&memory, 1, 16), None);
        assert_eq!(range(&memory, u32::MAX, u64::MAX), None);
        assert_eq!(read_u32(&memory, 13), None);
    }

    #[test]
    fn iovec_arrays_outside_memory_are_refused_before_allocation() {
        let mut memory = vec![0u8; 64];
        // One iovec at 0: ptr 16, len 8.
        memory[..4].copy_from_slice(&16u32.to_le_bytes());
        memory[4..8].copy_from_slice(&8u32.to_le_bytes());
        let one = iovecs(&memory, 0, 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0], 16..24);
        assert_eq!(iovecs(&memory, 0, u32::MAX), None);
        memory[4..8].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(iovecs(&memory, 0, 1), None);
    }
}
