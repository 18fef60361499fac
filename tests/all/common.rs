//! Helpers every area of the integration tests shares.

use ri_sandbox::Runtime;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One runtime (one engine and epoch ticker) for the whole test binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

/// The path of `fixtures/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The bytes of `fixtures/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fresh directory under the system temp dir, unique to this process and `name`, removed on
/// drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates (or empties) `ri-sandbox-<pid>-<name>`.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ri-sandbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
