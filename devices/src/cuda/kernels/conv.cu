// Convolution pieces (the GEMM itself is cuBLAS): im2col of one image,
// the direct depthwise convolution, and the bias + fused activation pass
// after the GEMM. Index maths as in geom.rs (`Win3::offset`), which the
// host tests check against the CPU kernel. Suffixes _f32, _f16, _bf16.

#define HF_CONV(SUFFIX, T)                                                                 \
    /* col[(ch * ksz + k) * osz + j] = x[ch, window cell k of output j] (0 in padding) */  \
    extern "C" __global__ void im2col_##SUFFIX(const T* x, T* col, long long channels,     \
                                               hf_win w) {                                 \
        long long osz = w.output[0] * w.output[1] * w.output[2];                           \
        long long ksz = w.kernel[0] * w.kernel[1] * w.kernel[2];                           \
        long long isz = w.input[0] * w.input[1] * w.input[2];                              \
        long long n = channels * ksz * osz;                                                \
        HF_GRID_STRIDE(i, n) {                                                             \
            long long r = i / osz, j = i % osz;                                            \
            long long ch = r / ksz, k = r % ksz;                                           \
            long long oc[3], kc[3];                                                        \
            hf_unflatten3(j, w.output, oc);                                                \
            hf_unflatten3(k, w.kernel, kc);                                                \
            long long off = hf_win_offset(w, oc, kc);                                      \
            hf_store(col, i, off < 0 ? 0.0f : hf_load(x, ch * isz + off));                 \
        }                                                                                  \
    }                                                                                      \
    /* One filter per channel: y[p, j] over planes p = n * channels + ch. */               \
    extern "C" __global__ void depthwise_##SUFFIX(const T* x, const T* wt, const T* bias,  \
                                                  T* y, long long planes, long long channels, \
                                                  int has_bias, int act, float lo, float hi, \
                                                  hf_win w) {                              \
        long long osz = w.output[0] * w.output[1] * w.output[2];                           \
        long long ksz = w.kernel[0] * w.kernel[1] * w.kernel[2];                           \
        long long isz = w.input[0] * w.input[1] * w.input[2];                              \
        HF_GRID_STRIDE(i, planes * osz) {                                                  \
            long long p = i / osz, j = i % osz, ch = p % channels;                         \
            long long oc[3], kc[3];                                                        \
            hf_unflatten3(j, w.output, oc);                                                \
            float acc = 0.0f;                                                              \
            for (long long k = 0; k < ksz; ++k) {                                          \
                hf_unflatten3(k, w.kernel, kc);                                            \
                long long off = hf_win_offset(w, oc, kc);                                  \
                if (off >= 0) acc += hf_load(x, p * isz + off) * hf_load(wt, ch * ksz + k); \
            }                                                                              \
            if (has_bias) acc += hf_load(bias, ch);                                        \
            hf_store(y, i, hf_act(acc, act, lo, hi));                                      \
        }                                                                                  \
    }                                                                                      \
    /* In place on y [N, channels, osz]: + bias[ch], then the activation. */               \
    extern "C" __global__ void bias_act_##SUFFIX(T* y, const T* bias, long long n,         \
                                                 long long channels, long long osz,        \
                                                 int has_bias, int act, float lo, float hi) { \
        HF_GRID_STRIDE(i, n) {                                                             \
            float v = hf_load(y, i);                                                       \
            if (has_bias) v += hf_load(bias, (i / osz) % channels);                        \
            hf_store(y, i, hf_act(v, act, lo, hi));                                        \
        }                                                                                  \
    }

HF_CONV(f32, float)
HF_CONV(f16, hf_f16)
HF_CONV(bf16, hf_bf16)
