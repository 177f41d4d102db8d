//! Cost of If, Loop and Scan: their bodies' cost, which
//! [`crate::cost::op_cost`] sums over the body's nodes (`body_cost`) and
//! passes in; this file decides how many times a body runs.

use crate::graph::Fact;
use crate::op::common::OpClass;
use crate::op::Op;

/// The cost-model class (control flow runs its body on the host).
pub(crate) fn class(_op: &Op) -> OpClass {
    OpClass::Elementwise
}

/// Flops of one execution, given the flops of one run of a body. If costs
/// its dearer branch; Scan runs its body once per slice of scan input 0;
/// Loop runs it for the trip count M when M is a known constant, else
/// once (a data-dependent trip count is not known before it runs).
pub(crate) fn flops(
    op: &Op,
    inputs: &[Option<&Fact>],
    _outputs: &[&Fact],
    body_flops: &dyn Fn(&crate::graph::Graph) -> f64,
) -> f64 {
    match op {
        Op::If {
            then_branch,
            else_branch,
        } => body_flops(&then_branch.graph).max(body_flops(&else_branch.graph)),
        Op::Loop { body } => {
            let trips = inputs
                .first()
                .copied()
                .flatten()
                .and_then(|m| m.value.as_ref())
                .and_then(|t| t.to_i64_vec().first().copied())
                .map(|m| m.max(0) as f64)
                .unwrap_or(1.0);
            trips * body_flops(&body.graph)
        }
        Op::Scan { body, attrs } => {
            let n_state = inputs
                .len()
                .saturating_sub(body.captures())
                .saturating_sub(attrs.num_scan_inputs);
            let len = inputs
                .get(n_state)
                .copied()
                .flatten()
                .and_then(|f| {
                    let s = f.concrete_shape()?;
                    let a = crate::shape::norm_axis(
                        attrs.input_axes.first().copied().unwrap_or(0),
                        s.len(),
                    )
                    .ok()?;
                    Some(s[a] as f64)
                })
                .unwrap_or(1.0);
            len * body_flops(&body.graph)
        }
        _ => 0.0,
    }
}
