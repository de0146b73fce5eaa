//! What every binary starts with: [`config`] read once from the environment, [`service`] wiring
//! the AWS adapters from it, and the tuned [`allocator`].

pub mod allocator;
pub mod config;
pub mod service;
