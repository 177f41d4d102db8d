//! Outputs handed on one by one ([`Session::run_each_output`],
//! [`Session::run_stream_each_output`]): they come while the run goes on,
//! each exactly once, and errors come back as from [`Session::run`].

use crate::{Session, SessionOptions};
use hetflow_devices::fault::{Fault, Faulty};
use hetflow_devices::{Device, DeviceError, DeviceInfo, DeviceTensor, OutputSpec};
use hetflow_ops::op::UnaryOp;
use hetflow_ops::{DType, Dim, Graph, Op, Tensor};
use hetflow_scheduler::Plan;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A device whose kernels wait until [`Gate::open`] is called (or fail
/// after 20 s): the run cannot end before the test lets it.
struct Gate {
    inner: Arc<dyn Device>,
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl Device for Gate {
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
        let g = self.open.lock().unwrap();
        let (g, _) = self
            .cv
            .wait_timeout_while(g, Duration::from_secs(20), |o| !*o)
            .unwrap();
        if !*g {
            return Err(DeviceError::Other("the gate never opened".into()));
        }
        drop(g);
        self.inner.execute(op, inputs, outputs)
    }
    fn init_executor_thread(&self) {
        self.inner.init_executor_thread()
    }
}

/// x -> relu (output 0) -> neg -> neg (output 1), and a constant
/// (output 2).
fn chain() -> Arc<Graph> {
    let mut g = Graph::default();
    let x = g.add_input("x", DType::F32, vec![Dim::Known(4)]);
    let a = g.add_node("relu", Op::Unary(UnaryOp::Relu), &[x], 1)[0];
    let b = g.add_node("neg1", Op::Unary(UnaryOp::Neg), &[a], 1)[0];
    let c = g.add_node("neg2", Op::Unary(UnaryOp::Neg), &[b], 1)[0];
    let k = g.add_const("k", Tensor::from_vec(vec![2], vec![7f32, 8.0]).unwrap());
    g.add_output(a);
    g.add_output(c);
    g.add_output(k);
    Arc::new(g.finish().unwrap())
}

fn cpus(n: usize) -> Vec<Arc<dyn Device>> {
    let list: Vec<String> = (0..n).map(|i| format!("cpu:{i}")).collect();
    let specs = hetflow_devices::parse_device_list(&list.join(",")).unwrap();
    hetflow_devices::open_devices(&specs, Some(1)).unwrap()
}

fn input(s: usize) -> Vec<Arc<Tensor>> {
    let v = (0..4).map(|i| i as f32 - 1.5 + s as f32).collect();
    vec![Arc::new(Tensor::from_vec(vec![4], v).unwrap())]
}

/// relu on cpu:0, the negations on `second` (cpu:1).
fn two_device_session(g: &Arc<Graph>, second: Arc<dyn Device>) -> Session {
    let plan = Plan::from_placement(g, vec!["cpu:0".into(), "cpu:1".into()], vec![0, 1, 1]);
    let devs = cpus(2);
    Session::new(
        g.clone(),
        &plan,
        vec![devs[0].clone(), second],
        SessionOptions::default(),
    )
    .unwrap()
}

#[test]
fn an_output_arrives_while_the_rest_of_the_graph_waits() {
    // The negations on cpu:1 cannot run until output 0 has reached the
    // caller: if outputs came only at the end of the run, the gate would
    // never open and the run would fail.
    let g = chain();
    let gate = Arc::new(Gate {
        inner: cpus(2)[1].clone(),
        open: Mutex::new(false),
        cv: Condvar::new(),
    });
    let mut s = two_device_session(&g, gate.clone());
    let mut got: Vec<(usize, Vec<f32>)> = Vec::new();
    s.run_each_output(input(0), |i, t| {
        if i == 0 {
            gate.open();
        }
        got.push((i, t.to_f32_vec()));
        Ok(())
    })
    .unwrap();
    let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(order[0], 0, "output 0 first: {order:?}");
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 1, 2], "each output exactly once: {order:?}");
    let by = |i: usize| got.iter().find(|(j, _)| *j == i).unwrap().1.clone();
    assert_eq!(by(0), [0.0, 0.0, 0.5, 1.5]);
    assert_eq!(by(1), [0.0, 0.0, 0.5, 1.5]);
    assert_eq!(by(2), [7.0, 8.0]);
}

#[test]
fn every_output_of_a_stream_arrives_exactly_once() {
    // One CPU device (the sink shares its compute thread) and two plan
    // copies: both hand on every output of every input set once, with the
    // values of a plain run.
    let g = chain();
    let n = 7;
    let one = Plan::single_device(&g, "cpu:0");
    let mut copies = Plan::single_device(&g, "cpu:0");
    copies.replicas = vec![vec!["cpu:1".into()]];
    for (what, plan, devs) in [
        ("one device", one, cpus(1)),
        ("two copies", copies, cpus(2)),
    ] {
        let mut s = Session::new(g.clone(), &plan, devs, SessionOptions::default()).unwrap();
        let want = s.run_stream((0..n).map(input).collect()).unwrap();
        let mut seen = vec![vec![0usize; 3]; n];
        let fed = s
            .run_stream_each_output((0..n).map(input), |b, i, t| {
                seen[b][i] += 1;
                assert_eq!(
                    t.to_f32_vec(),
                    want[b][i].to_f32_vec(),
                    "{what}: set {b} output {i}"
                );
                Ok(())
            })
            .unwrap();
        assert_eq!(fed, n);
        assert!(seen.iter().flatten().all(|&c| c == 1), "{what}: {seen:?}");
        // A plain run afterwards still works (the sinks stopped sending
        // parts).
        assert_eq!(s.run(input(0)).unwrap().len(), 3, "{what}");
    }
}

#[test]
fn errors_come_back_and_nothing_hangs() {
    // A kernel of the chain fails: the run returns the error.
    let g = chain();
    let faulty = Arc::new(Faulty::new(cpus(2)[1].clone(), Fault::Fail(1)));
    let mut s = two_device_session(&g, faulty);
    let mut n = 0;
    let e = s
        .run_stream_each_output((0..3).map(input), |_, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("neg") && e.contains("cpu:1"), "{e}");
    assert!(n < 9, "a failed stream handed on all {n} outputs");
    assert!(s.run(input(0)).is_err(), "the session stays broken");
    // The caller's error: returned once the run is over; the session
    // keeps working.
    let mut s = Session::new(
        g.clone(),
        &Plan::single_device(&g, "cpu:0"),
        cpus(1),
        SessionOptions::default(),
    )
    .unwrap();
    let e = s
        .run_each_output(input(0), |i, _| match i {
            1 => Err(crate::RuntimeError::Input("the caller refused".into())),
            _ => Ok(()),
        })
        .unwrap_err();
    assert!(e.to_string().contains("the caller refused"), "{e}");
    assert_eq!(
        s.run(input(1)).unwrap()[1].to_f32_vec(),
        [0.0, 0.5, 1.5, 2.5]
    );
}
