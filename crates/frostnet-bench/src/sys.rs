//! Process resource readings: CPU time and peak resident set.

/// CPU time of the whole process (user + system, all threads) in milliseconds, nanosecond
/// resolution (`CLOCK_PROCESS_CPUTIME_ID`, what Python's `time.process_time` reads).
pub(crate) fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame; clock_gettime only writes
    // into it and CLOCK_PROCESS_CPUTIME_ID is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

/// Peak resident set of this process in KiB (`getrusage(RUSAGE_SELF).ru_maxrss`, as the peers
/// report it).
pub(crate) fn max_rss_kb() -> i64 {
    // SAFETY: `rusage` is plain old data, so all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage owned by this frame; getrusage only writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return -1;
    }
    ru.ru_maxrss as i64
}
