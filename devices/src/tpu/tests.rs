//! Device-level tests: the PJRT-shaped client, fused epilogues, memory
//! accounting and plan-time refusals.

use super::*;
use hetflow_ops::op::{BinaryOp, UnaryOp};
use hetflow_ops::DType;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

fn dev() -> TpuDevice {
    TpuDevice::new(0, TpuConfig::default()).unwrap()
}

fn t(shape: &[usize], v: Vec<f32>) -> Arc<Tensor> {
    Arc::new(Tensor::from_vec(shape.to_vec(), v).unwrap())
}

/// `relu(x . w + bias)` as one fused executable equals the product computed
/// in f64 from the bf16-rounded operands to f32 accuracy, and equals the
/// unfused MatMul followed by Add and Relu executables bit for bit.
#[test]
fn fused_epilogue_matches_unfused_ops() {
    let d = dev();
    let (m, k, n) = (20, 200, 24);
    let mut s = 5u64;
    let xv: Vec<f32> = (0..m * k).map(|_| lcg(&mut s)).collect();
    let wv: Vec<f32> = (0..k * n).map(|_| lcg(&mut s)).collect();
    let bv: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
    let (x, w, b) = (
        d.upload(t(&[m, k], xv.clone())).unwrap(),
        d.upload(t(&[k, n], wv.clone())).unwrap(),
        d.upload(t(&[n], bv.clone())).unwrap(),
    );
    let comp = FusedComputation {
        root: Op::MatMul,
        root_arity: 2,
        n_outputs: 1,
        epilogue: vec![
            EpilogueOp {
                op: Op::Binary(BinaryOp::Add),
                operand: Some(2),
            },
            EpilogueOp {
                op: Op::Unary(UnaryOp::Relu),
                operand: None,
            },
        ],
    };
    let facts = [&x, &w, &b].map(|v| Some(Fact::known(v.dtype, &v.shape)));
    let exe = d
        .client()
        .compile(&comp, &facts, &[(DType::F32, vec![m, n])])
        .unwrap();
    assert_eq!(exe.name, "MatMul+Add+Relu");
    assert!(exe.cost.matrix_cycles > 0 && exe.cost.vector_cycles > 0);
    let bufs = [&x, &w, &b]
        .map(|v| Some(d.buffer_arc(v).unwrap()))
        .to_vec();
    let fused = d.client().execute(&exe, bufs).unwrap()[0].wait().unwrap();

    let mm = crate::testing::exec(&d, &Op::MatMul, &[Some(&x), Some(&w)]).unwrap();
    let add =
        crate::testing::exec(&d, &Op::Binary(BinaryOp::Add), &[Some(&mm[0]), Some(&b)]).unwrap();
    let relu = crate::testing::exec(&d, &Op::Unary(UnaryOp::Relu), &[Some(&add[0])]).unwrap();
    let unfused = d.download(&relu[0]).unwrap();
    assert_eq!(*fused, *unfused);

    let r = |v: f32| half::bf16::from_f32(v).to_f32() as f64;
    let got = fused.as_slice::<f32>().unwrap();
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|kk| r(xv[i * k + kk]) * r(wv[kk * n + j])).sum();
            let want = (dot + bv[j] as f64).max(0.0);
            assert!((got[i * n + j] as f64 - want).abs() < 1e-5, "({i},{j})");
        }
    }
}

/// Epilogues must be element-wise and shape-preserving, on a matrix root.
#[test]
fn bad_fusions_are_refused() {
    let d = dev();
    let a = Some(Fact::known(DType::F32, &[4, 8]));
    let b = Some(Fact::known(DType::F32, &[8, 3]));
    let mut comp = FusedComputation::single(&Op::MatMul, 2, 1);
    comp.epilogue.push(EpilogueOp {
        op: Op::Softmax {
            axis: -1,
            legacy: false,
        },
        operand: None,
    });
    let err = d
        .client()
        .compile(&comp, &[a.clone(), b.clone()], &[(DType::F32, vec![4, 3])])
        .err();
    assert!(matches!(err, Some(program::CompileError::Invalid(m)) if m.contains("element-wise")));
    let mut comp = FusedComputation::single(&Op::Unary(UnaryOp::Relu), 1, 1);
    comp.epilogue.push(EpilogueOp {
        op: Op::Unary(UnaryOp::Neg),
        operand: None,
    });
    assert!(d
        .client()
        .compile(&comp, std::slice::from_ref(&a), &[(DType::F32, vec![4, 8])])
        .is_err());
    // A broadcast that would grow the result.
    let mut comp = FusedComputation::single(&Op::MatMul, 2, 1);
    comp.epilogue.push(EpilogueOp {
        op: Op::Binary(BinaryOp::Add),
        operand: Some(2),
    });
    let big = Some(Fact::known(DType::F32, &[2, 4, 3]));
    assert!(d
        .client()
        .compile(&comp, &[a, b, big], &[(DType::F32, vec![4, 3])])
        .is_err());
}

#[test]
fn supports_refuses_gathers_and_dynamic_shapes() {
    let d = dev();
    assert!(d
        .supports(&Op::Gather { axis: 0 })
        .unwrap_err()
        .contains("gather"));
    assert!(d.supports(&Op::Range).unwrap_err().contains("dynamic"));
    assert!(d.supports(&Op::MatMul).is_ok());
    assert!(d
        .supports(&Op::Softmax {
            axis: -1,
            legacy: false
        })
        .is_ok());
}

/// Reshape with its shape as an operand compiles for the output shape the
/// caller resolved from it, and the kernel reads the operand.
#[test]
fn shape_operands_become_constants() {
    let d = dev();
    let x = d
        .upload(t(&[2, 6], (0..12).map(|v| v as f32).collect()))
        .unwrap();
    let shape = d
        .upload(Arc::new(Tensor::from_vec(vec![2], vec![3i64, 4]).unwrap()))
        .unwrap();
    let op = Op::Reshape {
        allowzero: false,
        shape: None,
    };
    let y = crate::testing::exec(&d, &op, &[Some(&x), Some(&shape)]).unwrap();
    assert_eq!(y[0].shape, vec![3, 4]);
    assert_eq!(d.download(&y[0]).unwrap().shape(), &[3, 4]);
    // Without a resolved shape the device refuses (it infers nothing).
    let e = d
        .execute(
            &op,
            &[Some(&x), Some(&shape)],
            &crate::OutputSpec::unknown(1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("dynamic shape"), "{e}");
}

/// Errors name the op and the device; integer matmuls are refused.
#[test]
fn errors_name_op_and_device() {
    let d = dev();
    let a = d.upload(t(&[2, 3], vec![0.0; 6])).unwrap();
    let b = d.upload(t(&[4, 2], vec![0.0; 8])).unwrap();
    let e = crate::testing::exec(&d, &Op::MatMul, &[Some(&a), Some(&b)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("MatMul") && e.contains("tpu:0"), "{e}");
    let i = d
        .upload(Arc::new(
            Tensor::from_vec(vec![2, 2], vec![1i32, 2, 3, 4]).unwrap(),
        ))
        .unwrap();
    let e = crate::testing::exec(&d, &Op::MatMul, &[Some(&i), Some(&i)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("matrix unit takes"), "{e}");
}

/// Buffers count against HBM and give their bytes back when dropped.
#[test]
fn device_memory_is_bounded() {
    let cfg = TpuConfig {
        hbm_bytes: 1000,
        ..TpuConfig::default()
    };
    let d = TpuDevice::new(3, cfg).unwrap();
    assert_eq!(d.id().to_string(), "tpu:3");
    let a = d.upload(t(&[100], vec![1.0; 100])).unwrap();
    assert_eq!(d.client().memory_in_use(), 400);
    let e = d.upload(t(&[200], vec![1.0; 200])).unwrap_err().to_string();
    assert!(e.contains("out of device memory"), "{e}");
    let y = crate::testing::exec(&d, &Op::Unary(UnaryOp::Neg), &[Some(&a)]).unwrap();
    assert_eq!(
        d.download(&y[0]).unwrap().as_slice::<f32>().unwrap()[0],
        -1.0
    );
    assert_eq!(d.client().memory_in_use(), 800);
    drop((a, y));
    // The queue worker lets go of its handles just after completing.
    let t0 = std::time::Instant::now();
    while d.client().memory_in_use() != 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(d.client().memory_in_use(), 0);
}

/// Executions complete asynchronously and report to `on_kernel_done`
/// with the modelled time; results do not depend on the thread count.
#[test]
fn kernels_report_and_are_thread_count_independent() {
    let one = TpuDevice::new(
        0,
        TpuConfig {
            emulation_threads: 1,
            ..TpuConfig::default()
        },
    )
    .unwrap();
    let many = TpuDevice::new(
        1,
        TpuConfig {
            emulation_threads: 4,
            ..TpuConfig::default()
        },
    )
    .unwrap();
    let mut s = 9u64;
    let av: Vec<f32> = (0..300 * 260).map(|_| lcg(&mut s)).collect();
    let bv: Vec<f32> = (0..260 * 70).map(|_| lcg(&mut s)).collect();
    let run = |d: &TpuDevice| {
        let a = d.upload(t(&[300, 260], av.clone())).unwrap();
        let b = d.upload(t(&[260, 70], bv.clone())).unwrap();
        let y = crate::testing::exec(d, &Op::MatMul, &[Some(&a), Some(&b)]).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(d.on_kernel_done(&y[0], Box::new(move |r| tx.send(r).unwrap())));
        // Uploads were not produced by a kernel.
        assert!(!d.on_kernel_done(&a, Box::new(|_| {})));
        let out = d.download(&y[0]).unwrap();
        let report = rx.recv().unwrap();
        assert!(report.modelled_us.unwrap() > 0.0 && report.end >= report.start);
        out
    };
    assert_eq!(*run(&one), *run(&many));
}

/// Conv is bit-identical to a direct convolution written here with the
/// documented order: K flattened as (channel, ky, kx), cut into tiles of
/// `mxu_rows`, each tile summed in order from +0.0 and the tile sums added
/// in order; operands rounded to bf16 by the `half` crate; then the f32
/// bias. Groups, stride and padding included.
#[test]
fn conv_is_bit_identical_to_direct_reference() {
    let d = dev();
    let (n, c, h, w, oc, group, kh, kw) = (2, 64, 7, 6, 6, 2, 3, 3);
    let (stride, pad) = (2, 1);
    let (oh, ow) = (
        (h + 2 * pad - kh) / stride + 1,
        (w + 2 * pad - kw) / stride + 1,
    );
    let mut s = 21u64;
    let xv: Vec<f32> = (0..n * c * h * w).map(|_| lcg(&mut s) * 4.0).collect();
    let wv: Vec<f32> = (0..oc * (c / group) * kh * kw)
        .map(|_| lcg(&mut s))
        .collect();
    let bv: Vec<f32> = (0..oc).map(|_| lcg(&mut s)).collect();
    let attrs = hetflow_ops::op::ConvAttrs {
        strides: vec![stride, stride],
        pads: vec![pad, pad, pad, pad],
        group,
        ..Default::default()
    };
    let x = d.upload(t(&[n, c, h, w], xv.clone())).unwrap();
    let wt = d.upload(t(&[oc, c / group, kh, kw], wv.clone())).unwrap();
    let b = d.upload(t(&[oc], bv.clone())).unwrap();
    let y = crate::testing::exec(&d, &Op::Conv(attrs), &[Some(&x), Some(&wt), Some(&b)]).unwrap();
    let got = d.download(&y[0]).unwrap();
    assert_eq!(got.shape(), &[n, oc, oh, ow]);
    let got = got.as_slice::<f32>().unwrap();

    let r = |v: f32| half::bf16::from_f32(v).to_f32();
    let tile = TpuConfig::default().mxu_rows;
    let (cg, ocg) = (c / group, oc / group);
    let kdim = cg * kh * kw;
    assert!(kdim > 2 * tile, "the test should span several K tiles");
    let mut differ = 0;
    for img in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0f32;
                    let mut part = 0f32;
                    for kf in 0..kdim {
                        let (ci, ky, kx) = (kf / (kh * kw), (kf / kw) % kh, kf % kw);
                        let iy = (yy * stride + ky) as isize - pad as isize;
                        let ix = (xx * stride + kx) as isize - pad as isize;
                        let xval = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            0.0
                        } else {
                            xv[((img * c + g * cg + ci) * h + iy as usize) * w + ix as usize]
                        };
                        part += r(xval) * r(wv[o * kdim + kf]);
                        if kf % tile == tile - 1 || kf == kdim - 1 {
                            acc += part;
                            part = 0.0;
                        }
                    }
                    let want = acc + bv[o];
                    let i = ((img * oc + o) * oh + yy) * ow + xx;
                    differ += usize::from(got[i].to_bits() != want.to_bits());
                }
            }
        }
    }
    assert_eq!(differ, 0, "{differ} outputs differ in bits");
}
