//! Read Device Identification (function 43, MEI type 14): who a unit says it is.
//!
//! `identify` streams the basic objects (VendorName 0x00, ProductCode 0x01,
//! MajorMinorRevision 0x02) and, when the device's conformity level says it has them, the
//! regular ones (VendorUrl 0x03, ProductName 0x04, ModelName 0x05, UserApplicationName
//! 0x06), following "more follows" / next object id across answers. Bounds: at most
//! `MAX_ROUNDS` answers per stream, `MAX_OBJECTS` objects, values cut to `MAX_VALUE_CHARS`;
//! a next object id that does not move forward ends the stream. The device's bytes are
//! decoded by tokio-modbus (a frame that does not parse is a `ModbusError::Protocol`);
//! everything after that is checked here and never panics. Exceptions 1-3 (illegal
//! function, address or value: the device does not implement the function) are the
//! `Unsupported` outcome, not an error.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ModbusError;
use super::transport::{IdLevel, IdPage, IdentifyRequest, Link};

/// At most this many answers are requested per stream.
pub const MAX_ROUNDS: usize = 8;
/// At most this many objects are kept.
pub const MAX_OBJECTS: usize = 32;
/// Object values longer than this (in characters) are cut.
pub const MAX_VALUE_CHARS: usize = 128;

/// The objects a unit reported, by object id, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The conformity level of the last answer (0x01-0x03, 0x81-0x83).
    pub conformity: u8,
    /// Object id -> value, decoded as UTF-8 (invalid bytes and control characters
    /// replaced), trimmed of the padding devices add.
    pub objects: BTreeMap<u8, String>,
    /// Set when the answers ended early or broke a rule: what happened.
    pub note: Option<String>,
}

impl DeviceIdentity {
    fn object(&self, id: u8) -> Option<&str> {
        self.objects.get(&id).map(String::as_str).filter(|v| !v.is_empty())
    }
    /// VendorName (object 0x00).
    pub fn vendor(&self) -> Option<&str> {
        self.object(0x00)
    }
    /// ProductCode (object 0x01).
    pub fn product_code(&self) -> Option<&str> {
        self.object(0x01)
    }
    /// MajorMinorRevision (object 0x02).
    pub fn revision(&self) -> Option<&str> {
        self.object(0x02)
    }
    /// VendorUrl (object 0x03).
    pub fn vendor_url(&self) -> Option<&str> {
        self.object(0x03)
    }
    /// ProductName (object 0x04).
    pub fn product_name(&self) -> Option<&str> {
        self.object(0x04)
    }
    /// ModelName (object 0x05).
    pub fn model_name(&self) -> Option<&str> {
        self.object(0x05)
    }

    /// `Vendor ProductCode (rev X)`, or whichever of them the device gave.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> =
            [self.vendor(), self.product_code()].into_iter().flatten().map(str::to_owned).collect();
        if let Some(rev) = self.revision() {
            parts.push(format!("(rev {rev})"));
        }
        if parts.is_empty() { "identification without vendor or product".to_owned() } else { parts.join(" ") }
    }
}

/// What a unit answered to Read Device Identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identification {
    /// The unit reported its objects.
    Identified(DeviceIdentity),
    /// The unit answered with exception `code` (1 illegal function, 2 illegal data
    /// address, 3 illegal data value): it does not implement the function.
    Unsupported { code: u8 },
}

/// The Modbus name of an identification object.
pub fn object_name(id: u8) -> String {
    match id {
        0x00 => "VendorName".into(),
        0x01 => "ProductCode".into(),
        0x02 => "MajorMinorRevision".into(),
        0x03 => "VendorUrl".into(),
        0x04 => "ProductName".into(),
        0x05 => "ModelName".into(),
        0x06 => "UserApplicationName".into(),
        other => format!("object 0x{other:02X}"),
    }
}

/// Asks `unit` who it is: the basic objects, then the regular ones if its conformity level
/// says it has them. Timeouts, lost links and frames that do not parse are errors; an
/// exception 1-3 to the first request is `Unsupported`.
pub async fn identify(link: &Link, unit: u8, timeout: Duration) -> Result<Identification, ModbusError> {
    let mut identity = DeviceIdentity::default();
    match stream(link, unit, timeout, IdLevel::Basic, 0x00, &mut identity).await {
        Err(ModbusError::Exception { code: code @ 1..=3, .. }) => return Ok(Identification::Unsupported { code }),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    // Conformity 2/3 (0x02, 0x03, 0x82, 0x83): the device has regular objects too.
    if identity.conformity & 0x7F >= 2
        && let Err(e) = stream(link, unit, timeout, IdLevel::Regular, 0x03, &mut identity).await
    {
        // The basic objects are what matters; keep them and say what the rest did.
        identity.note.get_or_insert_with(|| format!("regular objects not read: {e}"));
    }
    Ok(Identification::Identified(identity))
}

/// Requests one stream from `first`, adding every page's objects to `identity`.
async fn stream(
    link: &Link,
    unit: u8,
    timeout: Duration,
    level: IdLevel,
    first: u8,
    identity: &mut DeviceIdentity,
) -> Result<(), ModbusError> {
    let mut object = first;
    for _ in 0..MAX_ROUNDS {
        let page = link.identify(IdentifyRequest { unit, level, object, timeout }).await?;
        match absorb(identity, object, &page) {
            Next::Done => return Ok(()),
            Next::From(next) => object = next,
            Next::Stop(why) => {
                identity.note.get_or_insert(why);
                return Ok(());
            }
        }
    }
    identity
        .note
        .get_or_insert_with(|| format!("stopped after {MAX_ROUNDS} answers: the device kept saying more follows"));
    Ok(())
}

/// What to do after an answer.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The stream is complete.
    Done,
    /// Ask again from this object id.
    From(u8),
    /// Stop here, keeping what came: why.
    Stop(String),
}

/// Adds the objects of `page` (the answer to a request starting at `asked`) to `identity`
/// and says whether to ask again.
fn absorb(identity: &mut DeviceIdentity, asked: u8, page: &IdPage) -> Next {
    identity.conformity = page.conformity;
    for (id, raw) in &page.objects {
        if identity.objects.len() >= MAX_OBJECTS && !identity.objects.contains_key(id) {
            return Next::Stop(format!("more than {MAX_OBJECTS} objects; the rest left out"));
        }
        identity.objects.insert(*id, text(raw));
    }
    if !page.more_follows {
        return Next::Done;
    }
    // A next object id that does not move forward would make the stream loop forever.
    if page.next_object <= asked {
        return Next::Stop(format!(
            "the device said more follows from object 0x{:02X} after a request from 0x{asked:02X}; stopped",
            page.next_object
        ));
    }
    Next::From(page.next_object)
}

/// An object's bytes as text: lossy UTF-8, control characters (NUL padding included) as
/// spaces, trimmed, at most `MAX_VALUE_CHARS` characters.
fn text(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.trim().chars().take(MAX_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(more: bool, next: u8, objects: &[(u8, &str)]) -> IdPage {
        IdPage {
            conformity: 0x81,
            more_follows: more,
            next_object: next,
            objects: objects.iter().map(|(id, v)| (*id, v.as_bytes().to_vec())).collect(),
        }
    }

    #[test]
    fn more_follows_continues_from_the_next_object() {
        let mut id = DeviceIdentity::default();
        assert_eq!(absorb(&mut id, 0, &page(true, 1, &[(0, "Acme")])), Next::From(1));
        assert_eq!(absorb(&mut id, 1, &page(false, 0, &[(1, "X100\0\0"), (2, " 1.2 ")])), Next::Done);
        assert_eq!((id.vendor(), id.product_code(), id.revision()), (Some("Acme"), Some("X100"), Some("1.2")));
        assert_eq!(id.summary(), "Acme X100 (rev 1.2)");
        assert_eq!(id.note, None);
    }

    #[test]
    fn a_next_object_that_does_not_advance_stops_the_stream() {
        let mut id = DeviceIdentity::default();
        let next = absorb(&mut id, 1, &page(true, 1, &[(1, "X")]));
        assert!(matches!(next, Next::Stop(ref why) if why.contains("more follows from object 0x01")), "{next:?}");
        assert_eq!(id.product_code(), Some("X"));
    }

    #[test]
    fn values_are_bounded_and_made_printable() {
        assert_eq!(text(b"\xffAB\x01C\x00\x00"), "\u{FFFD}AB C");
        assert_eq!(text(&[b'a'; 255]).len(), MAX_VALUE_CHARS);
        let mut id = DeviceIdentity::default();
        let many: Vec<(u8, String)> = (0..=MAX_OBJECTS as u8).map(|i| (i, format!("v{i}"))).collect();
        let refs: Vec<(u8, &str)> = many.iter().map(|(i, v)| (*i, v.as_str())).collect();
        assert!(matches!(absorb(&mut id, 0, &page(false, 0, &refs)), Next::Stop(_)));
        assert_eq!(id.objects.len(), MAX_OBJECTS);
    }

    #[test]
    fn summary_says_when_the_device_gave_no_names() {
        assert_eq!(DeviceIdentity::default().summary(), "identification without vendor or product");
        assert_eq!(object_name(0x05), "ModelName");
        assert_eq!(object_name(0x90), "object 0x90");
    }

    async fn identify_from(pdus: Vec<Vec<u8>>) -> (Result<Identification, ModbusError>, Vec<Vec<u8>>) {
        let (address, seen) = super::super::fake::device(pdus).await;
        let cancel = tokio_util::sync::CancellationToken::new();
        let stats = std::sync::Arc::new(crate::sources::SourceStats::default());
        let (link, task) = Link::spawn(super::super::Endpoint::Tcp(address), stats, cancel.clone());
        let got = identify(&link, 7, Duration::from_millis(500)).await;
        cancel.cancel();
        drop(link);
        let _ = task.await;
        let requests = seen.lock().unwrap().clone();
        (got, requests)
    }

    /// A basic answer: 2B 0E, read code, conformity, more follows, next id, count, objects.
    fn answer(code: u8, conformity: u8, more: bool, next: u8, objects: &[(u8, &[u8])]) -> Vec<u8> {
        let mut pdu = vec![0x2B, 0x0E, code, conformity, if more { 0xFF } else { 0x00 }, next, objects.len() as u8];
        for (id, v) in objects {
            pdu.push(*id);
            pdu.push(v.len() as u8);
            pdu.extend_from_slice(v);
        }
        pdu
    }

    #[tokio::test]
    async fn basic_objects_across_two_answers() {
        let (got, requests) = identify_from(vec![
            answer(1, 0x81, true, 0x02, &[(0, b"Acme Power"), (1, b"AP-9000")]),
            answer(1, 0x81, false, 0x00, &[(2, b"v2.10")]),
        ])
        .await;
        let Ok(Identification::Identified(id)) = got else { panic!("{got:?}") };
        assert_eq!(id.summary(), "Acme Power AP-9000 (rev v2.10)");
        // Basic stream from object 0, then from the next object id the device gave; a
        // basic-only device (conformity 0x81) is not asked for regular objects.
        assert_eq!(requests, vec![vec![0x2B, 0x0E, 0x01, 0x00], vec![0x2B, 0x0E, 0x01, 0x02]]);
    }

    #[tokio::test]
    async fn regular_objects_when_the_conformity_level_has_them() {
        let (got, requests) = identify_from(vec![
            answer(1, 0x82, false, 0x00, &[(0, b"Acme"), (1, b"X1"), (2, b"1.0")]),
            answer(2, 0x82, false, 0x00, &[(3, b"https://acme.example"), (4, b"Cooler"), (5, b"C-1")]),
        ])
        .await;
        let Ok(Identification::Identified(id)) = got else { panic!("{got:?}") };
        assert_eq!((id.product_name(), id.model_name()), (Some("Cooler"), Some("C-1")));
        assert_eq!(id.vendor_url(), Some("https://acme.example"));
        assert_eq!(requests[1], vec![0x2B, 0x0E, 0x02, 0x03]);
    }

    #[tokio::test]
    async fn illegal_function_means_unsupported() {
        let (got, _) = identify_from(vec![vec![0xAB, 0x01]]).await;
        assert_eq!(got.unwrap(), Identification::Unsupported { code: 1 });
    }

    #[tokio::test]
    async fn a_truncated_answer_is_a_protocol_error() {
        // Says one object of 10 bytes, sends 3.
        let mut pdu = answer(1, 0x81, false, 0, &[]);
        pdu[6] = 1;
        pdu.extend_from_slice(&[0x00, 10, b'A', b'c', b'm']);
        let (got, _) = identify_from(vec![pdu]).await;
        let err = got.unwrap_err();
        assert!(matches!(err, ModbusError::Protocol { unit: 7, .. }), "{err}");
        assert!(err.to_string().contains("reading device identification (object 0x00)"), "{err}");
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error_not_a_panic() {
        for garbage in
            [vec![0x2B], vec![0x2B, 0x0D, 0x01], vec![0x2B, 0x0E, 0x01, 0x55, 0, 0, 0], vec![0x03, 0x02, 0x00, 0x01]]
        {
            let (got, _) = identify_from(vec![garbage.clone()]).await;
            assert!(matches!(got, Err(ModbusError::Protocol { .. })), "{garbage:02X?}: {got:?}");
        }
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let (got, _) = identify_from(vec![vec![]]).await;
        assert!(matches!(got, Err(ModbusError::Timeout { .. })), "{got:?}");
    }
}
