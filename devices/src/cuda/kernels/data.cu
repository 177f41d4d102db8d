// Data movement, whatever the element type: the kernels move elements of
// 1, 2, 4 or 8 bytes (suffixes _b1, _b2, _b4, _b8), so one instantiation
// serves f32 and i32, f16 and bf16, i64, u8 and bool alike.
// strided_copy: Transpose, Slice, Concat, Split, Expand, copies;
// where_: Where with three-way broadcasting; gather: Gather along an axis
// (indices i64 or i32, negatives count from the end; the host checks the
// range first). Layouts come from geom.rs.

#define HF_DATA(SUFFIX, T)                                                                 \
    /* dst[o1] = src[o0] for every index of the layout. */                                 \
    extern "C" __global__ void strided_copy_##SUFFIX(const T* src, T* dst, long long n,    \
                                                     hf_layout l) {                        \
        HF_GRID_STRIDE(i, n) {                                                             \
            long long o[3];                                                                \
            hf_layout_offsets(l, i, o);                                                    \
            dst[o[1]] = src[o[0]];                                                         \
        }                                                                                  \
    }                                                                                      \
    extern "C" __global__ void where_##SUFFIX(const unsigned char* cond, const T* a,       \
                                              const T* b, T* y, long long n, hf_layout l) { \
        HF_GRID_STRIDE(i, n) {                                                             \
            long long o[3];                                                                \
            hf_layout_offsets(l, i, o);                                                    \
            y[i] = cond[o[0]] ? a[o[1]] : b[o[2]];                                         \
        }                                                                                  \
    }                                                                                      \
    /* y[o, j, k] = src[o, idx[j], k] over [outer, n_idx, inner]. */                       \
    extern "C" __global__ void gather_##SUFFIX(const T* src, const void* idx, int idx64,   \
                                               T* y, long long outer, long long len,       \
                                               long long n_idx, long long inner) {         \
        HF_GRID_STRIDE(i, outer * n_idx * inner) {                                         \
            long long k = i % inner, j = (i / inner) % n_idx, o = i / (inner * n_idx);     \
            long long t = idx64 ? ((const long long*)idx)[j] : (long long)((const int*)idx)[j]; \
            if (t < 0) t += len;                                                           \
            y[i] = src[(o * len + t) * inner + k];                                         \
        }                                                                                  \
    }

HF_DATA(b1, unsigned char)
HF_DATA(b2, unsigned short)
HF_DATA(b4, unsigned int)
HF_DATA(b8, unsigned long long)
