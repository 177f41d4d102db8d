// Kernels that take the element type at run time (type codes of
// `type_code` in codes.rs: 0 f32, 1 f16, 2 bf16, 3 i64, 4 i32, 5 u8, 6 bool):
// Cast and Equal. Values go through double, as `hetflow_ops::cast_one`
// does: float to integer truncates and saturates, NaN becomes 0; anything
// to bool is `!= 0` (NaN is true).

__device__ double hf_get(const void* p, int t, long long i) {
    switch (t) {
        case 0: return (double)((const float*)p)[i];
        case 1: return (double)hf_load((const hf_f16*)p, i);
        case 2: return (double)hf_load((const hf_bf16*)p, i);
        case 3: return (double)((const long long*)p)[i];
        case 4: return (double)((const int*)p)[i];
        default: return (double)((const unsigned char*)p)[i];
    }
}

__device__ long long hf_get_int(const void* p, int t, long long i) {
    switch (t) {
        case 3: return ((const long long*)p)[i];
        case 4: return (long long)((const int*)p)[i];
        default: return (long long)((const unsigned char*)p)[i];
    }
}

__device__ double hf_sat(double v, double lo, double hi) {
    if (v != v) return 0.0;
    return v < lo ? lo : (v > hi ? hi : v);
}

__device__ void hf_put(void* p, int t, long long i, double v) {
    switch (t) {
        case 0: ((float*)p)[i] = (float)v; break;
        case 1: {
            hf_u16 h;
            asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h) : "d"(v));
            ((hf_f16*)p)[i].bits = h;
            break;
        }
        case 2: hf_store((hf_bf16*)p, i, (float)v); break;
        case 3: {
            long long r;
            if (v != v) r = 0;
            else if (v >= 9223372036854775807.0) r = 9223372036854775807LL;
            else if (v <= -9223372036854775808.0) r = (-9223372036854775807LL - 1);
            else r = (long long)v;
            ((long long*)p)[i] = r;
            break;
        }
        case 4: ((int*)p)[i] = (int)hf_sat(v, -2147483648.0, 2147483647.0); break;
        case 5: ((unsigned char*)p)[i] = (unsigned char)hf_sat(v, 0.0, 255.0); break;
        default: ((unsigned char*)p)[i] = (v != 0.0) ? 1 : 0; break;
    }
}

extern "C" __global__ void cast_any(const void* x, void* y, long long n, int from, int to) {
    HF_GRID_STRIDE(i, n) {
        if (from == 3 && to == 3) ((long long*)y)[i] = ((const long long*)x)[i];
        else hf_put(y, to, i, hf_get(x, from, i));
    }
}

// y (bool) = a == b with broadcasting: operands 0 and 1 of the layout.
extern "C" __global__ void equal_any(const void* a, const void* b, unsigned char* y, long long n,
                                     int t, hf_layout l) {
    HF_GRID_STRIDE(i, n) {
        long long o[3];
        hf_layout_offsets(l, i, o);
        bool eq = t <= 2 ? hf_get(a, t, o[0]) == hf_get(b, t, o[1])
                         : hf_get_int(a, t, o[0]) == hf_get_int(b, t, o[1]);
        y[i] = eq ? 1 : 0;
    }
}
