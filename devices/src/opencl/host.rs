//! The host path: ops whose inputs the OpenCL kernels do not take (integer
//! shape arithmetic such as `Add` on i64, ranks above 8, empty
//! reductions) are evaluated by the host kernels of `hetflow-ops` on
//! downloaded inputs and the results uploaded, as the CUDA backend does.
//! Small integer tensors are mirrored on the host at upload, so shape
//! arithmetic never waits on the device. Every such evaluation is counted
//! per op type ([`super::OpenclDevice::host_evals`]) and logged at debug
//! level, so tests can check that f32 models run on the device's kernels.
//! `Shape` and `Size` read only metadata; their lines in the op table
//! (with ConstantOfShape's) are `table`.

use super::device::OpenclDevice;
use super::launch::{Decl, Run};
use crate::{Device, DeviceError, DeviceTensor, Result};
use hetflow_ops::{Op, Tensor};
use std::sync::Arc;

/// The ops computed from metadata or tiny host values.
pub(super) fn table(op: &Op) -> Option<Decl> {
    match op {
        Op::Shape { .. } | Op::Size | Op::ConstantOfShape { .. } => {
            Some(Decl::no_kernel(Run::Host))
        }
        _ => None,
    }
}

/// Evaluates `op` on the host (see the module docs); `why` is logged.
pub(super) fn eval(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
    why: &str,
) -> Result<Vec<DeviceTensor>> {
    tracing::debug!("{}: {} on the host: {why}", dev.info.id, op.name());
    dev.count_host(op.name());
    let host: Vec<Option<Arc<Tensor>>> = inputs
        .iter()
        .map(|t| t.map(|t| dev.host_value(t)).transpose())
        .collect::<Result<_>>()?;
    let refs: Vec<Option<&Tensor>> = host.iter().map(|t| t.as_deref()).collect();
    let outs = hetflow_ops::kernels::eval(op, &refs, n_outputs)
        .map_err(|e| DeviceError::Other(e.to_string()))?;
    outs.into_iter().map(|t| dev.upload(Arc::new(t))).collect()
}

/// `Shape` and `Size` from the input's metadata; `ConstantOfShape` from
/// its (host-mirrored) shape operand, filled on the host and uploaded.
pub(super) fn shape_op(
    dev: &OpenclDevice,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>> {
    let x = inputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| DeviceError::Other("input 0 is missing".into()))?;
    let t = match op {
        Op::Shape { start, end } => {
            let r = x.shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
            let dims: Vec<i64> = x.shape[s..e.max(s)].iter().map(|&d| d as i64).collect();
            Tensor::from_vec(vec![dims.len()], dims)
        }
        Op::Size => Tensor::from_vec(vec![], vec![x.shape.iter().product::<usize>() as i64]),
        _ => return eval(dev, op, inputs, n_outputs, "filled on the host"),
    }
    .map_err(|e| DeviceError::Other(e.to_string()))?;
    if n_outputs != 1 {
        return Err(DeviceError::Other(format!("{n_outputs} outputs asked")));
    }
    Ok(vec![dev.upload(Arc::new(t))?])
}
