//! Gradients of the pooling ops (from [`crate::autodiff`]) and the
//! [`Op::PoolGrad`] backward op (inference and host kernel).
//!
//! MaxPool routes each output's gradient to the first maximum of its
//! window (NaN cells never win); AveragePool spreads it over the window
//! cells with the divisor the forward pass used (`count_include_pad`,
//! `ceil_mode` cells beyond the padding not counted). GlobalAveragePool's
//! gradient is dY broadcast and divided by the spatial size, in existing
//! ops.

use super::kernel::Win3;
use crate::autodiff::{gy0, input, no_rule, Grad, Grads};
use crate::error::Result;
use crate::graph::{Fact, Node, ValueId};
use crate::kernels::util::{float_dispatch, input as tin, out, typed, Arith, Float};
use crate::op::common::{check_same_dtype, input as fin, one, same};
use crate::op::{BinaryOp, Op, PoolAttrs};
use crate::tensor::Tensor;

/// The input gradient of a pooling node.
pub(crate) fn grad(
    cx: &mut Grads,
    node: &Node,
    gys: &[Option<ValueId>],
    _want: &[bool],
) -> Result<Grad> {
    let gy = gy0(gys)?;
    let x = input(node, 0)?;
    let gx = match &node.op {
        Op::MaxPool(p) => cx.node1(
            "d_maxpool",
            Op::PoolGrad {
                max: true,
                attrs: p.clone(),
            },
            &[x, gy],
        )?,
        Op::AveragePool(p) => cx.node1(
            "d_avgpool",
            Op::PoolGrad {
                max: false,
                attrs: p.clone(),
            },
            &[x, gy],
        )?,
        Op::GlobalAveragePool => {
            let xs = cx.shape(x)?;
            let area: usize = xs[2..].iter().product();
            let e = cx.expand(gy, &xs)?;
            let s = cx.scalar_like(gy, 1.0 / area.max(1) as f64)?;
            cx.binary(BinaryOp::Mul, e, s)?
        }
        _ => return Err(no_rule(&node.op)),
    };
    Ok(vec![Some(gx)])
}

/// Facts of [`Op::PoolGrad`]: X's.
pub(crate) fn infer(inputs: &[Option<&Fact>]) -> Result<Vec<Fact>> {
    let x = fin(inputs, 0)?;
    let gy = fin(inputs, 1)?;
    check_same_dtype(&[x, gy], "PoolGrad")?;
    one(same(x))
}

/// Host kernel of [`Op::PoolGrad`]: inputs X and dY, output dX.
pub(crate) fn pool_grad(p: &PoolAttrs, max: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = tin(inputs, 0, "X")?;
    let gy = tin(inputs, 1, "dY")?;
    let xs = x.shape();
    let w = p.window(xs)?;
    let mut ys = xs[..2].to_vec();
    ys.extend(&w.output);
    if gy.shape() != ys.as_slice() || gy.dtype() != x.dtype() {
        crate::bail!(
            "dY is {} {:?}, the pool's output is {} {:?}",
            gy.dtype(),
            gy.shape(),
            x.dtype(),
            ys
        );
    }
    let w3 = Win3::lift(&xs[2..], &w);
    let isz: usize = xs[2..].iter().product();
    let osz: usize = w.output.iter().product();
    float_dispatch!(x.dtype(), "PoolGrad", F => {
        let xv = typed::<F>(x, "X")?;
        let yv = typed::<F>(gy, "dY")?;
        let mut gx = vec![F::ZERO; xv.len()];
        crate::kernels::util::par_chunks(&mut gx, isz.max(1), xv.len(), |plane, dst| {
            let src = &xv[plane * isz..][..isz];
            let g = &yv[plane * osz..][..osz];
            plane_grad(&w3, max, p.count_include_pad, src, g, dst);
        });
        out(xs.to_vec(), gx)
    })
}

fn plane_grad<F: Float>(w: &Win3, max: bool, include_pad: bool, src: &[F], g: &[F], dst: &mut [F]) {
    let [_, ih, iw] = w.input;
    let [_, oh, ow] = w.output;
    let pos = |d: usize, o: usize, k: usize| o * w.strides[d] + k * w.dil[d] - w.pb[d];
    for oz in 0..w.output[0] {
        let ((z0, z1), zn) = w.range(0, oz);
        for oy in 0..oh {
            let ((y0, y1), yn) = w.range(1, oy);
            for ox in 0..ow {
                let ((x0, x1), xn) = w.range(2, ox);
                let gv = g[(oz * oh + oy) * ow + ox];
                let at = |kz: usize, ky: usize, kx: usize| {
                    (pos(0, oz, kz) * ih + pos(1, oy, ky)) * iw + pos(2, ox, kx)
                };
                if max {
                    let mut best: Option<(usize, F)> = None;
                    for kz in z0..z1 {
                        for ky in y0..y1 {
                            for kx in x0..x1 {
                                let i = at(kz, ky, kx);
                                let v = src[i];
                                if best.is_none_or(|(_, b)| v > b) {
                                    best = Some((i, v));
                                }
                            }
                        }
                    }
                    if let Some((i, _)) = best {
                        dst[i] += gv;
                    }
                } else {
                    let cnt = if include_pad {
                        zn * yn * xn
                    } else {
                        (z1 - z0) * (y1 - y0) * (x1 - x0)
                    };
                    if cnt == 0 {
                        continue;
                    }
                    let share = gv / F::c(cnt as f64);
                    for kz in z0..z1 {
                        for ky in y0..y1 {
                            for kx in x0..x1 {
                                dst[at(kz, ky, kx)] += share;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::autodiff::check::{check, check_bf16, diff, Arg};
    use crate::op::{Op, PoolAttrs};

    fn attrs(k: &[usize], s: &[usize], pads: &[usize], include_pad: bool, ceil: bool) -> PoolAttrs {
        PoolAttrs {
            kernel_shape: k.to_vec(),
            strides: s.to_vec(),
            pads: pads.to_vec(),
            count_include_pad: include_pad,
            ceil_mode: ceil,
            ..Default::default()
        }
    }

    /// Distinct values, so no window has a tie the finite differences
    /// could straddle.
    fn distinct(shape: &[usize]) -> Arg {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * 37) % n) as f64 / n as f64 - 0.5)
            .collect();
        Arg::Diff(shape.to_vec(), v)
    }

    #[test]
    fn max_pool_gradient_goes_to_the_window_maximum() {
        check(
            Op::MaxPool(attrs(&[2, 2], &[2, 2], &[], false, false)),
            vec![distinct(&[2, 3, 4, 4])],
            1,
        );
        check(
            Op::MaxPool(attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], false, true)),
            vec![distinct(&[1, 2, 6, 5])],
            1,
        );
        check(
            Op::MaxPool(attrs(&[3], &[1], &[1, 1], false, false)),
            vec![distinct(&[2, 2, 7])],
            1,
        );
    }

    #[test]
    fn average_pool_gradient_uses_the_forward_divisor() {
        for include_pad in [false, true] {
            check(
                Op::AveragePool(attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], include_pad, false)),
                vec![diff(&[2, 2, 5, 5], 1)],
                1,
            );
        }
        check(
            Op::AveragePool(attrs(&[2, 2], &[2, 2], &[], false, true)),
            vec![diff(&[1, 2, 5, 5], 2)],
            1,
        );
        check(Op::GlobalAveragePool, vec![diff(&[2, 3, 4, 5], 3)], 1);
    }

    #[test]
    fn pool_gradients_on_bf16_tensors() {
        // PoolGrad on bf16 tensors (bf16 training); `distinct` keeps the
        // window maxima apart after rounding to bf16.
        check_bf16(
            Op::MaxPool(attrs(&[2, 2], &[2, 2], &[], false, false)),
            vec![distinct(&[2, 3, 4, 4])],
            1,
        );
        check_bf16(
            Op::AveragePool(attrs(&[3, 3], &[2, 2], &[1, 1, 1, 1], false, false)),
            vec![diff(&[2, 2, 5, 5], 1)],
            1,
        );
    }
}
