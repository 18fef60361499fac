//! cargo fuzz target; its body is `tests/all/fuzz.rs::nan_strategies_agree`,
//! which `cargo test` also runs
//! seeded. Run with `cargo +nightly fuzz run nan_strategies_agree` from `instrument/fuzz`.
#![no_main]

#[allow(dead_code)]
#[path = "../../../tests/all/engines.rs"]
mod engines;
#[allow(dead_code)]
#[path = "../../../tests/all/fuzz.rs"]
mod fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz::nan_strategies_agree(data);
});
