//! References for the conv kernels' tests: the f64 N-d convolution,
//! the fused epilogue, and a runner that checks one kernel on one 2-D
//! case across biases, prepared filters, residuals and activations.

use crate::kernels::util::testutil::{close, rnd};
use crate::op::{resolve_window, Activation, AutoPad};

/// What a fused conv's epilogue makes of the reference output `base`:
/// plus the residual when there is one, then the activation (in f64).
pub(super) fn epilogue_ref(base: &[f64], res: Option<&[f32]>, act: Activation) -> Vec<f64> {
    base.iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = res.map_or(v, |r| v + r[i] as f64);
            match act {
                Activation::None => v,
                Activation::Relu => v.max(0.0),
                Activation::Clip { lo, hi } => v.clamp(lo as f64, hi as f64),
            }
        })
        .collect()
}

/// The checked shapes of a one-group 2-D conv of `x` (`[n, c, h, w]`)
/// into `m` filters with explicit pads `[t, l, b, r]`.
pub(super) fn geom2d(
    xs: [usize; 4],
    m: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 4],
) -> super::geom::Geom {
    let win = resolve_window(
        &xs[2..],
        &kernel,
        &strides,
        &dil,
        &pads,
        AutoPad::NotSet,
        false,
    )
    .expect("window");
    super::geom::Geom {
        n: xs[0],
        c: xs[1],
        m,
        group: 1,
        spatial: xs[2..].to_vec(),
        win,
    }
}

/// A one-group 2-D conv case: x `[n, c, h, w]`, filters, kernel,
/// strides, dilations, pads `[t, l, b, r]`.
pub(super) type Shape2d = (
    [usize; 4],
    usize,
    [usize; 2],
    [usize; 2],
    [usize; 2],
    [usize; 4],
);

/// An f32 conv kernel under test: `(geom, x, w, bias, residual,
/// activation, prepared)`, where `prepared` asks it to use a filter
/// prepared beforehand.
pub(super) type Kernel<'a> = &'a dyn Fn(
    &super::geom::Geom,
    &[f32],
    &[f32],
    Option<&[f32]>,
    Option<&[f32]>,
    Activation,
    bool,
) -> Vec<f32>;

/// Runs `kernel` on `sh` with and without bias and a prepared filter,
/// each activation and a residual, against the f64 reference: within
/// `tol` of 1 + |value|. Inputs are seeded from `seed`.
pub(super) fn check_epilogues(sh: &Shape2d, seed: u64, tol: f64, kernel: Kernel<'_>) {
    let (xs, m, kern, st, dl, pads) = *sh;
    let g = geom2d(xs, m, kern, st, dl, pads);
    let ws = [m, xs[1], kern[0], kern[1]];
    let x = rnd(xs.iter().product(), seed);
    let w = rnd(ws.iter().product(), seed + 1);
    let b = rnd(m, seed + 2);
    let os = g.win.output.clone();
    let reference = |b: Option<&[f32]>| conv_ref(&x, &xs, &w, &ws, b, 1, &st, &dl, &pads[..2], &os);
    let (plain, nob) = (reference(Some(&b)), reference(None));
    let res = rnd(plain.len(), seed + 3);
    for (act, with_res, bias, prepared) in [
        (Activation::None, false, true, false),
        (Activation::None, false, false, true),
        (Activation::Relu, true, true, true),
        (Activation::Clip { lo: -0.2, hi: 0.3 }, true, false, false),
    ] {
        let r = with_res.then_some(&res[..]);
        let bv = bias.then_some(&b[..]);
        let o = kernel(&g, &x, &w, bv, r, act, prepared);
        let base = if bias { &plain } else { &nob };
        close(&o, &epilogue_ref(base, r, act), tol);
    }
}

/// Naive f64 N-d convolution with explicit begin pads (output size given).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_ref(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    group: usize,
    strides: &[usize],
    dil: &[usize],
    pb: &[usize],
    os: &[usize],
) -> Vec<f64> {
    let nd = xs.len() - 2;
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    let (cg, mg) = (c / group, m / group);
    let osz: usize = os.iter().product();
    let ksz: usize = ws[2..].iter().product();
    let isz: usize = xs[2..].iter().product();
    let mut out = vec![0.0; n * m * osz];
    let unravel = |mut i: usize, s: &[usize]| {
        let mut v = vec![0; s.len()];
        for d in (0..s.len()).rev() {
            v[d] = i % s[d];
            i /= s[d];
        }
        v
    };
    for bn in 0..n {
        for oc in 0..m {
            let gi = oc / mg;
            for op in 0..osz {
                let oidx = unravel(op, os);
                let mut acc = b.map_or(0.0, |b| b[oc] as f64);
                for ci in 0..cg {
                    for kp in 0..ksz {
                        let kidx = unravel(kp, &ws[2..]);
                        let mut flat = 0usize;
                        let mut ok = true;
                        for d in 0..nd {
                            let p =
                                (oidx[d] * strides[d] + kidx[d] * dil[d]) as isize - pb[d] as isize;
                            if p < 0 || p >= xs[2 + d] as isize {
                                ok = false;
                            }
                            flat = flat * xs[2 + d] + p.max(0) as usize;
                        }
                        if ok {
                            let xi = (bn * c + gi * cg + ci) * isz + flat;
                            let wi = (oc * cg + ci) * ksz + kp;
                            acc += x[xi] as f64 * w[wi] as f64;
                        }
                    }
                }
                out[(bn * m + oc) * osz + op] = acc;
            }
        }
    }
    out
}

/// [`check_epilogues`] on each of `shapes`, the k-th seeded `seed + 10k`.
pub(super) fn check_shapes(shapes: &[Shape2d], seed: u64, tol: f64, kernel: Kernel<'_>) {
    for (k, sh) in shapes.iter().enumerate() {
        check_epilogues(sh, seed + 10 * k as u64, tol, kernel);
    }
}

/// A conv kernel over a filter prepared by `pack` (`(w, m, kdim)`):
/// [`check_shapes`] with the filter packed when the case asks for it.
#[allow(clippy::type_complexity)]
pub(super) fn check_packed<P>(
    shapes: &[Shape2d],
    seed: u64,
    tol: f64,
    pack: fn(&[f32], usize, usize) -> crate::error::Result<P>,
    conv: fn(
        &super::geom::Geom,
        Option<&P>,
        &[f32],
        &[f32],
        Option<&[f32]>,
        Option<&[f32]>,
        Activation,
    ) -> crate::error::Result<Vec<f32>>,
) {
    check_shapes(shapes, seed, tol, &|g, x, w, b, r, act, prep| {
        let pre = prep.then(|| pack(w, g.m, w.len() / g.m).expect("pack"));
        conv(g, pre.as_ref(), x, w, b, r, act).expect("conv")
    });
}
