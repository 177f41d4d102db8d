//! # hetflow-runtime
//!
//! The actor system that executes a [`hetflow_scheduler::Plan`] on real
//! devices: one actix Arbiter (OS thread) per device queue, one actor per
//! placed op, buffer handles as messages, credit-based flow control, and
//! transfer actors on copy queues for every cross-device edge. See
//! [`actors`] for the message protocol and [`session`] for the lifecycle.

pub mod actors;
pub mod clock;
pub mod error;
pub mod hot;
pub mod net;
pub mod remote;
pub mod resolve;
pub mod session;
pub mod trace;

pub use error::{Result, RuntimeError};
pub use session::{check_inputs, Session, SessionOptions};
pub use trace::{chrome_trace_json, op_profile, TraceEvent};
