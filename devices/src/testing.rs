//! Test-only: the caller's half of the [`Device::execute`] contract, so a
//! backend's unit tests can call `execute` directly. The runtime resolves
//! output shapes in `hetflow_runtime::resolve`; this is the same rule in
//! its simplest form (every small integer operand read as a value). Device
//! code itself never runs shape inference.

use crate::{Device, DeviceTensor, OutputSpec, Result};
use hetflow_ops::graph::Fact;
use hetflow_ops::infer::infer_op;
use hetflow_ops::Op;

/// What the runtime would hand `execute` for `op` on `ins`.
pub(crate) fn resolve(
    d: &dyn Device,
    op: &Op,
    ins: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Vec<OutputSpec> {
    let facts: Vec<Option<Fact>> = ins
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let t = (*t)?;
            let small = t.shape.iter().product::<usize>() <= 64;
            Some(match d.host_value(t) {
                Ok(v) if i > 0 && small && t.dtype.is_int() => Fact::constant(v),
                _ => Fact::known(t.dtype, &t.shape),
            })
        })
        .collect();
    let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
    match infer_op(op, &refs, n_outputs) {
        Ok(out) => out
            .iter()
            .map(|f| OutputSpec {
                dtype: f.dtype,
                shape: f.concrete_shape(),
            })
            .collect(),
        Err(_) => OutputSpec::unknown(n_outputs),
    }
}

/// `execute` with one output, resolved as the runtime would.
pub(crate) fn exec(
    d: &dyn Device,
    op: &Op,
    ins: &[Option<&DeviceTensor>],
) -> Result<Vec<DeviceTensor>> {
    d.execute(op, ins, &resolve(d, op, ins, 1))
}
