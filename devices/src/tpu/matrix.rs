//! The matrix unit's programs on host tensors: MatMul, Gemm and Conv with
//! bf16 operands ([`super::mxu`]; one pass, or the split passes of the
//! configured [`MatmulPrecision`]) and their f32 epilogues (Gemm's
//! alpha, beta and C; Conv's bias and fused activation). Each returns the
//! f32 result in the output's row-major layout.

use super::config::MatmulPrecision;
use super::mxu::{self, ConvGeom};
use hetflow_ops::op::{resolve_window, Activation, ConvAttrs};
use hetflow_ops::Tensor;

/// Numpy-style batched MatMul (1-D operands promoted as in ONNX).
pub(crate) fn matmul(
    ins: &[Option<&Tensor>],
    tile_k: usize,
    precision: MatmulPrecision,
) -> Result<Vec<f32>, String> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k) = match sa.len() {
        0 => return Err("MatMul of a scalar".into()),
        1 => (1, sa[0]),
        r => (sa[r - 2], sa[r - 1]),
    };
    let n = match sb.len() {
        0 => return Err("MatMul of a scalar".into()),
        1 => 1,
        r => sb[r - 1],
    };
    let ba = &sa[..sa.len().saturating_sub(2)];
    let bb = &sb[..sb.len().saturating_sub(2)];
    let batch = hetflow_ops::shape::broadcast_shapes(ba, bb).map_err(|e| e.to_string())?;
    let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
    let count: usize = batch.iter().product();
    let mut out = vec![0f32; count * m * n];
    let mut idx = vec![0usize; batch.len()];
    for bi in 0..count {
        let oa = batch_offset(&idx, ba, &batch) * m * k;
        let ob = batch_offset(&idx, bb, &batch) * k * n;
        mxu::matmul_at(
            &av[oa..],
            &bv[ob..],
            m,
            k,
            n,
            tile_k,
            precision,
            &mut out[bi * m * n..(bi + 1) * m * n],
        );
        for d in (0..batch.len()).rev() {
            idx[d] += 1;
            if idx[d] < batch[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// `alpha * op(A) op(B) + beta * C`, the scaling and C in f32.
pub(crate) fn gemm(
    ins: &[Option<&Tensor>],
    tile_k: usize,
    precision: MatmulPrecision,
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<f32>, String> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() != 2 || sb.len() != 2 {
        return Err("Gemm operands must be 2-D".into());
    }
    let (m, k) = if trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let n = if trans_b { sb[0] } else { sb[1] };
    let av = row_major(a.to_f32_vec(), sa[0], sa[1], trans_a);
    let bv = row_major(b.to_f32_vec(), sb[0], sb[1], trans_b);
    let mut out = vec![0f32; m * n];
    mxu::matmul_at(&av, &bv, m, k, n, tile_k, precision, &mut out);
    // Epilogue on the vector unit, in f32: alpha * AB + beta * C.
    if alpha != 1.0 {
        for v in &mut out {
            *v *= alpha;
        }
    }
    if let Some(c) = ins.get(2).copied().flatten() {
        let cs = c.shape();
        let (cm, cn) = match cs.len() {
            0 => (1, 1),
            1 => (1, cs[0]),
            2 => (cs[0], cs[1]),
            _ => return Err(format!("Gemm C of shape {cs:?}")),
        };
        if (cm != 1 && cm != m) || (cn != 1 && cn != n) {
            return Err(format!(
                "Gemm C of shape {cs:?} does not broadcast to [{m}, {n}]"
            ));
        }
        let cv = c.to_f32_vec();
        for i in 0..m {
            for j in 0..n {
                let x = cv[if cm == 1 { 0 } else { i } * cn + if cn == 1 { 0 } else { j }];
                out[i * n + j] += if beta == 1.0 { x } else { beta * x };
            }
        }
    }
    Ok(out)
}

/// N-d grouped convolution by im2col per image and group; bias and
/// the fused activation in f32.
pub(crate) fn conv(
    attrs: &ConvAttrs,
    ins: &[Option<&Tensor>],
    tile_k: usize,
    precision: MatmulPrecision,
) -> Result<Vec<f32>, String> {
    let (x, w) = (operand(ins, 0)?, operand(ins, 1)?);
    let (sx, sw) = (x.shape(), w.shape());
    if sx.len() < 3 || sw.len() != sx.len() {
        return Err(format!("Conv of input {sx:?} and weight {sw:?}"));
    }
    let group = attrs.group.max(1);
    let (batch, c, oc) = (sx[0], sx[1], sw[0]);
    if c % group != 0 || oc % group != 0 || sw[1] * group != c {
        return Err(format!(
            "Conv: {c} input and {oc} output channels do not fit {group} groups of weight {sw:?}"
        ));
    }
    let kernel = attrs
        .kernel_shape
        .clone()
        .unwrap_or_else(|| sw[2..].to_vec());
    let win = resolve_window(
        &sx[2..],
        &kernel,
        &attrs.strides,
        &attrs.dilations,
        &attrs.pads,
        attrs.auto_pad,
        false,
    )
    .map_err(|e| e.to_string())?;
    let geom = ConvGeom {
        c,
        input: sx[2..].to_vec(),
        kernel: kernel.clone(),
        output: win.output.clone(),
        strides: win.strides.clone(),
        dilations: win.dilations.clone(),
        pads_begin: win.pads_begin.clone(),
    };
    let (cg, ocg) = (c / group, oc / group);
    let ks: usize = kernel.iter().product();
    let kdim = cg * ks;
    let plane: usize = sx[2..].iter().product();
    let p: usize = win.output.iter().product();
    let (xv, wv) = (x.to_f32_vec(), w.to_f32_vec());
    if wv.len() != oc * kdim {
        return Err(format!(
            "Conv weight {sw:?} does not match kernel {kernel:?}"
        ));
    }
    let mut out = vec![0f32; batch * oc * p];
    let mut col = vec![0f32; kdim * p];
    for n in 0..batch {
        let img = &xv[n * c * plane..(n + 1) * c * plane];
        for g in 0..group {
            mxu::im2col(&geom, img, g * cg, cg, &mut col);
            let o = (n * oc + g * ocg) * p;
            mxu::matmul_at(
                &wv[g * ocg * kdim..(g + 1) * ocg * kdim],
                &col,
                ocg,
                kdim,
                p,
                tile_k,
                precision,
                &mut out[o..o + ocg * p],
            );
        }
    }
    // Epilogue on the vector unit, in f32: bias, then the activation
    // the graph optimizer fused in.
    if let Some(bias) = ins.get(2).copied().flatten() {
        let bv = bias.to_f32_vec();
        if bv.len() != oc {
            return Err(format!(
                "Conv bias has {} values for {oc} channels",
                bv.len()
            ));
        }
        for (i, chunk) in out.chunks_mut(p.max(1)).enumerate() {
            let b = bv[i % oc];
            for v in chunk {
                *v += b;
            }
        }
    }
    match attrs.activation {
        Activation::None => {}
        Activation::Relu => {
            for v in &mut out {
                if *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
        Activation::Clip { lo, hi } => {
            for v in &mut out {
                if *v < lo {
                    *v = lo;
                } else if *v > hi {
                    *v = hi;
                }
            }
        }
    }
    Ok(out)
}

fn operand<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, String> {
    ins.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("input {i} is missing"))
}

/// `v` (`rows x cols`, row-major) as a row-major matrix, transposed when
/// `trans`.
fn row_major(v: Vec<f32>, rows: usize, cols: usize, trans: bool) -> Vec<f32> {
    if !trans {
        return v;
    }
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Offset (in matrices) of batch index `idx` of `out_batch` into an operand
/// whose batch dims `dims` broadcast to it.
fn batch_offset(idx: &[usize], dims: &[usize], out_batch: &[usize]) -> usize {
    let skip = out_batch.len() - dims.len();
    let mut off = 0;
    for (d, &size) in dims.iter().enumerate() {
        let i = if size == 1 { 0 } else { idx[skip + d] };
        off = off * size + i;
    }
    off
}
