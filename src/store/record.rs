//! The on-disk layout of one outbox entry and of the store's keys.
//!
//! Everything lives in one sled tree so that a single atomic batch can write messages, the
//! next sequence number, the engine state and the drop report together. Keys start with a
//! one-byte prefix; outbox keys are `b'o'` followed by the big-endian `seq`, so sled's key
//! order is the FIFO order. A record longer than `OUTBOX_PIECE_BYTES` keeps its first piece
//! there and the rest under `b'p'` keys (see `split`), written and removed in the same batch.

use crate::model::Timestamp;
use crate::outbox::MessageClass;

/// Prefix of outbox keys.
pub(crate) const OUTBOX: u8 = b'o';
/// Schema version of the store layout (this file); bumped on incompatible change.
pub(crate) const META_SCHEMA: &[u8] = b"mschema";
/// Random per-store epoch, the first half of every `msg_id`.
pub(crate) const META_EPOCH: &[u8] = b"mepoch";
/// The next sequence number to assign (big-endian u64).
pub(crate) const META_NEXT_SEQ: &[u8] = b"mnext";
/// Drops not yet reported in a health message (JSON of `DropReport`).
pub(crate) const META_DROPS: &[u8] = b"mdrops";
/// The engine state as one value: the layout before chunks, still read (and removed on the
/// next save).
pub(crate) const ENGINE_STATE: &[u8] = b"estate";
/// How many chunks the saved engine state has (big-endian u32).
pub(crate) const META_STATE_CHUNKS: &[u8] = b"mstatechunks";
/// Prefix of engine-state chunk keys: `b's'` followed by the big-endian chunk index.
const STATE_CHUNK: u8 = b's';
/// Size of one engine-state chunk. sled 0.34 writes a tree page larger than a quarter of its
/// 512 KiB segment (~128 KiB) as a blob file, and the removal of a replaced blob is deferred
/// in memory, so every restart leaves the pending ones behind for good (issue 16's soak: ~1 MiB
/// a minute with 32 KiB chunks, 9 to a page). A leaf page holds at most 17 entries: 17 x 4 KiB
/// stays well under the blob size, so the state never makes a blob. Stores of the previous
/// release (32 KiB chunks) load unchanged and are re-chunked at the next save.
pub(crate) const STATE_CHUNK_BYTES: usize = 4 * 1024;

/// The engine state, cut into `STATE_CHUNK_BYTES` chunks as it is serialized into it (it is an
/// `io::Write`): a save holds the state once, as the chunks the store writes, not also as one
/// buffer the size of the whole state (at 400 devices that buffer was half a MiB of the peak).
#[derive(Debug, Default)]
pub struct StateChunks {
    full: Vec<sled::IVec>,
    /// The chunk being filled; always below `STATE_CHUNK_BYTES`.
    open: Vec<u8>,
}

impl StateChunks {
    pub fn new() -> Self {
        StateChunks { full: Vec::new(), open: Vec::with_capacity(STATE_CHUNK_BYTES) }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.full.len() * STATE_CHUNK_BYTES + self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks in order, the last one possibly short.
    pub(crate) fn into_chunks(mut self) -> Vec<sled::IVec> {
        if !self.open.is_empty() {
            self.full.push(sled::IVec::from(self.open.as_slice()));
        }
        self.full
    }
}

impl From<&[u8]> for StateChunks {
    fn from(state: &[u8]) -> Self {
        let mut chunks = StateChunks::new();
        std::io::Write::write_all(&mut chunks, state).expect("writing to memory cannot fail");
        chunks
    }
}

impl std::io::Write for StateChunks {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let take = buf.len().min(STATE_CHUNK_BYTES - self.open.len());
            self.open.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.open.len() == STATE_CHUNK_BYTES {
                self.full.push(sled::IVec::from(self.open.as_slice()));
                self.open.clear();
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The key of engine-state chunk `n`.
pub(crate) fn state_chunk_key(n: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = STATE_CHUNK;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// Version byte at the start of an outbox record stored whole.
const RECORD_VERSION: u8 = 1;
/// Version byte of the first piece of a record stored in pieces (the header is the same).
const RECORD_VERSION_IN_PIECES: u8 = 2;
/// Prefix of the keys of a record's further pieces: `b'p'`, the big-endian `seq`, then the
/// big-endian piece number from 1. They sort after every `b'o'` key.
pub(crate) const OUTBOX_PIECE: u8 = b'p';
/// Largest piece of an outbox record. Incident messages with long chronicles are tens of KiB,
/// and sixteen of them in one sled leaf made it a blob file (see `STATE_CHUNK_BYTES` for why
/// blob files leak); in pieces of 4 KiB every leaf stays inline.
pub(crate) const OUTBOX_PIECE_BYTES: usize = 4 * 1024;
/// version, class, qos, retain, created_at (8), topic length (2).
const HEADER_LEN: usize = 14;

/// The outbox key of `seq`.
pub(crate) fn outbox_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = OUTBOX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The `seq` of an outbox key, `None` if it is not one.
pub(crate) fn seq_of_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != OUTBOX {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..]);
    Some(u64::from_be_bytes(b))
}

pub(crate) fn class_code(class: MessageClass) -> u8 {
    match class {
        MessageClass::Health => 0,
        MessageClass::Rollup => 1,
        MessageClass::IncidentUpdate => 2,
        MessageClass::IncidentLifecycle => 3,
        MessageClass::Pattern => 4,
        MessageClass::Status => 5,
    }
}

fn class_of_code(code: u8) -> Option<MessageClass> {
    Some(match code {
        0 => MessageClass::Health,
        1 => MessageClass::Rollup,
        2 => MessageClass::IncidentUpdate,
        3 => MessageClass::IncidentLifecycle,
        4 => MessageClass::Pattern,
        5 => MessageClass::Status,
        _ => return None,
    })
}

/// Serializes one outbox record: a small fixed header, the topic, then the full payload
/// (envelope included) exactly as it will be published, so draining never re-serializes.
pub(crate) fn encode(
    class: MessageClass,
    qos: u8,
    retain: bool,
    created_at: Timestamp,
    topic: &str,
    payload: &[u8],
) -> Vec<u8> {
    let topic = topic.as_bytes();
    // Topics are short ASCII built from ids; clamp defensively rather than corrupt the header.
    let topic_len = topic.len().min(u16::MAX as usize);
    let mut v = Vec::with_capacity(HEADER_LEN + topic_len + payload.len());
    v.push(RECORD_VERSION);
    v.push(class_code(class));
    v.push(qos);
    v.push(u8::from(retain));
    v.extend_from_slice(&created_at.as_millis().to_be_bytes());
    v.extend_from_slice(&(topic_len as u16).to_be_bytes());
    v.extend_from_slice(&topic[..topic_len]);
    v.extend_from_slice(payload);
    v
}

/// The key of piece `n` (from 1) of the record of `seq`.
pub(crate) fn piece_key(seq: u64, n: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = OUTBOX_PIECE;
    k[1..9].copy_from_slice(&seq.to_be_bytes());
    k[9..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The `seq` of a further piece's key, `None` if it is not one.
pub(crate) fn seq_of_piece_key(key: &[u8]) -> Option<u64> {
    if key.len() != 13 || key[0] != OUTBOX_PIECE {
        return None;
    }
    key[1..9].try_into().ok().map(u64::from_be_bytes)
}

/// The prefix shared by every further piece of the record of `seq`.
pub(crate) fn pieces_prefix(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = OUTBOX_PIECE;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Cuts an encoded record into the value stored under its outbox key and its further pieces
/// (none when it fits one piece). The first piece always holds the whole header and topic.
pub(crate) fn split(mut record: Vec<u8>) -> (Vec<u8>, Vec<Vec<u8>>) {
    if record.len() <= OUTBOX_PIECE_BYTES || record.len() < HEADER_LEN {
        return (record, Vec::new());
    }
    let topic_len = u16::from_be_bytes([record[12], record[13]]) as usize;
    let first_len = OUTBOX_PIECE_BYTES.max(HEADER_LEN + topic_len).min(record.len());
    let rest = record.split_off(first_len);
    if rest.is_empty() {
        return (record, Vec::new());
    }
    record[0] = RECORD_VERSION_IN_PIECES;
    (record, rest.chunks(OUTBOX_PIECE_BYTES).map(<[u8]>::to_vec).collect())
}

/// The header fields of a record, without copying the payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub class: MessageClass,
    pub qos: u8,
    pub retain: bool,
    pub created_at: Timestamp,
    pub topic_len: usize,
    /// The record goes on in further pieces (`pieces_prefix`).
    pub in_pieces: bool,
}

/// Why a record could not be read back.
pub(crate) fn decode_header(v: &[u8]) -> Result<Header, &'static str> {
    if v.len() < HEADER_LEN {
        return Err("record shorter than its header");
    }
    if v[0] != RECORD_VERSION && v[0] != RECORD_VERSION_IN_PIECES {
        return Err("unknown record version");
    }
    let class = class_of_code(v[1]).ok_or("unknown message class")?;
    let qos = v[2];
    if qos > 2 {
        return Err("invalid QoS");
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&v[4..12]);
    let topic_len = u16::from_be_bytes([v[12], v[13]]) as usize;
    if v.len() < HEADER_LEN + topic_len {
        return Err("record shorter than its topic");
    }
    Ok(Header {
        class,
        qos,
        retain: v[3] != 0,
        created_at: Timestamp(i64::from_be_bytes(ts)),
        topic_len,
        in_pieces: v[0] == RECORD_VERSION_IN_PIECES,
    })
}

/// Topic and payload slices of a record whose header decoded.
pub(crate) fn body<'a>(v: &'a [u8], h: &Header) -> Result<(&'a str, &'a [u8]), &'static str> {
    let topic = std::str::from_utf8(&v[HEADER_LEN..HEADER_LEN + h.topic_len]).map_err(|_| "topic is not UTF-8")?;
    Ok((topic, &v[HEADER_LEN + h.topic_len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_keys_sort_as_seq() {
        let v = encode(MessageClass::Pattern, 1, true, Timestamp(1_700_000_000_123), "p/s/patterns/z", b"{\"a\":1}");
        let h = decode_header(&v).unwrap();
        assert_eq!(h.class, MessageClass::Pattern);
        assert_eq!((h.qos, h.retain, h.created_at), (1, true, Timestamp(1_700_000_000_123)));
        let (topic, payload) = body(&v, &h).unwrap();
        assert_eq!(topic, "p/s/patterns/z");
        assert_eq!(payload, b"{\"a\":1}");
        assert!(outbox_key(255) < outbox_key(256));
        assert_eq!(seq_of_key(&outbox_key(u64::MAX - 1)), Some(u64::MAX - 1));
        assert_eq!(seq_of_key(META_EPOCH), None);
    }

    #[test]
    fn a_long_record_is_cut_into_pieces_that_join_back_into_it() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let v = encode(MessageClass::IncidentUpdate, 1, false, Timestamp(5), "p/s/incidents/i", &payload);
        let (first, rest) = split(v.clone());
        assert_eq!(first.len(), OUTBOX_PIECE_BYTES);
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|p| p.len() <= OUTBOX_PIECE_BYTES));
        let h = decode_header(&first).unwrap();
        assert!(h.in_pieces);
        let mut joined = first;
        joined[0] = RECORD_VERSION;
        joined.extend(rest.concat());
        assert_eq!(joined, v);
        let short = encode(MessageClass::Health, 0, false, Timestamp(5), "t", b"{}");
        assert_eq!(split(short.clone()), (short, Vec::new()));
        assert!(piece_key(7, 1).starts_with(&pieces_prefix(7)) && piece_key(7, 1) < piece_key(7, 256));
        assert!(outbox_key(u64::MAX)[..] < piece_key(0, 1)[..], "pieces sort after every outbox key");
        assert_eq!(seq_of_piece_key(&piece_key(7, 3)), Some(7));
        assert_eq!(seq_of_piece_key(&outbox_key(7)), None);
    }

    #[test]
    fn truncated_or_foreign_records_are_rejected() {
        let v = encode(MessageClass::Health, 0, false, Timestamp(0), "t", b"x");
        assert!(decode_header(&v[..5]).is_err());
        let mut bad = v.clone();
        bad[0] = 99;
        assert!(decode_header(&bad).is_err());
        let mut bad = v;
        bad[1] = 42;
        assert!(decode_header(&bad).is_err());
    }
}
