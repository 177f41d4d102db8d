//! hetflow
