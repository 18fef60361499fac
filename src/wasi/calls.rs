//! The WASI preview1 functions themselves. Each one charges its gas first, then checks its
//! arguments, then does its work; answers are documented in the parent module.

use super::errno::*;
use super::files::{self, RIGHT_FD_READ, RIGHT_FD_WRITE};
use super::guest::*;
use super::{OutputLimitHit, ProcExit, Stream, WasiState, MODULE};
use crate::sandbox::StoreState;
use rand_core::Rng;
use std::sync::Arc;
use wasmtime::{Linker, Val};

const NAMETOOLONG: i32 = 37;

/// The calls ri-sandbox answers from the descriptor alone: `(name, index of the descriptor
/// parameter, answer for a standard stream, answer for an open file or directory)`; any other
/// descriptor is `EBADF`. Advice is accepted and ignored; links, time stamps, renumbering,
/// preallocation, flags, rights and sockets are not supported.
const UNSUPPORTED: &[(&str, usize, i32, i32)] = &[
    ("fd_advise", 0, SPIPE, SUCCESS),
    ("fd_allocate", 0, NOTSUP, NOTSUP),
    ("fd_fdstat_set_flags", 0, NOTSUP, NOTSUP),
    ("fd_fdstat_set_rights", 0, NOTSUP, NOTSUP),
    ("fd_filestat_set_times", 0, NOTSUP, NOTSUP),
    ("fd_renumber", 0, NOTSUP, NOTSUP),
    ("path_filestat_set_times", 0, NOTDIR, NOTSUP),
    ("path_link", 0, NOTDIR, NOTSUP),
    ("path_readlink", 0, NOTDIR, NOTSUP),
    ("path_symlink", 2, NOTDIR, NOTSUP),
    ("sock_accept", 0, NOTSOCK, NOTSOCK),
    ("sock_recv", 0, NOTSOCK, NOTSOCK),
    ("sock_send", 0, NOTSOCK, NOTSOCK),
    ("sock_shutdown", 0, NOTSOCK, NOTSOCK),
];
const RIGHT_POLL_FD_READWRITE: u64 = 1 << 27;
const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;

/// `args_sizes_get` and `environ_sizes_get`: the count and the bytes of the NUL-terminated
/// strings.
fn sizes(c: &mut Ctx<'_>, strings: fn(&WasiState) -> Vec<Vec<u8>>, count: u32, size: u32) -> Errno {
    enter(c, 8)?;
    let list = strings(wasi(c.data())?);
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(list.len() as u32).to_le_bytes());
    out[4..].copy_from_slice(&(bytes as u32).to_le_bytes());
    let wrote = parts(c).and_then(|(memory, _)| {
        write(memory, count, &out[..4])?;
        write(memory, size, &out[4..])
    });
    Ok(if wrote.is_some() { SUCCESS } else { FAULT })
}

/// `args_get` and `environ_get`: the pointer array and the strings.
fn strings(
    c: &mut Ctx<'_>,
    strings: fn(&WasiState) -> Vec<Vec<u8>>,
    pointers: u32,
    buffer: u32,
) -> Errno {
    let list = strings(wasi(c.data())?);
    let bytes: usize = list.iter().map(|s| s.len() + 1).sum();
    enter(c, (bytes + 4 * list.len()) as u64)?;
    let Some((memory, _)) = parts(c) else {
        return Ok(FAULT);
    };
    let mut at = buffer;
    for (i, s) in list.iter().enumerate() {
        let wrote = write(
            memory,
            pointers.wrapping_add(4 * i as u32),
            &at.to_le_bytes(),
        )
        .and_then(|()| write(memory, at, s))
        .and_then(|()| write(memory, at.wrapping_add(s.len() as u32), &[0]));
        if wrote.is_none() {
            return Ok(FAULT);
        }
        at = at.wrapping_add(s.len() as u32 + 1);
    }
    Ok(SUCCESS)
}

fn args(wasi: &WasiState) -> Vec<Vec<u8>> {
    wasi.config
        .args
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect()
}

fn environ(wasi: &WasiState) -> Vec<Vec<u8>> {
    let pair = |(k, v): &(String, String)| format!("{k}={v}").into_bytes();
    wasi.config.env.iter().map(pair).collect()
}

/// The monotonic clock: gas used by the sandbox so far plus time slept, in nanoseconds.
fn monotonic_ns(c: &mut Ctx<'_>) -> wasmtime::Result<u64> {
    let wasi = wasi(c.data())?;
    let (before, budget, slept, gas) = (wasi.gas_before_call, wasi.budget, wasi.slept_ns, wasi.gas);
    let left = match gas {
        Some(g) => g.get(&mut *c).i64().unwrap_or(0),
        None => budget,
    };
    let used = u64::try_from(budget.saturating_sub(left)).unwrap_or(0);
    Ok(before.saturating_add(used).saturating_add(slept))
}

fn realtime_ns(c: &Ctx<'_>) -> u64 {
    u64::try_from(c.data().timestamp)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
}

fn clock_time_get(c: &mut Ctx<'_>, id: i32, out: u32) -> Errno {
    enter(c, 8)?;
    let now = match id {
        0 => realtime_ns(c),
        1..=3 => monotonic_ns(c)?,
        _ => return Ok(INVAL),
    };
    store(c, out, &now.to_le_bytes())
}

fn fd_write(c: &mut Ctx<'_>, fd: i32, iovs: u32, count: u32, out: u32) -> Errno {
    enter(c, u64::from(count) * IOVEC_SIZE)?;
    let stream = match stdio(c, fd)? {
        Some(1) => Stream::Stdout,
        Some(2) => Stream::Stderr,
        Some(_) => return Ok(BADF),
        None => return file_write(c, fd, iovs, count, out, None),
    };
    let Some((ranges, total)) = guest_iovecs(c, iovs, count) else {
        return Ok(FAULT);
    };
    pay_bytes(c, total)?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    let wasi = wasi_mut(state)?;
    let limit = wasi.config.max_output_bytes;
    let buffer = match stream {
        Stream::Stdout => &mut wasi.stdout,
        Stream::Stderr => &mut wasi.stderr,
    };
    if (buffer.len() as u64).saturating_add(total) > limit {
        return Err(wasmtime::Error::new(OutputLimitHit { stream, limit }));
    }
    for r in ranges {
        buffer.extend_from_slice(&memory[r]);
    }
    let Ok(written) = u32::try_from(total) else {
        return Ok(INVAL);
    };
    store(c, out, &written.to_le_bytes())
}

fn fd_read(c: &mut Ctx<'_>, fd: i32, iovs: u32, count: u32, out: u32) -> Errno {
    enter(c, u64::from(count) * IOVEC_SIZE)?;
    match stdio(c, fd)? {
        Some(0) => {}
        Some(_) => return Ok(BADF),
        None => return file_read(c, fd, iovs, count, out, None),
    }
    let Some((ranges, room)) = guest_iovecs(c, iovs, count) else {
        return Ok(FAULT);
    };
    let wasi = wasi(c.data())?;
    let left = (wasi.config.stdin.len() as u64).saturating_sub(wasi.stdin_pos);
    let n = left.min(room).min(u64::from(u32::MAX));
    pay_bytes(c, n)?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    let wasi = wasi_mut(state)?;
    let stdin = Arc::clone(&wasi.config.stdin);
    let mut at = wasi.stdin_pos as usize;
    let end = at + n as usize;
    for r in ranges {
        if at == end {
            break;
        }
        let take = r.len().min(end - at);
        memory[r.start..r.start + take].copy_from_slice(&stdin[at..at + take]);
        at += take;
    }
    wasi.stdin_pos = end as u64;
    store(c, out, &(n as u32).to_le_bytes())
}

fn fd_close(c: &mut Ctx<'_>, fd: i32) -> Errno {
    enter(c, 0)?;
    let Some(fd) = stdio(c, fd)? else {
        return Ok(wasi_mut(c.data_mut())?.files.close(fd));
    };
    wasi_mut(c.data_mut())?.closed |= 1 << fd;
    Ok(SUCCESS)
}

fn fd_fdstat_get(c: &mut Ctx<'_>, fd: i32, out: u32) -> Errno {
    enter(c, 24)?;
    let rights = match stdio(c, fd)? {
        Some(0) => RIGHT_FD_READ | RIGHT_POLL_FD_READWRITE,
        Some(_) => RIGHT_FD_WRITE | RIGHT_POLL_FD_READWRITE,
        None => {
            return match wasi(c.data())?.files.fdstat(fd) {
                Ok(stat) => store(c, out, &stat),
                Err(e) => Ok(e),
            }
        }
    };
    // filetype 0 (unknown: a pipe, not a terminal), no flags, no inheriting rights.
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    store(c, out, &stat)
}

fn fd_filestat_get(c: &mut Ctx<'_>, fd: i32, out: u32) -> Errno {
    enter(c, 64)?;
    if stdio(c, fd)?.is_none() {
        return match wasi(c.data())?.files.filestat(fd) {
            Ok(stat) => store(c, out, &stat),
            Err(e) => Ok(e),
        };
    }
    // Every field zero: no device, inode, size or times (filetype unknown).
    store(c, out, &[0u8; 64])
}

/// Operations ri-sandbox does not support on any descriptor: `on_stdio` for a standard
/// stream, `on_other` for an open file or directory, `EBADF` for the rest.
fn on_fd(c: &mut Ctx<'_>, fd: i32, on_stdio: i32, on_other: i32) -> Errno {
    enter(c, 0)?;
    Ok(match stdio(c, fd)? {
        Some(_) => on_stdio,
        None if wasi(c.data())?.files.get(fd).is_some() => on_other,
        None => BADF,
    })
}

/// `fd_write` and `fd_pwrite` on a file, after `enter`.
fn file_write(c: &mut Ctx<'_>, fd: i32, iovs: u32, count: u32, out: u32, at: Option<u64>) -> Errno {
    if let Err(e) = wasi_mut(c.data_mut())?.files.writable(fd) {
        return Ok(e);
    }
    let Some((ranges, total)) = guest_iovecs(c, iovs, count) else {
        return Ok(FAULT);
    };
    pay_bytes(c, total)?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    let written = wasi_mut(state)?
        .files
        .writable(fd)
        .and_then(|file| files::write_from(file, memory, &ranges, at));
    match written {
        Ok(n) => store(c, out, &(n as u32).to_le_bytes()),
        Err(e) => Ok(e),
    }
}

/// `fd_read` and `fd_pread` on a file, after `enter`: pays for the bytes that are there to
/// read, then reads them.
fn file_read(c: &mut Ctx<'_>, fd: i32, iovs: u32, count: u32, out: u32, at: Option<u64>) -> Errno {
    let left = match wasi_mut(c.data_mut())?.files.readable(fd, at) {
        Ok((_, left)) => left,
        Err(e) => return Ok(e),
    };
    let Some((ranges, room)) = guest_iovecs(c, iovs, count) else {
        return Ok(FAULT);
    };
    let n = left.min(room).min(u64::from(u32::MAX));
    pay_bytes(c, n)?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    let read = wasi_mut(state)?
        .files
        .readable(fd, at)
        .and_then(|(file, _)| files::read_into(file, memory, &ranges, n, at));
    match read {
        Ok(n) => store(c, out, &(n as u32).to_le_bytes()),
        Err(e) => Ok(e),
    }
}

/// `fd_pread` and `fd_pwrite`: `file_op` (`file_read` or `file_write`) at `offset`, on a file
/// only (a standard stream cannot seek).
#[allow(clippy::too_many_arguments)]
/// `file_read` or `file_write`: a gathered read or write at the file position or at an offset.
type FileOp = fn(&mut Ctx<'_>, i32, u32, u32, u32, Option<u64>) -> Errno;

fn positional(
    c: &mut Ctx<'_>,
    fd: i32,
    iovs: u32,
    count: u32,
    offset: i64,
    out: u32,
    file_op: FileOp,
) -> Errno {
    enter(c, u64::from(count) * IOVEC_SIZE)?;
    if stdio(c, fd)?.is_some() {
        return Ok(SPIPE);
    }
    let Ok(offset) = u64::try_from(offset) else {
        return Ok(INVAL);
    };
    file_op(c, fd, iovs, count, out, Some(offset))
}

fn fd_seek(c: &mut Ctx<'_>, fd: i32, offset: i64, whence: i32, out: u32) -> Errno {
    enter(c, 8)?;
    if stdio(c, fd)?.is_some() {
        return Ok(SPIPE);
    }
    let position = wasi_mut(c.data_mut())?
        .files
        .file(fd)
        .and_then(|file| files::seek(file, offset, whence));
    match position {
        Ok(p) => store(c, out, &p.to_le_bytes()),
        Err(e) => Ok(e),
    }
}

fn fd_filestat_set_size(c: &mut Ctx<'_>, fd: i32, size: i64) -> Errno {
    enter(c, 0)?;
    if stdio(c, fd)?.is_some() {
        return Ok(INVAL);
    }
    let Ok(size) = u64::try_from(size) else {
        return Ok(INVAL);
    };
    let files = &mut wasi_mut(c.data_mut())?.files;
    Ok(match files.writable(fd) {
        Ok(file) => file.set_len(size).err().map_or(SUCCESS, |e| from_io(&e)),
        Err(e) => e,
    })
}

fn fd_sync(c: &mut Ctx<'_>, fd: i32) -> Errno {
    enter(c, 0)?;
    if stdio(c, fd)?.is_some() {
        return Ok(INVAL);
    }
    let files = &mut wasi_mut(c.data_mut())?.files;
    Ok(match files.file(fd) {
        Ok(file) => file.sync_data().err().map_or(SUCCESS, |e| from_io(&e)),
        Err(e) => e,
    })
}

fn fd_prestat_get(c: &mut Ctx<'_>, fd: i32, out: u32) -> Errno {
    enter(c, 8)?;
    let len = match wasi(c.data())?.files.prestat(fd) {
        Ok(name) => name.len() as u32,
        Err(e) => return Ok(e),
    };
    let mut prestat = [0u8; 8];
    prestat[4..].copy_from_slice(&len.to_le_bytes());
    store(c, out, &prestat)
}

fn fd_prestat_dir_name(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32) -> Errno {
    enter(c, u64::from(len))?;
    let name = match wasi(c.data())?.files.prestat(fd) {
        Ok(name) => name.as_bytes().to_vec(),
        Err(e) => return Ok(e),
    };
    if (len as usize) < name.len() {
        return Ok(NAMETOOLONG);
    }
    store(c, ptr, &name)
}

fn fd_readdir(c: &mut Ctx<'_>, fd: i32, buf: u32, len: u32, cookie: i64, out: u32) -> Errno {
    enter(c, 0)?;
    if stdio(c, fd)?.is_some() {
        return Ok(NOTDIR);
    }
    let listing = wasi(c.data())?
        .files
        .readdir(fd, cookie as u64, len as usize);
    let (bytes, whole) = match listing {
        Ok(listing) => listing,
        Err(e) => return Ok(e),
    };
    // The whole listing was read and sorted, whatever part of it the buffer takes.
    pay_bytes(c, whole)?;
    match store(c, buf, &bytes)? {
        SUCCESS => store(c, out, &(bytes.len() as u32).to_le_bytes()),
        e => Ok(e),
    }
}

/// The `path_*` calls that take one directory and one path: they pay for the path's bytes,
/// then `op` acts on the table.
fn path_op(
    c: &mut Ctx<'_>,
    fd: i32,
    ptr: u32,
    len: u32,
    op: impl FnOnce(&mut files::FdTable, &str) -> i32,
) -> Errno {
    enter(c, u64::from(len))?;
    if stdio(c, fd)?.is_some() {
        return Ok(NOTDIR);
    }
    let path = match path_arg(c, ptr, len) {
        Ok(path) => path,
        Err(e) => return Ok(e),
    };
    Ok(op(&mut wasi_mut(c.data_mut())?.files, &path))
}

#[allow(clippy::too_many_arguments)]
fn path_open(
    c: &mut Ctx<'_>,
    fd: i32,
    ptr: u32,
    len: u32,
    oflags: i32,
    rights: i64,
    fdflags: i32,
    out: u32,
) -> Errno {
    let mut opened = Ok(0);
    let status = path_op(c, fd, ptr, len, |files, path| {
        opened = files.open(fd, path, oflags, rights as u64, fdflags);
        SUCCESS
    })?;
    if status != SUCCESS {
        return Ok(status);
    }
    match opened {
        Ok(new_fd) => store(c, out, &new_fd.to_le_bytes()),
        Err(e) => Ok(e),
    }
}

fn path_filestat_get(c: &mut Ctx<'_>, fd: i32, ptr: u32, len: u32, out: u32) -> Errno {
    let mut stat = Ok([0u8; 64]);
    let status = path_op(c, fd, ptr, len, |files, path| {
        stat = files.path_filestat(fd, path);
        SUCCESS
    })?;
    if status != SUCCESS {
        return Ok(status);
    }
    pay_bytes(c, 64)?;
    match stat {
        Ok(stat) => store(c, out, &stat),
        Err(e) => Ok(e),
    }
}

fn path_rename(c: &mut Ctx<'_>, fd: i32, old: (u32, u32), new_fd: i32, new: (u32, u32)) -> Errno {
    enter(c, u64::from(old.1) + u64::from(new.1))?;
    if stdio(c, fd)?.is_some() || stdio(c, new_fd)?.is_some() {
        return Ok(NOTDIR);
    }
    let (from, to) = match (path_arg(c, old.0, old.1), path_arg(c, new.0, new.1)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return Ok(e),
    };
    Ok(wasi(c.data())?.files.rename(fd, &from, new_fd, &to))
}

fn random_get(c: &mut Ctx<'_>, buf: u32, len: u32) -> Errno {
    enter(c, u64::from(len))?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    let Some(r) = range(memory, buf, u64::from(len)) else {
        return Ok(FAULT);
    };
    state.rng.fill_bytes(&mut memory[r]);
    Ok(SUCCESS)
}

/// `poll_oneoff`: subscriptions on standard streams are ready at once; when there are none,
/// the earliest clock fires and the monotonic clock moves on to it.
fn poll_oneoff(c: &mut Ctx<'_>, subs: u32, events: u32, count: u32, out: u32) -> Errno {
    enter(c, u64::from(count) * (SUBSCRIPTION_SIZE + EVENT_SIZE))?;
    if count == 0 {
        return Ok(INVAL);
    }
    let now = monotonic_ns(c)?;
    let Some((memory, state)) = parts(c) else {
        return Ok(FAULT);
    };
    if range(memory, subs, u64::from(count) * SUBSCRIPTION_SIZE).is_none()
        || range(memory, events, u64::from(count) * EVENT_SIZE).is_none()
    {
        return Ok(FAULT);
    }
    let wasi = wasi_mut(state)?;
    let read_u64 = |memory: &[u8], at: u32| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&memory[at as usize..at as usize + 8]);
        u64::from_le_bytes(b)
    };
    struct Sub {
        userdata: u64,
        tag: u8,
        fd: u32,
        wait_ns: u64,
    }
    let list: Vec<Sub> = (0..count)
        .map(|i| {
            let at = subs + i * SUBSCRIPTION_SIZE as u32;
            let tag = memory[at as usize + 8];
            let timeout = read_u64(memory, at + 24);
            let absolute = memory[at as usize + 40] & 1 != 0;
            Sub {
                userdata: read_u64(memory, at),
                tag,
                fd: read_u32(memory, at + 16).unwrap_or(u32::MAX),
                wait_ns: if absolute {
                    timeout.saturating_sub(now)
                } else {
                    timeout
                },
            }
        })
        .collect();
    let any_fd = list.iter().any(|s| s.tag != 0);
    let earliest = list.iter().filter(|s| s.tag == 0).map(|s| s.wait_ns).min();
    let mut written = 0u32;
    for sub in &list {
        let (error, nbytes): (u16, u64) = match sub.tag {
            0 if any_fd || Some(sub.wait_ns) != earliest => continue,
            0 => (0, 0),
            1 | 2 => {
                let open = sub.fd <= 2 && wasi.closed & (1 << sub.fd) == 0;
                match (sub.tag, sub.fd) {
                    (1, 0) if open => (
                        0,
                        (wasi.config.stdin.len() as u64).saturating_sub(wasi.stdin_pos),
                    ),
                    (2, 1 | 2) if open => (0, 0),
                    _ => (BADF as u16, 0),
                }
            }
            _ => (INVAL as u16, 0),
        };
        let mut event = [0u8; EVENT_SIZE as usize];
        event[..8].copy_from_slice(&sub.userdata.to_le_bytes());
        event[8..10].copy_from_slice(&error.to_le_bytes());
        event[10] = sub.tag.min(2);
        event[16..24].copy_from_slice(&nbytes.to_le_bytes());
        let at = events + written * EVENT_SIZE as u32;
        memory[at as usize..at as usize + EVENT_SIZE as usize].copy_from_slice(&event);
        written += 1;
    }
    if !any_fd {
        if let Some(wait) = earliest {
            wasi.slept_ns = wasi.slept_ns.saturating_add(wait);
        }
    }
    store(c, out, &written.to_le_bytes())
}

/// Links every function of [`SIGNATURES`](super::SIGNATURES).
pub(super) fn define(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    let m = MODULE;
    linker.func_wrap(m, "args_sizes_get", |mut c: Ctx<'_>, n: i32, s: i32| {
        sizes(&mut c, args, n as u32, s as u32)
    })?;
    linker.func_wrap(m, "args_get", |mut c: Ctx<'_>, p: i32, b: i32| {
        strings(&mut c, args, p as u32, b as u32)
    })?;
    linker.func_wrap(m, "environ_sizes_get", |mut c: Ctx<'_>, n: i32, s: i32| {
        sizes(&mut c, environ, n as u32, s as u32)
    })?;
    linker.func_wrap(m, "environ_get", |mut c: Ctx<'_>, p: i32, b: i32| {
        strings(&mut c, environ, p as u32, b as u32)
    })?;
    linker.func_wrap(m, "clock_res_get", |mut c: Ctx<'_>, id: i32, out: i32| {
        enter(&mut c, 8)?;
        match id {
            0..=3 => store(&mut c, out as u32, &1u64.to_le_bytes()),
            _ => Ok(INVAL),
        }
    })?;
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| clock_time_get(&mut c, id, out as u32),
    )?;
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32| {
            fd_write(&mut c, fd, iovs as u32, n as u32, out as u32)
        },
    )?;
    linker.func_wrap(
        m,
        "fd_read",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32| {
            fd_read(&mut c, fd, iovs as u32, n as u32, out as u32)
        },
    )?;
    linker.func_wrap(m, "fd_close", |mut c: Ctx<'_>, fd: i32| {
        fd_close(&mut c, fd)
    })?;
    linker.func_wrap(m, "fd_fdstat_get", |mut c: Ctx<'_>, fd: i32, out: i32| {
        fd_fdstat_get(&mut c, fd, out as u32)
    })?;
    linker.func_wrap(m, "fd_filestat_get", |mut c: Ctx<'_>, fd: i32, out: i32| {
        fd_filestat_get(&mut c, fd, out as u32)
    })?;
    linker.func_wrap(m, "fd_prestat_get", |mut c: Ctx<'_>, fd: i32, out: i32| {
        fd_prestat_get(&mut c, fd, out as u32)
    })?;
    linker.func_wrap(
        m,
        "fd_prestat_dir_name",
        |mut c: Ctx<'_>, fd: i32, p: i32, n: i32| {
            fd_prestat_dir_name(&mut c, fd, p as u32, n as u32)
        },
    )?;
    linker.func_wrap(
        m,
        "fd_seek",
        |mut c: Ctx<'_>, fd: i32, off: i64, whence: i32, out: i32| {
            fd_seek(&mut c, fd, off, whence, out as u32)
        },
    )?;
    linker.func_wrap(m, "fd_tell", |mut c: Ctx<'_>, fd: i32, out: i32| {
        fd_seek(&mut c, fd, 0, 1, out as u32)
    })?;
    for (name, file_op) in [("fd_pread", file_read as FileOp), ("fd_pwrite", file_write)] {
        linker.func_wrap(
            m,
            name,
            move |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
                positional(&mut c, fd, iovs as u32, n as u32, off, out as u32, file_op)
            },
        )?;
    }
    linker.func_wrap(
        m,
        "fd_readdir",
        |mut c: Ctx<'_>, fd: i32, buf: i32, n: i32, cookie: i64, out: i32| {
            fd_readdir(&mut c, fd, buf as u32, n as u32, cookie, out as u32)
        },
    )?;
    linker.func_wrap(m, "fd_datasync", |mut c: Ctx<'_>, fd: i32| {
        fd_sync(&mut c, fd)
    })?;
    linker.func_wrap(m, "fd_sync", |mut c: Ctx<'_>, fd: i32| fd_sync(&mut c, fd))?;
    linker.func_wrap(
        m,
        "fd_filestat_set_size",
        |mut c: Ctx<'_>, fd: i32, size: i64| fd_filestat_set_size(&mut c, fd, size),
    )?;
    type PathOp = fn(&files::FdTable, i32, &str) -> i32;
    let one_path: [(&str, PathOp); 3] = [
        ("path_create_directory", files::FdTable::create_dir),
        ("path_remove_directory", files::FdTable::remove_dir),
        ("path_unlink_file", files::FdTable::unlink),
    ];
    for (name, op) in one_path {
        linker.func_wrap(m, name, move |mut c: Ctx<'_>, fd: i32, p: i32, n: i32| {
            path_op(&mut c, fd, p as u32, n as u32, |files, path| {
                op(files, fd, path)
            })
        })?;
    }
    linker.func_wrap(
        m,
        "path_filestat_get",
        |mut c: Ctx<'_>, fd: i32, _flags: i32, p: i32, n: i32, out: i32| {
            path_filestat_get(&mut c, fd, p as u32, n as u32, out as u32)
        },
    )?;
    linker.func_wrap(
        m,
        "path_open",
        |mut c: Ctx<'_>,
         fd: i32,
         _dirflags: i32,
         p: i32,
         n: i32,
         oflags: i32,
         rights: i64,
         _inheriting: i64,
         fdflags: i32,
         out: i32| {
            path_open(
                &mut c, fd, p as u32, n as u32, oflags, rights, fdflags, out as u32,
            )
        },
    )?;
    linker.func_wrap(
        m,
        "path_rename",
        |mut c: Ctx<'_>, fd: i32, p: i32, n: i32, fd2: i32, p2: i32, n2: i32| {
            path_rename(
                &mut c,
                fd,
                (p as u32, n as u32),
                fd2,
                (p2 as u32, n2 as u32),
            )
        },
    )?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |mut c: Ctx<'_>, subs: i32, events: i32, n: i32, out: i32| {
            poll_oneoff(&mut c, subs as u32, events as u32, n as u32, out as u32)
        },
    )?;
    linker.func_wrap(
        m,
        "proc_exit",
        |mut c: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            enter(&mut c, 0)?;
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(m, "proc_raise", |mut c: Ctx<'_>, _sig: i32| {
        enter(&mut c, 0)?;
        Ok(NOSYS)
    })?;
    linker.func_wrap(m, "sched_yield", |mut c: Ctx<'_>| {
        enter(&mut c, 0)?;
        Ok(SUCCESS)
    })?;
    linker.func_wrap(m, "random_get", |mut c: Ctx<'_>, buf: i32, len: i32| {
        random_get(&mut c, buf as u32, len as u32)
    })?;
    // Calls whose only answer depends on what the descriptor is: a standard stream, an open
    // file or directory, or nothing (EBADF). Their types come from SIGNATURES.
    for &(name, fd_param, on_stdio, on_other) in UNSUPPORTED {
        let ty = super::func_type(linker.engine(), name);
        linker.func_new(m, name, ty, move |mut c, params, results| {
            let fd = params.get(fd_param).and_then(|p| p.i32()).unwrap_or(-1);
            results[0] = Val::I32(on_fd(&mut c, fd, on_stdio, on_other)?);
            Ok(())
        })?;
    }
    Ok(())
}
