//! Test fixtures shared by the worker's broker tests and the system tests (`workforce-tests`):
//! one NATS fixture, one way to wait. Depends on no Workforce crate, so any crate's tests can
//! use it without pulling in the coordinator or the worker.
//!
//! # Layout
//! - [`nats`]: a NATS server with JetStream in its own container (the `workforce-nats:local`
//!   image `just nats-image` builds), which a test can pause, stop and restart.
//! - [`wait`]: [`eventually`], polling a condition against a deadline instead of sleeping.

pub mod nats;
pub mod wait;

pub use nats::{NATS_IMAGE, NATS_TAG, Nats};
pub use wait::eventually;
