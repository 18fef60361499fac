//! Golden tests: every `fixtures/instrument/*.wat` is instrumented with the default options
//! and printed as text; the result must equal `*.metered.wat` beside it. Run with `BLESS=1`
//! to rewrite the expectations, then review the diff.

use ri_sandbox_instrument::{instrument, Options};
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/instrument");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/instrument exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "wat")
                && !p.to_string_lossy().ends_with(".metered.wat")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn instrumented_output_matches_golden_files() {
    let bless = std::env::var_os("BLESS").is_some();
    let files = fixtures();
    assert!(
        files.len() >= 5,
        "expected golden fixtures, found {files:?}"
    );
    let mut failures = Vec::new();
    for input in files {
        let wasm = wat::parse_file(&input).expect("fixture parses");
        let out = instrument(&wasm, &Options::default()).expect("fixture instruments");
        let text = wasmprinter::print_bytes(&out.module).expect("output prints");
        let expected_path = input.with_extension("metered.wat");
        if bless {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == text => {}
            Ok(_) => failures.push(format!(
                "{}: output differs from {} (BLESS=1 to update)\n{text}",
                input.display(),
                expected_path.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (BLESS=1 to create)",
                input.display(),
                expected_path.display()
            )),
        }
        // Determinism: a second run gives the same bytes.
        let again = instrument(&wasm, &Options::default()).unwrap();
        assert_eq!(again.module, out.module, "{}", input.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
