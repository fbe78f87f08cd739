//! Hands the executable's start-up pages back to the kernel once the daemon runs.
//!
//! Start-up (argument parsing, the TOML and its checks, profiles, TLS set-up, opening the
//! store) runs code that the polling loop never runs again, and the kernel maps 64 KiB of the
//! binary around each page touched: after start-up about 6 MiB of an 8-9 MiB executable stays
//! resident. `MADV_PAGEOUT` on the binary's read-only mappings reclaims those pages; the code
//! the loop runs faults back in on its next use, the rest stays out until it is needed (a
//! reload, `SIGHUP`). Clean file pages only: nothing is written, nothing can be lost.
//!
//! The kernel (5.19 on) pages out a file's pages only for a process that owns the file or may
//! write it, and the daemon runs as `hallmonitor`, not as the owner of `/usr/local/bin`: there
//! `MADV_PAGEOUT` does nothing (measured: 6.7 MiB of executable resident before and after).
//! The code mappings, which are never written, are therefore also dropped from the daemon's
//! page tables with `MADV_DONTNEED`, which any process may do on its own mappings: the pages
//! stay in the page cache and the ones the loop runs map back in with a minor fault.

/// Pages out the executable's file-backed, read-only mappings (code and constants); returns
/// the bytes of mappings the kernel accepted. Best effort: a kernel without `MADV_PAGEOUT`
/// (before 5.4) or any other refusal changes nothing.
#[cfg(target_os = "linux")]
pub fn release_startup_pages() -> usize {
    let (Ok(exe), Ok(maps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/maps")) else {
        return 0;
    };
    let exe = exe.to_string_lossy();
    let mut released = 0usize;
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
        if f.nth(3) != Some(exe.as_ref()) || perms.contains('w') {
            continue;
        }
        let Some((Ok(start), Ok(end))) =
            range.split_once('-').map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            continue;
        };
        let (addr, len) = (start as *mut libc::c_void, end - start);
        // SAFETY: the range is one of this process's own mappings, read-only and backed by the
        // executable's file; MADV_PAGEOUT only drops its clean pages, which fault back in from
        // the file on the next access. It never changes what the memory holds.
        let mut handed_back = unsafe { libc::madvise(addr, len, libc::MADV_PAGEOUT) } == 0;
        // Code only: a read-only data mapping may hold pages the loader wrote (relocations,
        // made read-only after), which MADV_DONTNEED would replace with the file's bytes.
        // SAFETY: an executable, never-written private mapping of the executable's file has no
        // page of its own; dropping its page-table entries loses nothing, and each page maps
        // back in from the page cache on its next use.
        if perms.contains('x') {
            handed_back |= unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) } == 0;
        }
        if handed_back {
            released += len;
        }
    }
    tracing::debug!(mapped_kib = released / 1024, "executable's start-up pages handed back");
    released
}

#[cfg(not(target_os = "linux"))]
pub fn release_startup_pages() -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// KiB of this executable resident now (Rss summed over its mappings, /proc/self/smaps).
    fn executable_rss_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if ours {
                    kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
                }
            } else if line.split_ascii_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
                ours = line.split_ascii_whitespace().nth(5) == Some(exe.as_ref());
            }
        }
        kib
    }

    #[test]
    fn the_executables_resident_pages_go_back_to_the_kernel() {
        let before = executable_rss_kib();
        if super::release_startup_pages() == 0 {
            eprintln!("skipped: this kernel refuses MADV_PAGEOUT (Linux before 5.4)");
            return;
        }
        let after = executable_rss_kib();
        // Without the page-out nothing here would shrink it (resident pages only accumulate);
        // what this test runs from here on faults back in.
        assert!(after < before, "resident executable: {before} KiB before, {after} KiB after");
    }
}
