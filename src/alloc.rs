//! Tuning of the global allocator (mimalloc).
//!
//! mimalloc returns ("purges") freed pages to the kernel a second after
//! they were freed. A sensor frees and reallocates the same amount of
//! memory all the time (connections, analyzer state, record batches), so
//! every purge is followed by page faults that zero the same pages again:
//! on this project's small-frame benchmark about 16 k faults (many of them
//! 2 MiB transparent huge pages) and a tenth of all CPU. Keeping freed
//! pages for reuse ends that; the process then holds its peak heap, which
//! the configured limits bound (docs/operations.md, "Freed memory is kept
//! for reuse").
//! `MIMALLOC_PURGE_DELAY` in the environment still wins.

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3; the
/// sys crate names only some options). The test below checks that this
/// index holds the purge delay's default of 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep freed memory for reuse instead of purging it,
/// unless the user set `MIMALLOC_PURGE_DELAY`.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set only stores a value in mimalloc's option
    // table; -1 is the documented "never purge" value of this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_index_names_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("skipped: MIMALLOC_PURGE_DELAY is set");
            return;
        }
        // SAFETY: reads mimalloc's option table.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // The neighbours' defaults differ (eager_commit_delay 1,
        // use_numa_nodes 0), so this fails if the index moves.
        assert_eq!(default, 1000);
        keep_freed_memory();
        // SAFETY: as above.
        let now = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(now, -1);
    }
}
