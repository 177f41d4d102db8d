// Row-wise kernels over a tensor viewed as [outer, axis, inner]:
// Softmax / LogSoftmax along the middle dim, and LayerNorm over rows of
// `cols` trailing elements. One thread block per row (outer*inner rows for
// softmax, outer rows for LayerNorm); statistics in f32.
// Launch with a power-of-two block size <= 1024 and blockDim.x floats of
// shared memory.

#define HF_NORM(SUFFIX, T)                                                                 \
    extern "C" __global__ void softmax_##SUFFIX(const T* x, T* y, long long axis_len,     \
                                                long long inner, int log_softmax) {        \
        extern __shared__ float shm[];                                                     \
        long long row = blockIdx.x;                                                        \
        long long o = row / inner, in = row % inner;                                       \
        long long base = o * axis_len * inner + in;                                        \
        float m = -__int_as_float(0x7f800000);                                             \
        for (long long j = threadIdx.x; j < axis_len; j += blockDim.x)                     \
            m = fmaxf(m, hf_load(x, base + j * inner));                                    \
        m = hf_block_reduce(m, true, shm);                                                 \
        float sum = 0.0f;                                                                  \
        for (long long j = threadIdx.x; j < axis_len; j += blockDim.x)                     \
            sum += expf(hf_load(x, base + j * inner) - m);                                 \
        sum = hf_block_reduce(sum, false, shm);                                            \
        float lse = logf(sum);                                                             \
        for (long long j = threadIdx.x; j < axis_len; j += blockDim.x) {                   \
            float v = hf_load(x, base + j * inner) - m;                                    \
            hf_store(y, base + j * inner, log_softmax ? v - lse : expf(v) / sum);          \
        }                                                                                  \
    }                                                                                      \
    extern "C" __global__ void layernorm_##SUFFIX(const T* x, const T* scale, const T* bias, \
                                                  T* y, long long cols, float eps,         \
                                                  int has_bias) {                          \
        extern __shared__ float shm[];                                                     \
        long long base = (long long)blockIdx.x * cols;                                     \
        float s = 0.0f;                                                                    \
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += hf_load(x, base + j); \
        float mean = hf_block_reduce(s, false, shm) / (float)cols;                         \
        float v = 0.0f;                                                                    \
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {                       \
            float d = hf_load(x, base + j) - mean;                                         \
            v += d * d;                                                                    \
        }                                                                                  \
        float var = hf_block_reduce(v, false, shm) / (float)cols;                          \
        float inv = rsqrtf(var + eps);                                                     \
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {                       \
            float r = (hf_load(x, base + j) - mean) * inv * hf_load(scale, j);             \
            if (has_bias) r += hf_load(bias, j);                                           \
            hf_store(y, base + j, r);                                                      \
        }                                                                                  \
    }

HF_NORM(f32, float)
HF_NORM(f16, hf_f16)
HF_NORM(bf16, hf_bf16)
