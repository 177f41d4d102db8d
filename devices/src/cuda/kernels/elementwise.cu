// Element-wise kernels: unary functions (with f32 parameters p, q for
// LeakyRelu and Clip), binary functions with numpy broadcasting, and a
// broadcasting copy (used for Gemm's C). One instantiation per storage
// type: suffix _f32, _f16, _bf16. Op codes are declared in
// devices/src/cuda/codes.rs (`unary_code`, `binary_code`), whose test
// checks that each case's `// Name` label names the op with that code.

__device__ __forceinline__ float hf_unary(int op, float x, float p, float q) {
    switch (op) {
        case 0: return -x;                                        // Neg
        case 1: return fabsf(x);                                  // Abs
        case 2: return sqrtf(x);                                  // Sqrt
        case 3: return expf(x);                                   // Exp
        case 4: return logf(x);                                   // Log
        case 5: return x > 0.0f ? x : 0.0f;                       // Relu
        case 6: return 1.0f / (1.0f + expf(-x));                  // Sigmoid
        case 7: return tanhf(x);                                  // Tanh
        case 8: return erff(x);                                   // Erf
        case 9: return 1.0f / x;                                  // Reciprocal
        case 10: return floorf(x);                                // Floor
        case 11: return ceilf(x);                                 // Ceil
        case 12: return x < 0.0f ? p * x : x;                          // LeakyRelu
        case 13: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));  // Gelu (erf)
        case 14: {                                                      // Gelu (tanh)
            float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            return 0.5f * x * (1.0f + tanhf(u));
        }
        case 15: return x < p ? p : (x > q ? q : x);                   // Clip (NaN stays)
        case 16: return x * fminf(fmaxf(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);  // HardSwish
        default: return __int_as_float(0x7fc00000);
    }
}

__device__ __forceinline__ float hf_binary(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;                                     // Add
        case 1: return a - b;                                     // Sub
        case 2: return a * b;                                     // Mul
        case 3: return a / b;                                     // Div
        case 4: return powf(a, b);                                // Pow
        case 5: return (a != a || b != b) ? a + b : fmaxf(a, b);  // Max (NaN propagates)
        case 6: return (a != a || b != b) ? a + b : fminf(a, b);  // Min (NaN propagates)
        default: return __int_as_float(0x7fc00000);
    }
}

#define HF_ELEMENTWISE(SUFFIX, T)                                                         \
    extern "C" __global__ void unary_##SUFFIX(const T* x, T* y, long long n, int op,     \
                                              float p, float q) {                         \
        HF_GRID_STRIDE(i, n) { hf_store(y, i, hf_unary(op, hf_load(x, i), p, q)); }       \
    }                                                                                     \
    extern "C" __global__ void binary_##SUFFIX(const T* a, const T* b, T* y, long long n, \
                                               int op, hf_bcast s) {                      \
        HF_GRID_STRIDE(i, n) {                                                            \
            long long ia, ib;                                                             \
            hf_offsets(s, i, &ia, &ib);                                                   \
            hf_store(y, i, hf_binary(op, hf_load(a, ia), hf_load(b, ib)));                \
        }                                                                                 \
    }                                                                                     \
    extern "C" __global__ void bcast_copy_##SUFFIX(const T* a, T* y, long long n,         \
                                                   hf_bcast s) {                          \
        HF_GRID_STRIDE(i, n) {                                                            \
            long long ia, ib;                                                             \
            hf_offsets(s, i, &ia, &ib);                                                   \
            hf_store(y, i, hf_load(a, ia));                                               \
        }                                                                                 \
    }

HF_ELEMENTWISE(f32, float)
HF_ELEMENTWISE(f16, hf_f16)
HF_ELEMENTWISE(bf16, hf_bf16)
