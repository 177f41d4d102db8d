//! Gradient of Conv (from [`crate::autodiff`]) and its two backward ops:
//! [`Op::ConvGradFilter`] (dW) and [`Op::ConvGradInput`] (dX), with their
//! inference and host kernels. The bias gradient is a ReduceSum of dY over
//! the batch and spatial dims.
//!
//! The kernels are direct loops over 1- to 3-D windows (lifted to 3-D):
//! dW is parallel over output channels, dX over (batch, input channel)
//! planes, so no two threads write the same element. Any group count,
//! depthwise included, stride, dilation and padding are covered.

use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::error::Result;
use crate::graph::{Dim, Fact, Node, ValueId};
use crate::kernels::util::{float_dispatch, input as tin, out, typed, Arith};
use crate::op::common::{check_same_dtype, input as fin, one, with_dtype};
use crate::op::{resolve_window, Activation, ConvAttrs, Op, Window};
use crate::tensor::Tensor;

/// The input gradients of a Conv node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    want: &[bool],
) -> Result<Grad> {
    let Op::Conv(a) = &node.op else {
        return Err(no_rule(&node.op));
    };
    if a.activation != Activation::None || a.residual {
        crate::bail!("a Conv with a fused activation or residual has no gradient rule");
    }
    let gy = gy0(gys)?;
    let x = input(node, 0)?;
    let w = input(node, 1)?;
    let xs = cx.shape(x)?;
    let ws = cx.shape(w)?;
    let mut attrs = a.clone();
    attrs.kernel_shape = Some(ws[2..].to_vec());
    let mut g = vec![None; node.inputs.len()];
    if want[0] {
        let op = Op::ConvGradInput {
            attrs: attrs.clone(),
            x_shape: xs.clone(),
        };
        g[0] = Some(cx.node1("d_conv_x", op, &[gy, w])?);
    }
    if want[1] {
        g[1] = Some(cx.node1("d_conv_w", Op::ConvGradFilter(attrs), &[x, gy])?);
    }
    if want.get(2).copied().unwrap_or(false) {
        let r = xs.len();
        let axes: Vec<usize> = std::iter::once(0).chain(2..r).collect();
        let s = cx.reduce_sum(gy, &axes)?;
        g[2] = Some(cx.reshape(s, &[ws[0]])?);
    }
    Ok(g)
}

/// Facts of the two backward ops.
pub(crate) fn infer(op: &Op, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>> {
    match op {
        Op::ConvGradInput { x_shape, .. } => {
            let gy = fin(inputs, 0)?;
            let w = fin(inputs, 1)?;
            let dt = check_same_dtype(&[gy, w], "ConvGradInput")?;
            let shape = x_shape.iter().map(|&d| Dim::Known(d)).collect();
            one(with_dtype(dt, Some(shape)))
        }
        Op::ConvGradFilter(a) => {
            let x = fin(inputs, 0)?;
            let gy = fin(inputs, 1)?;
            let dt = check_same_dtype(&[x, gy], "ConvGradFilter")?;
            let Some(k) = &a.kernel_shape else {
                crate::bail!("ConvGradFilter needs kernel_shape");
            };
            let shape = match (&x.shape, &gy.shape) {
                (Some(xs), Some(ys)) if xs.len() >= 2 && ys.len() >= 2 => {
                    let cg = match xs[1] {
                        Dim::Known(c) => Dim::Known(c / a.group.max(1)),
                        ref d => d.clone(),
                    };
                    let mut s = vec![ys[1].clone(), cg];
                    s.extend(k.iter().map(|&d| Dim::Known(d)));
                    Some(s)
                }
                _ => None,
            };
            one(with_dtype(dt, shape))
        }
        _ => Err(crate::op::common::other_family(op, "conv")),
    }
}

/// One convolution's shapes, lifted to 3 spatial dims.
struct Geo {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    inp: [usize; 3],
    outp: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    d: [usize; 3],
    pb: [usize; 3],
}

impl Geo {
    fn new(a: &ConvAttrs, xs: &[usize], ws: &[usize], ys: &[usize]) -> Result<Geo> {
        if xs.len() < 3 || xs.len() > 5 || ws.len() != xs.len() || ys.len() != xs.len() {
            crate::bail!("conv backward takes X, W, dY of rank 3 to 5, got {xs:?}, {ws:?}, {ys:?}");
        }
        let group = a.group.max(1);
        let (n, c, m) = (xs[0], xs[1], ws[0]);
        if c != ws[1] * group || m % group != 0 || ys[0] != n || ys[1] != m {
            crate::bail!("X {xs:?}, W {ws:?} and dY {ys:?} do not fit group {group}");
        }
        let win: Window = resolve_window(
            &xs[2..],
            &ws[2..],
            &a.strides,
            &a.dilations,
            &a.pads,
            a.auto_pad,
            false,
        )?;
        if win.output != ys[2..] {
            crate::bail!(
                "dY's spatial dims {:?} differ from the convolution's output {:?}",
                &ys[2..],
                win.output
            );
        }
        let off = 5 - xs.len();
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            std::array::from_fn(|i| if i < off { fill } else { v[i - off] })
        };
        Ok(Geo {
            n,
            c,
            m,
            group,
            inp: lift(&xs[2..], 1),
            outp: lift(&win.output, 1),
            k: lift(&win.kernel, 1),
            s: lift(&win.strides, 1),
            d: lift(&win.dilations, 1),
            pb: lift(&win.pads_begin, 0),
        })
    }
    fn isz(&self) -> usize {
        self.inp.iter().product()
    }
    fn osz(&self) -> usize {
        self.outp.iter().product()
    }
    fn ksz(&self) -> usize {
        self.k.iter().product()
    }
    /// For kernel index `k` of dim `dim`: the output range whose input
    /// index `o * s - pb + k * d` is inside, and the input index at its
    /// start.
    fn span(&self, dim: usize, k: usize) -> (usize, usize, usize) {
        let off = (k * self.d[dim]) as isize - self.pb[dim] as isize;
        let s = self.s[dim] as isize;
        let n_in = self.inp[dim] as isize;
        // o * s + off >= 0  and  o * s + off < n_in
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi = if n_in - off <= 0 {
            0
        } else {
            ((n_in - off + s - 1) / s).min(self.outp[dim] as isize)
        };
        let lo = lo.min(hi);
        (lo as usize, hi as usize, (lo * s + off).max(0) as usize)
    }
}

/// Calls `f(kernel offset, input offset, output offset, run)` for every
/// kernel cell and every contiguous run of output columns it touches.
fn for_each_tap(g: &Geo, mut f: impl FnMut(usize, usize, usize, usize)) {
    let (ih, iw) = (g.inp[1], g.inp[2]);
    let (oh, ow) = (g.outp[1], g.outp[2]);
    for kz in 0..g.k[0] {
        let (z0, z1, iz0) = g.span(0, kz);
        for ky in 0..g.k[1] {
            let (y0, y1, iy0) = g.span(1, ky);
            for kx in 0..g.k[2] {
                let (x0, x1, ix0) = g.span(2, kx);
                if x1 <= x0 {
                    continue;
                }
                let kf = (kz * g.k[1] + ky) * g.k[2] + kx;
                for (zi, oz) in (z0..z1).enumerate() {
                    let iz = iz0 + zi * g.s[0];
                    for (yi, oy) in (y0..y1).enumerate() {
                        let iy = iy0 + yi * g.s[1];
                        f(
                            kf,
                            (iz * ih + iy) * iw + ix0,
                            (oz * oh + oy) * ow + x0,
                            x1 - x0,
                        );
                    }
                }
            }
        }
    }
}

/// Host kernel of [`Op::ConvGradFilter`]: inputs X, dY; output dW.
pub(crate) fn grad_filter(a: &ConvAttrs, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = tin(inputs, 0, "X")?;
    let gy = tin(inputs, 1, "dY")?;
    let Some(k) = &a.kernel_shape else {
        crate::bail!("ConvGradFilter needs kernel_shape");
    };
    let xs = x.shape();
    if xs.len() < 3 {
        crate::bail!("X must have rank >= 3, got {xs:?}");
    }
    let mut ws = vec![
        gy.shape().get(1).copied().unwrap_or(0),
        xs[1] / a.group.max(1),
    ];
    ws.extend(k);
    let g = Geo::new(a, xs, &ws, gy.shape())?;
    if x.dtype() != gy.dtype() {
        crate::bail!("X is {}, dY is {}", x.dtype(), gy.dtype());
    }
    float_dispatch!(x.dtype(), "ConvGradFilter", F => {
        let xv = typed::<F>(x, "X")?;
        let yv = typed::<F>(gy, "dY")?;
        let (cg, mg, ksz, isz, osz) = (g.c / g.group, g.m / g.group, g.ksz(), g.isz(), g.osz());
        let sx = g.s[2];
        let mut gw = vec![F::ZERO; g.m * cg * ksz];
        crate::kernels::util::par_chunks(&mut gw, cg * ksz, xv.len() * ksz, |m, wm| {
            let grp = m / mg;
            for n in 0..g.n {
                let yp = &yv[(n * g.m + m) * osz..][..osz];
                for c in 0..cg {
                    let xp = &xv[(n * g.c + grp * cg + c) * isz..][..isz];
                    let wk = &mut wm[c * ksz..][..ksz];
                    for_each_tap(&g, |kf, io, oo, run| {
                        let mut acc = F::ZERO;
                        for t in 0..run {
                            acc += yp[oo + t] * xp[io + t * sx];
                        }
                        wk[kf] += acc;
                    });
                }
            }
        });
        out(ws, gw)
    })
}

/// Host kernel of [`Op::ConvGradInput`]: inputs dY, W; output dX.
pub(crate) fn grad_input(
    a: &ConvAttrs,
    x_shape: &[usize],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let gy = tin(inputs, 0, "dY")?;
    let w = tin(inputs, 1, "W")?;
    let g = Geo::new(a, x_shape, w.shape(), gy.shape())?;
    if w.dtype() != gy.dtype() {
        crate::bail!("W is {}, dY is {}", w.dtype(), gy.dtype());
    }
    float_dispatch!(w.dtype(), "ConvGradInput", F => {
        let wv = typed::<F>(w, "W")?;
        let yv = typed::<F>(gy, "dY")?;
        let (cg, mg, ksz, isz, osz) = (g.c / g.group, g.m / g.group, g.ksz(), g.isz(), g.osz());
        let sx = g.s[2];
        let mut gx = vec![F::ZERO; g.n * g.c * isz];
        crate::kernels::util::par_chunks(&mut gx, isz, yv.len() * ksz, |plane, xp| {
            let (n, ci) = (plane / g.c, plane % g.c);
            let (grp, c) = (ci / cg, ci % cg);
            for m in grp * mg..(grp + 1) * mg {
                let yp = &yv[(n * g.m + m) * osz..][..osz];
                let wk = &wv[(m * cg + c) * ksz..][..ksz];
                for_each_tap(&g, |kf, io, oo, run| {
                    let wt = wk[kf];
                    for t in 0..run {
                        xp[io + t * sx] += wt * yp[oo + t];
                    }
                });
            }
        });
        out(x_shape.to_vec(), gx)
    })
}

/// Flops of the backward ops: the forward convolution's MACs, twice.
pub(crate) fn flops(op: &Op, inputs: &[Option<&Fact>], outputs: &[&Fact]) -> f64 {
    let shape = |f: Option<&Fact>| f.and_then(|f| f.concrete_shape());
    let (gy, w_elems) = match op {
        Op::ConvGradInput { .. } => (
            shape(inputs.first().copied().flatten()),
            shape(inputs.get(1).copied().flatten()).map(|s| s.iter().product::<usize>()),
        ),
        Op::ConvGradFilter(_) => (
            shape(inputs.get(1).copied().flatten()),
            outputs
                .first()
                .and_then(|f| f.concrete_shape())
                .map(|s| s.iter().product()),
        ),
        _ => return 0.0,
    };
    match (gy, w_elems) {
        (Some(ys), Some(we)) if ys.len() >= 2 && ys[1] > 0 => {
            let per_out = we as f64 / ys[1] as f64;
            2.0 * ys.iter().map(|&d| d as f64).product::<f64>() * per_out
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_bf16, diff};
    use crate::op::{AutoPad, ConvAttrs, Op};

    fn conv(strides: &[usize], pads: &[usize], dil: &[usize], group: usize) -> Op {
        Op::Conv(ConvAttrs {
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dil.to_vec(),
            group,
            ..Default::default()
        })
    }

    #[test]
    fn conv2d_gradients_with_stride_padding_dilation_and_bias() {
        check(
            conv(&[1, 1], &[1, 1, 1, 1], &[], 1),
            vec![
                diff(&[2, 3, 5, 5], 1),
                diff(&[4, 3, 3, 3], 2),
                diff(&[4], 3),
            ],
            1,
        );
        check(
            conv(&[2, 1], &[0, 1, 1, 0], &[1, 2], 1),
            vec![diff(&[1, 2, 6, 7], 4), diff(&[3, 2, 3, 2], 5)],
            1,
        );
    }

    #[test]
    fn grouped_and_depthwise_conv_gradients() {
        check(
            conv(&[1, 1], &[1, 1, 1, 1], &[], 2),
            vec![
                diff(&[2, 4, 4, 4], 6),
                diff(&[6, 2, 3, 3], 7),
                diff(&[6], 8),
            ],
            1,
        );
        check(
            conv(&[2, 2], &[1, 1, 1, 1], &[], 3),
            vec![diff(&[1, 3, 5, 5], 9), diff(&[3, 1, 3, 3], 10)],
            1,
        );
    }

    #[test]
    fn conv1d_3d_and_auto_pad_gradients() {
        check(
            conv(&[2], &[1, 0], &[], 1),
            vec![diff(&[2, 2, 7], 11), diff(&[3, 2, 3], 12)],
            1,
        );
        check(
            conv(&[1, 1, 1], &[], &[], 1),
            vec![diff(&[1, 2, 3, 4, 3], 13), diff(&[2, 2, 2, 2, 2], 14)],
            1,
        );
        let same = Op::Conv(ConvAttrs {
            auto_pad: AutoPad::SameUpper,
            strides: vec![2, 2],
            ..Default::default()
        });
        check(
            same,
            vec![diff(&[1, 2, 5, 6], 15), diff(&[2, 2, 3, 3], 16)],
            1,
        );
    }

    #[test]
    fn conv_gradients_on_bf16_tensors() {
        // What bf16 training runs: ConvGradFilter and ConvGradInput on
        // bf16 tensors (widened to f32 per op).
        check_bf16(
            conv(&[1, 1], &[1, 1, 1, 1], &[], 1),
            vec![
                diff(&[2, 3, 5, 5], 1),
                diff(&[4, 3, 3, 3], 2),
                diff(&[4], 3),
            ],
            1,
        );
    }
}
