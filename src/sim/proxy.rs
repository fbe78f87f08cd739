//! A loopback TCP proxy that can be severed and restored: the demo's failing uplink.
//!
//! The demo puts it between the agent and the broker. `sever()` closes every live connection
//! at once and, until `restore()`, closes each new connection as soon as it is accepted, so the
//! agent sees what a gateway sees when its uplink drops: resets, then refused sessions, then
//! recovery. The proxy never looks at the bytes it forwards.
//!
//! Invariant: while severed, no byte is forwarded in either direction.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Counters a demo or test reads to see what the proxy did.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    severed: AtomicU64,
    upstream_failures: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A plain copy of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted and joined to the upstream.
    pub accepted: u64,
    /// Connections closed at once because the proxy was severed.
    pub refused: u64,
    /// Live connections cut by `sever()`.
    pub severed: u64,
    /// Connections closed because the upstream could not be reached.
    pub upstream_failures: u64,
    /// Bytes forwarded client -> upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream -> client.
    pub bytes_down: u64,
}

/// A running proxy. Dropping it stops the listener and cuts every connection.
pub struct Proxy {
    local: SocketAddr,
    upstream: SocketAddr,
    severed: Arc<AtomicBool>,
    // A new generation cuts every connection of the previous one.
    generation: watch::Sender<u64>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

impl Proxy {
    /// Binds `listen` (use `127.0.0.1:0`) and forwards every accepted connection to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let severed = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream,
            severed.clone(),
            generation.clone(),
            counters.clone(),
            cancel.clone(),
        ));
        tracing::debug!(%local, %upstream, "proxy listening");
        Ok(Proxy { local, upstream, severed, generation, counters, cancel })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Cuts every live connection and refuses new ones until `restore()`.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(local = %self.local, "proxy severed");
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.severed.store(false, Ordering::SeqCst);
        tracing::info!(local = %self.local, "proxy restored");
    }

    /// Whether the proxy is currently severed.
    pub fn is_severed(&self) -> bool {
        self.severed.load(Ordering::SeqCst)
    }

    /// What the proxy has done so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            severed: c.severed.load(Ordering::Relaxed),
            upstream_failures: c.upstream_failures.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    severed: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let mut client = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if severed.load(Ordering::SeqCst) {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown().await;
            drop(client);
            continue;
        }
        let mut gen_rx = generation.subscribe();
        gen_rx.mark_unchanged();
        let counters = counters.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let upstream_conn = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = gen_rx.changed() => {
                    counters.severed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                c = TcpStream::connect(upstream) => c,
            };
            let mut server = match upstream_conn {
                Ok(s) => s,
                Err(e) => {
                    counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%upstream, error = %e, "proxy upstream unreachable");
                    return;
                }
            };
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = gen_rx.changed() => {
                    counters.severed.fetch_add(1, Ordering::Relaxed);
                }
                _ = splice(&mut client, &mut server, &counters) => {}
            }
            // Dropping both streams closes them; the peer sees EOF or a reset.
        });
    }
}

/// Forwards both directions until both have ended, counting bytes as they pass (so a cut
/// connection's traffic is still counted).
async fn splice(client: &mut TcpStream, server: &mut TcpStream, counters: &Counters) {
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    tokio::join!(pump(&mut cr, &mut sw, &counters.bytes_up), pump(&mut sr, &mut cw, &counters.bytes_down));
}

async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    // Pass the half-close on, as TCP would.
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Reads until EOF or error; true when the connection was closed by the other end.
    async fn is_closed(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
        matches!(r, Ok(Ok(0)) | Ok(Err(_)))
    }

    #[tokio::test]
    async fn forwards_severs_and_restores() {
        let upstream = echo_server().await;
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), upstream).await.unwrap();
        assert_ne!(proxy.local_addr().port(), 0);

        let mut a = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut a, b"hello").await.unwrap(), b"hello");

        proxy.sever();
        assert!(proxy.is_severed());
        assert!(is_closed(&mut a).await, "a live connection must be cut by sever()");

        // New connections are accepted by the kernel but closed without reaching upstream.
        let mut b = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let _ = b.write_all(b"lost").await;
        assert!(is_closed(&mut b).await, "a new connection must be refused while severed");

        proxy.restore();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"again").await.unwrap(), b"again");

        let st = proxy.stats();
        assert_eq!(st.accepted, 2);
        assert_eq!(st.refused, 1);
        assert_eq!(st.severed, 1);
        assert_eq!(st.bytes_up, 10, "hello + again; nothing from the refused connection");
        assert_eq!(st.bytes_down, 10);
    }

    #[tokio::test]
    async fn unreachable_upstream_closes_the_client() {
        // Bind and release a port so nothing listens there.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), dead).await.unwrap();
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert!(is_closed(&mut s).await);
        // The counter is bumped just before the client's stream is dropped.
        for _ in 0..100 {
            if proxy.stats().upstream_failures == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(proxy.stats().upstream_failures, 1);
        assert_eq!(proxy.stats().accepted, 0);
    }
}
