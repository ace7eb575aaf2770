//! Giving memory back: after a burst (an attack of thousands of
//! connections, a phone's hundreds of streams) the allocator keeps the
//! freed pages in its arenas, and the daemon's resident size stays at its
//! peak. A periodic `malloc_trim` (glibc) returns the free tops and whole
//! free pages of every arena to the system; where the C library has no
//! such call it does nothing.

use std::time::Duration;

/// How often freed memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Hands freed heap memory back to the system now.
#[allow(unsafe_code)]
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a padding size and touches only the
    // allocator's own free lists, under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims every [`TRIM_EVERY`] until the runtime ends.
pub fn spawn_trimmer() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            trim();
        }
    })
}
