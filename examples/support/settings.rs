//! The settings the bench scripts give the benchmarks (each bench reads a part of them).
#![allow(dead_code)]

/// A setting the bench scripts give the benchmarks.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench or scripts/bench-reports"))
}

/// `BENCH_SCALE`: what the sizes are divided by (1 unless set; larger only to try a
/// bench itself quickly).
pub fn scale() -> usize {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s >= 1)
        .unwrap_or(1)
}
