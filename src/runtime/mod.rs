//! What every binary starts with: [`config`] read once from the environment, [`service`] wiring
//! the AWS adapters from it, the tuned [`allocator`], and [`serve`], the whole system on one
//! machine.

pub mod allocator;
pub mod config;
pub mod serve;
pub mod service;
