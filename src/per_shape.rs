//! Sessions specialised per input-shape signature (issue 20), for models
//! whose inputs change shape from run to run (a dynamic batch).
//!
//! [`PerShape::run`] looks at the shapes of the inputs it is given: the
//! first run with a new signature builds a session specialised to it
//! ([`SessionBuilder::input_shapes`]: shape-only subgraphs fold to
//! constants, as XLA compiles per shape), later runs with that signature
//! reuse it. A device without index kernels (tpu:0 has no Gather) thus
//! runs a model whose flatten is `Shape → Gather → Concat → Reshape` at
//! any batch, with no shapes given up front. At most
//! [`PerShape::capacity`] sessions are kept; the least recently used goes
//! first (its devices' buffers with it).

use crate::{Error, Model, Session, SessionBuilder};
use hetflow_ops::Tensor;
use std::sync::Arc;

/// How each session is configured (devices, threads, ...), given a builder
/// of the model.
pub type Configure = Box<dyn for<'a> Fn(SessionBuilder<'a>) -> SessionBuilder<'a> + Send + Sync>;

/// Sessions of one model, one per input-shape signature (module docs).
pub struct PerShape {
    model: Model,
    configure: Configure,
    /// Most recently used last.
    sessions: Vec<(Vec<Vec<usize>>, Session)>,
    capacity: usize,
    builds: usize,
}

impl PerShape {
    /// Sessions of `model`, each built by `configure` (for example
    /// `|b| b.devices("tpu:0")`) and specialised to its inputs' shapes.
    pub fn new(
        model: &Model,
        configure: impl for<'a> Fn(SessionBuilder<'a>) -> SessionBuilder<'a> + Send + Sync + 'static,
    ) -> PerShape {
        PerShape {
            model: model.clone(),
            configure: Box::new(configure),
            sessions: Vec::new(),
            capacity: 8,
            builds: 0,
        }
    }

    /// Keeps at most `n` (≥ 1) sessions.
    pub fn with_capacity(mut self, n: usize) -> PerShape {
        self.capacity = n.max(1);
        self
    }

    /// How many sessions are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The signatures with a session now, least recently used first.
    pub fn signatures(&self) -> Vec<Vec<Vec<usize>>> {
        self.sessions.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Sessions built so far (a signature seen again builds none).
    pub fn builds(&self) -> usize {
        self.builds
    }

    /// Runs the model on `inputs` (one per graph input, in order) with the
    /// session of their shapes, building it on first sight.
    pub fn run(&mut self, inputs: Vec<Arc<Tensor>>) -> Result<Vec<Arc<Tensor>>, Error> {
        let sig: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let at = match self.sessions.iter().position(|(s, _)| *s == sig) {
            Some(i) => {
                let hit = self.sessions.remove(i);
                self.sessions.push(hit);
                self.sessions.len() - 1
            }
            None => {
                let b = (self.configure)(SessionBuilder::new(&self.model));
                let session = b.input_shapes(sig.clone()).build()?;
                self.builds += 1;
                if self.sessions.len() >= self.capacity {
                    self.sessions.remove(0);
                }
                self.sessions.push((sig, session));
                self.sessions.len() - 1
            }
        };
        Ok(self.sessions[at].1.run(inputs)?)
    }
}
