// Pooling and per-channel normalisations over [N, C, spatial...]:
// MaxPool / AveragePool (1 to 3 spatial dims, one thread per output),
// GlobalAveragePool / GlobalMaxPool (one block per plane),
// BatchNormalization (inference) and LRN. Semantics of
// hetflow_ops::kernels::{pool, norm}: max ignores NaN like f32::max, an
// all-padding max window gives the lowest float, an empty average 0.

#define HF_POOL(SUFFIX, T)                                                                 \
    extern "C" __global__ void pool_##SUFFIX(const T* x, T* y, long long planes, int is_max, \
                                             int include_pad, hf_win w) {                  \
        long long osz = w.output[0] * w.output[1] * w.output[2];                           \
        long long ksz = w.kernel[0] * w.kernel[1] * w.kernel[2];                           \
        long long isz = w.input[0] * w.input[1] * w.input[2];                              \
        HF_GRID_STRIDE(i, planes * osz) {                                                  \
            long long p = i / osz;                                                         \
            long long oc[3], kc[3];                                                        \
            hf_unflatten3(i % osz, w.output, oc);                                          \
            float acc = is_max ? -3.402823466e38f : 0.0f;                                  \
            long long inside = 0, padded = 0;                                              \
            for (long long k = 0; k < ksz; ++k) {                                          \
                hf_unflatten3(k, w.kernel, kc);                                            \
                padded += hf_win_in_padded(w, oc, kc);                                     \
                long long off = hf_win_offset(w, oc, kc);                                  \
                if (off < 0) continue;                                                     \
                float v = hf_load(x, p * isz + off);                                       \
                acc = is_max ? hf_nan_max(acc, v) : acc + v;                                      \
                ++inside;                                                                  \
            }                                                                              \
            if (!is_max) {                                                                 \
                long long cnt = include_pad ? padded : inside;                             \
                acc = cnt > 0 ? acc / (float)cnt : 0.0f;                                   \
            }                                                                              \
            hf_store(y, i, acc);                                                           \
        }                                                                                  \
    }                                                                                      \
    /* One block per plane of `sp` elements. */                                            \
    extern "C" __global__ void global_pool_##SUFFIX(const T* x, T* y, long long sp,       \
                                                    int is_max) {                          \
        extern __shared__ float shm[];                                                     \
        long long base = (long long)blockIdx.x * sp;                                       \
        float acc = is_max ? -3.402823466e38f : 0.0f;                                      \
        for (long long j = threadIdx.x; j < sp; j += blockDim.x) {                         \
            float v = hf_load(x, base + j);                                                \
            acc = is_max ? hf_nan_max(acc, v) : acc + v;                                          \
        }                                                                                  \
        acc = hf_block_reduce(acc, is_max != 0, shm);                                      \
        if (threadIdx.x == 0)                                                              \
            hf_store(y, blockIdx.x, is_max ? acc : (sp > 0 ? acc / (float)sp : 0.0f));     \
    }                                                                                      \
    /* y = x * (scale / sqrt(var + eps)) + (bias - mean * that), per channel. */           \
    extern "C" __global__ void batchnorm_##SUFFIX(const T* x, const T* scale, const T* bias, \
                                                  const T* mean, const T* var, T* y,       \
                                                  long long n, long long channels,         \
                                                  long long sp, float eps) {               \
        HF_GRID_STRIDE(i, n) {                                                             \
            long long ch = (i / sp) % channels;                                            \
            float mul = hf_load(scale, ch) / sqrtf(hf_load(var, ch) + eps);                \
            float add = hf_load(bias, ch) - hf_load(mean, ch) * mul;                       \
            hf_store(y, i, hf_load(x, i) * mul + add);                                     \
        }                                                                                  \
    }                                                                                      \
    /* y = x / (bias + alpha / size * sum of squares over the channel window)^beta. */     \
    extern "C" __global__ void lrn_##SUFFIX(const T* x, T* y, long long n, long long channels, \
                                            long long sp, long long size, float alpha_n,   \
                                            float beta, float bias) {                      \
        long long before = (size - 1) / 2, after = size / 2;                               \
        HF_GRID_STRIDE(i, n) {                                                             \
            long long s = i % sp, ch = (i / sp) % channels, img = i / (sp * channels);     \
            long long lo = ch > before ? ch - before : 0;                                  \
            long long hi = ch + after < channels - 1 ? ch + after : channels - 1;          \
            float q = 0.0f;                                                                \
            for (long long c = lo; c <= hi; ++c) {                                         \
                float v = hf_load(x, (img * channels + c) * sp + s);                       \
                q += v * v;                                                                \
            }                                                                              \
            hf_store(y, i, hf_load(x, i) / powf(bias + alpha_n * q, beta));                \
        }                                                                                  \
    }

HF_POOL(f32, float)
HF_POOL(f16, hf_f16)
HF_POOL(bf16, hf_bf16)
