//! The bundled `.wasm` fixtures are built from the `.wat` beside them; this test checks they
//! are up to date and, with `BLESS=1`, rebuilds them.

use std::path::Path;

#[test]
fn wasm_fixtures_match_their_wat_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let bless = std::env::var_os("BLESS").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wat") {
            continue;
        }
        let wasm = wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let target = path.with_extension("wasm");
        if bless {
            std::fs::write(&target, &wasm).unwrap();
        } else {
            let committed = std::fs::read(&target)
                .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 to build)", target.display()));
            assert_eq!(
                committed,
                wasm,
                "{} is stale (BLESS=1 to rebuild)",
                target.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 6,
        "expected the seed's fixtures, found {checked}"
    );
}
