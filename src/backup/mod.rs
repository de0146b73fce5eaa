//! The backup path: [`pipeline`] runs it (segments in parallel, each scan → encode → [`compress`]
//! → upload, files rolled at a size target, the manifest last); [`file`] is one output file in
//! flight, [`part_buffer`] the memory its upload parts live in, [`checkpoint`] what a backup
//! carries from one Lambda invocation to the next.

pub mod checkpoint;
pub mod compress;
pub mod error;
pub mod fan_out;
pub(crate) mod file;
pub(crate) mod part_buffer;
pub mod pipeline;
mod segment;
