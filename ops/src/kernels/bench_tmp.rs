//! Temporary timing harness (not part of the change).
#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::op::{ConvAttrs, Op, PoolAttrs};
    use crate::tensor::Tensor;
    use std::time::Instant;

    fn time(f: impl Fn()) -> f64 {
        f();
        let t = Instant::now();
        let n = 5;
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() / n as f64 * 1e3
    }

    #[test]
    #[ignore]
    fn bench_convs() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            // (cin, hw, cout, k, stride, group)
            let layers = [
                (3, 224, 64, 7, 2, 1),
                (64, 56, 64, 1, 1, 1),
                (64, 56, 64, 3, 1, 1),
                (64, 56, 256, 1, 1, 1),
                (256, 56, 128, 1, 1, 1),
                (128, 56, 128, 3, 2, 1),
                (256, 28, 256, 3, 1, 1),
                (512, 14, 512, 3, 1, 1),
                (1024, 14, 2048, 1, 2, 1),
                (2048, 7, 512, 1, 1, 1),
                (512, 7, 512, 3, 1, 1),
                (256, 56, 256, 3, 1, 256),
            ];
            for (cin, hw, cout, k, s, g) in layers {
                let x = Tensor::from_vec(vec![1, cin, hw, hw], vec![0.5f32; cin * hw * hw]).unwrap();
                let w = Tensor::from_vec(vec![cout, cin / g, k, k], vec![0.01f32; cout * cin / g * k * k]).unwrap();
                let b = Tensor::from_vec(vec![cout], vec![0.1f32; cout]).unwrap();
                let p = k / 2;
                let op = Op::Conv(ConvAttrs { strides: vec![s, s], pads: vec![p; 4], group: g, ..Default::default() });
                let ms = time(|| {
                    eval(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap();
                });
                let o = (hw + 2 * p - k) / s + 1;
                let flops = 2.0 * (cout * o * o * cin / g * k * k) as f64;
                // Raw GEMM of the same size.
                let (m, n, kk) = (cout / g, o * o, cin / g * k * k);
                let a = Tensor::from_vec(vec![m, kk], vec![0.01f32; m * kk]).unwrap();
                let bb = Tensor::from_vec(vec![kk, n], vec![0.01f32; kk * n]).unwrap();
                let gms = if g == 1 { time(|| { eval(&Op::MatMul, &[Some(&a), Some(&bb)], 1).unwrap(); }) } else { 0.0 };
                println!("conv c{cin} hw{hw} m{cout} k{k} s{s} g{g}: {ms:.3} ms, {:.1} GFLOP/s; raw gemm {gms:.3} ms", flops / ms / 1e6);
            }
            let x = Tensor::from_vec(vec![1, 64, 112, 112], vec![0.5f32; 64 * 112 * 112]).unwrap();
            let op = Op::MaxPool(PoolAttrs { kernel_shape: vec![3, 3], strides: vec![2, 2], pads: vec![1; 4], ..Default::default() });
            println!("maxpool {:.3} ms", time(|| { eval(&op, &[Some(&x)], 1).unwrap(); }));
            let y = Tensor::from_vec(vec![1, 256, 56, 56], vec![0.5f32; 256 * 56 * 56]).unwrap();
            println!("add {:.3} ms", time(|| { eval(&Op::Binary(crate::op::BinaryOp::Add), &[Some(&y), Some(&y)], 1).unwrap(); }));
            println!("relu {:.3} ms", time(|| { eval(&Op::Unary(crate::op::UnaryOp::Relu), &[Some(&y)], 1).unwrap(); }));
        });
    }
}
