//! Gives the system back the memory the allocator holds free after a burst (the live inventory
//! filling, many pages reading the whole inventory at once): glibc keeps what a thread freed in that
//! thread's arena, so a server that peaked stays resident near its peak. `nkvm serve` watches its
//! resident size and trims after growth.

use std::time::Duration;

/// How often the resident size is read (`/proc/self/statm`: one small read).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Growth since the last trim (or start) that makes the next check trim.
const GROWTH: u64 = 16 * 1024 * 1024;

/// Trims the allocator whenever the resident size grew by [`GROWTH`] since the last trim, checked
/// every [`CHECK_EVERY`]; logs what each trim gave back. Runs until the server stops.
pub async fn release_after_bursts() {
    let Some(page) = page_size() else {
        return;
    };
    let mut baseline = resident(page).unwrap_or(0);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(now) = resident(page) else {
            return;
        };
        if now < baseline.saturating_add(GROWTH) {
            baseline = baseline.min(now);
            continue;
        }
        // A trim walks every arena (milliseconds at hundreds of MiB): off the async workers.
        let trimmed = tokio::task::spawn_blocking(release).await.unwrap_or(false);
        let after = resident(page).unwrap_or(now);
        tracing::debug!(
            trimmed,
            before_mib = now / (1024 * 1024),
            after_mib = after / (1024 * 1024),
            "gave free allocator memory back to the system"
        );
        baseline = after;
    }
}

/// The process's resident size in bytes (`/proc/self/statm`, second field, in pages).
fn resident(page: u64) -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    parse_resident(&statm).map(|pages| pages.saturating_mul(page))
}

fn parse_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> Option<u64> {
    u64::try_from(rustix::param::page_size()).ok()
}

/// Asks glibc to return the free pages of every arena to the system (`malloc_trim(0)`); whether it
/// gave anything back. Elsewhere (musl, other systems) nothing: their allocators have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim is a C function of glibc")]
fn release() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and only reorganises glibc's own free lists, under the
    // arenas' locks that every other allocation takes too.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_resident_pages_of_statm() {
        assert_eq!(parse_resident("61234 1523 830 255 0 2081 0\n"), Some(1523));
        assert_eq!(parse_resident("61234"), None);
        assert_eq!(parse_resident("61234 x 1"), None);
    }

    /// Small blocks freed below one still in use stay resident (glibc returns only the top of a
    /// heap by itself); a trim gives them back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_gives_back_blocks_freed_below_a_live_one() {
        const MIB: u64 = 1024 * 1024;
        let page = page_size().expect("page size");
        // A thread of its own: its arena holds only this test's blocks.
        std::thread::spawn(move || {
            let blocks: Vec<Vec<u8>> = (0..65_536)
                .map(|i| vec![u8::try_from(i % 251).unwrap(); 4096])
                .collect();
            let pinned = vec![7u8; 4096];
            let held = resident(page).expect("statm");
            drop(blocks);
            let freed = resident(page).expect("statm");
            assert!(
                freed + 128 * MIB > held,
                "glibc gave the freed blocks back by itself ({} → {} MiB): nothing left to test",
                held / MIB,
                freed / MIB
            );
            assert!(release(), "malloc_trim released nothing");
            let trimmed = resident(page).expect("statm");
            assert!(
                trimmed + 128 * MIB <= freed,
                "a trim gave back less than 128 of 256 MiB freed ({} → {} MiB)",
                freed / MIB,
                trimmed / MIB
            );
            drop(pinned);
        })
        .join()
        .expect("the allocating thread");
    }
}
