//! # hetflow-scheduler
//!
//! Placement and pipeline planning, with no device code so it can plan for
//! hardware that is not present. This release has the [`Plan`] type that
//! the runtime executes, single-device and manual placement, and a
//! cost-balanced contiguous pipeline split ([`plan::pipeline_split`]).
//! Cluster specs, the fitted cost model, HEFT and the simulator build on it.

pub mod plan;

pub use plan::{Plan, PlanError, Schedule, Stage, Transfer};
