//! ddb-backup: DynamoDB tables to S3, as a pipeline you can read top to bottom.
//!
//! The folders are the architecture, and data flows down this list:
//!
//! - [`model`]: the validated job, formats, table description and manifest (no I/O);
//! - [`codec`]: items to bytes and back (DynamoDB JSON, JSON lines, CSV, Parquet);
//! - [`source`]: reading the table (the port, DynamoDB, an in-memory twin, the paging loop);
//! - [`store`]: where bytes go (S3, a directory, memory), as multipart uploads;
//! - [`backup`]: the pipeline that joins them, with compression and checkpoints;
//! - [`readback`]: verify and restore, reading what a backup wrote;
//! - [`triggers`]: the API, the queue, the worker, status, metrics and the email;
//! - [`runtime`]: configuration, wiring and the allocator the binaries start with.
//!
//! The CLI and the Lambda handlers are thin wrappers over [`Backup`] and [`triggers::worker`].

pub mod aws;
pub mod backup;
pub mod changes;
pub mod codec;
pub mod error;
pub mod human;
pub mod model;
pub mod readback;
pub mod runtime;
pub mod source;
pub mod store;
pub mod triggers;

#[cfg(test)]
mod test_support;

pub use backup::pipeline::{Backup, BackupError, Tuning};
pub use model::format::{Compression, Format};
pub use model::job::{BackupJob, JobDefaults, JobError, JobRequest};
pub use model::manifest::Manifest;
pub use model::Item;
