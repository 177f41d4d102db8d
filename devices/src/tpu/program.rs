//! Executables: a fused computation (a root op plus an element-wise
//! epilogue) compiled for concrete input shapes, and the code that runs
//! one on host tensors with the device's numerics.
//!
//! Compiling takes every output shape as given (like XLA, the device only
//! runs static shapes; the runtime resolves them, so the device never runs
//! shape inference), picks the unit (matrix unit for MatMul, Gemm and Conv; vector
//! unit for the rest) and prices the run with the cost model. Running an
//! executable is pure: inputs in, outputs out, nothing else touched.

use super::config::TpuConfig;
use super::cost::{op_cycles, OpCost};
use super::matrix;
use hetflow_ops::cost::{op_class, OpClass};
use hetflow_ops::graph::Fact;
use hetflow_ops::op::{Activation, ConvAttrs};
use hetflow_ops::shape::broadcast_shapes;
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
    /// The computation cannot run here, with the reason.
    Invalid(String),
}

pub use super::dispatch::supports;
use super::dispatch::{unit, Program};

/// A computation compiled for one set of input shapes (PJRT's loaded
/// executable).
#[derive(Debug)]
pub struct TpuExecutable {
    comp: FusedComputation,
    program: Program,
    tile_k: usize,
    precision: super::config::MatmulPrecision,
    /// Name for messages and traces (`Conv+Relu`).
    pub name: String,
    /// Dtype and shape of each output.
    pub outputs: Vec<(DType, Vec<usize>)>,
    /// Modelled cost of one run.
    pub cost: OpCost,
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
    /// optional input) producing `outputs` (dtype and shape of each root
    /// output, as the runtime resolved them: the device runs static shapes
    /// and never infers them). An epilogue keeps the first output's shape
    /// and dtype.
    pub fn compile(
        comp: &FusedComputation,
        params: &[Option<Fact>],
        outputs: &[(DType, Vec<usize>)],
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
        if outputs.len() != comp.n_outputs {
            return Err(CompileError::Invalid(format!(
                "{} has {} outputs, {} shapes given",
                comp.root.name(),
                comp.n_outputs,
                outputs.len()
            )));
        }
        let refs: Vec<Option<&Fact>> = params[..comp.root_arity]
            .iter()
            .map(|f| f.as_ref())
            .collect();
        let facts: Vec<Fact> = outputs.iter().map(|(d, s)| Fact::known(*d, s)).collect();
        let outputs = outputs.to_vec();
        let program = unit(&comp.root);
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
        let (cur, shape) = match facts.first() {
            Some(f) => (f.clone(), f.concrete_shape().unwrap_or_default()),
            None => (Fact::default(), Vec::new()),
        };
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
            // Shape-preserving: the operand broadcasts into the result.
            if let Some(o) = operand {
                let grown = o
                    .concrete_shape()
                    .and_then(|os| broadcast_shapes(&shape, &os).ok());
                if grown.as_deref() != Some(shape.as_slice()) {
                    return Err(CompileError::Invalid(format!(
                        "epilogue {} would change the shape {shape:?} (operand {:?})",
                        e.op.name(),
                        o.concrete_shape()
                    )));
                }
            }
            let ins = [Some(&cur), operand];
            let arity = if operand.is_some() { 2 } else { 1 };
            let c = op_cycles(cfg, &e.op, &ins[..arity], &[&cur]);
            cost.vector_cycles += c.vector_cycles;
        }
        cost.cycles = cost.matrix_cycles.max(cost.vector_cycles);
        cost.micros = super::cost::cycles_to_micros(cfg, cost.cycles);
        Ok(TpuExecutable {
            name: comp.name(),
            comp: comp.clone(),
            program,
            tile_k: cfg.mxu_rows,
            precision: cfg.matmul_precision,
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
                    Program::MatMul => matrix::matmul(root_in, self.tile_k, self.precision)?,
                    Program::Gemm {
                        alpha,
                        beta,
                        trans_a,
                        trans_b,
                    } => matrix::gemm(
                        root_in,
                        self.tile_k,
                        self.precision,
                        *alpha,
                        *beta,
                        *trans_a,
                        *trans_b,
                    )?,
                    Program::Conv(a) => matrix::conv(a, root_in, self.tile_k, self.precision)?,
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
