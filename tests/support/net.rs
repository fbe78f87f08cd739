//! Loopback ports for peers and for devices that must not answer.

/// A loopback TCP port nobody listens on (bound, then released): free for a peer to take, or a
/// closed port to fail against.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback UDP port nobody is bound to (bound, then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
