//! Change capture: every write to a table, taken from its DynamoDB stream and stored beside its
//! backups, so that a restore can bring the table (or a few of its items) back as they were at
//! any moment the capture covers.
//!
//! Where changes are kept, and the records saying how far they reach, are data in
//! [`crate::model::changes`]. Data flows one way, as in the backup path:
//!
//! - [`record`]: a stream record as Lambda delivers it, and the stored change line (the shape of
//!   DynamoDB's native incremental export, plus the shard and sequence number);
//! - [`stream`]: the stream port (shards, and what a shard holds after a sequence number), with
//!   the DynamoDB Streams adapter and an in-memory twin that splits shards;
//! - [`capture`]: one delivered batch into one object, written once whatever the retries;
//! - [`coverage`]: whether every change up to a moment is stored, and if not, why;
//! - [`replay`]: the stored changes of a window, reduced to each key's last change;
//! - [`compact`]: a day's changes folded into one file set with its own manifest.

pub mod capture;
pub mod compact;
pub mod coverage;
pub mod record;
pub mod replay;
pub mod stream;

pub use crate::model::changes::{ChangeLayout, FailedBatch, ShardCoverage};
pub use capture::{Capture, CaptureError, CaptureOutcome};
pub use coverage::{Coverage, CoverageGap};
pub use record::{ChangeLine, EventName, StreamBatch, StreamRecord};
pub use replay::{ChangeSet, KeyId};
pub use stream::{ChangeStream, DynamoDbStreams, MemoryStream, ShardInfo, StreamError};
