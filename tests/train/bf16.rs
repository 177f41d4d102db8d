//! bf16 training (`Precision::Bf16`): the graph computes in bf16 against
//! a float64 reference that rounds where it does, dynamic loss scaling
//! skips an overflowing step and grows, and the MLP reaches 97% on digits.

use super::{digits, fit, model, rel, sgd};
use hetflow::ops::{DType, Op};
use hetflow::train::optim::{Config, Schedule};
use hetflow::train::{Loss, LossScaling, Precision, TrainOptions, Trainer};
use hetflow::{Model, Tensor};

/// A bf16 trainer of the MLP (SGD, momentum 0.9, one thread).
fn bf16_trainer(optimizer: Config, scaling: LossScaling) -> Trainer {
    let opts = TrainOptions {
        optimizer,
        threads: Some(1),
        precision: Precision::Bf16,
        loss_scaling: scaling,
        ..TrainOptions::default()
    };
    Trainer::new(&model("mlp"), opts).unwrap()
}

/// `v` rounded to bf16 (through f32, as the kernels round their f32
/// results), in f64.
fn round_bf16(v: &[f64]) -> Vec<f64> {
    let t = Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap();
    let t = t.cast(DType::F32).cast(DType::BF16).cast(DType::F64);
    t.as_slice::<f64>().unwrap().to_vec()
}

#[test]
fn bf16_training_computes_forward_and_backward_in_bf16() {
    let m = model("mlp");
    let (n, bf) = (32, Precision::Bf16);
    let tg = hetflow::train::training_graph_in(m.graph(), n, Loss::CrossEntropy, bf).unwrap();
    let g = &tg.graph;
    let dt = |v: hetflow::ops::ValueId| g.values[v.0].fact.dtype.unwrap();
    let named = |name: &str| dt(g.find(name).unwrap());
    // Activations and logits are bf16, the loss f32; every weight is read
    // through a Cast to bf16 and its gradient comes back as f32.
    for v in ["h", "a", "logits"] {
        assert_eq!(named(v), DType::BF16, "{v}");
    }
    assert_eq!(named("loss"), DType::F32);
    let consumers = g.consumers();
    for (p, grad) in tg.params.iter().zip(&g.outputs[2..]) {
        let readers = &consumers[g.find(p).unwrap().0];
        assert!(!readers.is_empty());
        for r in readers {
            let op = &g.nodes[r.0].op;
            assert!(
                matches!(
                    op,
                    Op::Cast {
                        to: DType::BF16,
                        ..
                    }
                ),
                "{p} read by {op:?}"
            );
        }
        assert_eq!(dt(*grad), DType::F32, "gradient of {p}");
    }
    // The backward matrix products and the Relu gradient run on bf16.
    let backward = &g.nodes[tg.n_forward..];
    let on_bf16 = |n: &hetflow::ops::Node| n.inputs.iter().flatten().all(|&v| dt(v) == DType::BF16);
    let heavy: Vec<_> = backward
        .iter()
        .filter(|n| matches!(n.op, Op::Gemm { .. } | Op::MatMul | Op::UnaryGrad(_)))
        .collect();
    assert!(heavy.len() >= 3 && heavy.iter().all(|n| on_bf16(n)));
    assert!(tg.loss_scale && g.name(*g.inputs.last().unwrap()) == "loss_scale");
    // MSE too: a bf16 prediction, an f32 loss against f32 targets.
    let mse = hetflow::train::training_graph_in(m.graph(), n, Loss::Mse, bf).unwrap();
    assert_eq!(mse.target_dtype, DType::F32);
    let loss = mse.graph.outputs[0];
    assert_eq!(mse.graph.values[loss.0].fact.dtype, Some(DType::F32));

    // One step's forward output against a float64 reference that rounds
    // to bf16 where the graph does: the inputs and weights, each Gemm's
    // result (the kernels accumulate in f32) and nothing else (Relu is
    // exact).
    let train = digits("train");
    let x = hetflow::train::rows(&train.x, 0, n, &[n, 64]).unwrap();
    let y = hetflow::train::rows(&train.y, 0, n, &[n]).unwrap();
    let weights: Vec<Tensor> = tg
        .params
        .iter()
        .map(|p| {
            (**m.graph()
                .constants
                .get(&m.graph().find(p).unwrap())
                .unwrap())
            .clone()
        })
        .collect();
    let run = |precision: Precision| {
        let tg =
            hetflow::train::training_graph_in(m.graph(), n, Loss::CrossEntropy, precision).unwrap();
        let mut feeds = vec![
            std::sync::Arc::new(x.clone()),
            std::sync::Arc::new(y.clone()),
        ];
        feeds.extend(weights.iter().cloned().map(std::sync::Arc::new));
        if tg.loss_scale {
            feeds.push(std::sync::Arc::new(Tensor::scalar(1.0f32)));
        }
        let model = Model::from_graph(tg.graph);
        let mut s = hetflow::SessionBuilder::new(&model)
            .threads(1)
            .build()
            .unwrap();
        s.run(feeds).unwrap()
    };
    let (o16, o32) = (run(Precision::Bf16), run(Precision::F32));
    assert_eq!(o16[1].dtype(), DType::BF16);
    let f64s = |t: &Tensor| t.cast(DType::F64).as_slice::<f64>().unwrap().to_vec();
    let w: std::collections::HashMap<&str, Vec<f64>> = tg
        .params
        .iter()
        .zip(&weights)
        .map(|(p, t)| (p.as_str(), round_bf16(&f64s(t))))
        .collect();
    let gemm = |a: &[f64], k: usize, wt: &[f64], b: &[f64]| -> Vec<f64> {
        let m = b.len();
        let mut o = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                let dot: f64 = (0..k).map(|q| a[i * k + q] * wt[j * k + q]).sum();
                o[i * m + j] = dot + b[j];
            }
        }
        round_bf16(&o)
    };
    let h = gemm(&round_bf16(&f64s(&x)), 64, &w["fc1.weight"], &w["fc1.bias"]);
    let a: Vec<f64> = h.iter().map(|v| v.max(0.0)).collect();
    let want = gemm(&a, 128, &w["fc2.weight"], &w["fc2.bias"]);
    let rel_to = |got: &Tensor, want: &[f64]| {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let got = f64s(got);
        got.iter()
            .zip(want)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale
    };
    let vs_ref = rel_to(&o16[1], &want);
    let vs_f32 = rel_to(&o16[1], &f64s(&o32[1]));
    eprintln!("bf16 logits vs the bf16-rounding reference {vs_ref:.2e}, vs f32 {vs_f32:.2e}");
    // A value at the edge of a rounding step may round the other way in
    // f32 than in f64: one bf16 step (2^-8 relative) of the largest logit.
    assert!(vs_ref <= 1.0 / 256.0, "{vs_ref:.3e}");
    // bf16 rounding really happened: f32 differs by about that much.
    assert!(vs_f32 > 1e-4 && vs_f32 < 0.05, "{vs_f32:.3e}");
    // The gradients (scale 1) agree with f32 training's within bf16's
    // precision over a few roundings.
    for (k, p) in tg.params.iter().enumerate() {
        let r = rel(&o16[2 + k], &o32[2 + k]);
        assert!(r < 0.05 && r > 0.0, "gradient of {p}: {r:.3e}");
    }
}

#[test]
fn loss_scaling_skips_an_overflowing_step_and_training_proceeds() {
    // bf16 keeps f32's exponent range, so a scaled gradient overflows only
    // past 3.4e38: a scale of 2^127 with inputs 1000x the digits' (weight
    // gradients of 10-100) overflows; the scale of 2^40 that overflows f16
    // would not.
    let train = digits("train");
    let x = hetflow::train::rows(&train.x, 0, 32, &[32, 64]).unwrap();
    let y = hetflow::train::rows(&train.y, 0, 32, &[32]).unwrap();
    let big: Vec<f32> = x.to_f32_vec().iter().map(|v| v * 1000.0).collect();
    let big = Tensor::from_vec(vec![32, 64], big).unwrap();
    let huge = 2f32.powi(127);
    let scaling = LossScaling {
        init: huge,
        growth_interval: 2000,
    };
    let mut t = bf16_trainer(sgd(0.05, 0.9, 0.0), scaling);
    let before = t.tensors().unwrap();
    let m = t.step(&big, &y).unwrap();
    assert_eq!(m.skipped, 1);
    assert!(m.loss.is_finite());
    assert_eq!(
        t.tensors().unwrap(),
        before,
        "a skipped step changed weights"
    );
    assert_eq!(t.steps(), 0);
    assert!(t.optimizer_mut().m.iter().flatten().all(|&b| b == 0.0));
    let s = t.loss_scaler().unwrap();
    assert_eq!((s.scale, s.skipped, s.good_steps), (huge / 2.0, 1, 0));
    // Training then proceeds on the digits at the halved scale.
    let e = t.epoch(&train, 32, 0, 0, |_, _| {}).unwrap();
    assert_eq!(e.skipped, 0);
    assert_eq!(t.steps(), (1437 / 32) as u64);
    assert_ne!(t.tensors().unwrap(), before);
    let test = digits("test");
    let acc = t.evaluate(&test.x, &test.y, 360).unwrap().accuracy;
    eprintln!("after the skipped step and one epoch: test accuracy {acc:.4}");
    assert!(acc > 0.8, "{acc}");
    // A checkpoint keeps the scaler's state.
    let ck = std::env::temp_dir().join(format!("hetflow-bf16-{}.safetensors", std::process::id()));
    t.save_checkpoint(&ck, 1).unwrap();
    let mut resumed = bf16_trainer(sgd(0.05, 0.9, 0.0), LossScaling::default());
    resumed.resume(&ck).unwrap();
    let state = |t: &Trainer| {
        let s = t.loss_scaler().unwrap();
        (s.scale, s.good_steps, s.skipped)
    };
    assert_eq!(state(&resumed), state(&t));
    assert_eq!(state(&t), (huge / 2.0, 44, 1));
    let _ = std::fs::remove_file(&ck);
    // The scale doubles after `growth_interval` good steps in a row.
    let scaling = LossScaling {
        init: 1024.0,
        growth_interval: 2,
    };
    let mut t = bf16_trainer(sgd(0.05, 0.9, 0.0), scaling);
    for k in 1..=4 {
        assert_eq!(t.step(&x, &y).unwrap().skipped, 0);
        let want = 1024.0 * 2f32.powi(k / 2);
        assert_eq!(t.loss_scaler().unwrap().scale, want, "after {k} steps");
    }
}

#[test]
fn the_mlp_in_bf16_reaches_97_percent_on_digits() {
    // The f32 run's settings, computing in bf16 with loss scaling.
    let mut c = sgd(0.1, 0.9, 5e-4);
    c.schedule = Schedule::Cosine {
        total: 40 * (1437 / 16) as u64,
    };
    let mut t = bf16_trainer(c, LossScaling::default());
    let acc = fit(&mut t, 40, 16);
    let s = t.loss_scaler().unwrap();
    eprintln!(
        "bf16 MLP test accuracy {acc:.4} (loss scale {}, {} step(s) skipped)",
        s.scale, s.skipped
    );
    assert!(acc >= 0.97, "bf16 MLP test accuracy {acc:.4} < 0.97");
}
