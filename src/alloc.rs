//! The process's allocator, shared by the `emporium` binary and the benchmarks (which include this
//! file), so that the benchmarks' numbers are the binary's.

// Event handling allocates many small, short-lived strings, often freed on another thread than
// the one that made them; mimalloc handles that pattern far better than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the mimalloc 3 that `libmimalloc-sys` bundles (`mimalloc.h`).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the OS, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 30_000;

/// Keeps freed memory for [`PURGE_DELAY_MS`] (mimalloc's default: 1 s) before returning it to the
/// OS, unless `MIMALLOC_PURGE_DELAY` (or its old name `MIMALLOC_RESET_DELAY`) sets another delay.
/// Call it first thing in `main`.
///
/// A SQL query over millions of rows grows hash tables of hundreds of MB; memory that went back to
/// the OS is faulted in and zeroed again by the kernel on the next query (a third of the funnel
/// query's CPU in `benches/analyst_queries.rs`). Keeping it for a while lets back-to-back queries
/// reuse it, the way a database keeps its buffer pool. mimalloc purges when the process allocates
/// or frees, so a busy process gives the memory back after the delay; one that is wholly idle
/// (an `emporium sql` prompt) keeps it until its next work. The cost in a long-running dataflow:
/// 1.04 GiB of RSS per million open orders instead of 1.01 (`benches/decider_memory.rs`).
pub fn keep_freed_memory_a_while() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        && std::env::var_os("MIMALLOC_RESET_DELAY").is_none()
    {
        // SAFETY: `mi_option_set` only stores the option's value; the purge delay is read each
        // time a purge is scheduled, so it may change while the process runs.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}
