//! Errors of the ops crate. Each variant carries what a user needs to find the
//! problem: the node and op, the value, or the file.

/// Result alias for the ops crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while loading, inferring or evaluating a graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    // The cause is in the message and deliberately not a `source()`:
    // error chains (`{:#}`, anyhow's report) would print it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A model or tensor file is not valid.
    #[error("{path}: {msg}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An op hetflow does not implement, found at load.
    #[error("unsupported op {op} (opset {opset}) at node '{node}'")]
    Unsupported {
        /// ONNX op type (with domain when not the default one).
        op: String,
        /// Opset version the model imports for the op's domain.
        opset: i64,
        /// Node name.
        node: String,
    },
    /// A node is malformed or its inputs do not fit the op.
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// A plain message.
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }
    /// Wraps an error with the node and op it happened at (keeps errors that
    /// already name a node as they are).
    pub fn at_node(self, node: &str, op: &str) -> Error {
        match self {
            e @ (Error::Node { .. } | Error::Unsupported { .. }) => e,
            other => Error::Node {
                node: node.to_string(),
                op: op.to_string(),
                msg: other.to_string(),
            },
        }
    }
}

/// Returns early with an [`Error::Msg`] built by `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error::Msg(format!($($arg)*))) };
}
