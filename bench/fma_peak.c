/* Measure this machine's single-precision FMA peak (GFLOP/s) on 1..N threads.
 *
 * Each thread runs NCHAIN independent chains of 8-wide (AVX2) fused
 * multiply-adds, enough to hide FMA latency on current x86 cores (2 FMA pipes
 * x 4-5 cycle latency). Each _mm256_fmadd_ps counts as 16 flops. The best of
 * several trials is reported, so the number is an upper bound for what an
 * f32 GEMM kernel could reach here.
 *
 * Two numbers per thread count: "wall" = flops / wall-clock time (what you get
 * right now, on a machine possibly shared with other processes), and
 * "cpu" = sum over threads of flops / that thread's own CPU time
 * (CLOCK_THREAD_CPUTIME_ID), i.e. the cores' throughput while they actually run
 * our code — the hardware peak, insensitive to time-slicing with other jobs.
 *
 * Build: gcc -O3 -mavx2 -mfma -pthread bench/fma_peak.c -o bench/.build/fma_peak
 * Usage: fma_peak [max_threads]   (default 2)
 * Output: one JSON line, e.g.
 *   {"fma_peak_gflops":{"1":96.1,"2":192.0},"fma_peak_gflops_wall":{"1":95.0,"2":170.2},...}
 * where fma_peak_gflops is the CPU-time based number.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

static void *worker(void *arg) {
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

/* Returns wall-clock GFLOP/s; *cpu_gflops gets the CPU-time based rate. */
static double run(int nthreads, long iters, double *cpu_gflops) {
    pthread_t th[64];
    job_t jobs[64];
    const double flops = (double)iters * NCHAIN * 16.0; /* per thread */
    pthread_barrier_init(&barrier, NULL, nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
        jobs[t].iters = iters;
        jobs[t].cpu_s = 0;
        pthread_create(&th[t], NULL, worker, &jobs[t]);
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
    printf("},\"isa\":\"avx2+fma\",\"chains\":%d}\n", NCHAIN);
    return 0;
}
