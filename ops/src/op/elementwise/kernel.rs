//! Element-wise kernels: unary functions, binary ops with numpy
//! broadcasting, LeakyRelu, Gelu, Clip, Where and Sum.

use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::kernels::util::{
    arith_dispatch, float_dispatch, input, int_dispatch, opt_input, out, par_map, par_map2,
    par_map_slices, typed, Arith, Float, Walk,
};
use crate::op::{ActKind, BinaryOp, UnaryOp};
use crate::shape::{bcast_strides, broadcast_all, numel};
use crate::tensor::{Storable, Tensor};

/// `f(a, b)` over the broadcast of two shapes; returns the output shape and
/// elements. Same-shape and scalar operands take fast paths.
pub(crate) fn map2<A, B, O>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<(Vec<usize>, Vec<O>)>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send + Default + crate::pool::Poolable,
{
    let osh = broadcast_all(&[ash, bsh])?;
    let n = numel(&osh);
    if ash == bsh {
        return Ok((osh, par_map2(a, b, f)));
    }
    if b.len() == 1 && a.len() == n {
        let y = b[0];
        return Ok((osh, par_map(a, |x| f(x, y))));
    }
    if a.len() == 1 && b.len() == n {
        let x = a[0];
        return Ok((osh, par_map(b, |y| f(x, y))));
    }
    let (sa, sb) = (bcast_strides(ash, &osh), bcast_strides(bsh, &osh));
    let walk = Walk::new(&osh, [&sa, &sb]);
    let mut o = crate::pool::stale(n, O::default());
    walk.fill(&mut o, [0, 0], |chunk, [oa, ob], st| {
        let (oa, ob) = (oa as usize, ob as usize);
        let m = chunk.len();
        match st {
            [1, 1] => {
                for ((c, &x), &y) in chunk.iter_mut().zip(&a[oa..oa + m]).zip(&b[ob..ob + m]) {
                    *c = f(x, y);
                }
            }
            [1, 0] => {
                let y = b[ob];
                for (c, &x) in chunk.iter_mut().zip(&a[oa..oa + m]) {
                    *c = f(x, y);
                }
            }
            [0, 1] => {
                let x = a[oa];
                for (c, &y) in chunk.iter_mut().zip(&b[ob..ob + m]) {
                    *c = f(x, y);
                }
            }
            [s, t] => {
                for (j, c) in chunk.iter_mut().enumerate() {
                    *c = f(a[oa + j * s as usize], b[ob + j * t as usize]);
                }
            }
        }
    });
    Ok((osh, o))
}

fn float_unary<F: Float>(u: UnaryOp, x: &[F]) -> Vec<F> {
    match u {
        UnaryOp::Sqrt => par_map(x, |v| v.sqrt()),
        UnaryOp::Exp => par_map(x, |v| v.exp()),
        UnaryOp::Log => par_map(x, |v| v.ln()),
        UnaryOp::Sigmoid => par_map(x, |v| {
            // Stable for large |v|.
            if v >= F::ZERO {
                F::ONE / (F::ONE + (-v).exp())
            } else {
                let e = v.exp();
                e / (F::ONE + e)
            }
        }),
        UnaryOp::Tanh => par_map(x, |v| v.tanh()),
        UnaryOp::Erf => par_map(x, |v| Float::erf(v)),
        UnaryOp::Reciprocal => par_map(x, |v| F::ONE / v),
        UnaryOp::Floor => par_map(x, |v| v.floor()),
        UnaryOp::Ceil => par_map(x, |v| v.ceil()),
        UnaryOp::Sin => par_map(x, |v| v.sin()),
        UnaryOp::Cos => par_map(x, |v| v.cos()),
        UnaryOp::Tan => par_map(x, |v| v.tan()),
        UnaryOp::Asin => par_map(x, |v| v.asin()),
        UnaryOp::Acos => par_map(x, |v| v.acos()),
        UnaryOp::Atan => par_map(x, |v| v.atan()),
        UnaryOp::Sinh => par_map(x, |v| v.sinh()),
        UnaryOp::Cosh => par_map(x, |v| v.cosh()),
        UnaryOp::Asinh => par_map(x, |v| v.asinh()),
        UnaryOp::Acosh => par_map(x, |v| v.acosh()),
        UnaryOp::Atanh => par_map(x, |v| v.atanh()),
        UnaryOp::Round => par_map(x, |v| v.round_even()),
        UnaryOp::Softplus => par_map(x, softplus),
        UnaryOp::Softsign => par_map(x, |v| v / (F::ONE + v.abs())),
        UnaryOp::Mish => par_map(x, |v| v * softplus(v).tanh()),
        UnaryOp::HardSwish => {
            let (a, b) = (F::c(1.0 / 6.0), F::c(0.5));
            par_map(x, move |v| v * unit_clamp(a * v + b))
        }
        // Neg, Abs, Relu, Sign, BitwiseNot and Not are handled by the caller.
        _ => x.to_vec(),
    }
}

/// `v` limited to [0, 1] (NaN stays NaN).
#[allow(clippy::manual_clamp)]
fn unit_clamp<F: Float>(v: F) -> F {
    if v < F::ZERO {
        F::ZERO
    } else if v > F::ONE {
        F::ONE
    } else {
        v
    }
}

/// `ln(1 + e^v)` without overflow for large `v`.
fn softplus<F: Float>(v: F) -> F {
    if v > F::ZERO {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    }
}

/// The dtypes each unary op takes: Not bool, BitwiseNot integers, Neg,
/// Abs, Relu and Sign any numeric type, the rest floats.
pub(crate) fn check_unary_dtype(u: UnaryOp, d: DType) -> Result<()> {
    let ok = match u {
        UnaryOp::Not => d == DType::Bool,
        UnaryOp::BitwiseNot => d.is_int(),
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign => d != DType::Bool,
        _ => d.is_float(),
    };
    if !ok {
        crate::bail!("{u:?} does not support {d} tensors");
    }
    Ok(())
}

/// The dtypes each binary op takes (both operands alike): bitwise ops
/// and shifts integers, logical ops bool, arithmetic any
/// numeric type; comparisons anything.
pub(crate) fn check_binary_dtype(b: BinaryOp, d: DType) -> Result<()> {
    let ok = match b {
        b if b.is_bitwise() => d.is_int(),
        b if b.is_logical() => d == DType::Bool,
        b if b.is_comparison() => true,
        _ => d != DType::Bool,
    };
    if !ok {
        crate::bail!("{b:?} does not support {d} tensors");
    }
    Ok(())
}

fn relu<T: Arith>(a: T) -> T {
    if a < T::ZERO {
        T::ZERO
    } else {
        a
    }
}

/// Unary ops. Neg, Abs and Relu take every numeric type; Not takes bool; the
/// rest take floats.
pub(crate) fn unary(u: UnaryOp, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    let shape = x.shape().to_vec();
    match u {
        UnaryOp::Not => {
            let v = typed::<bool>(x, "Not input 0")?;
            out(shape, par_map(v, |b| !b))
        }
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign => {
            arith_dispatch!(x.dtype(), format!("{u:?}"), T => {
                let v = typed::<T>(x, "input 0")?;
                let o: Vec<T> = match u {
                    UnaryOp::Neg => par_map(v, |a| a.neg()),
                    UnaryOp::Abs => par_map(v, |a| a.abs()),
                    // NaN (unordered with itself) stays NaN.
                    UnaryOp::Sign => par_map(v, |a| {
                        if a > T::ZERO {
                            T::ONE
                        } else if a.to_f64() < 0.0 {
                            T::ZERO.sub(T::ONE)
                        } else {
                            a
                        }
                    }),
                    _ => par_map(v, relu::<T>),
                };
                out(shape, o)
            })
        }
        UnaryOp::BitwiseNot => int_dispatch!(x.dtype(), "BitwiseNot", T => {
            out(shape, par_map(typed::<T>(x, "input 0")?, |a| !a))
        }),
        UnaryOp::Exp | UnaryOp::Erf | UnaryOp::Sigmoid if x.dtype() == DType::F32 => {
            // Branch-free, vectorised per ISA (kernels/vmath.rs).
            use crate::kernels::vmath::{map, Erf, Exp, Sigmoid};
            let v = typed::<f32>(x, "input 0")?;
            let o: Vec<f32> = match u {
                UnaryOp::Exp => par_map_slices(v, |s, d| map(s, d, Exp)),
                UnaryOp::Erf => par_map_slices(v, |s, d| map(s, d, Erf)),
                _ => par_map_slices(v, |s, d| map(s, d, Sigmoid)),
            };
            out(shape, o)
        }
        _ => float_dispatch!(x.dtype(), format!("{u:?}"), F => {
            out(shape, float_unary::<F>(u, typed::<F>(x, "input 0")?))
        }),
    }
}

/// `x < 0 ? alpha * x : x`.
pub(crate) fn leaky_relu(alpha: f32, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    float_dispatch!(x.dtype(), "LeakyRelu", F => {
        let a = F::c(alpha as f64);
        let v = typed::<F>(x, "input 0")?;
        out(x.shape().to_vec(), par_map(v, |t| if t < F::ZERO { a * t } else { t }))
    })
}

/// The activations with parameters ([`ActKind`]), on floats.
pub(crate) fn act(
    kind: ActKind,
    alpha: f32,
    beta: f32,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    float_dispatch!(x.dtype(), format!("{kind:?}"), F => {
        let v = typed::<F>(x, "input 0")?;
        let (a, b) = (F::c(alpha as f64), F::c(beta as f64));
        let o = match kind {
            ActKind::Elu => par_map(v, |t| if t < F::ZERO { a * (t.exp() - F::ONE) } else { t }),
            ActKind::Selu => par_map(v, |t| {
                if t <= F::ZERO {
                    b * (a * t.exp() - a)
                } else {
                    b * t
                }
            }),
            ActKind::Celu => par_map(v, |t| {
                if t > F::ZERO {
                    t
                } else {
                    a * ((t / a).exp() - F::ONE)
                }
            }),
            ActKind::HardSigmoid => par_map(v, |t| unit_clamp(a * t + b)),
            ActKind::ThresholdedRelu => par_map(v, |t| if t > a { t } else { F::ZERO }),
            ActKind::Swish => par_map(v, |t| t / (F::ONE + (-(a * t)).exp())),
            ActKind::Shrink => par_map(v, |t| {
                if t < -a {
                    t + b
                } else if t > a {
                    t - b
                } else {
                    F::ZERO
                }
            }),
        };
        out(x.shape().to_vec(), o)
    })
}

/// IsNaN (`nan`) or IsInf with the signs to detect, on float tensors.
pub(crate) fn is_special(
    nan: bool,
    pos: bool,
    neg: bool,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    if !x.dtype().is_float() {
        crate::bail!(
            "{} needs a float tensor, got {}",
            if nan { "IsNaN" } else { "IsInf" },
            x.dtype()
        );
    }
    let o: Vec<bool> = crate::dispatch_data!(x.data(), v, _T => {
        par_map(v, |e| {
            let f = e.to_f64();
            if nan {
                f.is_nan()
            } else {
                (pos && f == f64::INFINITY) || (neg && f == f64::NEG_INFINITY)
            }
        })
    });
    out(x.shape().to_vec(), o)
}

/// Variadic mean with broadcasting (floats).
pub(crate) fn mean(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let sum = fold(BinaryOp::Add, inputs)?;
    let n = inputs.len().max(1) as f64;
    float_dispatch!(sum.dtype(), "Mean", F => {
        let d = F::c(n);
        out(sum.shape().to_vec(), par_map(typed::<F>(&sum, "sum")?, |v| v / d))
    })
}

/// GELU, exact or tanh-approximated.
pub(crate) fn gelu(tanh: bool, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let x = input(inputs, 0, "X")?;
    float_dispatch!(x.dtype(), "Gelu", F => {
        let v = typed::<F>(x, "input 0")?;
        let (half, one) = (F::c(0.5), F::ONE);
        let o = if tanh {
            let (k, c) = (F::c((2.0 / std::f64::consts::PI).sqrt()), F::c(0.044715));
            par_map(v, |t| half * t * (one + (k * (t + c * t * t * t)).tanh()))
        } else {
            let r = F::c(std::f64::consts::FRAC_1_SQRT_2);
            par_map(v, |t| half * t * (one + Float::erf(t * r)))
        };
        out(x.shape().to_vec(), o)
    })
}

fn bound<T: Storable + Element>(
    attr: Option<f32>,
    t: Option<&Tensor>,
    which: &str,
) -> Result<Option<T>> {
    if let Some(a) = attr {
        return Ok(Some(T::from_f64(a as f64)));
    }
    match t {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => {
            let v = typed::<T>(t, &format!("Clip {which}"))?;
            if v.len() != 1 {
                crate::bail!("Clip {which} must be a scalar, got shape {:?}", t.shape());
            }
            Ok(Some(v[0]))
        }
    }
}

fn clamp<T: PartialOrd>(mut a: T, lo: Option<T>, hi: Option<T>) -> T {
    if let Some(l) = lo {
        if a < l {
            a = l;
        }
    }
    if let Some(h) = hi {
        if a > h {
            a = h;
        }
    }
    a
}

/// Clamp to `[min, max]`; bounds from the attributes or inputs 1 and 2. When
/// min > max every element becomes max (ONNX).
pub(crate) fn clip(
    min: Option<f32>,
    max: Option<f32>,
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    let x = input(inputs, 0, "input")?;
    crate::dispatch_data!(x.data(), v, T => {
        let lo = bound::<T>(min, opt_input(inputs, 1), "min")?;
        let hi = bound::<T>(max, opt_input(inputs, 2), "max")?;
        let o = par_map(v, |a: T| clamp(a, lo, hi));
        out(x.shape().to_vec(), o)
    })
}

fn arith2<T: Arith>(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (x, y) = (typed::<T>(a, "input 0 (A)")?, typed::<T>(b, "input 1 (B)")?);
    let (s, v) = match op {
        BinaryOp::Add => map2(x, a.shape(), y, b.shape(), |p, q| p.add(q))?,
        BinaryOp::Sub => map2(x, a.shape(), y, b.shape(), |p, q| p.sub(q))?,
        BinaryOp::Mul => map2(x, a.shape(), y, b.shape(), |p, q| p.mul(q))?,
        // `p != p` is NaN: it wins in both directions, as in numpy.
        #[allow(clippy::eq_op)]
        BinaryOp::Max => map2(x, a.shape(), y, b.shape(), |p, q| {
            if p != p || (q == q && q <= p) {
                p
            } else {
                q
            }
        })?,
        #[allow(clippy::eq_op)]
        BinaryOp::Min => map2(x, a.shape(), y, b.shape(), |p, q| {
            if p != p || (q == q && q >= p) {
                p
            } else {
                q
            }
        })?,
        BinaryOp::FMod => map2(x, a.shape(), y, b.shape(), |p, q| p.rem(q))?,
        // The remainder takes the divisor's sign (Python / numpy `mod`).
        BinaryOp::Mod => map2(x, a.shape(), y, b.shape(), |p, q| {
            let r = p.rem(q);
            if r != T::ZERO && ((r < T::ZERO) != (q < T::ZERO)) {
                r.add(q)
            } else {
                r
            }
        })?,
        BinaryOp::PRelu => map2(x, a.shape(), y, b.shape(), |p, q| {
            if p < T::ZERO {
                p.mul(q)
            } else {
                p
            }
        })?,
        _ => map2(x, a.shape(), y, b.shape(), |p, q| p.div(q))?,
    };
    out(s, v)
}

/// BitwiseAnd / Or / Xor and BitShift on integers. Left shifts drop the
/// bits shifted out; right shifts of signed values are arithmetic. A shift
/// by a negative amount or by the bit width or more leaves only the sign
/// fill: -1 for a right shift of a negative value, else 0.
fn bitwise(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let what = format!("{op:?}");
    match op {
        BinaryOp::ShiftLeft | BinaryOp::ShiftRight => int_dispatch!(a.dtype(), what, T => {
            let (x, y) = (typed::<T>(a, "input 0 (X)")?, typed::<T>(b, "input 1 (Y)")?);
            let left = op == BinaryOp::ShiftLeft;
            let (s, v) = map2(x, a.shape(), y, b.shape(), |p: T, q: T| {
                let q = q as i128;
                if q < 0 || q >= T::BITS as i128 {
                    if !left && p.to_f64() < 0.0 {
                        !(0 as T)
                    } else {
                        0 as T
                    }
                } else if left {
                    p.wrapping_shl(q as u32)
                } else {
                    p >> q
                }
            })?;
            out(s, v)
        }),
        _ => int_dispatch!(a.dtype(), what, T => {
            let (x, y) = (typed::<T>(a, "input 0 (A)")?, typed::<T>(b, "input 1 (B)")?);
            let (s, v) = match op {
                BinaryOp::BitwiseAnd => map2(x, a.shape(), y, b.shape(), |p: T, q: T| p & q)?,
                BinaryOp::BitwiseOr => map2(x, a.shape(), y, b.shape(), |p: T, q: T| p | q)?,
                _ => map2(x, a.shape(), y, b.shape(), |p: T, q: T| p ^ q)?,
            };
            out(s, v)
        }),
    }
}

fn compare<T: Element>(op: BinaryOp, x: &[T], a: &[usize], y: &[T], b: &[usize]) -> Result<Tensor> {
    let (s, v) = match op {
        BinaryOp::Equal => map2(x, a, y, b, |p, q| p == q)?,
        BinaryOp::Less => map2(x, a, y, b, |p, q| p < q)?,
        BinaryOp::Greater => map2(x, a, y, b, |p, q| p > q)?,
        BinaryOp::LessOrEqual => map2(x, a, y, b, |p, q| p <= q)?,
        _ => map2(x, a, y, b, |p, q| p >= q)?,
    };
    out(s, v)
}

/// Binary ops with broadcasting. Arithmetic needs equal numeric dtypes
/// (integer Div truncates, integer division by zero gives 0); comparisons
/// take any equal dtypes and give bool; And/Or/Xor take bool; Pow casts the
/// exponent to a float base's dtype (integer bases compute through f64).
pub(crate) fn binary(op: BinaryOp, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let a = input(inputs, 0, "A")?;
    let b = input(inputs, 1, "B")?;
    if op == BinaryOp::Pow {
        return pow(a, b);
    }
    if a.dtype() != b.dtype() {
        crate::bail!("{op:?}: input 0 is {}, input 1 is {}", a.dtype(), b.dtype());
    }
    if op.is_bitwise() {
        return bitwise(op, a, b);
    }
    if op.is_logical() {
        let (x, y) = (
            typed::<bool>(a, "input 0 (A)")?,
            typed::<bool>(b, "input 1 (B)")?,
        );
        let (s, v) = match op {
            BinaryOp::And => map2(x, a.shape(), y, b.shape(), |p, q| p & q)?,
            BinaryOp::Or => map2(x, a.shape(), y, b.shape(), |p, q| p | q)?,
            _ => map2(x, a.shape(), y, b.shape(), |p, q| p ^ q)?,
        };
        return out(s, v);
    }
    if op.is_comparison() {
        return crate::dispatch_data!(a.data(), x, T => {
            compare::<T>(op, x, a.shape(), typed::<T>(b, "input 1 (B)")?, b.shape())
        });
    }
    arith_dispatch!(a.dtype(), format!("{op:?}"), T => arith2::<T>(op, a, b))
}

fn pow(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match a.dtype() {
        DType::F32 | DType::F64 => float_dispatch!(a.dtype(), "Pow", F => {
            let e = b.cast(F::DTYPE);
            let (x, y) = (typed::<F>(a, "input 0 (X)")?, typed::<F>(&e, "input 1 (Y)")?);
            let (s, v) = map2(x, a.shape(), y, e.shape(), |p, q| p.powf(q))?;
            out(s, v)
        }),
        DType::Bool => crate::bail!("Pow does not support bool tensors"),
        _ => {
            let e = b.cast(DType::F64);
            let y = typed::<f64>(&e, "input 1 (Y)")?;
            crate::dispatch_data!(a.data(), x, T => {
                let (s, v) = map2(x, a.shape(), y, e.shape(), |p: T, q| {
                    T::from_f64(p.to_f64().powf(q))
                })?;
                out(s, v)
            })
        }
    }
}

/// `cond ? x : y` with three-way broadcasting, any dtype.
pub(crate) fn where_(inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let c = input(inputs, 0, "condition")?;
    let x = input(inputs, 1, "X")?;
    let y = input(inputs, 2, "Y")?;
    let cv = typed::<bool>(c, "Where input 0 (condition)")?;
    if x.dtype() != y.dtype() {
        crate::bail!("Where: X is {}, Y is {}", x.dtype(), y.dtype());
    }
    let osh = broadcast_all(&[c.shape(), x.shape(), y.shape()])?;
    let st = [
        bcast_strides(c.shape(), &osh),
        bcast_strides(x.shape(), &osh),
        bcast_strides(y.shape(), &osh),
    ];
    let walk = Walk::new(&osh, [&st[0], &st[1], &st[2]]);
    crate::dispatch_data!(x.data(), xv, T => {
        let yv = typed::<T>(y, "Where input 2 (Y)")?;
        let mut o = crate::pool::stale(numel(&osh), T::default());
        walk.fill(&mut o, [0, 0, 0], |chunk, [oc, ox, oy], [sc, sx, sy]| {
            for (j, v) in chunk.iter_mut().enumerate() {
                let j = j as isize;
                *v = if cv[(oc + j * sc) as usize] {
                    xv[(ox + j * sx) as usize]
                } else {
                    yv[(oy + j * sy) as usize]
                };
            }
        });
        out(osh, o)
    })
}

/// Variadic sum with broadcasting.
/// A variadic op (Sum, Max, Min) as `op` folded left over its inputs; one
/// input gives a copy. The first step reads both inputs directly, so
/// nothing is copied when there are two or more.
pub(crate) fn fold(op: BinaryOp, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let first = input(inputs, 0, "data_0")?;
    if inputs.len() == 1 {
        return Ok(first.clone());
    }
    let second = input(inputs, 1, "data_1")?;
    let mut acc = binary(op, &[Some(first), Some(second)])?;
    for i in 2..inputs.len() {
        let t = input(inputs, i, &format!("data_{i}"))?;
        acc = binary(op, &[Some(&acc), Some(t)])?;
    }
    Ok(acc)
}
