//! cargo fuzz target; its body is `tests/all/fuzz.rs::snapshot_from_bytes`,
//! which `cargo test` also runs
//! seeded. Run with `cargo +nightly fuzz run snapshot_from_bytes` from `instrument/fuzz`.
#![no_main]

#[allow(dead_code)]
#[path = "../../../tests/all/engines.rs"]
mod engines;
#[allow(dead_code)]
#[path = "../../../tests/all/fuzz.rs"]
mod fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz::snapshot_from_bytes(data);
});
