//! ddb-backup: DynamoDB tables to S3, as a pipeline you can read top to bottom.
//!
//! [`job`] validates what to do; [`scan`] reads the table in parallel segments; [`encode`] turns
//! items into one of the output formats; [`compress`] compresses the stream; [`file`](mod@file) ties those
//! two together per output file; [`store`] uploads the bytes; [`manifest`] records the result,
//! written last. [`pipeline`] runs them in that order. The CLI and the Lambda handlers are thin
//! wrappers over [`pipeline::Backup`].

pub mod allocator;
pub mod api;
pub mod aws;
pub mod budget;
pub mod checkpoint;
pub mod compress;
pub mod config;
pub mod decode;
pub mod encode;
pub mod file;
pub mod format;
pub mod human;
pub mod job;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod part_buffer;
pub mod pipeline;
pub mod queue;
pub mod records;
pub mod restore;
pub mod scan;
pub mod seed;
pub mod service;
pub mod status;
pub mod store;
pub mod table_writer;
pub mod verify;
pub mod wire;
pub mod worker;

#[cfg(test)]
mod test_support;

pub use encode::Item;
pub use format::{Compression, Format};
pub use job::{BackupJob, JobDefaults, JobError, JobRequest};
pub use manifest::Manifest;
pub use pipeline::{Backup, BackupError, Tuning};
