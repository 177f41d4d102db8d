// hetflow OpenCL kernels, part 2: parameterised element-wise ops, data
// movement for any element size, casts, reductions, convolution, pooling
// and normalisations. Appended to kernels.cl (uses bcast_offset).

// x < 0 ? alpha * x : x.
__kernel void u_leaky_relu(__global const float *x, __global float *y,
                           const uint n, const float alpha) {
    const size_t i = get_global_id(0);
    if (i < n) {
        const float v = x[i];
        y[i] = v < 0.0f ? alpha * v : v;
    }
}

// Clamp to lo[0] / hi[0] when present (NaN passes through).
__kernel void u_clip(__global const float *x, __global float *y, const uint n,
                     __global const float *lo, __global const float *hi,
                     const uint has_lo, const uint has_hi) {
    const size_t i = get_global_id(0);
    if (i < n) {
        float v = x[i];
        if (has_lo && v < lo[0])
            v = lo[0];
        if (has_hi && v > hi[0])
            v = hi[0];
        y[i] = v;
    }
}

// Offset of element `i` of a `rank`-dim index space `d` under signed
// strides `s`.
inline long strided_offset(uint i, const uint rank, const uint *d, const int *s) {
    long off = 0;
    for (int k = (int)rank - 1; k >= 0; --k) {
        const uint c = i % d[k];
        i /= d[k];
        off += (long)c * s[k];
    }
    return off;
}

// y[yo + sum c_k ys_k] = x[xo + sum c_k xs_k] over the index space `dims`:
// transpose, slice, concat (one launch per input), split, expand.
#define COPY_ND(name, T)                                                      \
    __kernel void name(__global const T *x, __global T *y, const uint n,      \
                       const uint rank, const uint8 dims, const int8 xs,      \
                       const int8 ys, const int xo, const int yo) {           \
        const size_t i = get_global_id(0);                                    \
        if (i >= n)                                                           \
            return;                                                           \
        uint d[8];                                                            \
        int s1[8], s2[8];                                                     \
        vstore8(dims, 0, d);                                                  \
        vstore8(xs, 0, s1);                                                   \
        vstore8(ys, 0, s2);                                                   \
        y[yo + strided_offset((uint)i, rank, d, s2)] =                        \
            x[xo + strided_offset((uint)i, rank, d, s1)];                     \
    }

COPY_ND(copy_nd_1, uchar)
COPY_ND(copy_nd_2, ushort)
COPY_ND(copy_nd_4, uint)
COPY_ND(copy_nd_8, ulong)

// Gather along an axis: y viewed as (outer, nidx, inner) reads
// x (outer, D, inner) at idx[j] (resolved, in range).
#define GATHER(name, T)                                                       \
    __kernel void name(__global const T *x, __global const uint *idx,         \
                       __global T *y, const uint n, const uint nidx,          \
                       const uint D, const uint inner) {                      \
        const size_t i = get_global_id(0);                                    \
        if (i >= n)                                                           \
            return;                                                           \
        const uint in = i % inner, t = i / inner;                             \
        const uint j = t % nidx, o = t / nidx;                                \
        y[i] = x[((size_t)o * D + idx[j]) * inner + in];                      \
    }

GATHER(gather_1, uchar)
GATHER(gather_2, ushort)
GATHER(gather_4, uint)
GATHER(gather_8, ulong)

// cond ? a : b with broadcasting; cond is bool (one byte).
#define WHERE(name, T)                                                        \
    __kernel void name(__global const uchar *c, __global const T *a,          \
                       __global const T *b, __global T *y, const uint n,      \
                       const uint rank, const uint8 dims, const uint8 sc,     \
                       const uint8 sa, const uint8 sb) {                      \
        const size_t i = get_global_id(0);                                    \
        if (i >= n)                                                           \
            return;                                                           \
        uint d[8], s0[8], s1[8], s2[8];                                       \
        vstore8(dims, 0, d);                                                  \
        vstore8(sc, 0, s0);                                                   \
        vstore8(sa, 0, s1);                                                   \
        vstore8(sb, 0, s2);                                                   \
        y[i] = c[bcast_offset((uint)i, rank, d, s0)]                          \
                   ? a[bcast_offset((uint)i, rank, d, s1)]                    \
                   : b[bcast_offset((uint)i, rank, d, s2)];                   \
    }

WHERE(where_1, uchar)
WHERE(where_4, uint)
WHERE(where_8, ulong)

// Casts with ONNX semantics: float -> int truncates and saturates (NaN
// -> 0), anything -> bool is `!= 0`.
#define CAST(name, S, D, expr)                                                \
    __kernel void name(__global const S *x, __global D *y, const uint n) {    \
        const size_t i = get_global_id(0);                                    \
        if (i < n) {                                                          \
            const S v = x[i];                                                 \
            y[i] = (expr);                                                    \
        }                                                                     \
    }

CAST(cast_f32_i64, float, long, convert_long_sat_rtz(v))
CAST(cast_f32_i32, float, int, convert_int_sat_rtz(v))
CAST(cast_f32_bool, float, uchar, v != 0.0f ? 1 : 0)
CAST(cast_i64_f32, long, float, convert_float(v))
CAST(cast_i32_f32, int, float, convert_float(v))
CAST(cast_u8_f32, uchar, float, convert_float(v))

// Reduction: output element i (kept dims `od`, input strides `os`) folds
// the input over the reduced dims `rd` (input strides `rs`, `count`
// elements). Kinds (`reduce_code` in codes.rs): 0 Sum, 1 Mean, 2 Max,
// 3 Min, 4 Prod, 5 L1, 6 L2, 7 LogSum, 8 LogSumExp, 9 SumSquare. Max and
// Min propagate NaN.
__kernel void reduce_nd(__global const float *x, __global float *y,
                        const uint n, const uint orank, const uint8 od,
                        const uint8 os, const uint rrank, const uint8 rd,
                        const uint8 rs, const uint count, const uint kind) {
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    uint d1[8], s1[8], d2[8], s2[8];
    vstore8(od, 0, d1);
    vstore8(os, 0, s1);
    vstore8(rd, 0, d2);
    vstore8(rs, 0, s2);
    __global const float *base = x + bcast_offset((uint)i, orank, d1, s1);
    float acc = kind == 4 ? 1.0f : (kind == 2 ? -FLT_MAX : (kind == 3 ? FLT_MAX : 0.0f));
    float m = -INFINITY;
    if (kind == 8) {
        for (uint j = 0; j < count; ++j)
            m = fmax(m, base[bcast_offset(j, rrank, d2, s2)]);
        if (isinf(m))
            m = 0.0f;
    }
    for (uint j = 0; j < count; ++j) {
        const float v = base[bcast_offset(j, rrank, d2, s2)];
        switch (kind) {
        case 2:
            acc = (v > acc || isnan(v)) ? v : acc;
            break;
        case 3:
            acc = (v < acc || isnan(v)) ? v : acc;
            break;
        case 4:
            acc *= v;
            break;
        case 5:
            acc += fabs(v);
            break;
        case 6:
        case 9:
            acc += v * v;
            break;
        case 8:
            acc += exp(v - m);
            break;
        default:
            acc += v;
        }
    }
    if (kind == 1)
        acc /= (float)count;
    else if (kind == 6)
        acc = sqrt(acc);
    else if (kind == 7)
        acc = log(acc);
    else if (kind == 8)
        acc = log(acc) + m;
    y[i] = acc;
}

// Geometry of a convolution or pooling window, spatial dims lifted to 3
// (leading dims of size 1), in one int buffer:
// 0-2 input, 3-5 output, 6-8 kernel, 9-11 strides, 12-14 dilations,
// 15-17 pads begin, 18-20 pads end.
#define G_IN 0
#define G_OUT 3
#define G_K 6
#define G_S 9
#define G_D 12
#define G_PB 15
#define G_PE 18

// Direct convolution, one work-item per output element: dim 0 the output
// position, dim 1 the output channel, dim 2 the batch. C input channels,
// M output channels, `groups` groups; optional bias.
// Activations (`act_code` in codes.rs): 0 None, 1 Relu, 2 Clip (clamped
// to [lo, hi]).
__kernel void conv_direct(__global const float *x, __global const float *w,
                          __global const float *b, __global float *y,
                          __global const int *g, const uint C, const uint M,
                          const uint groups, const uint has_b, const uint act,
                          const float lo, const float hi) {
    const int IZ = g[G_IN], IY = g[G_IN + 1], IX = g[G_IN + 2];
    const int OZ = g[G_OUT], OY = g[G_OUT + 1], OX = g[G_OUT + 2];
    const int KZ = g[G_K], KY = g[G_K + 1], KX = g[G_K + 2];
    const size_t p = get_global_id(0);
    if (p >= (size_t)OZ * OY * OX)
        return;
    const uint m = get_global_id(1), nb = get_global_id(2);
    const int ox = p % OX, oy = (p / OX) % OY, oz = p / ((size_t)OX * OY);
    const int z0 = oz * g[G_S] - g[G_PB], y0 = oy * g[G_S + 1] - g[G_PB + 1],
              x0 = ox * g[G_S + 2] - g[G_PB + 2];
    const int DZ = g[G_D], DY = g[G_D + 1], DX = g[G_D + 2];
    const uint cpg = C / groups, grp = m / (M / groups);
    const size_t plane = (size_t)IZ * IY * IX, ksz = (size_t)KZ * KY * KX;
    float acc = 0.0f;
    for (uint ic = 0; ic < cpg; ++ic) {
        __global const float *xp = x + ((size_t)nb * C + grp * cpg + ic) * plane;
        __global const float *wp = w + ((size_t)m * cpg + ic) * ksz;
        for (int kz = 0; kz < KZ; ++kz) {
            const int iz = z0 + kz * DZ;
            if (iz < 0 || iz >= IZ)
                continue;
            for (int ky = 0; ky < KY; ++ky) {
                const int iy = y0 + ky * DY;
                if (iy < 0 || iy >= IY)
                    continue;
                __global const float *xr = xp + ((size_t)iz * IY + iy) * IX;
                __global const float *wr = wp + (kz * KY + ky) * KX;
                for (int kx = 0; kx < KX; ++kx) {
                    const int ix = x0 + kx * DX;
                    if (ix >= 0 && ix < IX)
                        acc += xr[ix] * wr[kx];
                }
            }
        }
    }
    if (has_b)
        acc += b[m];
    if (act == 1)
        acc = fmax(acc, 0.0f);
    else if (act == 2)
        acc = fmin(fmax(acc, lo), hi);
    y[((size_t)nb * M + m) * OZ * OY * OX + p] = acc;
}

// im2col for Conv as GEMM: for image n and group grp (bg = n * groups +
// grp), col[bg] is a (cpg * KZ*KY*KX) x (OZ*OY*OX) matrix whose row
// r = (ic, kz, ky, kx) holds the input each output position reads through
// that weight (0 in the padding). One work-item per (output row (oz, oy),
// r, bg) writes OX contiguous values (dim 0 the output row, dim 1 r, dim 2
// bg): divisions once per work-item, not per element.
__kernel void im2col(__global const float *x, __global float *col,
                     __global const int *g, const uint C, const uint groups) {
    const int IZ = g[G_IN], IY = g[G_IN + 1], IX = g[G_IN + 2];
    const int OZ = g[G_OUT], OY = g[G_OUT + 1], OX = g[G_OUT + 2];
    const int KZ = g[G_K], KY = g[G_K + 1], KX = g[G_K + 2];
    const uint row = get_global_id(0);
    if (row >= (uint)(OZ * OY))
        return;
    const uint r = get_global_id(1), bg = get_global_id(2);
    const uint ksz = KZ * KY * KX, cpg = C / groups;
    const uint ic = r / ksz, kk = r % ksz;
    const int kx = kk % KX, ky = (kk / KX) % KY, kz = kk / (KX * KY);
    const int oy = row % OY, oz = row / OY;
    const int iz = oz * g[G_S] - g[G_PB] + kz * g[G_D];
    const int iy = oy * g[G_S + 1] - g[G_PB + 1] + ky * g[G_D + 1];
    const int sx = g[G_S + 2], x0 = kx * g[G_D + 2] - g[G_PB + 2];
    const uint n = bg / groups, grp = bg % groups;
    const size_t P = (size_t)OZ * OY * OX;
    __global float *out = col + ((size_t)bg * cpg * ksz + r) * P + (size_t)row * OX;
    if (iz < 0 || iz >= IZ || iy < 0 || iy >= IY) {
        for (int ox = 0; ox < OX; ++ox)
            out[ox] = 0.0f;
        return;
    }
    __global const float *in =
        x + (((size_t)n * C + grp * cpg + ic) * IZ + iz) * IY * IX + (size_t)iy * IX;
    for (int ox = 0; ox < OX; ++ox) {
        const int ix = ox * sx + x0;
        out[ox] = (ix >= 0 && ix < IX) ? in[ix] : 0.0f;
    }
}

// Number of kernel cells of one dim whose input position base + k * dil
// lies in [lo, hi).
inline int cells_in(const int base, const int dil, const int k, const int lo,
                    const int hi) {
    int c = 0;
    for (int j = 0; j < k; ++j) {
        const int q = base + j * dil;
        c += (q >= lo && q < hi) ? 1 : 0;
    }
    return c;
}

// MaxPool (is_max) or AveragePool (count_include_pad: padded cells count
// in the divisor). Dim 0 the output position, dim 1 the N*C plane.
__kernel void pool_nd(__global const float *x, __global float *y,
                      __global const int *g, const uint is_max,
                      const uint include_pad) {
    const int IZ = g[G_IN], IY = g[G_IN + 1], IX = g[G_IN + 2];
    const int OZ = g[G_OUT], OY = g[G_OUT + 1], OX = g[G_OUT + 2];
    const int KZ = g[G_K], KY = g[G_K + 1], KX = g[G_K + 2];
    const int DZ = g[G_D], DY = g[G_D + 1], DX = g[G_D + 2];
    const size_t p = get_global_id(0);
    if (p >= (size_t)OZ * OY * OX)
        return;
    const size_t pl = get_global_id(1);
    const int ox = p % OX, oy = (p / OX) % OY, oz = p / ((size_t)OX * OY);
    const int z0 = oz * g[G_S] - g[G_PB], y0 = oy * g[G_S + 1] - g[G_PB + 1],
              x0 = ox * g[G_S + 2] - g[G_PB + 2];
    __global const float *xp = x + pl * IZ * IY * IX;
    float acc = is_max ? -FLT_MAX : 0.0f;
    for (int kz = 0; kz < KZ; ++kz) {
        const int iz = z0 + kz * DZ;
        if (iz < 0 || iz >= IZ)
            continue;
        for (int ky = 0; ky < KY; ++ky) {
            const int iy = y0 + ky * DY;
            if (iy < 0 || iy >= IY)
                continue;
            for (int kx = 0; kx < KX; ++kx) {
                const int ix = x0 + kx * DX;
                if (ix < 0 || ix >= IX)
                    continue;
                const float v = xp[((size_t)iz * IY + iy) * IX + ix];
                acc = is_max ? ((isnan(acc) || isnan(v)) ? acc + v : fmax(acc, v)) : acc + v;
            }
        }
    }
    if (!is_max) {
        int cnt;
        if (include_pad)
            cnt = cells_in(z0, DZ, KZ, -g[G_PB], IZ + g[G_PE]) *
                  cells_in(y0, DY, KY, -g[G_PB + 1], IY + g[G_PE + 1]) *
                  cells_in(x0, DX, KX, -g[G_PB + 2], IX + g[G_PE + 2]);
        else
            cnt = cells_in(z0, DZ, KZ, 0, IZ) * cells_in(y0, DY, KY, 0, IY) *
                  cells_in(x0, DX, KX, 0, IX);
        acc = cnt > 0 ? acc / (float)cnt : 0.0f;
    }
    y[pl * OZ * OY * OX + p] = acc;
}

// Inference batch norm: x (N, C, inner), per-channel scale, bias, mean, var.
__kernel void batchnorm(__global const float *x, __global const float *scale,
                        __global const float *bias, __global const float *mean,
                        __global const float *var, __global float *y,
                        const uint n, const uint C, const uint inner,
                        const float eps) {
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const uint c = (i / inner) % C;
    const float mul = scale[c] / sqrt(var[c] + eps);
    y[i] = x[i] * mul + (bias[c] - mean[c] * mul);
}

// Local response normalisation across channels of x (N, C, inner).
__kernel void lrn(__global const float *x, __global float *y, const uint n,
                  const uint C, const uint inner, const uint size,
                  const float alpha, const float beta, const float bias) {
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const uint sp = i % inner, c = (i / inner) % C;
    const size_t nb = i / ((size_t)inner * C);
    const int before = (size - 1) / 2, after = size / 2;
    const int lo = max((int)c - before, 0), hi = min((int)c + after, (int)C - 1);
    float sq = 0.0f;
    for (int cc = lo; cc <= hi; ++cc) {
        const float v = x[(nb * C + cc) * inner + sp];
        sq += v * v;
    }
    y[i] = x[i] / pow(bias + alpha / (float)size * sq, beta);
}

// Log-softmax over the middle dim of an (outer, D, inner) view.
__kernel void logsoftmax_axis(__global const float *x, __global float *y,
                              const uint outer, const uint D, const uint inner) {
    const size_t g = get_global_id(0);
    if (g >= (size_t)outer * inner)
        return;
    const uint o = g / inner, in = g % inner;
    const size_t base = (size_t)o * D * inner + in;
    float m = -INFINITY;
    for (uint d = 0; d < D; ++d)
        m = fmax(m, x[base + (size_t)d * inner]);
    float s = 0.0f;
    for (uint d = 0; d < D; ++d)
        s += exp(x[base + (size_t)d * inner] - m);
    const float l = log(s) + m;
    for (uint d = 0; d < D; ++d)
        y[base + (size_t)d * inner] = x[base + (size_t)d * inner] - l;
}
