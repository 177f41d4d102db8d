//! # hetflow-scheduler
//!
//! Placement and pipeline planning, with no device code so it can plan for
//! hardware that is not present:
//! - [`cluster`]: the [`ClusterSpec`] (TOML) of hosts, devices and links;
//! - [`cost`]: the roofline cost model and the memory model;
//! - [`dag`]: task graphs (from an ONNX graph or research JSON) and a
//!   random-DAG generator;
//! - [`heft`]: list schedulers (HEFT with insertion, CPOP, PEFT, baselines);
//! - [`partition`]: heterogeneity-aware pipeline partitioning;
//! - [`plan`]: the [`Plan`] the runtime (and the simulator) execute;
//! - [`sim`]: the discrete-event simulator of plans and list schedules,
//!   and ([`sim::gpt`]) of transformer training on GPU clusters.

pub mod calibrate;
pub mod cluster;
pub mod cost;
pub mod dag;
pub mod error;
pub mod heft;
pub mod partition;
pub mod plan;
pub mod planner;
pub mod sim;
pub mod trace;

pub use cluster::ClusterSpec;
pub use plan::{Plan, PlanError, Schedule, Stage, Transfer};
