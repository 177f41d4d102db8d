//! The ml family's host-kernel dispatch: one line per op, reached from
//! [`crate::kernels::eval`] through [`crate::op::Op::family`].

use super::kernel;
use crate::error::Result;
use crate::kernels::util::one;
use crate::op::common::other_family;
use crate::op::Op;
use crate::tensor::Tensor;

/// Runs `op`, one of this family's ops, on host tensors (the contract of
/// [`crate::kernels::eval`]; the caller checks the output count).
pub(crate) fn eval(op: &Op, inputs: &[Option<&Tensor>], _n_outputs: usize) -> Result<Vec<Tensor>> {
    match op {
        Op::Binarizer { threshold } => one(kernel::binarizer(*threshold, inputs)),
        Op::ArrayFeatureExtractor => one(kernel::array_feature_extractor(inputs)),
        Op::TreeEnsemble(t) => one(kernel::tree_ensemble(t, inputs)),
        _ => Err(other_family(op, "ml")),
    }
}
