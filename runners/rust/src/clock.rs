//! The clocks of the contract: CLOCK_MONOTONIC in nanoseconds (the clock of Python's
//! time.perf_counter_ns on Linux, so trbench can read the runner's send times as its own) and the
//! wall clock for `sent_at_unix`.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC in ns. std's Instant reads the same clock but does not expose its value.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}

pub fn unix_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// CPU time of the whole runner process in ns (all its threads: tokio's workers included), for
/// the client CPU per request that the report sets beside the Python client's.
pub fn process_cpu_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as above; CLOCK_PROCESS_CPUTIME_ID always exists on Linux
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64
}
