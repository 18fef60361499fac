//! ri-sandbox runs untrusted WebAssembly deterministically, under hard resource limits.
//!
//! This crate is the runtime half. Today it re-exports the ahead-of-time metering pass,
//! [`instrument`], whose output follows the [instrumented-module ABI](instrument::abi); the
//! wasmtime-based sandbox that runs such modules builds on it.

#![warn(missing_docs)]

pub use ri_sandbox_instrument as instrument;
