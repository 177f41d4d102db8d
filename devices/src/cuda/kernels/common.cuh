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
