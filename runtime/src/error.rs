//! Runtime errors: each names the op (node) and the device, or the input.

/// Result alias for the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What ended a run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// A kernel or copy failed.
    #[error("node '{node}' ({op}) on {device}: {msg}")]
    Op {
        /// Node name.
        node: String,
        /// Op type (or `copy`).
        op: String,
        /// Device name.
        device: String,
        /// Cause.
        msg: String,
    },
    /// The caller's inputs do not fit the graph.
    #[error("{0}")]
    Input(String),
    /// The plan or devices cannot run this graph.
    #[error("{0}")]
    Setup(String),
    /// The actor system stopped before the run finished.
    #[error("runtime stopped: {0}")]
    Stopped(String),
    /// The multi-host link failed, or another rank did.
    #[error("{0}")]
    Network(String),
}
