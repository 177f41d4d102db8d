// Shared helpers for hetflow's CUDA kernels. Prepended to every kernel
// source by the backend and by scripts/nvrtc_check.py, so the kernels need
// no CUDA headers (NVRTC alone is enough to compile them).
//
// Storage types: f32 is `float`, f16 and bf16 are raw 16-bit words
// (`unsigned short`); all arithmetic is done in f32.

typedef unsigned short hf_u16;

__device__ __forceinline__ float hf_load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ void hf_store(float* p, long long i, float v) { p[i] = v; }

struct hf_f16 { hf_u16 bits; };
struct hf_bf16 { hf_u16 bits; };

__device__ __forceinline__ float hf_load(const hf_f16* p, long long i) {
    float f;
    hf_u16 h = p[i].bits;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ void hf_store(hf_f16* p, long long i, float v) {
    hf_u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p[i].bits = h;
}
__device__ __forceinline__ float hf_load(const hf_bf16* p, long long i) {
    return __uint_as_float(((unsigned int)p[i].bits) << 16);
}
__device__ __forceinline__ void hf_store(hf_bf16* p, long long i, float v) {
    unsigned int u = __float_as_uint(v);
    hf_u16 out;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        out = (hf_u16)((u >> 16) | 0x40u);  // quiet NaN
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        out = (hf_u16)(u >> 16);
    }
    p[i].bits = out;
}

// Broadcast indexing: up to HF_MAX_RANK dims, output dims and per-input
// element strides (0 on broadcast dims). Mirrors `Bcast` in elementwise.rs.
#define HF_MAX_RANK 8
struct hf_bcast {
    int rank;
    long long dims[HF_MAX_RANK];
    long long a_strides[HF_MAX_RANK];
    long long b_strides[HF_MAX_RANK];
};

__device__ __forceinline__ void hf_offsets(const hf_bcast& s, long long i, long long* oa, long long* ob) {
    long long a = 0, b = 0;
    for (int d = s.rank - 1; d >= 0; --d) {
        long long k = i % s.dims[d];
        i /= s.dims[d];
        a += k * s.a_strides[d];
        b += k * s.b_strides[d];
    }
    *oa = a;
    *ob = b;
}

#define HF_GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// max(a, b), NaN when either is NaN (fmaxf alone drops it), as onnxruntime.
__device__ __forceinline__ float hf_nan_max(float a, float b) {
    return (a != a || b != b) ? a + b : fmaxf(a, b);
}

// Block-wide reduction of one float per thread (sum, or max when
// `is_max`); needs blockDim.x floats of shared memory and a power-of-two
// block size. Every thread gets the result.
__device__ float hf_block_reduce(float v, bool is_max, float* shm) {
    shm[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float o = shm[threadIdx.x + s];
            shm[threadIdx.x] = is_max ? hf_nan_max(shm[threadIdx.x], o) : shm[threadIdx.x] + o;
        }
        __syncthreads();
    }
    float r = shm[0];
    __syncthreads();
    return r;
}

// Layout of an N-d walk with up to three operands (strided copies,
// Where, comparisons). Mirrors `Layout` in geom.rs.
struct hf_layout {
    int rank;
    long long dims[HF_MAX_RANK];
    long long strides[3][HF_MAX_RANK];
    long long offsets[3];
};

__device__ __forceinline__ void hf_layout_offsets(const hf_layout& l, long long i, long long* o) {
    o[0] = l.offsets[0];
    o[1] = l.offsets[1];
    o[2] = l.offsets[2];
    for (int d = l.rank - 1; d >= 0; --d) {
        long long k = i % l.dims[d];
        i /= l.dims[d];
        o[0] += k * l.strides[0][d];
        o[1] += k * l.strides[1][d];
        o[2] += k * l.strides[2][d];
    }
}

// A convolution / pooling window over three spatial dims (leading dims of
// size 1 for 1-D and 2-D). Mirrors `Win3` in geom.rs.
struct hf_win {
    long long input[3];
    long long output[3];
    long long kernel[3];
    long long strides[3];
    long long dil[3];
    long long pads_begin[3];
    long long pads_end[3];
};

__device__ __forceinline__ void hf_unflatten3(long long i, const long long* dims, long long* c) {
    for (int d = 2; d >= 0; --d) {
        c[d] = i % dims[d];
        i /= dims[d];
    }
}

// Input offset within one plane of kernel cell `k` for output cell `o`, or
// -1 when it falls in the padding (`Win3::offset`).
__device__ __forceinline__ long long hf_win_offset(const hf_win& w, const long long* o,
                                                   const long long* k) {
    long long off = 0;
    for (int d = 0; d < 3; ++d) {
        long long p = o[d] * w.strides[d] - w.pads_begin[d] + k[d] * w.dil[d];
        if (p < 0 || p >= w.input[d]) return -1;
        off = off * w.input[d] + p;
    }
    return off;
}

// Whether the cell lies inside the input plus its padding (`Win3::in_padded`).
__device__ __forceinline__ bool hf_win_in_padded(const hf_win& w, const long long* o,
                                                 const long long* k) {
    for (int d = 0; d < 3; ++d) {
        long long p = o[d] * w.strides[d] - w.pads_begin[d] + k[d] * w.dil[d];
        if (p < -w.pads_begin[d] || p >= w.input[d] + w.pads_end[d]) return false;
    }
    return true;
}

// Fused activation of Conv (`Activation` in hetflow_ops): 0 none, 1 Relu,
// 2 Clip(lo, hi).
__device__ __forceinline__ float hf_act(float v, int act, float lo, float hi) {
    if (act == 1) return fmaxf(v, 0.0f);
    if (act == 2) return fminf(fmaxf(v, lo), hi);
    return v;
}
