//! The caller's-thread runner (`inline.rs`): when it is used, that it
//! computes what the actors compute, hands outputs on as they are made,
//! reports failures as the actors do, and keeps nothing of a run.

use crate::{Session, SessionOptions};
use hetflow_devices::fault::{Fault, Faulty};
use hetflow_devices::{Device, DeviceInfo, DeviceTensor, OutputSpec};
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::{DType, Dim, Graph, Op, Tensor};
use hetflow_scheduler::Plan;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn cpu() -> Arc<dyn Device> {
    let specs = hetflow_devices::parse_device_list("cpu:0").unwrap();
    hetflow_devices::open_devices(&specs, Some(2))
        .unwrap()
        .remove(0)
}

/// Inputs x, y (y unused by any node) and a constant k:
/// a = relu(x); b = a + k; c = a * b (a read twice, once after b);
/// outputs c, a, x (an input straight through), k (a constant), b.
/// The nodes are added out of order: c's node comes before b's.
fn diamond() -> Arc<Graph> {
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(4)]);
    let y = g.add_input("y", DType::F32, vec![Dim::Known(2)]);
    let k = g.add_const(
        "k",
        Tensor::from_vec(vec![4], vec![1f32, -2.0, 3.0, 0.5]).unwrap(),
    );
    let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[x], 1)[0];
    let b = g.add_value("b", hetflow_ops::graph::Fact::known(DType::F32, &[4]));
    let c = g.add_node("mul", Op::Binary(BinaryOp::Mul), &[a, b], 1)[0];
    g.nodes.push(hetflow_ops::graph::Node {
        name: "add".into(),
        op: Op::Binary(BinaryOp::Add),
        inputs: vec![Some(a), Some(k)],
        outputs: vec![b],
    });
    let _ = y;
    g.add_output(c);
    g.add_output(a);
    g.add_output(x);
    g.add_output(k);
    g.add_output(b);
    Arc::new(g.finish().unwrap())
}

fn inputs(s: f32) -> Vec<Arc<Tensor>> {
    vec![
        Arc::new(Tensor::from_vec(vec![4], vec![-1.0 + s, 0.5 + s, 2.0 + s, -3.0 + s]).unwrap()),
        Arc::new(Tensor::from_vec(vec![2], vec![9f32, 9.0]).unwrap()),
    ]
}

/// The outputs of `diamond` on `inputs(s)`, in f64 from the definition.
fn expected(s: f32) -> Vec<Vec<f32>> {
    let x: Vec<f64> = [-1.0, 0.5, 2.0, -3.0]
        .iter()
        .map(|v| v + s as f64)
        .collect();
    let k = [1.0, -2.0, 3.0, 0.5];
    let a: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
    let b: Vec<f64> = a.iter().zip(k).map(|(a, k)| a + k).collect();
    let c: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a * b).collect();
    let f = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    vec![f(&c), f(&a), f(&x), f(&k), f(&b)]
}

fn session(g: &Arc<Graph>, dev: Arc<dyn Device>, opts: SessionOptions) -> Session {
    Session::new(g.clone(), &Plan::single_device(g, "cpu:0"), vec![dev], opts).unwrap()
}

#[test]
fn one_cpu_runs_inline_unless_asked_otherwise() {
    let g = diamond();
    assert!(session(&g, cpu(), SessionOptions::default())
        .inline
        .is_some());
    let actors = SessionOptions {
        actors: true,
        ..Default::default()
    };
    assert!(session(&g, cpu(), actors).inline.is_none());
    let timed = SessionOptions {
        kernel_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    assert!(session(&g, cpu(), timed).inline.is_none());
}

#[test]
fn inline_and_actors_compute_the_same() {
    let g = diamond();
    for actors in [false, true] {
        let opts = SessionOptions {
            actors,
            ..Default::default()
        };
        let mut s = session(&g, cpu(), opts);
        let sets: Vec<f32> = vec![0.0, 1.0, -2.5];
        let got = s
            .run_stream(sets.iter().map(|&v| inputs(v)).collect())
            .unwrap();
        for (i, &v) in sets.iter().enumerate() {
            let got: Vec<Vec<f32>> = got[i].iter().map(|t| t.to_f32_vec()).collect();
            assert_eq!(got, expected(v), "actors {actors}, set {i}");
        }
        // The caller's inputs are intact.
        let x = inputs(0.0);
        s.run(x.clone()).unwrap();
        assert_eq!(x[0].to_f32_vec(), [-1.0, 0.5, 2.0, -3.0]);
    }
}

/// Counts the kernels it has run.
struct Counting {
    inner: Arc<dyn Device>,
    ran: AtomicUsize,
}

impl Device for Counting {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn supports(&self, op: &Op) -> Result<(), String> {
        self.inner.supports(op)
    }
    fn upload(&self, t: Arc<Tensor>) -> hetflow_devices::Result<DeviceTensor> {
        self.inner.upload(t)
    }
    fn download(&self, t: &DeviceTensor) -> hetflow_devices::Result<Arc<Tensor>> {
        self.inner.download(t)
    }
    fn execute(
        &self,
        op: &Op,
        inputs: &[Option<&DeviceTensor>],
        outputs: &[OutputSpec],
    ) -> hetflow_devices::Result<Vec<DeviceTensor>> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(op, inputs, outputs)
    }
    fn relabel(&self, t: DeviceTensor, shape: Vec<usize>) -> Result<DeviceTensor, DeviceTensor> {
        self.inner.relabel(t, shape)
    }
}

#[test]
fn inline_outputs_come_as_they_are_made() {
    let g = diamond();
    let dev = Arc::new(Counting {
        inner: cpu(),
        ran: AtomicUsize::new(0),
    });
    let mut s = session(&g, dev.clone(), SessionOptions::default());
    let mut seen: Vec<(usize, usize, Vec<f32>)> = Vec::new();
    s.run_each_output(inputs(0.0), |i, t| {
        seen.push((i, dev.ran.load(Ordering::SeqCst), t.to_f32_vec()));
        Ok(())
    })
    .unwrap();
    let want = expected(0.0);
    let mut order: Vec<usize> = seen.iter().map(|s| s.0).collect();
    order.sort();
    assert_eq!(order, [0, 1, 2, 3, 4], "each output once: {seen:?}");
    for (i, ran, v) in &seen {
        assert_eq!(*v, want[*i], "output {i}");
        // x before any kernel, a after relu alone, b after add, c last;
        // the constant at the end.
        let when = [3, 1, 0, 3, 2][*i];
        assert_eq!(*ran, when, "output {i} handed on after {ran} kernels");
    }
}

#[test]
fn inline_failures_name_the_node_and_break_the_session() {
    let g = diamond();
    for (fault, what) in [
        (Fault::Fail(1), "injected"),
        (Fault::Panic(1), "kernel panicked"),
    ] {
        let dev = Arc::new(Faulty::new(cpu(), fault));
        let mut s = session(&g, dev, SessionOptions::default());
        assert!(s.inline.is_some());
        let e = s.run(inputs(0.0)).unwrap_err().to_string();
        // Node order: relu (kernel 0), then add (kernel 1) fails.
        assert!(e.contains("'add'") && e.contains("cpu:0"), "{e}");
        assert!(e.contains(what), "{e}");
        let again = s.run(inputs(0.0)).unwrap_err().to_string();
        assert!(again.contains("earlier run failed"), "{again}");
    }
    // A bad input is the caller's error: the session keeps working.
    let mut s = session(&g, cpu(), SessionOptions::default());
    let bad = vec![inputs(0.0)[0].clone()];
    assert!(s.run(bad).is_err());
    assert_eq!(
        s.run(inputs(1.0)).unwrap()[0].to_f32_vec(),
        expected(1.0)[0]
    );
}

#[test]
fn inline_keeps_nothing_of_a_run_and_traces_each_kernel() {
    let g = diamond();
    let opts = SessionOptions {
        trace: true,
        ..Default::default()
    };
    let mut s = session(&g, cpu(), opts);
    let out = s.run(inputs(0.0)).unwrap();
    let runner = s.inline.as_ref().unwrap();
    assert!(
        runner.values.iter().all(Option::is_none),
        "values kept after the run"
    );
    // The computed results are the caller's alone.
    for i in [0, 1, 4] {
        assert_eq!(
            Arc::strong_count(&out[i]),
            1,
            "output {i} is held elsewhere"
        );
    }
    let names: Vec<String> = s
        .take_trace_events()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, ["relu", "add", "mul"], "{names:?}");
}

#[test]
fn a_view_of_a_last_read_value_takes_its_buffer_and_others_copy() {
    // x -> relu -> a; r1 = reshape(a) [2, 2] is a's last reader only in
    // the first graph; in the second, neg reads a after the reshape, so
    // the reshape must leave a intact.
    for later_reader in [false, true] {
        let mut g = Graph::default();
        let x = g.add_input("x", DType::F32, vec![Dim::Known(4)]);
        let shape = g.add_const("shape", Tensor::from_vec(vec![2], vec![2i64, 2]).unwrap());
        let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[x], 1)[0];
        let r = g.add_node(
            "reshape",
            Op::Reshape {
                allowzero: false,
                shape: None,
            },
            &[a, shape],
            1,
        )[0];
        let r = g.add_node("neg", Op::Unary(UnaryOp::Neg), &[r], 1)[0];
        g.add_output(r);
        if later_reader {
            let b = g.add_node("neg_a", Op::Unary(UnaryOp::Neg), &[a], 1)[0];
            g.add_output(b);
        }
        let g = Arc::new(g.finish().unwrap());
        let dev = Arc::new(Counting {
            inner: cpu(),
            ran: AtomicUsize::new(0),
        });
        let mut s = session(&g, dev.clone(), SessionOptions::default());
        let x = Tensor::from_vec(vec![4], vec![-1f32, 2.0, -3.0, 4.0]).unwrap();
        let out = s.run(vec![Arc::new(x)]).unwrap();
        // The reshape ran as a kernel only where a's buffer was not free.
        let kernels = if later_reader { 4 } else { 2 };
        assert_eq!(
            dev.ran.load(Ordering::SeqCst),
            kernels,
            "later reader {later_reader}"
        );
        assert_eq!(out[0].shape(), [2, 2]);
        assert_eq!(out[0].to_f32_vec(), [-0.0, -2.0, -0.0, -4.0]);
        if later_reader {
            assert_eq!(out[1].to_f32_vec(), [-0.0, -2.0, -0.0, -4.0]);
        }
    }
}
