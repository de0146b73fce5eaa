//! The integration suites, linked as one test binary. Most talk to the AWS emulator over real
//! HTTP through the real SDK clients (start it with `scripts/test.sh`, or
//! `eval "$(scripts/emulator.sh start)"` before `cargo test`); `malformed_inputs` runs in-process
//! with the memory adapters; `lambda_runtime` runs the built binaries under cargo-lambda's
//! runtime emulator; `independent_readers` reads our files with DuckDB and pyarrow.

// Helpers shared by the tests panic on failure as the tests themselves do: that is how a test fails.
#![allow(clippy::unwrap_used)]

mod common;

mod at_limit;
mod backup;
mod browser_download;
mod cli;
mod console;
mod fan_out;
mod fault_injection;
mod independent_readers;
mod job_endings;
mod lambda_runtime;
mod malformed_inputs;
mod object_lock;
mod point_in_time;
mod restore;
mod shrink;
mod triggers;
