//! Directories the host grants a WASI program, and the files it opens in them: the descriptor
//! table behind every descriptor from 3 up, and the file and path operations on it.
//!
//! Paths are resolved by `cap-std` inside the granted directory: `..` past its root, absolute
//! paths and symlinks leading out are refused (`ENOTCAPABLE`). What the program can observe
//! is made as deterministic as the host's files allow: descriptors are numbered lowest-free
//! first, directory listings are sorted by name, and every time stamp, device and inode
//! number reads as 0 (a directory's size too). What remains the host's responsibility is the
//! files themselves: their contents, sizes and existence.

use super::errno::{self, BADF, INVAL, ISDIR, NOTCAPABLE, NOTDIR, SUCCESS};
use super::WasiConfig;
use cap_std::fs::{Dir, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A directory the host grants: `host` on the host's file system appears to the program as the
/// preopened directory `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantedDir {
    /// The directory on the host.
    pub host: PathBuf,
    /// Its name for the program (`/data`, `.`).
    pub guest: String,
    /// Whether the program may create, write, rename and remove in it.
    pub writable: bool,
}

/// The first descriptor after stdin, stdout and stderr.
pub const FIRST_FD: u32 = 3;

const OFLAG_CREAT: i32 = 1;
const OFLAG_DIRECTORY: i32 = 2;
const OFLAG_EXCL: i32 = 4;
const OFLAG_TRUNC: i32 = 8;
const FDFLAG_APPEND: i32 = 1;

pub const RIGHT_FD_READ: u64 = 1 << 1;
pub const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_ALLOCATE: u64 = 1 << 8;
const RIGHT_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
/// Every right preview1 defines (bits 0 to 29).
const ALL_RIGHTS: u64 = (1 << 30) - 1;

const FILETYPE_UNKNOWN: u8 = 0;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;

/// An open descriptor from 3 up.
pub(crate) enum Handle {
    Dir {
        dir: Dir,
        /// Index into the granted directories, for a preopened one.
        preopen: Option<usize>,
        writable: bool,
    },
    File {
        file: std::fs::File,
        read: bool,
        write: bool,
        append: bool,
    },
}

/// Descriptors 3 and up. The granted directories are opened once, when the table is made;
/// their descriptors come first, in the order they were granted.
pub(crate) struct FdTable {
    slots: Vec<Option<Handle>>,
    /// The granted directories as opened (`None` when the host's directory could not be
    /// opened), with their guest names and writability.
    preopens: Vec<(Option<Dir>, String, bool)>,
}

/// Opens a granted directory on the host.
pub(crate) fn open_granted(dir: &GrantedDir) -> std::io::Result<Dir> {
    Dir::open_ambient_dir(&dir.host, cap_std::ambient_authority())
}

impl FdTable {
    pub fn new(config: &WasiConfig) -> FdTable {
        let preopens = config
            .dirs
            .iter()
            .map(|d| (open_granted(d).ok(), d.guest.clone(), d.writable))
            .collect();
        let mut table = FdTable {
            slots: Vec::new(),
            preopens,
        };
        table.reset();
        table
    }

    /// Back to the granted directories alone, every file the program opened closed.
    pub fn reset(&mut self) {
        self.slots = self
            .preopens
            .iter()
            .enumerate()
            .map(|(i, (dir, _, writable))| {
                let dir = dir.as_ref()?.try_clone().ok()?;
                Some(Handle::Dir {
                    dir,
                    preopen: Some(i),
                    writable: *writable,
                })
            })
            .collect();
    }

    /// The first descriptor the program opened itself and has not closed, if any: such state
    /// lives in the host's kernel and cannot be saved in a snapshot.
    pub fn opened_by_program(&self) -> Option<u32> {
        self.slots
            .iter()
            .enumerate()
            .find(|(i, slot)| match slot {
                None => false,
                Some(Handle::Dir { preopen, .. }) => *preopen != Some(*i),
                Some(Handle::File { .. }) => true,
            })
            .map(|(i, _)| FIRST_FD + i as u32)
    }

    fn slot(fd: i32) -> Option<usize> {
        u32::try_from(fd)
            .ok()?
            .checked_sub(FIRST_FD)
            .map(|i| i as usize)
    }

    pub fn get(&self, fd: i32) -> Option<&Handle> {
        self.slots.get(Self::slot(fd)?)?.as_ref()
    }

    pub fn get_mut(&mut self, fd: i32) -> Option<&mut Handle> {
        self.slots.get_mut(Self::slot(fd)?)?.as_mut()
    }

    fn insert(&mut self, handle: Handle) -> u32 {
        let free = self.slots.iter().position(Option::is_none);
        let index = match free {
            Some(i) => {
                self.slots[i] = Some(handle);
                i
            }
            None => {
                self.slots.push(Some(handle));
                self.slots.len() - 1
            }
        };
        FIRST_FD + index as u32
    }

    pub fn close(&mut self, fd: i32) -> i32 {
        match Self::slot(fd).and_then(|i| self.slots.get_mut(i)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                SUCCESS
            }
            _ => BADF,
        }
    }

    /// `fd_prestat_get`'s answer: the guest name's length of a preopened directory.
    pub fn prestat(&self, fd: i32) -> Result<&str, i32> {
        match self.get(fd) {
            Some(Handle::Dir {
                preopen: Some(i), ..
            }) => Ok(&self.preopens[*i].1),
            _ => Err(BADF),
        }
    }

    fn dir(&self, fd: i32) -> Result<(&Dir, bool), i32> {
        match self.get(fd) {
            Some(Handle::Dir { dir, writable, .. }) => Ok((dir, *writable)),
            Some(Handle::File { .. }) => Err(NOTDIR),
            None => Err(BADF),
        }
    }

    fn writable_dir(&self, fd: i32) -> Result<&Dir, i32> {
        match self.dir(fd)? {
            (dir, true) => Ok(dir),
            (_, false) => Err(NOTCAPABLE),
        }
    }

    /// `path_open`: the new descriptor.
    pub fn open(
        &mut self,
        dirfd: i32,
        path: &str,
        oflags: i32,
        rights: u64,
        fdflags: i32,
    ) -> Result<u32, i32> {
        let (dir, writable) = self.dir(dirfd)?;
        let append = fdflags & FDFLAG_APPEND != 0;
        let wants_write =
            rights & (RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE) != 0
                || oflags & (OFLAG_CREAT | OFLAG_TRUNC) != 0
                || append;
        let is_dir =
            oflags & OFLAG_CREAT == 0 && dir.metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        if oflags & OFLAG_DIRECTORY != 0 || is_dir {
            if oflags & (OFLAG_CREAT | OFLAG_TRUNC) != 0 {
                return Err(ISDIR);
            }
            let opened = dir.open_dir(path).map_err(|e| errno::from_io(&e))?;
            return Ok(self.insert(Handle::Dir {
                dir: opened,
                preopen: None,
                writable,
            }));
        }
        if wants_write && !writable {
            return Err(NOTCAPABLE);
        }
        let read = rights & RIGHT_FD_READ != 0 || !wants_write;
        let write = wants_write;
        let mut options = OpenOptions::new();
        options
            .read(read)
            .write(write && !append)
            .append(append)
            .create(oflags & OFLAG_CREAT != 0)
            .create_new(oflags & OFLAG_CREAT != 0 && oflags & OFLAG_EXCL != 0)
            .truncate(oflags & OFLAG_TRUNC != 0);
        let file = dir
            .open_with(path, &options)
            .map_err(|e| errno::from_io(&e))?
            .into_std();
        Ok(self.insert(Handle::File {
            file,
            read,
            write,
            append,
        }))
    }

    /// A file open for reading, and the bytes left in it from `at` (its position when `None`).
    pub fn readable(&mut self, fd: i32, at: Option<u64>) -> Result<(&mut std::fs::File, u64), i32> {
        match self.get_mut(fd) {
            Some(Handle::File {
                file, read: true, ..
            }) => {
                let len = file.metadata().map_err(|e| errno::from_io(&e))?.len();
                let position = match at {
                    Some(at) => at,
                    None => file.stream_position().map_err(|e| errno::from_io(&e))?,
                };
                Ok((file, len.saturating_sub(position)))
            }
            Some(Handle::File { .. }) => Err(BADF),
            Some(Handle::Dir { .. }) => Err(ISDIR),
            None => Err(BADF),
        }
    }

    pub fn writable(&mut self, fd: i32) -> Result<&mut std::fs::File, i32> {
        match self.get_mut(fd) {
            Some(Handle::File {
                file, write: true, ..
            }) => Ok(file),
            Some(Handle::File { .. }) => Err(BADF),
            Some(Handle::Dir { .. }) => Err(ISDIR),
            None => Err(BADF),
        }
    }

    pub fn file(&mut self, fd: i32) -> Result<&mut std::fs::File, i32> {
        match self.get_mut(fd) {
            Some(Handle::File { file, .. }) => Ok(file),
            Some(Handle::Dir { .. }) => Err(ISDIR),
            None => Err(BADF),
        }
    }

    /// `fd_fdstat_get`'s record.
    pub fn fdstat(&self, fd: i32) -> Result<[u8; 24], i32> {
        let (filetype, flags, rights) = match self.get(fd) {
            Some(Handle::Dir { .. }) => (FILETYPE_DIRECTORY, 0u16, ALL_RIGHTS),
            Some(Handle::File {
                read,
                write,
                append,
                ..
            }) => {
                let mut rights = ALL_RIGHTS;
                if !read {
                    rights &= !RIGHT_FD_READ;
                }
                if !write {
                    rights &= !(RIGHT_FD_WRITE | RIGHT_FD_ALLOCATE | RIGHT_FD_FILESTAT_SET_SIZE);
                }
                (FILETYPE_REGULAR_FILE, u16::from(*append), rights)
            }
            None => return Err(BADF),
        };
        let mut stat = [0u8; 24];
        stat[0] = filetype;
        stat[2..4].copy_from_slice(&flags.to_le_bytes());
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        stat[16..24].copy_from_slice(&rights.to_le_bytes());
        Ok(stat)
    }

    /// `fd_filestat_get`'s record.
    pub fn filestat(&self, fd: i32) -> Result<[u8; 64], i32> {
        match self.get(fd) {
            Some(Handle::Dir { .. }) => Ok(filestat(FILETYPE_DIRECTORY, 0)),
            Some(Handle::File { file, .. }) => file
                .metadata()
                .map(|m| filestat(FILETYPE_REGULAR_FILE, m.len()))
                .map_err(|e| errno::from_io(&e)),
            None => Err(BADF),
        }
    }

    /// `path_filestat_get`'s record.
    pub fn path_filestat(&self, dirfd: i32, path: &str) -> Result<[u8; 64], i32> {
        let (dir, _) = self.dir(dirfd)?;
        let metadata = dir.metadata(path).map_err(|e| errno::from_io(&e))?;
        Ok(if metadata.is_dir() {
            filestat(FILETYPE_DIRECTORY, 0)
        } else if metadata.is_file() {
            filestat(FILETYPE_REGULAR_FILE, metadata.len())
        } else {
            filestat(FILETYPE_UNKNOWN, 0)
        })
    }

    pub fn create_dir(&self, dirfd: i32, path: &str) -> i32 {
        result(
            self.writable_dir(dirfd)
                .and_then(|d| io(d.create_dir(path))),
        )
    }

    pub fn remove_dir(&self, dirfd: i32, path: &str) -> i32 {
        result(
            self.writable_dir(dirfd)
                .and_then(|d| io(d.remove_dir(path))),
        )
    }

    pub fn unlink(&self, dirfd: i32, path: &str) -> i32 {
        result(
            self.writable_dir(dirfd)
                .and_then(|d| io(d.remove_file(path))),
        )
    }

    pub fn rename(&self, fd: i32, from: &str, to_fd: i32, to: &str) -> i32 {
        result(self.writable_dir(fd).and_then(|from_dir| {
            let to_dir = self.writable_dir(to_fd)?;
            io(from_dir.rename(from, to_dir, to))
        }))
    }

    /// `fd_readdir`'s bytes from entry `cookie` on: `.` and `..`, then the entries sorted by
    /// name, each a 24-byte dirent and its name; at most `max` bytes. Also the size of the
    /// whole listing, which the call pays for: every call lists the whole directory.
    pub fn readdir(&self, fd: i32, cookie: u64, max: usize) -> Result<(Vec<u8>, u64), i32> {
        let (dir, _) = self.dir(fd)?;
        let mut entries: Vec<(Vec<u8>, u8)> = vec![
            (b".".to_vec(), FILETYPE_DIRECTORY),
            (b"..".to_vec(), FILETYPE_DIRECTORY),
        ];
        let mut listed = Vec::new();
        for entry in dir.entries().map_err(|e| errno::from_io(&e))? {
            let entry = entry.map_err(|e| errno::from_io(&e))?;
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => FILETYPE_DIRECTORY,
                Ok(t) if t.is_file() => FILETYPE_REGULAR_FILE,
                _ => FILETYPE_UNKNOWN,
            };
            listed.push((entry.file_name().into_encoded_bytes(), kind));
        }
        listed.sort();
        entries.extend(listed);
        let whole: u64 = entries.iter().map(|(name, _)| 24 + name.len() as u64).sum();
        let mut out = Vec::new();
        for (i, (name, kind)) in entries
            .iter()
            .enumerate()
            .skip(cookie.min(usize::MAX as u64) as usize)
        {
            if out.len() >= max {
                break;
            }
            let mut dirent = [0u8; 24];
            dirent[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            dirent[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
            dirent[20] = *kind;
            out.extend_from_slice(&dirent);
            out.extend_from_slice(name);
        }
        out.truncate(max);
        Ok((out, whole))
    }
}

fn io(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| errno::from_io(&e))
}

fn result(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(SUCCESS)
}

/// A filestat record with everything host-specific zeroed (device, inode, times; callers pass
/// 0 as a directory's size). Link count 1.
fn filestat(filetype: u8, size: u64) -> [u8; 64] {
    let mut stat = [0u8; 64];
    stat[16] = filetype;
    stat[24..32].copy_from_slice(&1u64.to_le_bytes());
    stat[32..40].copy_from_slice(&size.to_le_bytes());
    stat
}

/// Reads exactly `n` bytes (the caller checked they are there) from `file` into `ranges` of
/// `memory`, at the file's position or at `at`.
pub(crate) fn read_into(
    file: &mut std::fs::File,
    memory: &mut [u8],
    ranges: &[std::ops::Range<usize>],
    n: u64,
    at: Option<u64>,
) -> Result<u64, i32> {
    let mut done = 0u64;
    for r in ranges {
        if done == n {
            break;
        }
        let take = (r.len() as u64).min(n - done) as usize;
        let buf = &mut memory[r.start..r.start + take];
        let got = match at {
            Some(at) => file.read_at(buf, at + done),
            None => file.read(buf),
        }
        .map_err(|e| errno::from_io(&e))?;
        done += got as u64;
        if got < take {
            break;
        }
    }
    Ok(done)
}

/// Writes `ranges` of `memory` to `file`, at its position (or its end, when appending) or at
/// `at`.
pub(crate) fn write_from(
    file: &mut std::fs::File,
    memory: &[u8],
    ranges: &[std::ops::Range<usize>],
    at: Option<u64>,
) -> Result<u64, i32> {
    let mut done = 0u64;
    for r in ranges {
        let bytes = &memory[r.clone()];
        match at {
            Some(at) => file.write_all_at(bytes, at + done),
            None => file.write_all(bytes),
        }
        .map_err(|e| errno::from_io(&e))?;
        done += bytes.len() as u64;
    }
    Ok(done)
}

/// `fd_seek`: the new position.
pub(crate) fn seek(file: &mut std::fs::File, offset: i64, whence: i32) -> Result<u64, i32> {
    let from = match whence {
        0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| INVAL)?),
        1 => SeekFrom::Current(offset),
        2 => SeekFrom::End(offset),
        _ => return Err(INVAL),
    };
    file.seek(from).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => INVAL,
        _ => errno::from_io(&e),
    })
}
