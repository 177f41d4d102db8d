//! The transport under a [`super::Hub`]: a [`Link`] moves byte messages
//! between ranks and reports what arrives through a [`Deliver`] callback.
//! A leaf of `net`: the hub and every link implementation (the MPI link,
//! the in-process group) import it, it imports neither.

use crate::error::Result;
use std::sync::Arc;

/// What a link reports to its hub.
pub enum Incoming {
    /// A message from rank `from`.
    Message {
        /// Sender rank.
        from: usize,
        /// Encoded message.
        bytes: Vec<u8>,
    },
    /// Rank `rank` is gone (died, unreachable, stopped answering).
    Lost {
        /// The rank.
        rank: usize,
        /// Why the link thinks so.
        why: String,
    },
}

/// Where a link delivers what it receives. Called on the link's thread.
pub type Deliver = Arc<dyn Fn(Incoming) + Send + Sync>;

/// Moves byte messages between the ranks of a job. Messages from one rank
/// to another arrive in the order they were sent.
pub trait Link: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// The host name of each rank, in rank order.
    fn hosts(&self) -> Vec<String>;
    /// Queues `bytes` for rank `to`; returns without waiting for the
    /// network.
    fn send(&self, to: usize, bytes: Vec<u8>) -> Result<()>;
    /// Finishes what is in flight and closes the link (MPI: meet the
    /// other ranks and finalise). Later sends fail. Idempotent.
    fn shutdown(&self) {}
    /// The element-wise sum of `data` over every rank, returned to every
    /// rank (an all-reduce). A collective: every rank calls it, with
    /// buffers of one length, and all ranks call their all-reduces in the
    /// same order. Blocks until the sum is in, or fails when a rank is
    /// lost. Links without collectives refuse.
    fn allreduce_sum(&self, data: Vec<f32>) -> Result<Vec<f32>> {
        let _ = data;
        Err(crate::error::RuntimeError::Network(
            "this link has no all-reduce".into(),
        ))
    }
}
