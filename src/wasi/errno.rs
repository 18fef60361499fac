//! WASI preview1 error numbers (`errno`), and how host I/O errors map onto them.

pub const SUCCESS: i32 = 0;
pub const BADF: i32 = 8;
pub const EXIST: i32 = 20;
pub const FAULT: i32 = 21;
pub const FBIG: i32 = 22;
pub const ILSEQ: i32 = 25;
pub const INVAL: i32 = 28;
pub const IO: i32 = 29;
pub const ISDIR: i32 = 31;
pub const NOENT: i32 = 44;
pub const NOSPC: i32 = 51;
pub const NOSYS: i32 = 52;
pub const NOTDIR: i32 = 54;
pub const NOTEMPTY: i32 = 55;
pub const NOTSOCK: i32 = 57;
pub const NOTSUP: i32 = 58;
pub const ROFS: i32 = 69;
pub const SPIPE: i32 = 70;
pub const XDEV: i32 = 75;
pub const NOTCAPABLE: i32 = 76;

/// The errno for a host I/O error. A path that would leave a granted directory (cap-std
/// refuses it as "permission denied") is `ENOTCAPABLE`, like a real permission error: the
/// guest may not do it either way.
pub fn from_io(error: &std::io::Error) -> i32 {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::NotFound => NOENT,
        K::PermissionDenied => NOTCAPABLE,
        K::AlreadyExists => EXIST,
        K::IsADirectory => ISDIR,
        K::NotADirectory => NOTDIR,
        K::DirectoryNotEmpty => NOTEMPTY,
        K::InvalidInput | K::InvalidFilename => INVAL,
        K::ReadOnlyFilesystem => ROFS,
        K::StorageFull | K::QuotaExceeded => NOSPC,
        K::CrossesDevices => XDEV,
        K::FileTooLarge => FBIG,
        K::Unsupported => NOTSUP,
        _ => IO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_their_errno() {
        use std::io::ErrorKind as K;
        let table = [
            (K::NotFound, NOENT),
            (K::PermissionDenied, NOTCAPABLE),
            (K::AlreadyExists, EXIST),
            (K::IsADirectory, ISDIR),
            (K::NotADirectory, NOTDIR),
            (K::DirectoryNotEmpty, NOTEMPTY),
            (K::InvalidInput, INVAL),
            (K::ReadOnlyFilesystem, ROFS),
            (K::StorageFull, NOSPC),
            (K::CrossesDevices, XDEV),
            (K::FileTooLarge, FBIG),
            (K::Unsupported, NOTSUP),
            (K::Other, IO),
        ];
        for (kind, errno) in table {
            assert_eq!(from_io(&std::io::Error::from(kind)), errno, "{kind:?}");
        }
        // Errors straight from the OS map through their kind: EACCES, then EIO.
        assert_eq!(from_io(&std::io::Error::from_raw_os_error(13)), NOTCAPABLE);
        assert_eq!(from_io(&std::io::Error::from_raw_os_error(5)), IO);
    }
}
