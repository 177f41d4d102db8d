//! Output shapes for the device contract, and the pure views the runtime
//! runs itself.
//!
//! ## Why here
//! A device's `execute` is handed each output's dtype and concrete shape
//! ([`OutputSpec`]); devices never run shape inference (issue 19: one home
//! per op means one place that knows an op's shape rules, and that place
//! is `hetflow_ops::infer`, read by the runtime, not by every backend).
//! The runtime is where the concrete input shapes of a run meet the op, so
//! it resolves the outputs once per input signature and caches the answer
//! in the node's task: a pipeline that streams micro-batches of one shape
//! infers each node once.
//!
//! ## How
//! Inference runs on the inputs' concrete dtypes and shapes. For ops whose
//! output shape depends on a shape operand's value
//! ([`reads_shape_operands`]: Reshape's target shape, Slice's bounds, ...)
//! the small numeric operands (after the first, or a scalar first one:
//! Resize's scales, a window's length) are read on the host first
//! ([`Device::host_value`], which answers from an upload's host mirror
//! where the backend keeps one), and the values are part of the cache key.
//! Any other op whose outputs stay unresolved gets the same treatment once;
//! what is still unknown after that (NonZero's length) stays `None` and
//! the device finds it by running. An inference error is not the run's
//! error: the outputs are then handed over unresolved and the device's
//! kernel reports what is wrong, as it did before the contract carried
//! shapes.
//!
//! ## Views
//! Reshape, Flatten, Squeeze and Unsqueeze only relabel memory. Once their
//! output shape is resolved, the runtime asks the device for a
//! [`Device::view`] of the input (no kernel, no copy); a backend that
//! cannot share a buffer under a new shape (the CPU's host tensors carry
//! their own shape) declines, and the op runs through `execute` as before.

use hetflow_devices::{Device, DeviceError, DeviceTensor, OutputSpec};
use hetflow_ops::graph::Fact;
use hetflow_ops::infer::{infer_op, reads_shape_operands};
use hetflow_ops::{DType, Op, Tensor};
use std::sync::Arc;

/// Integer operands up to this many elements are read as values when an
/// output shape may depend on them (shape operands are a few dims long).
const MAX_SHAPE_OPERAND: usize = 64;

/// Dtype and shape of each input (`None` when omitted).
type Signature = Vec<Option<(DType, Vec<usize>)>>;

/// The host values of the shape operands read (`None` for other inputs).
type Values = Vec<Option<Arc<Tensor>>>;

/// Whether the runtime runs `op` as a view of its first input.
pub fn is_pure_view(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }
    )
}

/// One node's resolved outputs for the input signature it saw last.
#[derive(Default)]
pub struct Resolver {
    last: Option<(Signature, Values, Vec<OutputSpec>)>,
    /// Set once the op turned out to need its operands' values.
    needs_values: bool,
}

impl Resolver {
    /// The outputs of `op` on `inputs` (see the module docs).
    pub fn resolve(
        &mut self,
        device: &dyn Device,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        n_outputs: usize,
    ) -> Result<Vec<OutputSpec>, DeviceError> {
        let sig: Signature = inputs
            .iter()
            .map(|t| t.map(|t| (t.dtype, t.shape.clone())))
            .collect();
        let with_values = self.needs_values || reads_shape_operands(op);
        let values = if with_values {
            operand_values(device, inputs)?
        } else {
            Vec::new()
        };
        if let Some((s, v, out)) = &self.last {
            if *s == sig && *v == values {
                return Ok(out.clone());
            }
        }
        let mut out = infer(op, &sig, &values, n_outputs);
        if !with_values && !out.iter().all(|o| o.concrete().is_some()) {
            let values = operand_values(device, inputs)?;
            if values.iter().any(Option::is_some) {
                self.needs_values = true;
                out = infer(op, &sig, &values, n_outputs);
                self.last = Some((sig, values, out.clone()));
                return Ok(out);
            }
        }
        self.last = Some((sig, values, out.clone()));
        Ok(out)
    }
}

/// The values of the small numeric inputs after the first, and of a scalar
/// first input (a window's length, a mel bank's size); `None` for the
/// others. Floats count: Resize's scales are floats.
fn operand_values(
    device: &dyn Device,
    inputs: &[Option<&DeviceTensor>],
) -> Result<Values, DeviceError> {
    let mut values = Vec::with_capacity(inputs.len());
    for (i, t) in inputs.iter().enumerate() {
        values.push(match t {
            Some(t)
                if (i > 0 || t.shape.is_empty())
                    && (t.dtype.is_int() || t.dtype.is_float())
                    && t.shape.iter().product::<usize>() <= MAX_SHAPE_OPERAND =>
            {
                Some(device.host_value(t)?)
            }
            _ => None,
        });
    }
    Ok(values)
}

/// Inference on concrete input facts, the given values as constants.
fn infer(
    op: &Op,
    sig: &Signature,
    values: &[Option<Arc<Tensor>>],
    n_outputs: usize,
) -> Vec<OutputSpec> {
    let facts: Vec<Option<Fact>> = sig
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (dt, shape) = s.as_ref()?;
            Some(match values.get(i).and_then(Option::as_ref) {
                Some(v) if v.shape() == shape.as_slice() && v.dtype() == *dt => {
                    Fact::constant(v.clone())
                }
                _ => Fact::known(*dt, shape),
            })
        })
        .collect();
    let refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
    match infer_op(op, &refs, n_outputs) {
        Ok(out) if out.len() == n_outputs => out
            .iter()
            .map(|f| OutputSpec {
                dtype: f.dtype,
                shape: f.concrete_shape(),
            })
            .collect(),
        _ => OutputSpec::unknown(n_outputs),
    }
}

/// Runs `op` on `device`: outputs resolved, pure views without a kernel
/// where the device can share the buffer, everything else through
/// [`Device::execute`].
pub fn run_op(
    resolver: &mut Resolver,
    device: &dyn Device,
    op: &Op,
    inputs: &[Option<&DeviceTensor>],
    n_outputs: usize,
) -> Result<Vec<DeviceTensor>, DeviceError> {
    let outputs = resolver.resolve(device, op, inputs, n_outputs)?;
    if is_pure_view(op) && n_outputs == 1 {
        if let (Some(x), Some((dt, shape))) =
            (inputs.first().copied().flatten(), outputs[0].concrete())
        {
            if dt == x.dtype {
                if let Some(r) = device.view(x, shape.to_vec()) {
                    return r.map(|t| vec![t]);
                }
            }
        }
    }
    device.execute(op, inputs, &outputs)
}
