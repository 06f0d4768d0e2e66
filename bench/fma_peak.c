/* Measure this machine's single-precision FMA peak (GFLOP/s) on 1..N threads,
 * with the widest FMA the CPU has.
 *
 * Each thread runs NCHAIN independent chains of fused multiply-adds, enough to
 * hide FMA latency on current x86 cores (2 FMA pipes x 4-5 cycle latency):
 * 16-wide zmm chains (_mm512_fmadd_ps, 32 flops each) when the CPU has
 * AVX-512F, 8-wide ymm chains (_mm256_fmadd_ps, 16 flops each) otherwise. The
 * ISA is chosen at run time (__builtin_cpu_supports), so one binary built
 * with plain -O3 runs on both kinds of CPU; the kernels carry their own
 * target attributes. The best of several trials is reported, so the number is
 * an upper bound for what an f32 GEMM kernel could reach here.
 *
 * Two numbers per thread count: "wall" = flops / wall-clock time (what you get
 * right now, on a machine possibly shared with other processes), and
 * "cpu" = sum over threads of flops / that thread's own CPU time
 * (CLOCK_THREAD_CPUTIME_ID), i.e. the cores' throughput while they actually run
 * our code — the hardware peak, insensitive to time-slicing with other jobs.
 *
 * Build: gcc -O3 -pthread bench/fma_peak.c -o bench/.build/fma_peak
 * Usage: fma_peak [max_threads [iters [isa]]]   (default 2; isa = avx512|avx2,
 *        default: the widest the CPU has; FROSTNET_ISA=avx2 in the environment
 *        also narrows it, as it narrows frostnet's kernels)
 * Output: one JSON line, e.g.
 *   {"fma_peak_gflops":{"1":96.1,"2":192.0},"fma_peak_gflops_wall":{"1":95.0,"2":170.2},
 *    "isa":"avx2+fma","chains":12}
 * where fma_peak_gflops is the CPU-time based number for the chosen ISA.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NCHAIN 12
#define ITERS 50000000L /* per trial per thread: 12*16*5e7 = 9.6 GFLOP */

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clk(CLOCK_MONOTONIC); }

typedef struct {
    long iters;
    double cpu_s; /* this thread's CPU time spent in the FMA loop */
} job_t;

static volatile float sink;
static pthread_barrier_t barrier;

static int use_avx512; /* chosen once in main, before any thread starts */

__attribute__((target("avx2,fma"))) static void *worker_avx2(void *arg) {
    job_t *job = (job_t *)arg;
    long iters = job->iters;
    __m256 a[NCHAIN];
    const __m256 m = _mm256_set1_ps(0.999999f);
    const __m256 c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < NCHAIN; i++) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
    pthread_barrier_wait(&barrier);
    double c0 = clk(CLOCK_THREAD_CPUTIME_ID);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < NCHAIN; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    job->cpu_s = clk(CLOCK_THREAD_CPUTIME_ID) - c0;
    __m256 s = a[0];
    for (int i = 1; i < NCHAIN; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    sink = out[0];
    return NULL;
}

__attribute__((target("avx512f"))) static void *worker_avx512(void *arg) {
    job_t *job = (job_t *)arg;
    long iters = job->iters;
    __m512 a[NCHAIN];
    const __m512 m = _mm512_set1_ps(0.999999f);
    const __m512 c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < NCHAIN; i++) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
    pthread_barrier_wait(&barrier);
    double c0 = clk(CLOCK_THREAD_CPUTIME_ID);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < NCHAIN; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    job->cpu_s = clk(CLOCK_THREAD_CPUTIME_ID) - c0;
    __m512 s = a[0];
    for (int i = 1; i < NCHAIN; i++) s = _mm512_add_ps(s, a[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    sink = out[0];
    return NULL;
}

/* Returns wall-clock GFLOP/s; *cpu_gflops gets the CPU-time based rate. */
static double run(int nthreads, long iters, double *cpu_gflops) {
    pthread_t th[64];
    job_t jobs[64];
    const double flops = (double)iters * NCHAIN * (use_avx512 ? 32.0 : 16.0); /* per thread */
    pthread_barrier_init(&barrier, NULL, nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        jobs[t].iters = iters;
        jobs[t].cpu_s = 0;
        pthread_create(&th[t], NULL, use_avx512 ? worker_avx512 : worker_avx2, &jobs[t]);
    }
    pthread_barrier_wait(&barrier);
    double t0 = now();
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    double dt = now() - t0;
    pthread_barrier_destroy(&barrier);
    double cpu = 0;
    for (int t = 0; t < nthreads; t++)
        if (jobs[t].cpu_s > 0) cpu += flops / jobs[t].cpu_s / 1e9;
    if (cpu_gflops) *cpu_gflops = cpu;
    return nthreads * flops / dt / 1e9;
}

int main(int argc, char **argv) {
    int maxt = argc > 1 ? atoi(argv[1]) : 2;
    if (maxt < 1) maxt = 1;
    if (maxt > 64) maxt = 64;
    long iters = ITERS;
    if (argc > 2) iters = atol(argv[2]);
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "fma_peak: this CPU lacks AVX2+FMA\n");
        return 1;
    }
    use_avx512 = __builtin_cpu_supports("avx512f");
    const char *want = argc > 3 ? argv[3] : getenv("FROSTNET_ISA");
    if (want && (strcmp(want, "avx2") == 0 || strcmp(want, "portable") == 0)) use_avx512 = 0;
    if (use_avx512) iters /= 2; /* same flops per trial as the AVX2 chains */
    double best_wall[65] = {0}, best_cpu[65] = {0};
    run(1, iters / 10, NULL); /* warm up clocks */
    for (int t = 1; t <= maxt; t++) {
        for (int trial = 0; trial < 5; trial++) {
            double c, w = run(t, iters, &c);
            if (w > best_wall[t]) best_wall[t] = w;
            if (c > best_cpu[t]) best_cpu[t] = c;
        }
    }
    printf("{\"fma_peak_gflops\":{");
    for (int t = 1; t <= maxt; t++) printf("%s\"%d\":%.1f", t > 1 ? "," : "", t, best_cpu[t]);
    printf("},\"fma_peak_gflops_wall\":{");
    for (int t = 1; t <= maxt; t++) printf("%s\"%d\":%.1f", t > 1 ? "," : "", t, best_wall[t]);
    printf("},\"isa\":\"%s\",\"chains\":%d}\n", use_avx512 ? "avx512f" : "avx2+fma", NCHAIN);
    return 0;
}
