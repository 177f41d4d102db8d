// hetflow OpenCL kernels (f32). One program; the host picks kernels by name.
// Build options: -DWM=<rows> -DGW=<vector width> (the GEMM block of one
// work-item: WM rows by GW columns; GW is 4, 8 or 16).

#ifndef WM
#define WM 4
#endif
#ifndef GW
#define GW 4
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
UNARY(u_hard_swish, v * clamp(v * (1.0f / 6.0f) + 0.5f, 0.0f, 1.0f))
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

// Batched, strided GEMM: Y[bt] = act(alpha * A[bt] B[bt] + beta * C[bt]).
// A (i, k) at A[ao + i*sam + k*sak], B (k, j) at B[bo + k*sbk + j*sbn],
// C (optional, has_c) at C[co + i*scm + j*scn] (strides 0 broadcast);
// per-batch offsets (ao, bo, co) in `offs`; Y[bt] is contiguous (M, N).
// Activations (`act_code` in codes.rs): 0 None, 1 Relu, 2 Clip (clamped
// to [lo, hi]); Conv's fused activation.
// Y is split between three kernels: gemm_rb computes rows [0, Mf) x
// columns [N0, Nf) in WM x GW blocks (N0 = 0, Mf and Nf: M and N rounded
// down to WM and GW), gemm_rb4 the next columns [N0, Nf) in WM x 4 blocks
// (N0 = gemm_rb's Nf, Nf = N rounded down to 4), gemm_edge the rest
// (Nf = the end of gemm_rb4's columns).
#define GEMM_ARGS                                                             \
    __global const float *A, __global const float *B,                         \
        __global const float *C, __global float *Y,                           \
        __global const uint *offs, const uint M, const uint N, const uint K,  \
        const uint sam, const uint sak, const uint sbk, const uint sbn,       \
        const float alpha, const float beta, const uint has_c,                \
        const uint scm, const uint scn, const uint act, const float lo,       \
        const float hi, const uint Mf, const uint N0, const uint Nf

inline float gemm_out(const float acc, __global const float *C, const uint i,
                      const uint j, const float alpha, const float beta,
                      const uint has_c, const uint scm, const uint scn,
                      const uint act, const float lo, const float hi) {
    float r = alpha * acc;
    if (has_c)
        r += beta * C[(size_t)i * scm + (size_t)j * scn];
    if (act == 1)
        r = fmax(r, 0.0f);
    else if (act == 2)
        r = fmin(fmax(r, lo), hi);
    return r;
}

#define GCAT_(a, b) a##b
#define GCAT(a, b) GCAT_(a, b)

// Register-blocked interior: each work-item computes a WM x V block of Y
// in WM vector accumulators, reading one V-wide vector of a B row and WM
// scalars of an A column per k. No local memory: on CPU devices each
// work-group (one column strip, several row blocks) keeps its B strip in
// cache; GPUs read through their caches. Work-items past (Mf, Nf) (the
// global size is rounded up to the work-group) return at once. gemm_rb
// has V = GW (the build option), gemm_rb4 V = 4 for the strip of columns
// gemm_rb leaves.
#define GEMM_RB(NAME, V)                                                      \
__kernel void NAME(GEMM_ARGS) {                                               \
    const uint j0 = N0 + get_global_id(0) * V, i0 = get_global_id(1) * WM;    \
    if (i0 + WM > Mf || j0 + V > Nf)                                          \
        return;                                                               \
    const uint bt = get_global_id(2);                                         \
    __global const float *a = A + offs[3 * bt] + (size_t)i0 * sam;            \
    __global const float *b = B + offs[3 * bt + 1] + (size_t)j0 * sbn;        \
    GCAT(float, V) acc[WM];                                                   \
    for (int r = 0; r < WM; ++r)                                              \
        acc[r] = (GCAT(float, V))(0.0f);                                      \
    if (sbn == 1) {                                                           \
        for (uint k = 0; k < K; ++k) {                                        \
            const GCAT(float, V) bv = GCAT(vload, V)(0, b + (size_t)k * sbk); \
            __global const float *ak = a + (size_t)k * sak;                   \
            for (int r = 0; r < WM; ++r)                                      \
                acc[r] = mad((GCAT(float, V))(ak[(size_t)r * sam]), bv, acc[r]); \
        }                                                                     \
    } else {                                                                  \
        for (uint k = 0; k < K; ++k) {                                        \
            float t[V];                                                       \
            __global const float *bk = b + (size_t)k * sbk;                   \
            for (int q = 0; q < V; ++q)                                       \
                t[q] = bk[(size_t)q * sbn];                                   \
            const GCAT(float, V) bv = GCAT(vload, V)(0, t);                   \
            __global const float *ak = a + (size_t)k * sak;                   \
            for (int r = 0; r < WM; ++r)                                      \
                acc[r] = mad((GCAT(float, V))(ak[(size_t)r * sam]), bv, acc[r]); \
        }                                                                     \
    }                                                                         \
    __global const float *c = C + offs[3 * bt + 2];                           \
    __global float *y = Y + (size_t)bt * M * N + (size_t)i0 * N + j0;         \
    if (!has_c && act == 0) {                                                 \
        for (int r = 0; r < WM; ++r)                                          \
            GCAT(vstore, V)(alpha * acc[r], 0, y + (size_t)r * N);            \
        return;                                                               \
    }                                                                         \
    for (int r = 0; r < WM; ++r) {                                            \
        float o[V];                                                           \
        GCAT(vstore, V)(acc[r], 0, o);                                        \
        for (int q = 0; q < V; ++q)                                           \
            o[q] = gemm_out(o[q], c, i0 + r, j0 + q, alpha, beta, has_c, scm, \
                            scn, act, lo, hi);                                \
        GCAT(vstore, V)(GCAT(vload, V)(0, o), 0, y + (size_t)r * N);          \
    }                                                                         \
}

GEMM_RB(gemm_rb, GW)
GEMM_RB(gemm_rb4, 4)

// The elements gemm_rb and gemm_rb4 leave: columns [Nf, N) of every row,
// then rows [Mf, M) of columns [0, Nf); one work-item each (dim 0), batch
// in dim 1.
__kernel void gemm_edge(GEMM_ARGS) {
    const size_t e = get_global_id(0);
    const uint nr = N - Nf;
    const size_t right = (size_t)M * nr;
    uint i, j;
    if (e < right) {
        i = e / nr;
        j = Nf + e % nr;
    } else if (e < right + (size_t)(M - Mf) * Nf) {
        i = Mf + (e - right) / Nf;
        j = (e - right) % Nf;
    } else {
        return;
    }
    const uint bt = get_global_id(1);
    __global const float *a = A + offs[3 * bt] + (size_t)i * sam;
    __global const float *b = B + offs[3 * bt + 1] + (size_t)j * sbn;
    float acc = 0.0f;
    for (uint k = 0; k < K; ++k)
        acc = mad(a[(size_t)k * sak], b[(size_t)k * sbk], acc);
    Y[(size_t)bt * M * N + (size_t)i * N + j] =
        gemm_out(acc, C + offs[3 * bt + 2], i, j, alpha, beta, has_c, scm, scn,
                 act, lo, hi);
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
