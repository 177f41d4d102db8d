// hetflow OpenCL kernels (f32). One program; the host picks kernels by name.
// Build options: -DTS=<tile> (GEMM tile edge, 16 or 8).

#ifndef TS
#define TS 16
#endif

#define UNARY(name, expr)                                                     \
    __kernel void name(__global const float *x, __global float *y,            \
                       const uint n) {                                        \
        const size_t i = get_global_id(0);                                    \
        if (i < n) {                                                          \
            const float v = x[i];                                             \
            y[i] = (expr);                                                    \
        }                                                                     \
    }

UNARY(u_relu, v < 0.0f ? 0.0f : v)
UNARY(u_neg, -v)
UNARY(u_abs, fabs(v))
UNARY(u_exp, exp(v))
UNARY(u_log, log(v))
UNARY(u_sqrt, sqrt(v))
UNARY(u_sigmoid, 1.0f / (1.0f + exp(-v)))
UNARY(u_tanh, tanh(v))
UNARY(u_erf, erf(v))
UNARY(u_reciprocal, 1.0f / v)
UNARY(u_floor, floor(v))
UNARY(u_ceil, ceil(v))
UNARY(u_sin, sin(v))
UNARY(u_cos, cos(v))
UNARY(u_tan, tan(v))
UNARY(u_asin, asin(v))
UNARY(u_acos, acos(v))
UNARY(u_atan, atan(v))
UNARY(u_sinh, sinh(v))
UNARY(u_cosh, cosh(v))
UNARY(u_asinh, asinh(v))
UNARY(u_acosh, acosh(v))
UNARY(u_atanh, atanh(v))
UNARY(u_round, rint(v))
UNARY(u_sign, v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : v))
UNARY(u_softsign, v / (1.0f + fabs(v)))
UNARY(u_gelu_erf, 0.5f * v * (1.0f + erf(v * 0.70710678118654752f)))
UNARY(u_gelu_tanh,
      0.5f * v * (1.0f + tanh(0.79788456080286536f * (v + 0.044715f * v * v * v))))

// Offset of output element `i` in an operand with strides `s` (0 on
// broadcast dims) for an output of `rank` dims `d` (row-major).
inline uint bcast_offset(uint i, const uint rank, const uint *d, const uint *s) {
    uint off = 0;
    for (int k = (int)rank - 1; k >= 0; --k) {
        const uint c = i % d[k];
        i /= d[k];
        off += c * s[k];
    }
    return off;
}

#define BINARY(name, expr)                                                    \
    __kernel void name(__global const float *a, __global const float *b,      \
                       __global float *y, const uint n, const uint rank,      \
                       const uint8 dims, const uint8 sa, const uint8 sb) {    \
        const size_t i = get_global_id(0);                                    \
        if (i >= n)                                                           \
            return;                                                           \
        uint d[8], s1[8], s2[8];                                              \
        vstore8(dims, 0, d);                                                  \
        vstore8(sa, 0, s1);                                                   \
        vstore8(sb, 0, s2);                                                   \
        const float p = a[bcast_offset((uint)i, rank, d, s1)];                \
        const float q = b[bcast_offset((uint)i, rank, d, s2)];                \
        y[i] = (expr);                                                        \
    }

BINARY(b_add, p + q)
BINARY(b_sub, p - q)
BINARY(b_mul, p * q)
BINARY(b_div, p / q)
BINARY(b_pow, pow(p, q))

// Comparisons: f32 operands, bool (one byte) result.
#define COMPARE(name, expr)                                                   \
    __kernel void name(__global const float *a, __global const float *b,      \
                       __global uchar *y, const uint n, const uint rank,      \
                       const uint8 dims, const uint8 sa, const uint8 sb) {    \
        const size_t i = get_global_id(0);                                    \
        if (i >= n)                                                           \
            return;                                                           \
        uint d[8], s1[8], s2[8];                                              \
        vstore8(dims, 0, d);                                                  \
        vstore8(sa, 0, s1);                                                   \
        vstore8(sb, 0, s2);                                                   \
        const float p = a[bcast_offset((uint)i, rank, d, s1)];                \
        const float q = b[bcast_offset((uint)i, rank, d, s2)];                \
        y[i] = (expr) ? 1 : 0;                                                \
    }

COMPARE(c_eq, p == q)
COMPARE(c_lt, p < q)
COMPARE(c_gt, p > q)
COMPARE(c_le, p <= q)
COMPARE(c_ge, p >= q)

// Batched, strided GEMM with TS x TS tiles in local memory:
// Y[bt] = alpha * A[bt] B[bt] (+ beta * C), A (i, k) at A[ao + i*sam + k*sak],
// B (k, j) at B[bo + k*sbk + j*sbn]; per-batch offsets in `offs` (ao, bo).
// C (optional, has_c) is broadcast to (M, N) by strides scm, scn.
__kernel void gemm_tiled(__global const float *A, __global const float *B,
                         __global const float *C, __global float *Y,
                         __global const uint *offs, const uint M, const uint N,
                         const uint K, const uint sam, const uint sak,
                         const uint sbk, const uint sbn, const float alpha,
                         const float beta, const uint has_c, const uint scm,
                         const uint scn) {
    __local float As[TS][TS];
    __local float Bs[TS][TS + 1];
    const uint lj = get_local_id(0), li = get_local_id(1);
    const uint j = get_group_id(0) * TS + lj;
    const uint i = get_group_id(1) * TS + li;
    const uint bt = get_global_id(2);
    const uint ao = offs[2 * bt], bo = offs[2 * bt + 1];
    float acc = 0.0f;
    for (uint t = 0; t < K; t += TS) {
        const uint ka = t + lj, kb = t + li;
        As[li][lj] = (i < M && ka < K) ? A[ao + i * sam + ka * sak] : 0.0f;
        Bs[li][lj] = (kb < K && j < N) ? B[bo + kb * sbk + j * sbn] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint k = 0; k < TS; ++k)
            acc += As[li][k] * Bs[k][lj];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (i < M && j < N) {
        float r = alpha * acc;
        if (has_c)
            r += beta * C[i * scm + j * scn];
        Y[(size_t)bt * M * N + (size_t)i * N + j] = r;
    }
}

// Softmax over the middle dim of an (outer, D, inner) view; one work-item
// per (outer, inner) line.
__kernel void softmax_axis(__global const float *x, __global float *y,
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
    const float r = 1.0f / s;
    for (uint d = 0; d < D; ++d)
        y[base + (size_t)d * inner] = exp(x[base + (size_t)d * inner] - m) * r;
}

// Layer normalisation of `rows` rows of `D` elements; scale and bias (has_b)
// have D elements. One work-item per row, two-pass variance.
__kernel void layernorm_rows(__global const float *x, __global const float *scale,
                             __global const float *bias, __global float *y,
                             const uint rows, const uint D, const float eps,
                             const uint has_b) {
    const size_t r = get_global_id(0);
    if (r >= rows)
        return;
    __global const float *row = x + r * D;
    float mean = 0.0f;
    for (uint d = 0; d < D; ++d)
        mean += row[d];
    mean /= (float)D;
    float var = 0.0f;
    for (uint d = 0; d < D; ++d) {
        const float c = row[d] - mean;
        var += c * c;
    }
    var /= (float)D;
    const float inv = rsqrt(var + eps);
    for (uint d = 0; d < D; ++d) {
        float v = (row[d] - mean) * inv * scale[d];
        if (has_b)
            v += bias[d];
        y[r * D + d] = v;
    }
}
