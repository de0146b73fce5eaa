//! The allocator of every binary: mimalloc, tuned to hand freed memory back to the OS quickly.
//!
//! Scanned pages are allocated on one thread and freed on another; mimalloc handles that pattern
//! much better than the system allocator. (Upload parts, several MiB each, bypass it: see
//! [`crate::backup::part_buffer`].) Its v3 default keeps freed memory resident for a second
//! before purging it, so a busy backup carries tens of MiB of already-freed pages at any time.
//! Ten milliseconds (mimalloc v2's default) gives it back without measurable CPU cost; purging
//! at once costs page faults everywhere else. `benches/pipeline.rs` measures the peak
//! (`docs/benchmarks.md`).

/// The global allocator; each binary declares `#[global_allocator]` with it.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay`: its position in mimalloc's `mi_option_e`, which the sys crate does not
/// name. A test pins it by its distinctive v3 default (1000 ms), so an upgrade that moves it fails.
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory may stay resident before mimalloc returns it to the OS.
pub const PURGE_DELAY_MS: i64 = 10;

/// Applies the tuning; call first thing in `main`, before the pipeline allocates.
pub fn tune() {
    // SAFETY: mi_option_set stores an integer option and has no other effect; any non-negative
    // delay is valid.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS as _) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_tuned() {
        // SAFETY: reading and writing an integer option.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                default, 1000,
                "option {PURGE_DELAY_OPTION} is not mimalloc v3's purge delay"
            );
        }
        tune();
        // SAFETY: as above, reading an option is always sound.
        let tuned = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        assert_eq!(tuned as i64, PURGE_DELAY_MS);
    }
}
