// Reductions over any set of axes, folded on the host into kept and
// reduced dims (`ReduceLayout` in geom.rs): one block per output, the
// block's threads stride over the reduced elements, then a shared-memory
// tree. Kinds (`hf_reduce_kind`): 0 Sum, 1 Mean, 2 Max, 3 Min,
// 4 SumSquare, 5 L1, 6 L2. Max and Min propagate NaN like the CPU kernel.
// Launch with a power-of-two block and blockDim.x floats of shared memory.

struct hf_reduce {
    int kept_rank;
    int red_rank;
    long long kept_dims[HF_MAX_RANK];
    long long kept_strides[HF_MAX_RANK];
    long long red_dims[HF_MAX_RANK];
    long long red_strides[HF_MAX_RANK];
    long long count;
};

__device__ __forceinline__ long long hf_walk(long long i, int rank, const long long* dims,
                                             const long long* st) {
    long long off = 0;
    for (int d = rank - 1; d >= 0; --d) {
        off += (i % dims[d]) * st[d];
        i /= dims[d];
    }
    return off;
}

// 0: sum, 1: max, 2: min; NaN wins in max and min.
__device__ __forceinline__ float hf_combine(int how, float a, float b) {
    if (how == 0) return a + b;
    if (a != a || b != b) return a + b;
    return how == 1 ? fmaxf(a, b) : fminf(a, b);
}

__device__ float hf_block_combine(float v, int how, float* shm) {
    shm[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shm[threadIdx.x] = hf_combine(how, shm[threadIdx.x], shm[threadIdx.x + s]);
        __syncthreads();
    }
    float r = shm[0];
    __syncthreads();
    return r;
}

#define HF_REDUCE(SUFFIX, T)                                                               \
    extern "C" __global__ void reduce_##SUFFIX(const T* x, T* y, long long n_out, int kind, \
                                               hf_reduce l) {                              \
        extern __shared__ float shm[];                                                     \
        int how = kind == 2 ? 1 : (kind == 3 ? 2 : 0);                                     \
        float init = how == 1 ? -__int_as_float(0x7f800000)                                \
                              : (how == 2 ? __int_as_float(0x7f800000) : 0.0f);             \
        for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {                        \
            long long base = hf_walk(o, l.kept_rank, l.kept_dims, l.kept_strides);         \
            float acc = init;                                                              \
            for (long long j = threadIdx.x; j < l.count; j += blockDim.x) {                \
                float v = hf_load(x, base + hf_walk(j, l.red_rank, l.red_dims, l.red_strides)); \
                if (kind == 4 || kind == 6) v = v * v;                                     \
                if (kind == 5) v = fabsf(v);                                               \
                acc = hf_combine(how, acc, v);                                             \
            }                                                                              \
            acc = hf_block_combine(acc, how, shm);                                         \
            if (kind == 1) acc = acc / (float)l.count;                                     \
            if (kind == 6) acc = sqrtf(acc);                                               \
            if (threadIdx.x == 0) hf_store(y, o, acc);                                     \
        }                                                                                  \
    }

HF_REDUCE(f32, float)
HF_REDUCE(f16, hf_f16)
HF_REDUCE(bf16, hf_bf16)
