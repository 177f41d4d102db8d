//! Soak: stream inference through a two-stage pipeline (`cpu:0,cpu:1`)
//! for a given time, sample resident memory every second, and check every
//! result. Prints one `t_s,rss_mb,done` line per sample (CSV), then a
//! summary: requests fed and answered, lost or wrong ones, and the RSS
//! slope after warm-up (least squares, MB per hour). Exits non-zero when a
//! request is lost or wrong. `scripts/soak.sh` runs it and checks the
//! slope; docs/reliability.md records a one-hour run.
//!
//! ```text
//! cargo run --release --example soak                   # 5 s
//! cargo run --release --example soak -- --seconds 3600
//! ```

use hetflow::ops::op::UnaryOp;
use hetflow::ops::{DType, Dim, Graph, Op};
use hetflow::{Model, SessionBuilder, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct inputs cycled through the stream; each one's answer is known.
const DISTINCT: usize = 16;

/// x[16, 256] -> Gemm 256x512 + Relu -> Gemm 512x128 + Relu -> Gemm
/// 128x10 -> Softmax.
fn mlp() -> Result<Model, hetflow::Error> {
    let mut g = Graph::default();
    let mut h = g.add_input("x", DType::F32, vec![Dim::Known(16), Dim::Known(256)]);
    let dims = [256usize, 512, 128, 10];
    for l in 0..3 {
        let (k, n) = (dims[l], dims[l + 1]);
        let w: Vec<f32> = (0..k * n)
            .map(|i| (((i * 31 + l) % 97) as f32 - 48.0) / (48.0 * (k as f32).sqrt()))
            .collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01).collect();
        let w = g.add_const(&format!("w{l}"), Tensor::from_vec(vec![k, n], w)?);
        let b = g.add_const(&format!("b{l}"), Tensor::from_vec(vec![n], b)?);
        let gemm = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Default::default(),
        };
        h = g.add_node(&format!("fc{l}"), gemm, &[h, w, b], 1)[0];
        if l < 2 {
            h = g.add_node(&format!("relu{l}"), Op::Unary(UnaryOp::Relu), &[h], 1)[0];
        }
    }
    let p = g.add_node(
        "probs",
        Op::Softmax {
            axis: -1,
            legacy: false,
        },
        &[h],
        1,
    )[0];
    g.add_output(p);
    Ok(Model::from_graph(g.finish()?))
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Least-squares slope of `y` over `x`.
fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 5.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let v = args.next().ok_or("--seconds needs a value")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 7.0 * 86400.0)
                    .ok_or_else(|| {
                        format!("--seconds must be a number in (0, 604800], got '{v}'")
                    })?;
            }
            other => {
                return Err(format!("unknown argument '{other}' (expected --seconds S)").into())
            }
        }
    }
    let model = mlp()?;
    let inputs: Vec<Arc<Tensor>> = (0..DISTINCT)
        .map(|s| {
            let v = (0..16 * 256)
                .map(|i| (((i * 13 + s * 7) % 23) as f32 - 11.0) / 11.0)
                .collect();
            Tensor::from_vec(vec![16, 256], v).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    // The answers, from a one-device session.
    let mut one = SessionBuilder::new(&model).devices("cpu").build()?;
    let answers: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| one.run(vec![x.clone()]).map(|o| o[0].to_f32_vec()))
        .collect::<Result<_, _>>()?;
    drop(one);

    let mut s = SessionBuilder::new(&model)
        .devices("cpu:0,cpu:1")
        .credits(2)
        .build()?;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = 0.0f64;
    let (mut answered, mut wrong) = (0u64, 0u64);
    println!("t_s,rss_mb,done");
    // An endless feed, cut off once the time is up.
    let feed = (0usize..)
        .map(|i| vec![inputs[i % DISTINCT].clone()])
        .take_while(|_| start.elapsed() < limit);
    let fed = s.run_stream_each(feed, |i, out| {
        answered += 1;
        let got = out[0].to_f32_vec();
        let want = &answers[i % DISTINCT];
        if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| (g - w).abs() > 1e-5) {
            wrong += 1;
        }
        let t = start.elapsed().as_secs_f64();
        if t >= next_sample {
            let r = rss_mb();
            println!("{t:.1},{r:.2},{answered}");
            samples.push((t, r));
            next_sample += 1.0;
        }
        Ok(())
    })?;
    let took = start.elapsed().as_secs_f64();
    let lost = fed as u64 - answered;
    // Warm-up: the first tenth of the run (at least 2 s) is left out.
    let warm = (took * 0.1).max(2.0);
    let steady: Vec<(f64, f64)> = samples.iter().copied().filter(|p| p.0 >= warm).collect();
    let per_h = if steady.len() >= 3 {
        slope(&steady) * 3600.0
    } else {
        0.0
    };
    let (lo, hi) = steady
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
            (l.min(p.1), h.max(p.1))
        });
    println!(
        "soak: {took:.1} s, {fed} requests fed, {answered} answered, {lost} lost, {wrong} wrong, {:.0} requests/s",
        answered as f64 / took
    );
    println!(
        "rss_steady_mb={lo:.2}..{hi:.2} rss_slope_mb_per_h={per_h:.3} samples={}",
        steady.len()
    );
    if lost > 0 || wrong > 0 {
        return Err(format!("{lost} requests lost and {wrong} wrong").into());
    }
    Ok(())
}
