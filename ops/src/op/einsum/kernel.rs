//! Einsum: a sum of products over the labelled dims of its operands, with
//! `...` broadcasting, repeated labels (diagonals) and implicit outputs.
//! Computed in f64 and returned in the operands' dtype.

use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::util::input;
use crate::shape::numel;
use crate::tensor::Tensor;

/// A parsed equation for concrete operand shapes.
struct Plan {
    /// Size of every label (letters first, then the ellipsis dims).
    sizes: Vec<usize>,
    /// Per operand, the label of each of its dims.
    operands: Vec<Vec<usize>>,
    /// Labels of the output dims.
    output: Vec<usize>,
}

enum Term {
    Label(u8),
    Ellipsis,
}

fn parse_term(t: &str) -> Result<Vec<Term>> {
    let mut out = Vec::new();
    let b = t.as_bytes();
    let mut i = 0;
    let mut seen_ellipsis = false;
    while i < b.len() {
        if b[i] == b'.' {
            if b.get(i..i + 3) != Some(b"...") || seen_ellipsis {
                crate::bail!("Einsum: bad ellipsis in term '{t}'");
            }
            seen_ellipsis = true;
            out.push(Term::Ellipsis);
            i += 3;
        } else if b[i].is_ascii_alphabetic() {
            out.push(Term::Label(b[i]));
            i += 1;
        } else {
            crate::bail!(
                "Einsum: unexpected character '{}' in term '{t}'",
                b[i] as char
            );
        }
    }
    Ok(out)
}

fn plan(equation: &str, shapes: &[&[usize]]) -> Result<Plan> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let terms: Vec<Vec<Term>> = lhs.split(',').map(parse_term).collect::<Result<_>>()?;
    if terms.len() != shapes.len() {
        crate::bail!(
            "Einsum: equation '{equation}' has {} operands, got {} inputs",
            terms.len(),
            shapes.len()
        );
    }
    // Letters get ids in order of first appearance; the ellipsis dims
    // (right-aligned across operands) come after them.
    let mut letters: Vec<u8> = Vec::new();
    let mut ell_rank = 0;
    for (t, s) in terms.iter().zip(shapes) {
        let n_labels = t.iter().filter(|x| matches!(x, Term::Label(_))).count();
        let has_ell = t.iter().any(|x| matches!(x, Term::Ellipsis));
        if s.len() < n_labels || (!has_ell && s.len() != n_labels) {
            crate::bail!(
                "Einsum: term of {n_labels} labels does not fit shape {:?}",
                s
            );
        }
        if has_ell {
            ell_rank = ell_rank.max(s.len() - n_labels);
        }
        for x in t {
            if let Term::Label(c) = x {
                if !letters.contains(c) {
                    letters.push(*c);
                }
            }
        }
    }
    let nl = letters.len();
    let id = |c: u8| letters.iter().position(|&l| l == c);
    let mut sizes: Vec<Option<usize>> = vec![None; nl + ell_rank];
    let mut operands = Vec::with_capacity(terms.len());
    for (t, s) in terms.iter().zip(shapes) {
        let n_labels = t.iter().filter(|x| matches!(x, Term::Label(_))).count();
        let e = s.len() - n_labels;
        let mut labels = Vec::with_capacity(s.len());
        for x in t {
            match x {
                Term::Label(c) => labels.push(id(*c).unwrap_or(0)),
                Term::Ellipsis => labels.extend((ell_rank - e..ell_rank).map(|k| nl + k)),
            }
        }
        for (&l, &d) in labels.iter().zip(s.iter()) {
            sizes[l] = match sizes[l] {
                None => Some(d),
                Some(p) if p == d => Some(p),
                // Ellipsis dims broadcast.
                Some(1) if l >= nl => Some(d),
                Some(p) if l >= nl && d == 1 => Some(p),
                Some(p) => crate::bail!("Einsum: dim sizes {p} and {d} of one label differ"),
            };
        }
        operands.push(labels);
    }
    let sizes: Vec<usize> = sizes.into_iter().map(|s| s.unwrap_or(1)).collect();
    let output: Vec<usize> = match rhs {
        Some(r) => {
            let mut o = Vec::new();
            for x in parse_term(r)? {
                match x {
                    Term::Label(c) => {
                        let l = id(c).ok_or_else(|| {
                            crate::Error::msg(format!(
                                "Einsum: output label '{}' is not an input label",
                                c as char
                            ))
                        })?;
                        if o.contains(&l) {
                            crate::bail!("Einsum: output label '{}' repeated", c as char);
                        }
                        o.push(l);
                    }
                    Term::Ellipsis => o.extend(nl..nl + ell_rank),
                }
            }
            o
        }
        None => {
            // Implicit: the ellipsis dims, then the letters used once, sorted.
            let mut once: Vec<u8> = letters
                .iter()
                .copied()
                .filter(|&c| {
                    terms
                        .iter()
                        .flatten()
                        .filter(|x| matches!(x, Term::Label(d) if *d == c))
                        .count()
                        == 1
                })
                .collect();
            once.sort_unstable();
            (nl..nl + ell_rank)
                .chain(once.iter().filter_map(|&c| id(c)))
                .collect()
        }
    };
    Ok(Plan {
        sizes,
        operands,
        output,
    })
}

/// The output shape of `equation` for the given operand shapes.
pub(crate) fn einsum_shape(equation: &str, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let p = plan(equation, shapes)?;
    Ok(p.output.iter().map(|&l| p.sizes[l]).collect())
}

/// Einsum over f64 copies of the operands.
pub(crate) fn einsum(equation: &str, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let ts: Vec<&Tensor> = (0..inputs.len())
        .map(|i| input(inputs, i, &format!("Inputs[{i}]")))
        .collect::<Result<_>>()?;
    let dt = ts.first().map_or(DType::F32, |t| t.dtype());
    if ts.iter().any(|t| t.dtype() != dt) || dt == DType::Bool {
        crate::bail!("Einsum: operands must share one numeric dtype");
    }
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
    let p = plan(equation, &shapes)?;
    let wide: Vec<Tensor> = ts.iter().map(|t| t.cast(DType::F64)).collect();
    let vals: Vec<&[f64]> = wide
        .iter()
        .map(|t| t.as_slice::<f64>())
        .collect::<Result<_>>()?;
    // Strides of each operand per label (summed for repeated labels; 0 on
    // broadcast ellipsis dims of size 1).
    let nlab = p.sizes.len();
    let mut op_strides = vec![vec![0usize; nlab]; ts.len()];
    for (k, (labels, s)) in p.operands.iter().zip(&shapes).enumerate() {
        let mut st = 1;
        for (d, &l) in labels.iter().enumerate().rev() {
            if s[d] != 1 || p.sizes[l] == 1 {
                op_strides[k][l] += st;
            }
            st *= s[d];
        }
    }
    // Loop labels: output labels first, then the summed ones.
    let mut order = p.output.clone();
    order.extend((0..nlab).filter(|l| !p.output.contains(l)));
    let oshape: Vec<usize> = p.output.iter().map(|&l| p.sizes[l]).collect();
    let n_out = numel(&oshape);
    let inner: usize = order[p.output.len()..]
        .iter()
        .map(|&l| p.sizes[l])
        .product();
    let total = n_out.saturating_mul(inner);
    if total > 1 << 32 {
        crate::bail!("Einsum: {total} multiply-adds is too many");
    }
    let mut o = vec![0f64; n_out];
    let mut idx = vec![0usize; order.len()];
    for step in 0..total {
        let mut prod = 1.0;
        for (k, v) in vals.iter().enumerate() {
            let off: usize = order
                .iter()
                .zip(&idx)
                .map(|(&l, &i)| i * op_strides[k][l])
                .sum();
            prod *= v[off];
        }
        o[step / inner.max(1)] += prod;
        for d in (0..order.len()).rev() {
            idx[d] += 1;
            if idx[d] < p.sizes[order[d]] {
                break;
            }
            idx[d] = 0;
        }
    }
    let t = Tensor::from_vec(oshape, o)?;
    Ok(t.cast(dt))
}

#[cfg(test)]
mod tests {
    use crate::kernels::eval;
    use crate::kernels::util::testutil::t;
    use crate::op::Op;

    fn es(eq: &str, ins: &[&crate::Tensor]) -> crate::Tensor {
        let ins: Vec<Option<&crate::Tensor>> = ins.iter().map(|t| Some(*t)).collect();
        eval(
            &Op::Einsum {
                equation: eq.into(),
            },
            &ins,
            1,
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn matmul_trace_transpose_and_batch() {
        let a = t(&[2, 3], (0..6).map(|v| v as f64).collect());
        let b = t(&[3, 2], (0..6).map(|v| v as f64 * 0.5).collect());
        let r = es("ij,jk->ik", &[&a, &b]);
        let (av, bv) = (a.as_slice::<f64>().unwrap(), b.as_slice::<f64>().unwrap());
        let mut want = [0.0; 4];
        for i in 0..2 {
            for k in 0..2 {
                for j in 0..3 {
                    want[i * 2 + k] += av[i * 3 + j] * bv[j * 2 + k];
                }
            }
        }
        assert_eq!(r.as_slice::<f64>().unwrap(), &want[..]);
        let sq = t(&[3, 3], (0..9).map(|v| v as f32).collect());
        assert_eq!(es("ii", &[&sq]).as_slice::<f32>().unwrap(), &[12.0]);
        let tr = es("ji", &[&a]);
        assert_eq!(tr.shape(), &[3, 2]);
        assert_eq!(
            tr.as_slice::<f64>().unwrap(),
            &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
        );
        let x = t(&[2, 2, 3], (0..12).map(|v| v as f64).collect());
        let r = es("...ij->...i", &[&x]);
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(r.as_slice::<f64>().unwrap(), &[3.0, 12.0, 21.0, 30.0]);
    }
}
