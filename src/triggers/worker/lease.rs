//! One invocation at a time per job (or per worker's share). SQS standard queues may hand one
//! message to two invocations at once, and an operator may inject a job the schedule also sent;
//! without a lease both would scan the whole table. Before it reads, an invocation writes a lease
//! object under the backup's prefix with `If-None-Match: *`; a lease whose holder is past its
//! invocation deadline is taken over with `If-Match` on its tag, so a crashed holder never blocks
//! the job. Whoever loses either race leaves its message on the queue for later. The lease ends
//! at the holder's deadline (Lambda stops the holder then) and is released early, by overwriting
//! it as expired, when the leg ends: deletes are refused by the bucket policy.

use bytes::Bytes;
use chrono::{DateTime, Duration as WallDuration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backup::pipeline::JSON_META;
use crate::model::manifest::Layout;
use crate::store::{ObjectStore, Precondition, StoreError};

/// Time allowed for clocks that disagree before a lease counts as abandoned, in seconds.
pub(super) const CLOCK_SKEW_SECS: u64 = 2;
const CLOCK_SKEW: WallDuration = WallDuration::seconds(CLOCK_SKEW_SECS as i64);

/// The lease document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    /// Random per invocation: who holds it.
    holder: String,
    /// The SQS message the holder is working on.
    message_id: String,
    /// When the holder took it (RFC 3339).
    taken_at: String,
    /// When the holder's invocation ends at the latest (RFC 3339).
    expires_at: DateTime<Utc>,
}

/// A lease this invocation holds.
#[derive(Debug)]
pub(super) struct Lease {
    key: String,
    record: LeaseRecord,
}

/// What trying to take the lease found.
#[derive(Debug)]
pub(super) enum Claim {
    /// Ours until released or until the deadline.
    Taken(Lease),
    /// Another invocation holds it until then.
    Held {
        message_id: String,
        until: DateTime<Utc>,
    },
}

/// Takes the lease at `key` until `deadline`, unless a live one is held by someone else.
pub(super) async fn take(
    store: &dyn ObjectStore,
    layout: &Layout,
    worker: Option<u32>,
    message_id: &str,
    deadline: Instant,
) -> Result<Claim, StoreError> {
    let key = layout.lease_key(worker);
    let now = Utc::now();
    let left = deadline.saturating_duration_since(Instant::now());
    let record = LeaseRecord {
        holder: uuid::Uuid::new_v4().to_string(),
        message_id: message_id.to_string(),
        taken_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        expires_at: now + WallDuration::from_std(left).unwrap_or(WallDuration::MAX),
    };
    let body = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    let taken = Claim::Taken(Lease {
        key: key.clone(),
        record: record.clone(),
    });
    if crate::store::put_if(store, &key, body.clone(), &JSON_META, Precondition::Absent).await? {
        return Ok(taken);
    }
    let Some((current, tag)) = store.get_tagged(&key).await? else {
        // Released and gone between the two requests (only a break-glass delete does that).
        return Ok(Claim::Held {
            message_id: String::new(),
            until: now,
        });
    };
    // A lease that does not parse was not written by us; treat it as abandoned.
    let held = serde_json::from_slice::<LeaseRecord>(&current).ok();
    if let Some(held) = &held {
        if held.expires_at + CLOCK_SKEW > now {
            return Ok(Claim::Held {
                message_id: held.message_id.clone(),
                until: held.expires_at,
            });
        }
    }
    if crate::store::put_if(store, &key, body, &JSON_META, Precondition::Unchanged(&tag)).await? {
        Ok(taken)
    } else {
        // Someone else took the abandoned lease first.
        Ok(Claim::Held {
            message_id: held.map(|h| h.message_id).unwrap_or_default(),
            until: now,
        })
    }
}

/// Whether an invocation holds the lease of the job (or of `worker`'s share) right now.
pub(super) async fn live(
    store: &dyn ObjectStore,
    layout: &Layout,
    worker: Option<u32>,
) -> Result<bool, StoreError> {
    held_now(store, &layout.lease_key(worker)).await
}

/// Whether any invocation holds a lease of the job right now: the job's own, or any share's.
pub(super) async fn any_live(store: &dyn ObjectStore, layout: &Layout) -> Result<bool, StoreError> {
    for key in store.list(&layout.leases_prefix()).await? {
        if held_now(store, &key).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the lease at `key` exists and has not ended.
async fn held_now(store: &dyn ObjectStore, key: &str) -> Result<bool, StoreError> {
    let Some((current, _)) = store.get_tagged(key).await? else {
        return Ok(false);
    };
    Ok(serde_json::from_slice::<LeaseRecord>(&current)
        .is_ok_and(|held| held.expires_at + CLOCK_SKEW > Utc::now()))
}

impl Lease {
    /// Gives the lease back by marking it expired, so the job's next message (a continuation, a
    /// redelivery) starts at once instead of waiting for the deadline. Best effort: a lease not
    /// released still ends at the deadline.
    pub(super) async fn release(self, store: &dyn ObjectStore) -> Result<(), StoreError> {
        let Some((current, tag)) = store.get_tagged(&self.key).await? else {
            return Ok(());
        };
        let ours = serde_json::from_slice::<LeaseRecord>(&current)
            .is_ok_and(|held| held.holder == self.record.holder);
        if !ours {
            return Ok(());
        }
        let released = LeaseRecord {
            expires_at: Utc::now() - CLOCK_SKEW,
            ..self.record
        };
        let body = Bytes::from(serde_json::to_vec(&released).unwrap_or_default());
        crate::store::put_if(
            store,
            &self.key,
            body,
            &JSON_META,
            Precondition::Unchanged(&tag),
        )
        .await
        .map(|_| ())
    }
}
