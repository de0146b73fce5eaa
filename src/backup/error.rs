//! Why a backup failed, and whether trying again can help: decided by the cause (see
//! [`crate::error`]), never by the step where it happened.

use super::checkpoint::CheckpointError;
use crate::codec::encode::EncodeError;
use crate::error::Retryable;
use crate::source::ScanError;
use crate::store::StoreError;

/// The step of the pipeline where a job failed, for logs and the failure email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the table.
    Scan,
    /// Encoding or compressing items.
    Encode,
    /// Writing files to the destination.
    Upload,
    /// Writing the manifest.
    Manifest,
    /// Sharing the job out over workers, or getting it delivered at all.
    Dispatch,
}

impl Stage {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Manifest => "manifest",
            Stage::Dispatch => "dispatch",
        }
    }
}

/// Why a backup failed. No manifest was written and no multipart upload was left open.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the table failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// An item could not be encoded, or the stream below the encoder failed.
    #[error("segment {segment}: {source}")]
    Encode {
        /// The segment.
        segment: u32,
        /// What failed.
        source: EncodeError,
    },
    /// Writing to the destination failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read budget cannot apply to this table.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// A checkpoint could not be written or read back.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The job already completed: its manifest exists and is never overwritten.
    #[error("backup {job_id} is already complete: {manifest}")]
    AlreadyComplete {
        /// The job.
        job_id: String,
        /// Where its manifest is.
        manifest: String,
    },
    /// The manifest or a checkpoint could not be serialized (a bug).
    #[error("serializing a JSON document failed: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A task panicked or stopped (a bug, reported instead of hanging).
    #[error("internal error: {0}")]
    Internal(#[from] Internal),
    /// This segment stopped because another one failed (never the job's reported cause).
    #[error("stopped because another segment failed")]
    Cancelled,
    /// The job was failed for good elsewhere (another worker of a fanned-out job, its dead
    /// letter, the stuck-job sweep): this leg stopped and aborted its uploads, and the job
    /// reports that failure, not this.
    #[error("stopped: the job was failed elsewhere ({failure})")]
    Halted {
        /// Where the failure record is.
        failure: String,
    },
    /// A fanned-out job's plan or a worker's result cannot be used.
    #[error("{uri}: {message}")]
    FanOut {
        /// The document.
        uri: String,
        /// What is wrong with it.
        message: String,
    },
    /// The shards of a fanned-out job could not be queued (after the SDK's retries).
    #[error("queueing the shards failed: {0}")]
    Dispatch(String),
}

/// The job asks for a read budget this table cannot have.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A percentage of an on-demand table's capacity, which is no limit.
    #[error("read budget: table `{table}` is on-demand (no provisioned read capacity), so {percent}% of it is no limit; give read_budget in RCU/s instead")]
    PercentOfOnDemand {
        /// The table.
        table: String,
        /// The percentage asked for.
        percent: f64,
    },
}

/// Something inside the pipeline broke that should not (a bug or a dying process); the job is
/// worth another attempt.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// A spawned task panicked or was cancelled.
    #[error("{task} task failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
    /// A task ended without a result.
    #[error("{0} task vanished")]
    Vanished(&'static str),
    /// A segment's encoder thread could not start.
    #[error("cannot start an encoder thread: {0}")]
    EncoderThread(#[source] std::io::Error),
    /// A segment's encoder thread stopped before answering.
    #[error("encoder thread stopped")]
    EncoderStopped,
    /// The segment's pages stopped being consumed before its scan ended.
    #[error("a segment's pages stopped being consumed before its scan ended")]
    ConsumerGone,
    /// A page arrived with no file open for it.
    #[error("no open file")]
    NoOpenFile,
    /// A file was used while its encoder still held it.
    #[error("file is still encoding")]
    FileBusy,
    /// A backup without a deadline was suspended.
    #[error("a backup without a deadline was suspended")]
    SuspendedWithoutDeadline,
    /// A share of a fanned-out job was run without the job's segment count, or a whole job
    /// ended as a share.
    #[error("a worker's share was run without its job's segment count, or a whole job as a share")]
    ShardWithoutShare,
    /// A segment's result came back for a segment outside the worker's share.
    #[error("segment {0} is outside this worker's share")]
    SegmentOutsideShare(u32),
}

impl Retryable for BackupError {
    fn is_retryable(&self) -> bool {
        match self {
            BackupError::Scan(e) => e.is_retryable(),
            BackupError::Encode { source, .. } => source.is_retryable(),
            BackupError::Store(e) => e.is_retryable(),
            BackupError::Budget(_)
            | BackupError::Checkpoint(_)
            | BackupError::AlreadyComplete { .. }
            | BackupError::Halted { .. }
            | BackupError::FanOut { .. }
            | BackupError::Serialize(_) => false,
            BackupError::Internal(_) | BackupError::Cancelled | BackupError::Dispatch(_) => true,
        }
    }
}

impl BackupError {
    /// The pipeline step that failed.
    pub fn stage(&self) -> Stage {
        match self {
            BackupError::Scan(_) | BackupError::Budget(_) => Stage::Scan,
            BackupError::Encode { .. } | BackupError::Internal(_) | BackupError::Cancelled => {
                Stage::Encode
            }
            BackupError::Store(_) => Stage::Upload,
            BackupError::AlreadyComplete { .. }
            | BackupError::Serialize(_)
            | BackupError::Halted { .. }
            | BackupError::FanOut { .. }
            | BackupError::Checkpoint(_) => Stage::Manifest,
            BackupError::Dispatch(_) => Stage::Dispatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::FailureKind;
    use crate::backup::part_buffer::PartBuffer;

    #[test]
    fn memory_running_out_for_a_part_buffer_is_worth_another_attempt() {
        let Err(no_memory) = PartBuffer::with_capacity(usize::MAX / 2) else {
            panic!("mapping half the address space succeeded");
        };
        assert_eq!(no_memory.kind(), std::io::ErrorKind::OutOfMemory);
        let err = BackupError::Encode {
            segment: 0,
            source: EncodeError::Io(no_memory),
        };
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn retry_follows_the_cause_not_the_stage() {
        let scan = |kind| BackupError::Scan(ScanError::request("Scan", "t", kind, "failed"));
        let store =
            |kind| BackupError::Store(StoreError::request("PutObject", "s3://b/k", kind, "failed"));
        for kind in [
            FailureKind::Throttled,
            FailureKind::ServerError,
            FailureKind::TimedOut,
            FailureKind::Unreachable,
        ] {
            assert!(scan(kind).is_retryable(), "{kind:?}");
            assert!(store(kind).is_retryable(), "{kind:?}");
        }
        for kind in [
            FailureKind::Rejected,
            FailureKind::AccessDenied,
            FailureKind::NoCredentials,
            FailureKind::NoRegion,
        ] {
            assert!(!scan(kind).is_retryable(), "{kind:?}");
            assert!(!store(kind).is_retryable(), "{kind:?}");
        }
        let missing = BackupError::Scan(ScanError::TableNotFound {
            table: "t".into(),
            region: "us-east-1".into(),
        });
        assert!(!missing.is_retryable());
        let bad_item = BackupError::Encode {
            segment: 1,
            source: EncodeError::UnknownType {
                attribute: "a".into(),
            },
        };
        assert!(!bad_item.is_retryable());
        let disk = BackupError::Store(StoreError::Io {
            operation: "write",
            path: "/backups/x".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        });
        assert!(!disk.is_retryable());
    }
}
