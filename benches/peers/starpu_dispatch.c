/* hetflow's dispatch comparison, StarPU side (scripts/bench_dispatch.py).
 *
 * Submits N tiny tasks that each read and write one registered float, so
 * task i+1 depends on task i through StarPU's data dependencies: the
 * per-task cost of a dependent chain, the shape of hetflow's
 * chain_10000_neg bench. A second pass submits N tasks on N separate
 * floats (no dependencies) for the independent-task figure.
 *
 *   starpu_dispatch N ROUNDS
 *
 * Prints, per round, one line `chain_us=<f> indep_us=<f>` (microseconds per
 * task), and checks the chain's result (each task adds 1). */
#include <starpu.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void add_one(void *bufs[], void *cl_arg) {
    (void)cl_arg;
    float *x = (float *)STARPU_VARIABLE_GET_PTR(bufs[0]);
    x[0] += 1.0f;
}

static struct starpu_codelet add_one_cl = {
    .cpu_funcs = {add_one},
    .nbuffers = 1,
    .modes = {STARPU_RW},
    .name = "add_one",
};

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int submit(starpu_data_handle_t h) {
    int rc = starpu_task_insert(&add_one_cl, STARPU_RW, h, 0);
    if (rc != 0) fprintf(stderr, "starpu_task_insert: %d\n", rc);
    return rc;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (n < 1 || rounds < 1) {
        fprintf(stderr, "usage: starpu_dispatch N ROUNDS\n");
        return 2;
    }
    if (starpu_init(NULL) != 0) {
        fprintf(stderr, "starpu_init failed\n");
        return 1;
    }
    float *vals = calloc((size_t)n, sizeof(float));
    starpu_data_handle_t *hs = malloc((size_t)n * sizeof(*hs));
    if (!vals || !hs) return 1;
    for (int r = 0; r < rounds; r++) {
        float acc = 0.0f;
        starpu_data_handle_t one;
        starpu_variable_data_register(&one, STARPU_MAIN_RAM, (uintptr_t)&acc, sizeof(acc));
        for (int w = 0; w < 64; w++) /* warm the workers */
            if (submit(one)) return 1;
        starpu_task_wait_for_all();
        double t0 = seconds();
        for (long i = 0; i < n; i++)
            if (submit(one)) return 1;
        starpu_task_wait_for_all();
        double chain = (seconds() - t0) / (double)n * 1e6;
        starpu_data_unregister(one);
        if (acc != (float)(n + 64)) {
            fprintf(stderr, "chain result %.0f, expected %ld\n", acc, n + 64);
            return 1;
        }

        for (long i = 0; i < n; i++) {
            vals[i] = 0.0f;
            starpu_variable_data_register(&hs[i], STARPU_MAIN_RAM, (uintptr_t)&vals[i], sizeof(float));
        }
        t0 = seconds();
        for (long i = 0; i < n; i++)
            if (submit(hs[i])) return 1;
        starpu_task_wait_for_all();
        double indep = (seconds() - t0) / (double)n * 1e6;
        for (long i = 0; i < n; i++) starpu_data_unregister(hs[i]);
        printf("chain_us=%.3f indep_us=%.3f\n", chain, indep);
        fflush(stdout);
    }
    starpu_shutdown();
    free(hs);
    free(vals);
    return 0;
}
