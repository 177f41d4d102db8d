//! Executables: a fused computation (a root op plus an element-wise
//! epilogue) compiled for concrete input shapes, and the code that runs
//! one on host tensors with the device's numerics.
//!
//! Compiling resolves every shape (like XLA, the device only runs static
//! shapes), picks the unit (matrix unit for MatMul, Gemm and Conv; vector
//! unit for the rest) and prices the run with the cost model. Running an
//! executable is pure: inputs in, outputs out, nothing else touched.

use super::config::TpuConfig;
use super::cost::{op_cycles, OpCost};
use super::matrix;
use hetflow_ops::cost::{op_class, OpClass};
use hetflow_ops::graph::Fact;
use hetflow_ops::infer::infer_op;
use hetflow_ops::op::{Activation, ConvAttrs};
use hetflow_ops::{DType, Op, Tensor};

/// One element-wise op applied to the running result of a fused
/// computation; `operand` is the executable parameter holding its second
/// input (a bias, a residual), if it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct EpilogueOp {
    /// An element-wise op (Unary, Binary, Clip, LeakyRelu, Gelu, ...).
    pub op: Op,
    /// Parameter index of the second input.
    pub operand: Option<usize>,
}

/// What a [`super::TpuClient`] compiles: the stand-in for an HLO module.
/// The root reads parameters `0..root_arity`; each epilogue op reads the
/// previous result (and its operand). Epilogues need a matrix root with
/// one output: they model the element-wise tail XLA fuses into a
/// convolution or dot.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedComputation {
    /// The root op.
    pub root: Op,
    /// How many parameters the root takes.
    pub root_arity: usize,
    /// Outputs of the root.
    pub n_outputs: usize,
    /// Element-wise ops applied in order to the root's output.
    pub epilogue: Vec<EpilogueOp>,
}

impl FusedComputation {
    /// One op of a graph node, as the runtime hands it over.
    pub fn single(op: &Op, arity: usize, n_outputs: usize) -> FusedComputation {
        FusedComputation {
            root: op.clone(),
            root_arity: arity,
            n_outputs,
            epilogue: Vec::new(),
        }
    }

    /// `Conv+Relu+Add`-style name for messages and traces.
    pub fn name(&self) -> String {
        let mut s = self.root.name().to_string();
        if let Op::Conv(ConvAttrs { activation, .. }) = &self.root {
            match activation {
                Activation::None => {}
                Activation::Relu => s.push_str("+Relu"),
                Activation::Clip { .. } => s.push_str("+Clip"),
            }
        }
        for e in &self.epilogue {
            s.push('+');
            s.push_str(e.op.name());
        }
        s
    }
}

/// Why a computation does not compile.
#[derive(Debug)]
pub enum CompileError {
    /// An output shape depends on the value of some input (a shape or a
    /// bound given as a tensor): compile again with the values known.
    DynamicShape,
    /// Anything else, with the reason.
    Invalid(String),
}

/// Whether the device runs `op` at all (plan-time check).
pub fn supports(op: &Op) -> Result<(), String> {
    crate::cpu_only(op)?;
    match op {
        Op::Gather { .. } => Err(
            "gathers need data-dependent addressing, which the matrix and vector units lack; \
             place Gather on a CPU"
                .into(),
        ),
        Op::Range | Op::ConstantOfShape { .. } => Err(format!(
            "{} has a data-dependent (dynamic) output shape; the device runs static shapes only",
            op.name()
        )),
        _ => Ok(()),
    }
}

/// True for ops whose inputs after the first may carry shapes, axes or
/// bounds that decide the output shape (opset 10+ moved them from
/// attributes to inputs). Shape inference cannot tell such an input's
/// absence from its value being unknown, so the device always compiles
/// them in as constants.
pub fn reads_shape_operands(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { shape: None, .. }
            | Op::Squeeze { axes: None }
            | Op::Unsqueeze { axes: None }
            | Op::Split { split: None, .. }
            | Op::Slice { starts: None, .. }
            | Op::Reduce { axes: None, .. }
            | Op::Expand
            | Op::AffineGrid { .. }
            | Op::MaxUnpool { .. }
    )
}

#[derive(Clone, Debug)]
enum Program {
    MatMul,
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    Conv(ConvAttrs),
    Vector,
}

/// A computation compiled for one set of input shapes (PJRT's loaded
/// executable).
#[derive(Debug)]
pub struct TpuExecutable {
    comp: FusedComputation,
    program: Program,
    tile_k: usize,
    /// Name for messages and traces (`Conv+Relu`).
    pub name: String,
    /// Dtype and shape of each output.
    pub outputs: Vec<(DType, Vec<usize>)>,
    /// Modelled cost of one run.
    pub cost: OpCost,
}

fn concrete(f: &Fact) -> Option<(DType, Vec<usize>)> {
    Some((f.dtype?, f.concrete_shape()?))
}

fn matrix_dtype(f: Option<&Fact>, what: &str) -> Result<(), CompileError> {
    match f.and_then(|f| f.dtype) {
        Some(DType::F32 | DType::F16 | DType::BF16) => Ok(()),
        Some(d) => Err(CompileError::Invalid(format!(
            "the matrix unit takes f32, f16 or bf16 {what}, got {d}"
        ))),
        None => Err(CompileError::Invalid(format!("{what} of unknown dtype"))),
    }
}

impl TpuExecutable {
    /// Compiles `comp` for parameters `params` (`None` for an omitted
    /// optional input). Every output shape must be known.
    pub fn compile(
        comp: &FusedComputation,
        params: &[Option<Fact>],
        cfg: &TpuConfig,
    ) -> Result<TpuExecutable, CompileError> {
        supports(&comp.root).map_err(CompileError::Invalid)?;
        if comp.root_arity > params.len() {
            return Err(CompileError::Invalid(format!(
                "{} takes {} parameters, {} given",
                comp.root.name(),
                comp.root_arity,
                params.len()
            )));
        }
        let refs: Vec<Option<&Fact>> = params[..comp.root_arity]
            .iter()
            .map(|f| f.as_ref())
            .collect();
        let facts = infer_op(&comp.root, &refs, comp.n_outputs)
            .map_err(|e| CompileError::Invalid(e.to_string()))?;
        let mut outputs = Vec::with_capacity(facts.len());
        for f in &facts {
            outputs.push(concrete(f).ok_or(CompileError::DynamicShape)?);
        }
        let program = match &comp.root {
            Op::MatMul => Program::MatMul,
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => Program::Gemm {
                alpha: *alpha,
                beta: *beta,
                trans_a: *trans_a,
                trans_b: *trans_b,
            },
            Op::Conv(a) => Program::Conv(a.clone()),
            _ => Program::Vector,
        };
        if !matches!(program, Program::Vector) {
            matrix_dtype(refs.first().copied().flatten(), "operands")?;
            matrix_dtype(refs.get(1).copied().flatten(), "operands")?;
        }
        let out_refs: Vec<&Fact> = facts.iter().collect();
        let mut cost = op_cycles(cfg, &comp.root, &refs, &out_refs);

        // The epilogue: element-wise ops on the vector unit, shape-preserving.
        if !comp.epilogue.is_empty() && (matches!(program, Program::Vector) || comp.n_outputs != 1)
        {
            return Err(CompileError::Invalid(format!(
                "an epilogue needs a MatMul, Gemm or Conv root with one output, not {}",
                comp.root.name()
            )));
        }
        let mut cur = facts.into_iter().next().unwrap_or_default();
        for e in &comp.epilogue {
            if op_class(&e.op) != OpClass::Elementwise {
                return Err(CompileError::Invalid(format!(
                    "{} is not element-wise and cannot be fused into an epilogue",
                    e.op.name()
                )));
            }
            let operand = match e.operand {
                Some(i) => Some(params.get(i).and_then(|f| f.as_ref()).ok_or_else(|| {
                    CompileError::Invalid(format!(
                        "epilogue {} reads parameter {i}, which is not given",
                        e.op.name()
                    ))
                })?),
                None => None,
            };
            let ins = [Some(&cur), operand];
            let arity = if operand.is_some() { 2 } else { 1 };
            let next = infer_op(&e.op, &ins[..arity], 1)
                .map_err(|err| CompileError::Invalid(format!("epilogue {}: {err}", e.op.name())))?
                .into_iter()
                .next()
                .unwrap_or_default();
            if next.concrete_shape() != cur.concrete_shape() {
                return Err(CompileError::Invalid(format!(
                    "epilogue {} would change the shape {:?} to {:?}",
                    e.op.name(),
                    cur.concrete_shape(),
                    next.concrete_shape()
                )));
            }
            let c = op_cycles(cfg, &e.op, &ins[..arity], &[&next]);
            cost.vector_cycles += c.vector_cycles;
            cur = next;
        }
        if let Some(o) = outputs.first_mut() {
            if !comp.epilogue.is_empty() {
                *o = concrete(&cur).ok_or(CompileError::DynamicShape)?;
            }
        }
        cost.cycles = cost.matrix_cycles.max(cost.vector_cycles);
        cost.micros = super::cost::cycles_to_micros(cfg, cost.cycles);
        Ok(TpuExecutable {
            name: comp.name(),
            comp: comp.clone(),
            program,
            tile_k: cfg.mxu_rows,
            outputs,
            cost,
        })
    }

    /// Runs on host tensors (the emulation), on the current rayon pool.
    pub fn run(&self, params: &[Option<&Tensor>]) -> Result<Vec<Tensor>, String> {
        let root_in = &params[..self.comp.root_arity.min(params.len())];
        let mut outs = match &self.program {
            Program::Vector => {
                hetflow_ops::kernels::eval(&self.comp.root, root_in, self.comp.n_outputs)
                    .map_err(|e| e.to_string())?
            }
            p => {
                let (dt, shape) = self
                    .outputs
                    .first()
                    .cloned()
                    .ok_or_else(|| "no output".to_string())?;
                let v = match p {
                    Program::MatMul => matrix::matmul(root_in, self.tile_k)?,
                    Program::Gemm {
                        alpha,
                        beta,
                        trans_a,
                        trans_b,
                    } => matrix::gemm(root_in, self.tile_k, *alpha, *beta, *trans_a, *trans_b)?,
                    Program::Conv(a) => matrix::conv(a, root_in, self.tile_k)?,
                    Program::Vector => return Err("vector program on the matrix path".into()),
                };
                let t = Tensor::from_vec(shape, v).map_err(|e| e.to_string())?;
                // Matrix results stay f32 through the epilogue and are
                // narrowed to the output dtype at the end.
                let t = self.epilogue(t, params)?;
                vec![if dt == DType::F32 { t } else { t.cast(dt) }]
            }
        };
        if outs.len() != self.outputs.len() {
            return Err(format!(
                "produced {} outputs, compiled for {}",
                outs.len(),
                self.outputs.len()
            ));
        }
        for (o, (dt, shape)) in outs.iter_mut().zip(&self.outputs) {
            if o.shape() != shape.as_slice() || o.dtype() != *dt {
                return Err(format!(
                    "produced {} {:?}, compiled for {dt} {shape:?}",
                    o.dtype(),
                    o.shape()
                ));
            }
        }
        Ok(outs)
    }

    fn epilogue(&self, mut t: Tensor, params: &[Option<&Tensor>]) -> Result<Tensor, String> {
        for e in &self.comp.epilogue {
            let operand = e.operand.and_then(|i| params.get(i).copied().flatten());
            let ins = [Some(&t), operand];
            let arity = if e.operand.is_some() { 2 } else { 1 };
            let mut r = hetflow_ops::kernels::eval(&e.op, &ins[..arity], 1)
                .map_err(|err| format!("epilogue {}: {err}", e.op.name()))?;
            t = r
                .pop()
                .ok_or_else(|| format!("epilogue {}: no output", e.op.name()))?;
            if t.dtype() != DType::F32 {
                t = t.cast(DType::F32);
            }
        }
        Ok(t)
    }
}
