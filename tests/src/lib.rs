//! Test support shared by the integration tests, the fault tests and the chaos run: real NATS
//! JetStream in a container (testcontainers), the real coordinator and worker binaries as
//! child processes, and the invariant every fault test checks.
//!
//! # Layout
//! - [`harness`]: NATS containers, processes, clusters, waiting on conditions, the invariant.

pub mod harness;
