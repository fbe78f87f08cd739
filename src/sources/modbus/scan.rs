//! The unit scan behind `hallmonitor discover modbus`: which units of a TCP gateway or an
//! RTU bus answer, who they say they are, and which profiles' registers they have.
//!
//! Per unit: Read Device Identification (`identify`); when that names a vendor/product a
//! profile declares (`profiles::modbus::recognise`), only those profiles are checked,
//! otherwise every Modbus profile given. A profile is checked with one read: the first
//! gap-free block of its points; it matches when that read answers, and the points of the
//! block that decode are counted. A unit that answers nothing to identification nor to the
//! first register read is silent, so an empty address costs two timeouts. A gateway's
//! exceptions 10/11 (path unavailable, target failed to respond) or a dropped connection
//! also mean "no unit".
//!
//! All requests go through one `Link`, so one request is in flight per bus; the caller
//! bounds the rate with the link's `min_interval`. Only errors that make the whole scan
//! pointless (cannot connect, cannot open the serial port) end it.

use std::sync::Arc;
use std::time::Duration;

use super::decode::{decode_bit, decode_point};
use super::error::{ModbusError, Span};
use super::identify::{DeviceIdentity, Identification, identify};
use super::plan::plan;
use super::transport::{Answer, Link, ReadRequest};
use crate::config::BlockLimits;
use crate::profiles::ModbusProfile;
use crate::profiles::modbus::{ModbusRecognition, recognise};

/// Block limits for the check reads: no gaps, since many devices refuse a read that touches
/// an unmapped register, and a check read must not fail for that.
const LIMITS: BlockLimits = BlockLimits { max_gap: 0, max_block: 125 };

/// A Modbus profile the scan can match.
#[derive(Debug, Clone)]
pub struct ScanProfile {
    /// Its name (built-in or user).
    pub name: String,
    /// Its points.
    pub profile: Arc<ModbusProfile>,
    /// Its `modbus_vendor` / `modbus_product_codes`, when it declares them.
    pub recognition: Option<ModbusRecognition>,
}

/// What a unit said to Read Device Identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitIdentity {
    /// Its objects.
    Identified(DeviceIdentity),
    /// Exception 1-3: it does not implement the function.
    Unsupported { code: u8 },
    /// Something else went wrong (an exception, a garbled or no answer): the message.
    Failed(String),
}

/// A profile whose check read the unit answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileMatch {
    /// The profile's name.
    pub profile: String,
    /// Points of the check read that decoded to a value.
    pub points_read: usize,
    /// Points the check read covered.
    pub points_tried: usize,
}

/// A unit that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFinding {
    /// Unit id.
    pub unit: u8,
    /// Its answer to Read Device Identification.
    pub identity: UnitIdentity,
    /// Profiles whose `modbus_vendor`/`modbus_product_codes` fit the identification.
    pub recognised: Vec<String>,
    /// Profiles whose check read answered, in the order given.
    pub matches: Vec<ProfileMatch>,
    /// Profiles whose check read failed, with the error.
    pub misses: Vec<(String, String)>,
}

impl UnitFinding {
    /// The profile to put in the draft: the recognised one whose registers answered, else
    /// the only profile whose registers answered; `None` when that is not one profile.
    pub fn chosen(&self) -> Option<&str> {
        let answered = |name: &str| self.matches.iter().any(|m| m.profile == name);
        if let [only] = self.recognised.as_slice()
            && answered(only)
        {
            return Some(only);
        }
        match self.matches.as_slice() {
            [only] => Some(&only.profile),
            _ => None,
        }
    }
}

/// Whether an error means nothing answers at this unit id: no answer in time, a gateway's
/// "no path" / "target did not respond", or a gateway that drops the connection instead.
fn is_silence(e: &ModbusError) -> bool {
    matches!(
        e,
        ModbusError::Timeout { .. } | ModbusError::Transport { .. } | ModbusError::Exception { code: 10 | 11, .. }
    )
}

/// Whether an error ends the whole scan (the gateway or the port itself is unusable).
fn is_fatal(e: &ModbusError) -> bool {
    matches!(
        e,
        ModbusError::Connect { .. }
            | ModbusError::ConnectTimeout { .. }
            | ModbusError::SerialOpen { .. }
            | ModbusError::Closed { .. }
    )
}

/// Scans one unit. `Ok(None)`: nothing answered. `Err`: the link itself is unusable.
pub async fn scan_unit(
    link: &Link,
    unit: u8,
    timeout: Duration,
    profiles: &[ScanProfile],
) -> Result<Option<UnitFinding>, ModbusError> {
    let (identity, mut silent) = match identify(link, unit, timeout).await {
        Ok(Identification::Identified(id)) => (UnitIdentity::Identified(id), false),
        Ok(Identification::Unsupported { code }) => (UnitIdentity::Unsupported { code }, false),
        Err(e) if is_fatal(&e) => return Err(e),
        Err(e) => {
            let silent = is_silence(&e);
            (UnitIdentity::Failed(e.to_string()), silent)
        }
    };
    let recognised: Vec<String> = match &identity {
        UnitIdentity::Identified(id) => {
            let known: Vec<(String, ModbusRecognition)> =
                profiles.iter().filter_map(|p| Some((p.name.clone(), p.recognition.clone()?))).collect();
            recognise(id.vendor().unwrap_or_default(), id.product_code(), &known)
                .into_iter()
                .map(str::to_owned)
                .collect()
        }
        _ => Vec::new(),
    };
    let mut matches = Vec::new();
    let mut misses = Vec::new();
    for p in profiles.iter().filter(|p| recognised.is_empty() || recognised.contains(&p.name)) {
        match check_profile(link, unit, timeout, p).await {
            Ok(m) => {
                silent = false;
                matches.push(m);
            }
            Err(e) if is_fatal(&e) => return Err(e),
            // Silent to identification and to this read too: nobody is there.
            Err(e) if silent && is_silence(&e) => return Ok(None),
            Err(e) => {
                // An exception or a garbled answer: the unit is there, the profile does not fit.
                silent &= is_silence(&e);
                misses.push((p.name.clone(), e.to_string()));
            }
        }
    }
    if silent {
        return Ok(None);
    }
    Ok(Some(UnitFinding { unit, identity, recognised, matches, misses }))
}

/// Reads the first block of `p`'s plan from `unit` and counts the points that decode.
async fn check_profile(link: &Link, unit: u8, timeout: Duration, p: &ScanProfile) -> Result<ProfileMatch, ModbusError> {
    let points = &p.profile.points;
    let Some(block) = plan(points, LIMITS).into_iter().next() else {
        // A built profile has at least one point; nothing to read otherwise.
        return Ok(ProfileMatch { profile: p.name.clone(), points_read: 0, points_tried: 0 });
    };
    let span = Span { table: block.table, start: block.start, count: block.count };
    let answer = link.read(ReadRequest { unit, span, timeout }).await?;
    let mut points_read = 0;
    for point in block.points.iter().filter_map(|&i| points.get(i)) {
        let value = match &answer {
            Answer::Registers(words) => block.slice(point, words).map(|w| decode_point(point, w)),
            Answer::Bits(bits) => {
                bits.get(usize::from(point.address.saturating_sub(block.start))).map(|b| decode_bit(point, *b))
            }
        };
        if matches!(value, Some(Ok(_))) {
            points_read += 1;
        }
    }
    Ok(ProfileMatch { profile: p.name.clone(), points_read, points_tried: block.points.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(recognised: &[&str], matched: &[&str]) -> UnitFinding {
        UnitFinding {
            unit: 1,
            identity: UnitIdentity::Unsupported { code: 1 },
            recognised: recognised.iter().map(|s| (*s).to_owned()).collect(),
            matches: matched
                .iter()
                .map(|s| ProfileMatch { profile: (*s).to_owned(), points_read: 1, points_tried: 1 })
                .collect(),
            misses: vec![],
        }
    }

    #[test]
    fn the_draft_takes_a_profile_only_when_one_fits() {
        assert_eq!(finding(&["a"], &["a"]).chosen(), Some("a"));
        assert_eq!(finding(&[], &["b"]).chosen(), Some("b"));
        assert_eq!(finding(&[], &["a", "b"]).chosen(), None);
        assert_eq!(finding(&[], &[]).chosen(), None);
        // Recognised but its registers did not answer: not confirmed.
        assert_eq!(finding(&["a"], &[]).chosen(), None);
    }

    fn profile() -> ScanProfile {
        let cfg: crate::profiles::ProfileConfig = toml::from_str(
            "protocol = \"modbus\"\n[[points]]\nname = \"t\"\nmetric = \"inlet_temp_c\"\naddress = 0\ntype = \"i16\"\n\
             [[points]]\nname = \"h\"\nmetric = \"humidity_pct\"\naddress = 1\n",
        )
        .unwrap();
        let Ok(crate::profiles::Profile::Modbus(profile)) = cfg.build("th") else { panic!("the test profile builds") };
        ScanProfile { name: "th".into(), profile, recognition: None }
    }

    async fn scan_with(pdus: Vec<Vec<u8>>) -> Result<Option<UnitFinding>, ModbusError> {
        let (address, _) = super::super::fake::device(pdus).await;
        let cancel = tokio_util::sync::CancellationToken::new();
        let stats = Arc::new(crate::sources::SourceStats::default());
        let (link, task) = Link::spawn(super::super::Endpoint::Tcp(address), stats, cancel.clone());
        let got = scan_unit(&link, 9, Duration::from_millis(300), &[profile()]).await;
        cancel.cancel();
        drop(link);
        let _ = task.await;
        got
    }

    #[tokio::test]
    async fn a_gateway_saying_the_target_did_not_respond_means_no_unit() {
        assert_eq!(scan_with(vec![vec![0xAB, 0x0B], vec![0x83, 0x0B]]).await.unwrap(), None);
        assert_eq!(scan_with(vec![vec![], vec![]]).await.unwrap(), None, "silent to both");
    }

    #[tokio::test]
    async fn a_unit_silent_to_identification_is_still_found_by_its_registers() {
        let got = scan_with(vec![vec![], vec![0x03, 0x04, 0x00, 0xF5, 0x01, 0x90]]).await.unwrap().unwrap();
        assert!(matches!(got.identity, UnitIdentity::Failed(ref e) if e.contains("timeout")), "{got:?}");
        assert_eq!(got.matches, vec![ProfileMatch { profile: "th".into(), points_read: 2, points_tried: 2 }]);
        assert_eq!(got.chosen(), Some("th"));
    }

    #[tokio::test]
    async fn a_unit_refusing_the_registers_is_listed_without_a_profile() {
        let got = scan_with(vec![vec![0xAB, 0x01], vec![0x83, 0x02]]).await.unwrap().unwrap();
        assert_eq!(got.identity, UnitIdentity::Unsupported { code: 1 });
        assert!(got.matches.is_empty());
        assert!(got.misses[0].1.contains("exception 2 (illegal data address)"), "{:?}", got.misses);
    }
}
