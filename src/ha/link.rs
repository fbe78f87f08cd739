//! The peer link's handshake and frames, sans-IO: bytes in, bytes out, no socket, no clock and
//! no randomness of its own (the caller passes fresh random nonces).
//!
//! Handshake, both sides holding the shared key `K` (at least 32 bytes):
//! 1. initiator → responder, `hello`: magic `HMHA`, version, the initiator's nonce `Ni`;
//! 2. responder → initiator, `challenge`: its nonce `Nr` and
//!    `HMAC(K, "hallmonitor-ha responder" ‖ Ni ‖ Nr)`;
//! 3. initiator → responder, `proof`: `HMAC(K, "hallmonitor-ha initiator" ‖ Ni ‖ Nr)`.
//!
//! Each side checks the other's proof before trusting anything, and both derive the session key
//! `HMAC(K, "hallmonitor-ha session" ‖ Ni ‖ Nr)`. Fresh nonces on both sides make every session
//! key new, so nothing recorded from an earlier session is accepted in a later one; the labels
//! keep one side's proof from being reflected as the other's.
//!
//! A frame is `length (u32, big-endian, of what follows) ‖ counter (u64) ‖ payload ‖ tag`, the tag
//! being `HMAC(session, direction ‖ counter ‖ payload)`. Each direction counts from 0 and the
//! receiver accepts exactly the next counter, so a replayed, reordered, dropped-then-resent,
//! reflected or altered frame is refused with its own [`LinkError`]. The link authenticates; it
//! does not encrypt (the site LAN sees the replication stream, as it sees MQTT without TLS).

use ring::hmac;

/// Bytes of each nonce; the caller fills them from a cryptographic random source.
pub const NONCE_LEN: usize = 32;
/// Bytes of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// The shortest shared key accepted: as long as the hash, so the key is not the weak point.
pub const MIN_KEY_LEN: usize = 32;
/// The largest payload one frame carries (a replication batch is split to fit).
pub const MAX_PAYLOAD: usize = 1 << 20;
const MAGIC: &[u8; 4] = b"HMHA";
const VERSION: u8 = 1;
/// Bytes of the `hello` message.
pub const HELLO_LEN: usize = MAGIC.len() + 1 + NONCE_LEN;
/// Bytes of the `challenge` message.
pub const CHALLENGE_LEN: usize = NONCE_LEN + TAG_LEN;
/// Bytes of the `proof` message.
pub const PROOF_LEN: usize = TAG_LEN;
const LENGTH_LEN: usize = 4;
const COUNTER_LEN: usize = 8;
/// Bytes of a frame with an empty payload.
pub const FRAME_OVERHEAD: usize = LENGTH_LEN + COUNTER_LEN + TAG_LEN;

const RESPONDER_LABEL: &[u8] = b"hallmonitor-ha responder";
const INITIATOR_LABEL: &[u8] = b"hallmonitor-ha initiator";
const SESSION_LABEL: &[u8] = b"hallmonitor-ha session";

/// Which end of the link a side is; it names the direction of the frames it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Responder,
}

impl Side {
    fn direction(self) -> u8 {
        match self {
            Side::Initiator => 1,
            Side::Responder => 2,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Initiator => "initiator",
            Side::Responder => "responder",
        })
    }
}

/// Why the link refused a key, a handshake message or a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the shared key has {len} bytes; the peer link needs at least {MIN_KEY_LEN}")]
    KeyTooShort { len: usize },
    #[error("{what}: expected {expected} bytes, got {got}")]
    WrongLength { what: &'static str, expected: usize, got: usize },
    #[error("hello: not a hallmonitor peer link (starts with {got:02x?}, expected \"HMHA\")")]
    NotPeerLink { got: [u8; 4] },
    #[error("hello: protocol version {got}; this node speaks version {VERSION}")]
    UnsupportedVersion { got: u8 },
    #[error("handshake: the {peer}'s proof does not match: it holds another shared key (or the handshake was altered)")]
    WrongKey { peer: Side },
    #[error("frame {counter}: authentication failed (altered, reflected, or sealed under another key)")]
    Tampered { counter: u64 },
    #[error("frame {counter}: replayed (the next expected is {expected})")]
    Replayed { counter: u64, expected: u64 },
    #[error("frame {counter}: out of order (the next expected is {expected}; a frame was lost or reordered)")]
    OutOfOrder { counter: u64, expected: u64 },
    #[error("frame: {len} bytes announced, more than the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame: {len} bytes announced, fewer than a counter and a tag ({min})")]
    FrameTooShort { len: usize, min: usize },
    #[error("frame: a payload of {len} bytes is more than the limit of {MAX_PAYLOAD}")]
    PayloadTooLarge { len: usize },
    #[error("frame: this session sent 2^64 − 1 frames; reconnect")]
    CounterExhausted,
}

/// The pair's shared secret (`[ha] key_file`).
pub struct SharedKey(hmac::Key);

impl SharedKey {
    pub fn new(secret: &[u8]) -> Result<Self, LinkError> {
        if secret.len() < MIN_KEY_LEN {
            return Err(LinkError::KeyTooShort { len: secret.len() });
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    fn sign(&self, label: &[u8], initiator: &[u8; NONCE_LEN], responder: &[u8; NONCE_LEN]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(label);
        context.update(initiator);
        context.update(responder);
        context.sign()
    }

    fn verify(&self, label: &[u8], initiator: &[u8; NONCE_LEN], responder: &[u8; NONCE_LEN], tag: &[u8]) -> bool {
        let mut message = Vec::with_capacity(label.len() + 2 * NONCE_LEN);
        message.extend_from_slice(label);
        message.extend_from_slice(initiator);
        message.extend_from_slice(responder);
        hmac::verify(&self.0, &message, tag).is_ok()
    }

    fn session(&self, initiator: &[u8; NONCE_LEN], responder: &[u8; NONCE_LEN], side: Side) -> Session {
        let derived = self.sign(SESSION_LABEL, initiator, responder);
        Session { key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), side, next_send: 0, next_receive: 0 }
    }
}

fn exact<const N: usize>(what: &'static str, bytes: &[u8]) -> Result<[u8; N], LinkError> {
    bytes.try_into().map_err(|_| LinkError::WrongLength { what, expected: N, got: bytes.len() })
}

/// The connecting side, waiting for the challenge.
pub struct Initiator {
    nonce: [u8; NONCE_LEN],
}

impl Initiator {
    /// Starts a handshake: returns the side and the `hello` to send.
    pub fn start(nonce: [u8; NONCE_LEN]) -> (Self, Vec<u8>) {
        let mut hello = Vec::with_capacity(HELLO_LEN);
        hello.extend_from_slice(MAGIC);
        hello.push(VERSION);
        hello.extend_from_slice(&nonce);
        (Self { nonce }, hello)
    }

    /// Checks the responder's proof; returns the session and the `proof` to send.
    pub fn on_challenge(self, key: &SharedKey, challenge: &[u8]) -> Result<(Session, Vec<u8>), LinkError> {
        let challenge: [u8; CHALLENGE_LEN] = exact("challenge", challenge)?;
        let (theirs, tag) = challenge.split_at(NONCE_LEN);
        let responder: [u8; NONCE_LEN] = exact("challenge nonce", theirs)?;
        if !key.verify(RESPONDER_LABEL, &self.nonce, &responder, tag) {
            return Err(LinkError::WrongKey { peer: Side::Responder });
        }
        let proof = key.sign(INITIATOR_LABEL, &self.nonce, &responder).as_ref().to_vec();
        Ok((key.session(&self.nonce, &responder, Side::Initiator), proof))
    }
}

/// The listening side, after its challenge, waiting for the initiator's proof.
pub struct Responder {
    initiator: [u8; NONCE_LEN],
    nonce: [u8; NONCE_LEN],
}

impl Responder {
    /// Answers a `hello`: returns the side and the `challenge` to send.
    pub fn on_hello(key: &SharedKey, nonce: [u8; NONCE_LEN], hello: &[u8]) -> Result<(Self, Vec<u8>), LinkError> {
        let hello: [u8; HELLO_LEN] = exact("hello", hello)?;
        let magic: [u8; 4] = exact("hello magic", &hello[..MAGIC.len()])?;
        if &magic != MAGIC {
            return Err(LinkError::NotPeerLink { got: magic });
        }
        if hello[MAGIC.len()] != VERSION {
            return Err(LinkError::UnsupportedVersion { got: hello[MAGIC.len()] });
        }
        let initiator: [u8; NONCE_LEN] = exact("hello nonce", &hello[MAGIC.len() + 1..])?;
        let mut challenge = Vec::with_capacity(CHALLENGE_LEN);
        challenge.extend_from_slice(&nonce);
        challenge.extend_from_slice(key.sign(RESPONDER_LABEL, &initiator, &nonce).as_ref());
        Ok((Self { initiator, nonce }, challenge))
    }

    /// Checks the initiator's proof; returns the session.
    pub fn on_proof(self, key: &SharedKey, proof: &[u8]) -> Result<Session, LinkError> {
        let proof: [u8; PROOF_LEN] = exact("proof", proof)?;
        if !key.verify(INITIATOR_LABEL, &self.initiator, &self.nonce, &proof) {
            return Err(LinkError::WrongKey { peer: Side::Initiator });
        }
        Ok(key.session(&self.initiator, &self.nonce, Side::Responder))
    }
}

/// An authenticated session: seals frames to send, opens frames received, in order.
pub struct Session {
    key: hmac::Key,
    side: Side,
    next_send: u64,
    next_receive: u64,
}

impl Session {
    pub fn side(&self) -> Side {
        self.side
    }

    /// Seals `payload` into the next frame.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, LinkError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(LinkError::PayloadTooLarge { len: payload.len() });
        }
        if self.next_send == u64::MAX {
            return Err(LinkError::CounterExhausted);
        }
        let counter = self.next_send;
        self.next_send += 1;
        let tag = self.tag(self.side, counter, payload);
        let length = COUNTER_LEN + payload.len() + TAG_LEN;
        let mut frame = Vec::with_capacity(LENGTH_LEN + length);
        // `length` ≤ MAX_PAYLOAD + 40, far below u32::MAX.
        frame.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
        frame.extend_from_slice(&counter.to_be_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(tag.as_ref());
        Ok(frame)
    }

    /// How many bytes the frame at the start of `buffer` takes, once they have all arrived
    /// (`None`: read more). Refuses a length no frame can have before anything is buffered.
    pub fn frame_len(buffer: &[u8]) -> Result<Option<usize>, LinkError> {
        let Some(prefix) = buffer.get(..LENGTH_LEN) else { return Ok(None) };
        let length = u32::from_be_bytes(exact("frame length", prefix)?) as usize;
        let (min, max) = (COUNTER_LEN + TAG_LEN, COUNTER_LEN + MAX_PAYLOAD + TAG_LEN);
        if length < min {
            return Err(LinkError::FrameTooShort { len: length, min });
        }
        if length > max {
            return Err(LinkError::FrameTooLarge { len: length, max });
        }
        let whole = LENGTH_LEN + length;
        Ok((buffer.len() >= whole).then_some(whole))
    }

    /// Opens one whole frame (as [`frame_len`](Self::frame_len) measured it): the payload, if
    /// the frame is authentic and the next one expected.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        let whole = Self::frame_len(frame)?.ok_or(LinkError::WrongLength {
            what: "frame",
            expected: Self::frame_len_announced(frame),
            got: frame.len(),
        })?;
        if whole != frame.len() {
            return Err(LinkError::WrongLength { what: "frame", expected: whole, got: frame.len() });
        }
        let counter = u64::from_be_bytes(exact("frame counter", &frame[LENGTH_LEN..LENGTH_LEN + COUNTER_LEN])?);
        let payload = &frame[LENGTH_LEN + COUNTER_LEN..frame.len() - TAG_LEN];
        let tag = &frame[frame.len() - TAG_LEN..];
        // Authenticity first: a counter is only meaningful on an authentic frame.
        let mut signed = Vec::with_capacity(1 + COUNTER_LEN + payload.len());
        signed.push(self.side.other().direction());
        signed.extend_from_slice(&counter.to_be_bytes());
        signed.extend_from_slice(payload);
        if hmac::verify(&self.key, &signed, tag).is_err() {
            return Err(LinkError::Tampered { counter });
        }
        let expected = self.next_receive;
        if counter < expected {
            return Err(LinkError::Replayed { counter, expected });
        }
        if counter > expected {
            return Err(LinkError::OutOfOrder { counter, expected });
        }
        self.next_receive += 1;
        Ok(payload.to_vec())
    }

    fn frame_len_announced(frame: &[u8]) -> usize {
        frame
            .get(..LENGTH_LEN)
            .map_or(LENGTH_LEN, |p| LENGTH_LEN + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize)
    }

    fn tag(&self, sender: Side, counter: u64, payload: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&[sender.direction()]);
        context.update(&counter.to_be_bytes());
        context.update(payload);
        context.sign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const OTHER_KEY: &[u8; 32] = b"fedcba9876543210fedcba9876543210";

    fn key(bytes: &[u8]) -> SharedKey {
        SharedKey::new(bytes).expect("long enough")
    }

    /// A completed handshake: (initiator's session, responder's session).
    fn pair() -> (Session, Session) {
        let (initiator, hello) = Initiator::start([1; NONCE_LEN]);
        let (responder, challenge) = Responder::on_hello(&key(KEY), [2; NONCE_LEN], &hello).expect("hello");
        let (a, proof) = initiator.on_challenge(&key(KEY), &challenge).expect("challenge");
        let b = responder.on_proof(&key(KEY), &proof).expect("proof");
        (a, b)
    }

    #[test]
    fn a_handshake_with_one_key_carries_frames_both_ways() {
        let (mut a, mut b) = pair();
        assert_eq!((a.side(), b.side()), (Side::Initiator, Side::Responder));
        for text in [&b"commit 1"[..], b"", b"commit 2"] {
            let frame = a.seal(text).expect("seal");
            assert_eq!(Session::frame_len(&frame), Ok(Some(frame.len())));
            assert_eq!(b.open(&frame).expect("open"), text);
        }
        let ack = b.seal(b"ack 2").expect("seal");
        assert_eq!(a.open(&ack).expect("open"), b"ack 2");
    }

    #[test]
    fn a_short_key_is_refused() {
        let err = SharedKey::new(b"hunter2").err().expect("too short");
        assert_eq!(err, LinkError::KeyTooShort { len: 7 });
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn an_initiator_refuses_a_responder_with_another_key() {
        let (initiator, hello) = Initiator::start([1; NONCE_LEN]);
        let (_, challenge) = Responder::on_hello(&key(OTHER_KEY), [2; NONCE_LEN], &hello).expect("hello");
        let err = initiator.on_challenge(&key(KEY), &challenge).err().expect("wrong key");
        assert_eq!(err, LinkError::WrongKey { peer: Side::Responder });
        assert!(err.to_string().contains("another shared key"), "{err}");
    }

    #[test]
    fn a_responder_refuses_an_initiator_with_another_key() {
        let (_, hello) = Initiator::start([1; NONCE_LEN]);
        let (responder, _) = Responder::on_hello(&key(KEY), [2; NONCE_LEN], &hello).expect("hello");
        // What an initiator holding the other key would answer.
        let forged = key(OTHER_KEY).sign(INITIATOR_LABEL, &[1; NONCE_LEN], &[2; NONCE_LEN]);
        let err = responder.on_proof(&key(KEY), forged.as_ref()).err().expect("wrong key");
        assert_eq!(err, LinkError::WrongKey { peer: Side::Initiator });
    }

    #[test]
    fn a_responder_proof_reflected_as_the_initiator_proof_is_refused() {
        let (_, hello) = Initiator::start([1; NONCE_LEN]);
        let (responder, challenge) = Responder::on_hello(&key(KEY), [2; NONCE_LEN], &hello).expect("hello");
        let err = responder.on_proof(&key(KEY), &challenge[NONCE_LEN..]).err().expect("reflected");
        assert_eq!(err, LinkError::WrongKey { peer: Side::Initiator });
    }

    #[test]
    fn a_proof_from_an_earlier_handshake_is_refused() {
        let (initiator, hello) = Initiator::start([1; NONCE_LEN]);
        let (responder, challenge) = Responder::on_hello(&key(KEY), [2; NONCE_LEN], &hello).expect("hello");
        let (_, recorded) = initiator.on_challenge(&key(KEY), &challenge).expect("challenge");
        responder.on_proof(&key(KEY), &recorded).expect("the first time it is good");
        // The same hello replayed meets a fresh responder nonce.
        let (again, _) = Responder::on_hello(&key(KEY), [3; NONCE_LEN], &hello).expect("hello");
        let err = again.on_proof(&key(KEY), &recorded).err().expect("replayed proof");
        assert_eq!(err, LinkError::WrongKey { peer: Side::Initiator });
    }

    #[test]
    fn a_hello_that_is_not_ours_is_refused_by_name() {
        let k = key(KEY);
        let (_, mut hello) = Initiator::start([1; NONCE_LEN]);
        assert_eq!(
            Responder::on_hello(&k, [2; NONCE_LEN], b"GET / HTTP/1.1").err(),
            Some(LinkError::WrongLength { what: "hello", expected: HELLO_LEN, got: 14 })
        );
        hello[4] = 9;
        assert_eq!(
            Responder::on_hello(&k, [2; NONCE_LEN], &hello).err(),
            Some(LinkError::UnsupportedVersion { got: 9 })
        );
        hello[..4].copy_from_slice(b"SSH-");
        assert_eq!(
            Responder::on_hello(&k, [2; NONCE_LEN], &hello).err(),
            Some(LinkError::NotPeerLink { got: *b"SSH-" })
        );
    }

    #[test]
    fn a_replayed_frame_is_refused() {
        let (mut a, mut b) = pair();
        let first = a.seal(b"one").expect("seal");
        b.open(&first).expect("open");
        assert_eq!(b.open(&first), Err(LinkError::Replayed { counter: 0, expected: 1 }));
    }

    #[test]
    fn a_reordered_frame_is_refused() {
        let (mut a, mut b) = pair();
        let first = a.seal(b"one").expect("seal");
        let second = a.seal(b"two").expect("seal");
        let err = b.open(&second).expect_err("out of order");
        assert_eq!(err, LinkError::OutOfOrder { counter: 1, expected: 0 });
        assert!(err.to_string().contains("lost or reordered"), "{err}");
        // The refused frame left the session where it was.
        assert_eq!(b.open(&first).expect("open"), b"one");
    }

    #[test]
    fn an_altered_frame_is_refused() {
        let (mut a, mut b) = pair();
        let frame = a.seal(b"seq 41").expect("seal");
        for at in [LENGTH_LEN, LENGTH_LEN + COUNTER_LEN, frame.len() - 1] {
            let mut altered = frame.clone();
            altered[at] ^= 1;
            assert!(matches!(b.open(&altered), Err(LinkError::Tampered { .. })), "byte {at}");
        }
        assert_eq!(b.open(&frame).expect("the original still opens"), b"seq 41");
    }

    #[test]
    fn a_frame_under_another_session_or_reflected_is_refused() {
        let (mut a, _) = pair();
        let (_, mut other) = {
            let (initiator, hello) = Initiator::start([7; NONCE_LEN]);
            let (responder, challenge) = Responder::on_hello(&key(KEY), [8; NONCE_LEN], &hello).expect("hello");
            let (s, proof) = initiator.on_challenge(&key(KEY), &challenge).expect("challenge");
            (s, responder.on_proof(&key(KEY), &proof).expect("proof"))
        };
        let frame = a.seal(b"x").expect("seal");
        assert_eq!(other.open(&frame), Err(LinkError::Tampered { counter: 0 }), "another session's key");
        assert_eq!(a.open(&frame), Err(LinkError::Tampered { counter: 0 }), "sent back to its sender");
    }

    #[test]
    fn frame_lengths_out_of_bounds_are_refused_before_buffering() {
        assert_eq!(Session::frame_len(&[0, 0]), Ok(None));
        assert_eq!(Session::frame_len(&[0, 0, 0, 5]), Err(LinkError::FrameTooShort { len: 5, min: 40 }));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(Session::frame_len(&huge), Err(LinkError::FrameTooLarge { .. })));
        let (mut a, mut b) = pair();
        let frame = a.seal(b"abc").expect("seal");
        assert_eq!(Session::frame_len(&frame[..frame.len() - 1]), Ok(None));
        assert!(matches!(b.open(&frame[..frame.len() - 1]), Err(LinkError::WrongLength { what: "frame", .. })));
        assert_eq!(a.seal(&vec![0; MAX_PAYLOAD + 1]).err(), Some(LinkError::PayloadTooLarge { len: MAX_PAYLOAD + 1 }));
    }
}
