//! The integration tests: one binary, one file per area.

mod cache;
mod cli;
mod common;
mod engines;
mod entry;
mod fixtures;
mod fuzz;
mod gas;
mod lifecycle;
mod plain_wasi;
mod pressure;
mod runtime;
mod sexpr;
mod smith;
mod snapshot;
mod spec;
mod wasi;
