//! Hands the executable's (and the libraries') start-up code pages back once the daemon runs.
//!
//! Start-up (argument parsing, the TOML and its checks, profiles, TLS set-up, opening the
//! store) runs code that the polling loop never runs again, and the kernel maps 64 KiB of the
//! binary around each page touched: after start-up about 6 MiB of an 8-9 MiB executable stays
//! resident. `MADV_PAGEOUT` on the binary's read-only mappings reclaims those pages; the code
//! the loop runs faults back in on its next use, the rest stays out until it is needed (a
//! reload, `SIGHUP`). Clean file pages only: nothing is written, nothing can be lost.
//!
//! Linux (6.18 measured) pages out a file's pages only for a process that owns the file or may
//! write it, and the daemon runs as `hallmonitor`, not as the owner of its binary: there
//! `MADV_PAGEOUT` does nothing (6.4 MiB of executable resident at 400 devices). Code mappings,
//! which are never written, are therefore also dropped from the daemon's page tables with
//! `MADV_DONTNEED`, which any process may do to its own mappings: the pages stay in the page
//! cache and the ones the loop runs map back with a minor fault (and 64 KiB around each, the
//! kernel's fault-around, which is why this keeps more resident than a page-out does). The
//! shared libraries' code goes the same way.

/// Pages out the executable's read-only mappings (code and constants) and drops its and the
/// shared libraries' code from the page tables; returns the bytes of mappings the kernel
/// accepted. Best effort: a refusal (a kernel without `MADV_PAGEOUT`, a file not ours)
/// changes nothing.
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
        let path = f.nth(3).unwrap_or("");
        let ours = path == exe.as_ref();
        // Shared libraries' code too (libc, libm, the loader): start-up ran far more of it
        // than the loop does. Their pages are shared with other processes, so only our page
        // table entries go (MADV_DONTNEED below), never the pages.
        let library_code = path.starts_with('/') && perms.contains('x');
        if !(ours || library_code) || perms.contains('w') {
            continue;
        }
        let Some((Ok(start), Ok(end))) =
            range.split_once('-').map(|(a, b)| (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)))
        else {
            continue;
        };
        let (addr, len) = (start as *mut libc::c_void, end - start);
        // SAFETY: the range is one of this process's own mappings, read-only and backed by a
        // file; MADV_PAGEOUT (our executable only) drops its clean pages, which fault back in
        // from the file on the next access. It never changes what the memory holds.
        let mut handed_back = ours && unsafe { libc::madvise(addr, len, libc::MADV_PAGEOUT) } == 0;
        // Code only: a read-only data mapping may hold pages the loader wrote (relocations,
        // made read-only after), which MADV_DONTNEED would replace with the file's bytes.
        // SAFETY: an executable, never-written private mapping of a file has no page of its
        // own; dropping its page-table entries loses nothing, and each page maps
        // back in from the page cache on its next use.
        if perms.contains('x') {
            handed_back |= unsafe { libc::madvise(addr, len, libc::MADV_DONTNEED) } == 0;
        }
        if handed_back {
            released += len;
        }
    }
    tracing::debug!(mapped_kib = released / 1024, "start-up code pages handed back");
    released
}

#[cfg(not(target_os = "linux"))]
pub fn release_startup_pages() -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// KiB resident now in this process's mappings that `select(perms, path)` picks (Rss
    /// summed over /proc/self/smaps).
    fn resident_kib(select: impl Fn(&str, &str) -> bool) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut picked = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if picked {
                    kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
                }
            } else if line.split_ascii_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
                let mut f = line.split_ascii_whitespace();
                let perms = f.nth(1).unwrap_or("");
                picked = select(perms, f.nth(3).unwrap_or(""));
            }
        }
        kib
    }

    fn executable_rss_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        resident_kib(|_, path| path == exe.to_string_lossy())
    }

    fn libc_code_rss_kib() -> u64 {
        resident_kib(|perms, path| perms.contains('x') && path.contains("/libc.so"))
    }

    /// One test, so no other test's release runs between a measure and the next. libc's
    /// pages are shared with every other process, so a page-out could never take them: only
    /// dropping them from this process's page tables makes its resident part smaller.
    #[test]
    fn the_executables_and_the_libraries_code_pages_go_back() {
        let (exe_before, libc_before) = (executable_rss_kib(), libc_code_rss_kib());
        if super::release_startup_pages() == 0 {
            eprintln!("skipped: this kernel refuses MADV_PAGEOUT and MADV_DONTNEED");
            return;
        }
        let (exe_after, libc_after) = (executable_rss_kib(), libc_code_rss_kib());
        // Without the release nothing here would shrink them (resident pages only accumulate);
        // what this test runs from here on faults back in.
        assert!(exe_after < exe_before, "resident executable: {exe_before} KiB before, {exe_after} KiB after");
        assert!(libc_before > 0, "no resident libc code found");
        assert!(libc_after < libc_before, "resident libc code: {libc_before} KiB before, {libc_after} KiB after");
    }
}
