//! One test body, every device: the device matrix of the model and op
//! tests. [`device_tests!`] turns a list of names into one module per
//! device (cpu, two logical cpus, opencl:0, tpu:0, cuda:0) of one
//! `#[test]` each; [`run_fixture`] and [`run_op`] are the bodies. A device
//! that is absent (no OpenCL platform, no GPU) makes its tests print
//! `SKIP <test> on <device>: <why>` and return; nothing skips silently.

use super::{case, check_outputs, check_outputs_within, plan_with_cpu_fallback, read, run_case};
use hetflow::devices::{open_devices, parse_device_list, Device};
use hetflow::ops::{DType, Dim, Graph, Op, Tensor};
use hetflow::{Model, SessionBuilder};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `device_tests!([runner] a, b, ...)`: for every device, a module of one
/// `#[test]` per name calling `runner("<device spec>", "<name>")`:
/// `cpu` ("cpu"), `cpu_split` ("cpu:0,cpu:1"), `opencl` ("opencl:0"),
/// `tpu` ("tpu:0") and `cuda` ("cuda:0"). The one list of devices; used
/// as `foundation_fixtures!(device_tests, run_fixture)` and
/// `op_cases!(device_tests, run_op)`.
#[macro_export]
macro_rules! device_tests {
    ([$runner:path] $($name:ident),* $(,)?) => {
        $crate::device_tests!(@on [$runner] cpu "cpu"; $($name),*);
        $crate::device_tests!(@on [$runner] cpu_split "cpu:0,cpu:1"; $($name),*);
        $crate::device_tests!(@on [$runner] opencl "opencl:0"; $($name),*);
        $crate::device_tests!(@on [$runner] tpu "tpu:0"; $($name),*);
        $crate::device_tests!(@on [$runner] cuda "cuda:0"; $($name),*);
    };
    (@on [$runner:path] $module:ident $spec:literal; $($name:ident),*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $( #[test] fn $name() { $runner($spec, stringify!($name)); } )*
        }
    };
}

/// Calls `$then! { ... }` with every single-op case of [`op_case`].
#[macro_export]
macro_rules! op_cases {
    ($then:ident $(, $($arg:tt)+)?) => {
        $then! {
            $([$($arg)+])?
            hard_swish,
            softsign,
            leaky_relu,
            gelu_tanh,
            clip,
        }
    };
}

/// Whether `device` is here; if not, says why the test skips.
pub fn present(device: &str, test: &str) -> bool {
    let why = match device {
        "opencl:0" => hetflow::devices::opencl::list_devices().err(),
        "cuda:0" => hetflow::devices::cuda::probe()
            .err()
            .map(|e| format!("no GPU ({e})")),
        _ => None,
    };
    if let Some(why) = why {
        eprintln!("SKIP {test} on {device}: {why}");
        return false;
    }
    true
}

/// bf16 tolerance of the TPU: relative L2 against the f32 reference.
pub const BF16_REL_L2: f64 = 1e-2;

/// Runs fixture `name` on `device` against onnxruntime's reference.
/// - cpu and two logical cpus: the default plan.
/// - opencl:0: every node on the device (a fresh one, so its host-path
///   counter is this model's), and only ops with a non-f32 input (shape
///   arithmetic on i64) may have gone through the host kernels; except
///   `nonfinite`, whose variadic Max/Min have no OpenCL kernel and run on
///   cpu:0.
/// - tpu:0: refused nodes on cpu:0, bf16 tolerance. The light-zoo CNNs
///   take minutes each on the emulated matrix unit: they skip (loudly)
///   unless `HETFLOW_TPU_ZOO=1`.
/// - cuda:0: refused nodes on cpu:0; every node of a zoo CNN must be on
///   the GPU.
pub fn run_fixture(device: &str, name: &str) {
    if !present(device, name) {
        return;
    }
    match device {
        "cpu" | "cpu:0,cpu:1" => run_case(name, device),
        "opencl:0" if name == "nonfinite" => {
            with_cpu_fallback(name, device, None);
        }
        "opencl:0" => all_on_opencl(name),
        "tpu:0" => {
            if name.starts_with("zoo_") && std::env::var_os("HETFLOW_TPU_ZOO").is_none() {
                eprintln!(
                    "SKIP {name} on tpu:0: minutes on the emulated matrix unit; \
                     HETFLOW_TPU_ZOO=1 runs it"
                );
                return;
            }
            let (nodes, on_cpu) = with_cpu_fallback(name, device, Some(BF16_REL_L2));
            assert!(on_cpu < nodes, "{name}: nothing ran on the TPU");
        }
        "cuda:0" => {
            let (_, on_cpu) = with_cpu_fallback(name, device, None);
            if name.starts_with("zoo_") {
                assert_eq!(on_cpu, 0, "{name}: nodes refused by cuda:0");
            }
        }
        other => panic!("no fixture runner for device {other}"),
    }
}

/// Runs `name` with every node `device` accepts on it and the rest on
/// cpu:0, checks the outputs (within `tol`, else the case's own bound);
/// returns (nodes, nodes on cpu:0).
fn with_cpu_fallback(name: &str, device: &str, tol: Option<f64>) -> (usize, usize) {
    let c = case(name);
    let m = Model::load(&c.model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (plan, devices, on_cpu) = plan_with_cpu_fallback(&m, device);
    let nodes = m.graph().nodes.len();
    eprintln!("{name}: {} of {nodes} nodes on {device}", nodes - on_cpu);
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let mut s = SessionBuilder::new(&m)
        .devices(&devices)
        .plan(plan)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = s.run(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    let label = format!("{name} on {device}");
    match tol {
        Some(t) => check_outputs_within(&c, &got, &label, t),
        None => check_outputs(&c, &got, &label),
    }
    (nodes, on_cpu)
}

fn all_on_opencl(name: &str) {
    use hetflow::devices::opencl::{OpenclDevice, OpenclOptions};
    let c = case(name);
    let m = Model::load(&c.model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let d = Arc::new(OpenclDevice::open(0, &OpenclOptions::from_env()).unwrap());
    let g = m.graph();
    for n in &g.nodes {
        if let Err(why) = d.supports(&n.op) {
            panic!("{name}: node '{}' refused by opencl:0: {why}", n.name);
        }
    }
    let inputs: Vec<Arc<Tensor>> = c.inputs.iter().map(|(_, f)| Arc::new(read(f))).collect();
    let t0 = std::time::Instant::now();
    let mut s = SessionBuilder::new(&m)
        .with_devices(vec![d.clone() as Arc<dyn Device>])
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = s.run(inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: {:.2} s on opencl:0", t0.elapsed().as_secs_f64());
    check_outputs(&c, &got, &format!("{name} on opencl:0"));
    let int_ops: BTreeSet<&str> = g
        .nodes
        .iter()
        .filter(|n| {
            n.inputs
                .iter()
                .flatten()
                .any(|v| g.values[v.0].fact.dtype != Some(DType::F32))
        })
        .map(|n| n.op.name())
        .collect();
    let host = d.host_evals();
    for op in host.keys() {
        assert!(
            int_ops.contains(op.as_str()),
            "{name}: f32 op {op} ran on the host ({host:?})"
        );
    }
}

/// One op on one input, with its float64 reference.
pub struct OpCase {
    pub op: Op,
    pub x: Vec<f32>,
    pub want: Vec<f64>,
}

/// Inputs that cross every piece of the element-wise functions: the
/// breakpoints of HardSwish (±3), of the clips, and zero.
fn sweep() -> Vec<f32> {
    let mut v: Vec<f32> = (-40..=40).map(|i| i as f32 * 0.125).collect();
    v.extend([-3.0, 3.0, -0.0, 1e-3, -1e-3, 7.5, -7.5]);
    v
}

/// The single-op case `name` (see [`op_cases!`]): the references are
/// the ONNX definitions evaluated in float64 here.
pub fn op_case(name: &str) -> OpCase {
    use hetflow::ops::op::UnaryOp;
    let x = sweep();
    let f64s = |f: fn(f64) -> f64| -> Vec<f64> { x.iter().map(|&v| f(v as f64)).collect() };
    let (op, want) = match name {
        // ONNX HardSwish: x * max(0, min(1, alpha * x + beta)), alpha = 1/6, beta = 1/2.
        "hard_swish" => (
            Op::Unary(UnaryOp::HardSwish),
            f64s(|v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        ),
        "softsign" => (Op::Unary(UnaryOp::Softsign), f64s(|v| v / (1.0 + v.abs()))),
        "leaky_relu" => (
            Op::LeakyRelu { alpha: 0.1 },
            f64s(|v| if v < 0.0 { 0.1 * v } else { v }),
        ),
        "gelu_tanh" => (
            Op::Gelu { tanh: true },
            f64s(|v| {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3));
                0.5 * v * (1.0 + u.tanh())
            }),
        ),
        "clip" => (
            Op::Clip {
                min: Some(-1.5),
                max: Some(2.0),
            },
            f64s(|v| v.clamp(-1.5, 2.0)),
        ),
        other => panic!("no op case {other}"),
    };
    OpCase { op, x, want }
}

/// Runs op case `name` on `device` alone and compares with its float64
/// reference (max |got - want| / (1 + |want|) within 1e-5; 1e-2 on the
/// TPU's bf16 path is not needed: element-wise ops run in f32 there). A
/// device whose op table has no kernel for the op skips loudly.
pub fn run_op(device: &str, name: &str) {
    if !present(device, name) {
        return;
    }
    let c = op_case(name);
    let devs = open_devices(&parse_device_list(device).unwrap(), None).unwrap();
    if let Some(why) = devs.iter().find_map(|d| d.supports(&c.op).err()) {
        eprintln!("SKIP {name} on {device}: {why}");
        return;
    }
    let n = c.x.len();
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(n)]);
    let y = g.add_node(name, c.op.clone(), &[x], 1)[0];
    g.add_output(y);
    let model = Model::from_graph(g.finish().unwrap());
    let mut s = SessionBuilder::new(&model)
        .devices(device)
        .build()
        .unwrap_or_else(|e| panic!("{name} on {device}: {e}"));
    let input = Tensor::from_vec(vec![n], c.x.clone()).unwrap();
    let got = s
        .run(vec![Arc::new(input)])
        .unwrap_or_else(|e| panic!("{name} on {device}: {e}"));
    let got = got[0].as_slice::<f32>().unwrap();
    assert_eq!(got.len(), c.want.len(), "{name} on {device}: length");
    for (i, (&g, &w)) in got.iter().zip(&c.want).enumerate() {
        let err = (g as f64 - w).abs() / (1.0 + w.abs());
        assert!(
            err <= 1e-5,
            "{name} on {device}: x = {} gives {g}, the reference {w}",
            c.x[i]
        );
    }
    eprintln!("{name} on {device}: {n} values within 1e-5 of the float64 reference");
}
