//! How jobs arrive and how they are answered: the HTTP [`api`] and the schedule put jobs on the
//! [`queue`]; the SQS [`worker`] runs them, records their [`status`], emits [`metrics`] and sends
//! the summary email through [`notify`].

pub mod api;
pub mod catalog;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod status;
pub mod stream;
pub mod worker;
