//! cargo fuzz target; its body is `tests/all/fuzz.rs::metered_matches_unmetered`,
//! which `cargo test` also runs
//! seeded. Run with `cargo +nightly fuzz run metered_matches_unmetered` from `instrument/fuzz`.
#![no_main]

#[allow(dead_code)]
#[path = "../../../tests/all/engines.rs"]
mod engines;
#[allow(dead_code)]
#[path = "../../../tests/all/fuzz.rs"]
mod fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz::metered_matches_unmetered(data);
});
