//! [`PlanError`], the scheduler's one error type. A leaf module: the
//! cluster spec, the cost model and the planners all return it, so it
//! lives below all of them (it was in `plan.rs`, which made cluster ->
//! plan -> cost -> cluster an import circle); `plan::PlanError` still
//! names it.

/// Errors from planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The plan does not fit the graph or is internally inconsistent.
    #[error("invalid plan: {0}")]
    Invalid(String),
    /// Planning inputs are unusable.
    #[error("{0}")]
    Input(String),
}
