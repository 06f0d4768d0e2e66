"""Shared plumbing for the peer benchmark scripts (argument parsing, timing,
result JSON). Kept free of any framework import so each peer process only
loads its own framework."""

import argparse
import json
import os
import resource
import statistics
import sys
import time

WORKLOADS = [
    "mlp_train",
    "cnn_train",
    "inception_infer",
    "inception_frozen",
    "inception_finetune",
    "sgemm",
    "image_pipeline",
    "transfer_fit",
]

# transfer_fit: samples fitted each epoch, batch size, epochs per rep, head classes.
TRANSFER_SAMPLES, TRANSFER_BATCH, TRANSFER_EPOCHS, TRANSFER_CLASSES = 64, 16, 5, 10

SGEMM_N = 2048
# image_pipeline: the photos bench/setup generates (FROSTNET_BENCH_IMAGES overrides), resized to
# 299x299 and batched by 32, one epoch per rep.
IMAGES_DIR = os.environ.get(
    "FROSTNET_BENCH_IMAGES",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".data", "image_pipeline"),
)
PIPELINE_SIDE = 299
PIPELINE_BATCH = 32
SEED = 0


def parse_args(runner, extra=None):
    p = argparse.ArgumentParser(description=f"{runner} peer benchmark (one workload per process)")
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    if extra:
        extra(p)
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be >= 1")
    return args


def pin_thread_env(threads):
    """Set thread-count env vars before any framework import (OpenMP/MKL/oneDNN
    read them at load time)."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[k] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


CPU_MS = []  # per-rep process CPU time (user+sys, all threads), filled by time_reps


def time_reps(step, warmup, reps):
    """Run step() warmup times untimed, then reps times timed. step() must
    return only once its work is complete (synchronous). Returns wall-clock ms
    per rep; the process CPU ms per rep go to CPU_MS."""
    for _ in range(warmup):
        step()
    times = []
    CPU_MS.clear()
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        CPU_MS.append((time.process_time() - c0) * 1e3)
    return times


def max_rss_kb():
    # Linux: ru_maxrss is in kilobytes; this is the whole process's peak.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def children_max_rss_kb():
    """Peak resident set of the largest finished child process (e.g. a DataLoader worker)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def emit(runner, workload, times, version, threads, **extra):
    rec = {
        "runner": runner,
        "workload": workload,
        "median_ms": round(statistics.median(times), 4),
        "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4),
        "reps": len(times),
        "max_rss_kb": max_rss_kb(),
        "version": version,
        "threads": threads,
    }
    if CPU_MS:
        # Median process CPU time per rep: on a shared machine this moves less
        # than wall time (ideal: threads x median_ms when fully parallel).
        rec["cpu_ms"] = round(statistics.median(CPU_MS), 4)
    if workload == "sgemm":
        rec["gflops"] = round(2.0 * SGEMM_N**3 / (statistics.median(times) * 1e-3) / 1e9, 2)
    rec.update(extra)
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
