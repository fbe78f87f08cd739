//! The BER of an SNMPv2c poll's GETBULK, without IO: the request encoded into a buffer kept from
//! poll to poll, and the response decoded straight into the varbinds the walk reads.
//!
//! async-snmp still owns the socket (sharing, request-id matching, source checks), SNMPv3 and
//! every request outside a poll's GETBULK. Its general `Message`/`Pdu` path cost about 2,600
//! instructions a point on an rPDU2 poll, more than decoding the readings and the engine
//! together; this path does the same job for a message of one known shape (RFC 1157 section 4,
//! RFC 3416 section 3; value tags from RFC 2578 and RFC 3416's exceptions). An answer it cannot
//! read is not dropped: the session hands that agent back to async-snmp's decoder for good
//! (`client::CommunityBulk`), which reads more of what odd agents send.

use async_snmp::{Oid, Value, VarBind};
use bytes::Bytes;

/// PDU tags (context-specific, constructed).
const GET_BULK: u8 = 0xA5;
const RESPONSE: u8 = 0xA2;
/// The version field of an SNMPv2c message.
const V2C: i32 = 1;

const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OBJECT_IDENTIFIER: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const IP_ADDRESS: u8 = 0x40;
const COUNTER32: u8 = 0x41;
const GAUGE32: u8 = 0x42;
const TIME_TICKS: u8 = 0x43;
const OPAQUE: u8 = 0x44;
const NSAP: u8 = 0x45;
const COUNTER64: u8 = 0x46;
const UINTEGER32: u8 = 0x47;
const NO_SUCH_OBJECT: u8 = 0x80;
const NO_SUCH_INSTANCE: u8 = 0x81;
const END_OF_MIB_VIEW: u8 = 0x82;

/// Sub-identifiers an OID may have (RFC 2578 section 3.5).
const MAX_ARCS: usize = 128;

/// A v2c GETBULK: the OIDs go each with a NULL value.
pub struct GetBulk<'a> {
    pub community: &'a [u8],
    pub request_id: i32,
    pub non_repeaters: i32,
    pub max_repetitions: i32,
    pub oids: &'a [Oid],
}

/// Writes `req` into `out` (cleared first). Lengths are worked out before anything is written,
/// so every byte goes in its place once.
pub fn encode(req: &GetBulk<'_>, out: &mut Vec<u8>) {
    let varbinds: usize = req.oids.iter().map(|o| tlv_len(varbind_len(o))).sum();
    encode_around(req, varbinds, out);
    put_varbinds(req.oids, out);
}

/// The variable-bindings of a GETBULK of `oids` (its SEQUENCE, whole), for `encode_with`.
pub fn encode_varbinds(oids: &[Oid], out: &mut Vec<u8>) {
    out.clear();
    let varbinds: usize = oids.iter().map(|o| tlv_len(varbind_len(o))).sum();
    out.reserve(tlv_len(varbinds));
    put_header(out, SEQUENCE, varbinds);
    put_varbinds(oids, out);
}

/// `encode` of a GETBULK whose variable-bindings `encode_varbinds` wrote (`req.oids` unused):
/// a request sent again under a new request-id without its OIDs at hand.
pub fn encode_with(req: &GetBulk<'_>, varbinds: &[u8], out: &mut Vec<u8>) {
    // The SEQUENCE's header is 2 to 4 bytes: its content is what follows it.
    let content = varbinds.len().saturating_sub(header_len(varbinds));
    encode_around(req, content, out);
    out.extend_from_slice(&varbinds[varbinds.len() - content..]);
}

/// The message up to the variable-bindings' content (`varbinds` bytes of it).
fn encode_around(req: &GetBulk<'_>, varbinds: usize, out: &mut Vec<u8>) {
    out.clear();
    let pdu = tlv_len(int_len(req.request_id))
        + tlv_len(int_len(req.non_repeaters))
        + tlv_len(int_len(req.max_repetitions))
        + tlv_len(varbinds);
    let message = tlv_len(1) + tlv_len(req.community.len()) + tlv_len(pdu);
    out.reserve(tlv_len(message));
    put_header(out, SEQUENCE, message);
    put_int(out, V2C);
    put_header(out, OCTET_STRING, req.community.len());
    out.extend_from_slice(req.community);
    put_header(out, GET_BULK, pdu);
    put_int(out, req.request_id);
    put_int(out, req.non_repeaters);
    put_int(out, req.max_repetitions);
    put_header(out, SEQUENCE, varbinds);
}

fn put_varbinds(oids: &[Oid], out: &mut Vec<u8>) {
    for oid in oids {
        let name = oid_len(oid);
        put_header(out, SEQUENCE, tlv_len(name) + 2);
        put_header(out, OBJECT_IDENTIFIER, name);
        put_oid(out, oid);
        out.extend_from_slice(&[NULL, 0]);
    }
}

/// Length of the tag and length bytes of the TLV `tlv` starts with.
fn header_len(tlv: &[u8]) -> usize {
    match tlv.get(1) {
        Some(&first) if first >= 0x80 => 2 + usize::from(first & 0x7F),
        _ => 2,
    }
}

/// A decoded Response-PDU.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub request_id: i32,
    pub error_status: i32,
    pub error_index: i32,
    pub varbinds: Vec<VarBind>,
}

/// Why a datagram is not a response this path can read. The caller drops it, as it would any
/// datagram that does not answer its request, and keeps waiting.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct Malformed {
    pub what: &'static str,
    pub at: usize,
}

/// Decodes a community message carrying a Response-PDU. Octet strings are slices of `data`,
/// not copies. The version and community were checked by the transport already; the PDU tag
/// and the structure are checked here.
pub fn decode_response(data: &Bytes) -> Result<Response, Malformed> {
    let (request_id, error_status, error_index, mut list) = response_pdu(data)?;
    let mut varbinds = Vec::with_capacity(list.remaining() / 16);
    let mut arcs = [0u32; MAX_ARCS];
    while !list.is_empty() {
        let mut vb = list.enter(SEQUENCE, "varbind")?;
        let (start, end) = vb.expect(OBJECT_IDENTIFIER, "name")?;
        let n = decode_oid(&data[start..end], &mut arcs).ok_or(Malformed { what: "bad OID", at: start })?;
        let oid = Oid::from_slice(&arcs[..n]);
        let value = vb.value(&mut arcs)?;
        varbinds.push(VarBind::new(oid, value));
    }
    Ok(Response { request_id, error_status, error_index, varbinds })
}

/// A community message's Response-PDU: request-id, error-status, error-index, and a reader of
/// its variable-bindings.
fn response_pdu(data: &Bytes) -> Result<(i32, i32, i32, Reader<'_>), Malformed> {
    let mut r = Reader { data, at: 0, end: data.len() };
    let mut message = r.enter(SEQUENCE, "message")?;
    message.expect(INTEGER, "version")?;
    message.expect(OCTET_STRING, "community")?;
    let mut pdu = message.enter(RESPONSE, "Response-PDU")?;
    let request_id = pdu.int("request-id")?;
    let error_status = pdu.int("error-status")?;
    let error_index = pdu.int("error-index")?;
    Ok((request_id, error_status, error_index, pdu.enter(SEQUENCE, "variable-bindings")?))
}

/// Reads a community Response-PDU like `decode_response`, but leaves each varbind's name
/// undecoded: `names` gets the range of `data` its BER content is in, `values` its value (both
/// cleared first). For comparing an answer's names with those of an earlier one
/// (`client::Template`), which costs a `memcmp` where decoding costs a loop over every byte.
/// Returns the error-status.
pub fn decode_response_names(
    data: &Bytes,
    names: &mut Vec<(usize, usize)>,
    values: &mut Vec<Value>,
) -> Result<i32, Malformed> {
    names.clear();
    values.clear();
    let (_, error_status, _, mut list) = response_pdu(data)?;
    let mut arcs = [0u32; MAX_ARCS];
    while !list.is_empty() {
        let mut vb = list.enter(SEQUENCE, "varbind")?;
        names.push(vb.expect(OBJECT_IDENTIFIER, "name")?);
        values.push(vb.value(&mut arcs)?);
    }
    Ok(error_status)
}

/// Appends the arcs of `b`, sub-identifiers after an OID's first two arcs (a table cell's
/// name after its column's content: the row index), to `out`. `None` for none, a truncated
/// one or one over 32 bits.
pub fn push_subids(b: &[u8], out: &mut Vec<u32>) -> Option<()> {
    if b.is_empty() {
        return None;
    }
    each_subid(b, |arc| {
        out.push(arc);
        Some(())
    })
}

/// An OID's BER content, as `decode_response_names` gives a name (minimal encoding, which is
/// what agents send; an agent that pads its sub-identifiers only never matches).
pub fn oid_content(oid: &Oid, out: &mut Vec<u8>) {
    put_oid(out, oid);
}

/// The bytes `at..end` of `data`, read TLV by TLV; `enter` makes a reader of one TLV's content.
struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.at >= self.end
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.at)
    }

    /// The next TLV: its tag and content range; the reader moves past it.
    fn next(&mut self, what: &'static str) -> Result<(u8, usize, usize), Malformed> {
        let bad = |at| Malformed { what, at };
        let d: &[u8] = &self.data[..self.end];
        let tag = *d.get(self.at).ok_or(bad(self.at))?;
        if tag & 0x1F == 0x1F {
            // A tag number in the bytes that follow: nothing SNMP sends.
            return Err(bad(self.at));
        }
        let first = *d.get(self.at + 1).ok_or(bad(self.at + 1))?;
        let mut start = self.at + 2;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 {
                return Err(bad(self.at + 1));
            }
            let bytes = d.get(start..start + n).ok_or(bad(start))?;
            start += n;
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let end = start.checked_add(len).filter(|e| *e <= d.len()).ok_or(bad(self.at))?;
        self.at = end;
        Ok((tag, start, end))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<(usize, usize), Malformed> {
        let at = self.at;
        let (t, start, end) = self.next(what)?;
        if t != tag {
            return Err(Malformed { what, at });
        }
        Ok((start, end))
    }

    /// A reader over the content of the next TLV, which must have `tag`.
    fn enter(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, Malformed> {
        let (start, end) = self.expect(tag, what)?;
        Ok(Reader { data: self.data, at: start, end })
    }

    fn int(&mut self, what: &'static str) -> Result<i32, Malformed> {
        let at = self.at;
        let (start, end) = self.expect(INTEGER, what)?;
        signed(&self.data[start..end]).and_then(|v| i32::try_from(v).ok()).ok_or(Malformed { what, at })
    }

    /// The value of a varbind, the last TLV in its reader.
    fn value(&mut self, arcs: &mut [u32; MAX_ARCS]) -> Result<Value, Malformed> {
        let at = self.at;
        let (tag, start, end) = self.next("value")?;
        let content = &self.data[start..end];
        let bad = |what| Malformed { what, at };
        Ok(match tag {
            // Out of range: the low 32 bits, as net-snmp and async-snmp read it.
            INTEGER => Value::Integer(low32(content).ok_or(bad("empty Integer32"))? as i32),
            OCTET_STRING => Value::OctetString(self.data.slice(start..end)),
            NULL => Value::Null,
            OBJECT_IDENTIFIER => {
                let n = decode_oid(content, arcs).ok_or(bad("bad OID value"))?;
                Value::ObjectIdentifier(Oid::from_slice(&arcs[..n]))
            }
            IP_ADDRESS => Value::IpAddress(content.try_into().map_err(|_| bad("IpAddress not 4 bytes"))?),
            COUNTER32 => Value::Counter32(low32(content).ok_or(bad("empty Counter32"))?),
            GAUGE32 => Value::Gauge32(low32(content).ok_or(bad("empty Gauge32"))?),
            TIME_TICKS => Value::TimeTicks(low32(content).ok_or(bad("empty TimeTicks"))?),
            UINTEGER32 => Value::UInteger32(low32(content).ok_or(bad("empty UInteger32"))?),
            COUNTER64 => Value::Counter64(low64(content).ok_or(bad("empty Counter64"))?),
            OPAQUE => Value::Opaque(self.data.slice(start..end)),
            NSAP => Value::Nsap(self.data.slice(start..end)),
            NO_SUCH_OBJECT => Value::NoSuchObject,
            NO_SUCH_INSTANCE => Value::NoSuchInstance,
            END_OF_MIB_VIEW => Value::EndOfMibView,
            tag => Value::Unknown { tag, data: self.data.slice(start..end) },
        })
    }
}

/// A two's complement big-endian integer of 1 to 8 bytes.
fn signed(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    let negative = b[0] & 0x80 != 0;
    let mut v: i64 = if negative { -1 } else { 0 };
    for byte in b {
        v = (v << 8) | i64::from(*byte);
    }
    Some(v)
}

/// The low 32 bits of a big-endian two's complement integer of any length, `None` when empty.
/// One function for every 32-bit type: a Counter32 written with its leading zero (`00 FF FF FF
/// FF`) or bare with its top bit set (`FF FF FF FF`, strictly a negative number) means the same
/// unsigned value, and a wider one is cut to 32 bits, as net-snmp and async-snmp read them.
fn low32(b: &[u8]) -> Option<u32> {
    let fill = if b.first()? & 0x80 != 0 { u32::MAX } else { 0 };
    Some(b.iter().fold(fill, |acc, x| (acc << 8) | u32::from(*x)))
}

/// `low32` for Counter64.
fn low64(b: &[u8]) -> Option<u64> {
    let fill = if b.first()? & 0x80 != 0 { u64::MAX } else { 0 };
    Some(b.iter().fold(fill, |acc, x| (acc << 8) | u64::from(*x)))
}

/// Decodes OID content into `arcs`; returns how many. `None` for an empty OID, a sub-identifier
/// over 32 bits or cut short, or more than `MAX_ARCS`.
fn decode_oid(b: &[u8], arcs: &mut [u32; MAX_ARCS]) -> Option<usize> {
    // The first sub-identifier holds two arcs: 40 * first + second.
    let first_len = b.iter().position(|&byte| byte < 0x80)? + 1;
    let mut first: u64 = 0;
    for &byte in &b[..first_len] {
        first = (first << 7) | u64::from(byte & 0x7F);
        if first > u64::from(u32::MAX) + 80 {
            return None;
        }
    }
    let (a0, a1) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    arcs[0] = a0;
    arcs[1] = u32::try_from(a1).ok()?;
    let mut n = 2;
    each_subid(&b[first_len..], |arc| {
        *arcs.get_mut(n)? = arc;
        n += 1;
        Some(())
    })?;
    Some(n)
}

/// Gives each base-128 sub-identifier of `b` to `arc`, in order; `None` for one over 32 bits,
/// one cut short, or when `arc` says `None`.
fn each_subid(b: &[u8], mut arc: impl FnMut(u32) -> Option<()>) -> Option<()> {
    let mut acc: u32 = 0;
    let mut pending = false;
    for &byte in b {
        if !pending && byte < 0x80 {
            // A one-byte arc, the usual case.
            arc(u32::from(byte))?;
            continue;
        }
        if acc > u32::MAX >> 7 {
            return None;
        }
        acc = (acc << 7) | u32::from(byte & 0x7F);
        pending = byte & 0x80 != 0;
        if !pending {
            arc(acc)?;
            acc = 0;
        }
    }
    (!pending).then_some(())
}

/// Length of a TLV with `content` bytes of content.
fn tlv_len(content: usize) -> usize {
    1 + len_len(content) + content
}

fn len_len(len: usize) -> usize {
    match len {
        0..0x80 => 1,
        0x80..0x100 => 2,
        0x100..0x1_0000 => 3,
        _ => 4,
    }
}

fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    match len_len(len) {
        1 => out.push(len as u8),
        2 => out.extend_from_slice(&[0x81, len as u8]),
        3 => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
}

/// Bytes of the minimal two's complement form of `v`.
fn int_len(v: i32) -> usize {
    let mut n = 4;
    while n > 1 {
        // Drop a leading byte while the next one's top bit keeps the sign.
        let top = (v >> ((n - 1) * 8)) & 0xFF;
        let next_sign = (v >> ((n - 1) * 8 - 1)) & 1;
        if (top == 0 && next_sign == 0) || (top == 0xFF && next_sign == 1) {
            n -= 1;
        } else {
            break;
        }
    }
    n
}

fn put_int(out: &mut Vec<u8>, v: i32) {
    let n = int_len(v);
    put_header(out, INTEGER, n);
    out.extend_from_slice(&v.to_be_bytes()[4 - n..]);
}

fn varbind_len(oid: &Oid) -> usize {
    tlv_len(oid_len(oid)) + 2
}

/// Content bytes of `oid`. An OID of under two arcs is sent as its first arc with a second 0
/// (what X.690 can express); the plan never asks for one.
fn oid_len(oid: &Oid) -> usize {
    let arcs = oid.arcs();
    let rest = arcs.get(2..).unwrap_or_default();
    subid_len(first_subid(arcs)) + rest.iter().map(|a| subid_len(u64::from(*a))).sum::<usize>()
}

fn first_subid(arcs: &[u32]) -> u64 {
    let first = u64::from(arcs.first().copied().unwrap_or(0));
    let second = u64::from(arcs.get(1).copied().unwrap_or(0));
    first * 40 + second
}

fn subid_len(v: u64) -> usize {
    // Most arcs are under 128: one byte, decided in one compare.
    if v < 0x80 {
        return 1;
    }
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_oid(out: &mut Vec<u8>, oid: &Oid) {
    let arcs = oid.arcs();
    put_subid(out, first_subid(arcs));
    for a in arcs.get(2..).unwrap_or_default() {
        put_subid(out, u64::from(*a));
    }
}

fn put_subid(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let n = subid_len(v);
    for i in (1..n).rev() {
        out.push(0x80 | ((v >> (7 * i)) & 0x7F) as u8);
    }
    out.push((v & 0x7F) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    /// `snmpbulkget -v2c -c public -d -Cn1 -Cr2 127.0.0.1:16161 .1.3.6.1.2.1.1.3.0
    /// .1.3.6.1.2.1.1.6 .1.3.6.1.2.1.2.2.1.10` (net-snmp 5.9.3) sent these bytes ...
    const NET_SNMP_REQUEST: &str =
        "30 45 02 01 01 04 06 70 75 62 6C 69 63 A5 38 02 04 4E 07 57 CC 02 01 01 02 01 02 30 2A
        30 0C 06 08 2B 06 01 02 01 01 03 00 05 00 30 0B 06 07 2B 06 01 02 01 01 06 05 00
        30 0D 06 09 2B 06 01 02 01 02 02 01 0A 05 00";
    /// ... and net-snmp's snmpd (sysContact "noc", sysLocation "hall-3") answered these.
    const NET_SNMP_ANSWER: &str =
        "30 74 02 01 01 04 06 70 75 62 6C 69 63 A2 67 02 04 4E 07 57 CC 02 01 00 02 01 00 30 59
        30 0F 06 08 2B 06 01 02 01 01 04 00 04 03 6E 6F 63
        30 12 06 08 2B 06 01 02 01 01 06 00 04 06 68 61 6C 6C 2D 33
        30 12 06 0A 2B 06 01 02 01 02 02 01 0A 01 41 04 15 50 E2 F8
        30 0D 06 08 2B 06 01 02 01 01 08 00 43 01 00
        30 0F 06 0A 2B 06 01 02 01 02 02 01 0A 02 41 01 00";

    #[test]
    fn a_getbulk_is_encoded_byte_for_byte_as_net_snmp_sends_it() {
        let oids = [oid("1.3.6.1.2.1.1.3.0"), oid("1.3.6.1.2.1.1.6"), oid("1.3.6.1.2.1.2.2.1.10")];
        let request = GetBulk {
            community: b"public",
            request_id: 0x4E07_57CC,
            non_repeaters: 1,
            max_repetitions: 2,
            oids: &oids,
        };
        let mut out = vec![0xFF; 3];
        encode(&request, &mut out);
        assert_eq!(out, hex(NET_SNMP_REQUEST));
        // The same from its variable-bindings encoded apart (a replayed request), also with
        // a list long enough for a two-byte length.
        let mut varbinds = vec![0xFF; 5];
        encode_varbinds(&oids, &mut varbinds);
        encode_with(&GetBulk { oids: &[], ..request }, &varbinds, &mut out);
        assert_eq!(out, hex(NET_SNMP_REQUEST));
        let many: Vec<Oid> = (1..=40).map(|i| oid(&format!("1.3.6.1.4.1.318.1.1.26.9.4.3.1.{i}"))).collect();
        let request = GetBulk { oids: &many, ..request };
        encode(&request, &mut out);
        let whole = out.clone();
        encode_varbinds(&many, &mut varbinds);
        assert!(varbinds.len() > 255 && varbinds[1] == 0x82, "{:x?}", &varbinds[..4]);
        encode_with(&GetBulk { oids: &[], ..request }, &varbinds, &mut out);
        assert_eq!(out, whole);
    }

    #[test]
    fn net_snmps_answer_decodes_to_its_varbinds() {
        let r = decode_response(&Bytes::from(hex(NET_SNMP_ANSWER))).unwrap();
        assert_eq!((r.request_id, r.error_status, r.error_index), (0x4E07_57CC, 0, 0));
        let got: Vec<(String, Value)> = r.varbinds.into_iter().map(|vb| (vb.oid.to_string(), vb.value)).collect();
        assert_eq!(
            got,
            vec![
                ("1.3.6.1.2.1.1.4.0".into(), Value::OctetString(Bytes::from_static(b"noc"))),
                ("1.3.6.1.2.1.1.6.0".into(), Value::OctetString(Bytes::from_static(b"hall-3"))),
                ("1.3.6.1.2.1.2.2.1.10.1".into(), Value::Counter32(357_622_520)),
                ("1.3.6.1.2.1.1.8.0".into(), Value::TimeTicks(0)),
                ("1.3.6.1.2.1.2.2.1.10.2".into(), Value::Counter32(0)),
            ]
        );
    }

    /// An answer of one varbind `oid` = the TLV `value`.
    fn answer_with(status: u8, value: &[u8]) -> Bytes {
        let name = [0x06, 0x03, 0x2B, 0x06, 0x01];
        let vb_len = name.len() + value.len();
        let list_len = 2 + vb_len;
        let pdu_len = 3 + 3 + 3 + 2 + list_len;
        let mut m = vec![0x30, (2 + 3 + 2 + pdu_len + 3) as u8, 0x02, 0x01, 0x01, 0x04, 0x01, b'p'];
        m.extend_from_slice(&[0xA2, pdu_len as u8, 0x02, 0x01, 0x07, 0x02, 0x01, status, 0x02, 0x01, 0x01]);
        m.extend_from_slice(&[0x30, list_len as u8, 0x30, vb_len as u8]);
        m.extend_from_slice(&name);
        m.extend_from_slice(value);
        m[1] = (m.len() - 2) as u8;
        Bytes::from(m)
    }

    fn value_of(tlv: &[u8]) -> Result<Value, Malformed> {
        decode_response(&answer_with(0, tlv)).map(|mut r| r.varbinds.remove(0).value)
    }

    #[test]
    fn values_of_every_type_and_the_exceptions_decode() {
        assert_eq!(value_of(&[0x02, 0x01, 0xFE]), Ok(Value::Integer(-2)));
        assert_eq!(value_of(&[0x02, 0x02, 0x01, 0x2C]), Ok(Value::Integer(300)));
        // Gauge32 4294967295 with its leading zero, and written bare as some agents do.
        assert_eq!(value_of(&[0x42, 0x05, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]), Ok(Value::Gauge32(u32::MAX)));
        assert_eq!(value_of(&[0x41, 0x04, 0xFF, 0xFF, 0xFF, 0xFE]), Ok(Value::Counter32(u32::MAX - 1)));
        assert_eq!(
            value_of(&[0x46, 0x09, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0x01]),
            Ok(Value::Counter64(0xFF00_0000_0000_0001))
        );
        assert_eq!(value_of(&[0x40, 0x04, 10, 0, 0, 1]), Ok(Value::IpAddress([10, 0, 0, 1])));
        assert_eq!(value_of(&[0x06, 0x03, 0x2B, 0x82, 0x3E]), Ok(Value::ObjectIdentifier(oid("1.3.318"))));
        assert_eq!(value_of(&[0x05, 0x00]), Ok(Value::Null));
        assert_eq!(value_of(&[0x80, 0x00]), Ok(Value::NoSuchObject));
        assert_eq!(value_of(&[0x81, 0x00]), Ok(Value::NoSuchInstance));
        assert_eq!(value_of(&[0x82, 0x00]), Ok(Value::EndOfMibView));
        assert_eq!(value_of(&[0x9E, 0x01, 0x07]), Ok(Value::Unknown { tag: 0x9E, data: Bytes::from_static(&[7]) }));
        // Too wide for its type: the low 32 bits, as net-snmp reads it.
        assert_eq!(value_of(&[0x02, 0x05, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]), Ok(Value::Integer(-1)));
        assert_eq!(value_of(&[0x41, 0x05, 0x01, 0, 0, 0, 5]), Ok(Value::Counter32(5)));
        assert_eq!(value_of(&[0x42, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]), Ok(Value::Gauge32(u32::MAX - 1)));
        // What is not the type at all is refused (the client then reads the answer with async-snmp).
        assert!(value_of(&[0x40, 0x03, 10, 0, 0]).is_err());
        assert!(value_of(&[0x41, 0x00]).is_err());
        assert!(value_of(&[0x9F, 0x81, 0x01, 0x00]).is_err(), "a multi-byte tag");
    }

    #[test]
    fn an_error_status_is_returned_with_its_index() {
        let r = decode_response(&answer_with(1, &[0x05, 0x00])).unwrap();
        assert_eq!((r.request_id, r.error_status, r.error_index), (7, 1, 1));
    }

    #[test]
    fn every_cut_of_an_answer_is_refused_and_says_where() {
        let whole = hex(NET_SNMP_ANSWER);
        for n in 0..whole.len() {
            let cut = Bytes::from(whole[..n].to_vec());
            let e = decode_response(&cut).expect_err("a cut answer");
            assert!(e.at <= n, "{e} for a cut at {n}");
        }
        let mut not_a_response = whole.clone();
        not_a_response[13] = 0xA0;
        assert_eq!(decode_response(&Bytes::from(not_a_response)).unwrap_err().what, "Response-PDU");
    }

    #[test]
    fn a_row_arc_over_32_bits_is_no_row() {
        let mut arcs = Vec::new();
        assert_eq!(push_subids(&[0x8F, 0xFF, 0xFF, 0xFF, 0x7F], &mut arcs), Some(()));
        assert_eq!(arcs, [u32::MAX]);
        assert_eq!(push_subids(&[0x90, 0x80, 0x80, 0x80, 0x00], &mut Vec::new()), None);
    }

    proptest! {
        #[test]
        fn no_datagram_makes_the_decoder_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_response(&Bytes::from(data));
        }

        #[test]
        fn oids_decode_as_they_were_encoded(
            first in 0u32..3,
            second in 0u32..40,
            rest in proptest::collection::vec(any::<u32>(), 0..30),
        ) {
            let mut arcs = vec![first, second];
            arcs.extend(rest);
            let o = Oid::from_slice(&arcs);
            let mut out = Vec::new();
            put_oid(&mut out, &o);
            prop_assert_eq!(out.len(), oid_len(&o));
            let mut back = [0u32; MAX_ARCS];
            let n = decode_oid(&out, &mut back).unwrap();
            prop_assert_eq!(&back[..n], &arcs[..]);
        }

        #[test]
        fn a_cells_row_reads_back_from_its_name_after_the_columns_content(
            column in proptest::collection::vec(any::<u32>(), 2..20),
            row in proptest::collection::vec(any::<u32>(), 1..8),
        ) {
            let column = [&[1, 3][..], &column[..]].concat();
            let mut name = Vec::new();
            put_oid(&mut name, &Oid::from_slice(&[&column[..], &row[..]].concat()));
            let mut prefix = Vec::new();
            put_oid(&mut prefix, &Oid::from_slice(&column));
            prop_assert!(name.starts_with(&prefix));
            let mut back = vec![7];
            prop_assert_eq!(push_subids(&name[prefix.len()..], &mut back), Some(()));
            prop_assert_eq!(&back[1..], &row[..]);
            // Cut inside its last sub-identifier, or nothing at all: no row.
            if name[name.len() - 2] & 0x80 != 0 {
                prop_assert_eq!(push_subids(&name[prefix.len()..name.len() - 1], &mut Vec::new()), None);
            }
            prop_assert_eq!(push_subids(&[], &mut Vec::new()), None);
        }

        #[test]
        fn integers_are_minimal_and_read_back(v in any::<i32>()) {
            let mut out = Vec::new();
            put_int(&mut out, v);
            prop_assert_eq!(usize::from(out[1]), out.len() - 2);
            prop_assert_eq!(signed(&out[2..]), Some(i64::from(v)));
            // Minimal: no leading byte that only repeats the sign.
            if out.len() > 3 {
                let sign_only = (out[2] == 0 && out[3] & 0x80 == 0) || (out[2] == 0xFF && out[3] & 0x80 != 0);
                prop_assert!(!sign_only, "{:02X?} is not minimal", out);
            }
        }
    }
}
