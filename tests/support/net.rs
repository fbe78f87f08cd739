//! Loopback ports for peers and for devices that must not answer.

/// A loopback TCP port nobody listens on (bound, then released): free for a peer to take, or a
/// closed port to fail against.
pub fn free_port() -> u16 {
    next_free(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A loopback UDP port nobody is bound to (bound, then released).
pub fn free_udp_port() -> u16 {
    next_free(|port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// Ports come from below the ephemeral range (32768 up on Linux), so no outgoing connection of
/// a test running beside can take one between its release and the peer's bind, and each is
/// handed out once per test process (tests run in parallel threads).
fn next_free(bindable: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts at its own place in the range (binaries run one after another,
    // but a port may linger in TIME_WAIT from the last one).
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if bindable(port) {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` within `timeout` (tried every
/// 25 ms): for a peer just started.
pub fn listens_within(port: u16, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}
