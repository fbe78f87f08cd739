//! What travels inside one peer-link frame (`link::Session::seal`), and the voter's durable
//! record, as bytes.
//!
//! Encoding: JSON, `{"v":1,"msg":{"request":{...}}}`. The messages are a few hundred bytes,
//! three per renew period, so size does not matter; serde already derives them, a new message
//! (replication's) is one more variant, and a capture of the link reads as text. The version
//! is checked before anything else, so a peer speaking another version is refused by name
//! rather than misread; unknown fields are refused too (`deny_unknown_fields` on the envelope).

use serde::{Deserialize, Serialize};

use super::lease::{NodeId, Release, Reply, Request, VoterRecord};

/// The version this build speaks, on the link and in the voter's record file.
pub const WIRE_VERSION: u8 = 1;

/// One message on the link. A node sends `Request`s and `Release`s over the link it opened;
/// the voter at the other end answers each request with a `Reply` on the same link. An active
/// opens a link of its own for the replication stream and says so in its first frame
/// (`Stream`); every later frame on that link carries a piece of a `replica::Entry` one way
/// and of a `replica::Reply` the other (binary: see `agent::replication`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Request(Request),
    Reply(Reply),
    Release(Release),
    Stream(StreamHello),
}

/// The first frame of a replication link: who sends the stream, under which term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHello {
    pub leader: NodeId,
    pub term: u64,
}

/// Why bytes from the link (or the record file) were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("version {got}; this node speaks version {WIRE_VERSION}")]
    Version { got: u64 },
    #[error("malformed: {0}")]
    Malformed(String),
}

#[derive(Serialize)]
struct Out<'a, T> {
    v: u8,
    msg: &'a T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct In<T> {
    #[allow(dead_code)] // checked through `VersionOnly` first
    v: u64,
    msg: T,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, enums) to a Vec cannot fail.
    serde_json::to_vec(&Out { v: WIRE_VERSION, msg: value }).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    let version: VersionOnly = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version.v != u64::from(WIRE_VERSION) {
        return Err(WireError::Version { got: version.v });
    }
    let whole: In<T> = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(whole.msg)
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

/// The voter's record as stored (in the gateway's store directory, or the witness's state file).
pub fn encode_record(record: &VoterRecord) -> Vec<u8> {
    encode(record)
}

pub fn decode_record(bytes: &[u8]) -> Result<VoterRecord, WireError> {
    decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::lease::{Generation, Refusal, Verdict};

    fn request() -> Request {
        Request {
            candidate: NodeId("gw1".to_owned()),
            incarnation: u64::MAX,
            round: 7,
            term: 3,
            generation: Generation { term: 2, index: 40 },
        }
    }

    #[test]
    fn every_message_round_trips() {
        let req = request();
        let messages = [
            Message::Request(req.clone()),
            Message::Reply(Reply {
                candidate: req.candidate.clone(),
                incarnation: req.incarnation,
                round: 7,
                term: 3,
                verdict: Verdict::Granted,
            }),
            Message::Reply(Reply {
                candidate: req.candidate.clone(),
                incarnation: 1,
                round: 0,
                term: 9,
                verdict: Verdict::Refused(Refusal::Promised { to: NodeId("gw2".to_owned()) }),
            }),
            Message::Reply(Reply {
                candidate: req.candidate.clone(),
                incarnation: 1,
                round: 0,
                term: 9,
                verdict: Verdict::Refused(Refusal::StaleReplica { newest: Generation { term: 1, index: 2 } }),
            }),
            Message::Release(Release { candidate: req.candidate, incarnation: 5, up_to_round: 6, resigned: true }),
            Message::Stream(StreamHello { leader: NodeId("gw1".to_owned()), term: 4 }),
        ];
        for m in messages {
            assert_eq!(Message::decode(&m.encode()), Ok(m.clone()), "{m:?}");
        }
        let record = VoterRecord {
            highest_term: 4,
            term_owner: Some(NodeId("gw2".to_owned())),
            newest: Generation { term: 4, index: 1 },
        };
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
    }

    #[test]
    fn a_candidates_release_reads_as_before_and_a_resignation_is_marked() {
        let release = Release { candidate: NodeId("gw1".to_owned()), incarnation: 5, up_to_round: 6, resigned: false };
        let text = String::from_utf8(Message::Release(release.clone()).encode()).expect("JSON is UTF-8");
        assert!(!text.contains("resigned"), "{text}");
        let resigned = Message::Release(Release { resigned: true, ..release });
        let text = String::from_utf8(resigned.encode()).expect("JSON is UTF-8");
        assert!(text.contains(r#""resigned":true"#), "{text}");
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let text = String::from_utf8(Message::Request(request()).encode()).expect("JSON is UTF-8");
        assert!(text.starts_with(r#"{"v":1,"#), "{text}");
        let other = text.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert_eq!(Message::decode(other.as_bytes()), Err(WireError::Version { got: 2 }));
        // Even one whose body this version could not read.
        assert_eq!(Message::decode(br#"{"v":3,"msg":{"vote":[]}}"#), Err(WireError::Version { got: 3 }));
        assert_eq!(decode_record(br#"{"v":0,"msg":{}}"#), Err(WireError::Version { got: 0 }));
    }

    #[test]
    fn garbage_and_unknown_fields_are_refused() {
        for bytes in [&b""[..], b"\x00\x01", br#"{"msg":{}}"#, br#"{"v":1,"msg":{"vote":{}}}"#, br#"{"v":1}"#] {
            assert!(matches!(Message::decode(bytes), Err(WireError::Malformed(_))), "{bytes:?}");
        }
        let text = String::from_utf8(Message::Request(request()).encode()).expect("JSON is UTF-8");
        let extra = text.replacen(r#"{"v":1,"#, r#"{"v":1,"extra":0,"#, 1);
        assert!(matches!(Message::decode(extra.as_bytes()), Err(WireError::Malformed(_))));
    }
}
