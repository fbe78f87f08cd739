//! Test support: a scripted Modbus TCP device on loopback, for byte-level tests of the
//! client side (identification, scans).

/// A Modbus TCP "device" on loopback answering each request with the next of `pdus`
/// (raw bytes after the MBAP header; an empty one means stay silent). Returns its
/// address and the PDUs of the requests it got.
pub async fn device(pdus: Vec<Vec<u8>>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut pdus = pdus.into_iter();
        // A new connection after each error: the link reconnects.
        while let Ok((mut sock, _)) = listener.accept().await {
            loop {
                let mut head = [0u8; 7];
                if sock.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([head[4], head[5]])) - 1;
                let mut pdu = vec![0u8; len];
                if sock.read_exact(&mut pdu).await.is_err() {
                    break;
                }
                log.lock().unwrap().push(pdu);
                let Some(reply) = pdus.next() else { break };
                if reply.is_empty() {
                    continue;
                }
                let mut frame = head[..4].to_vec();
                frame.extend_from_slice(&(reply.len() as u16 + 1).to_be_bytes());
                frame.push(head[6]);
                frame.extend_from_slice(&reply);
                if sock.write_all(&frame).await.is_err() {
                    break;
                }
            }
        }
    });
    (address, seen)
}
