//! What `hallmonitor discover snmp` asks one agent: its system group, then whether it has
//! anything under the candidate profiles' probe OIDs. Each call is exactly one request (on a
//! session built with no retries): the command paces every request and retries itself.

use async_snmp::{Oid, Value};

use super::client::{SnmpError, SnmpSession};

/// SNMPv2-MIB system group scalars (instance `.0`).
const SYS_DESCR: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 1, 0];
const SYS_OBJECT_ID: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 2, 0];
const SYS_NAME: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 5, 0];
const SYS_LOCATION: [u32; 9] = [1, 3, 6, 1, 2, 1, 1, 6, 0];

/// What an agent says about itself; `None` where it did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemGroup {
    /// sysObjectID, dotted, no leading dot.
    pub object_id: Option<String>,
    pub descr: Option<String>,
    pub name: Option<String>,
    pub location: Option<String>,
}

fn text(v: Option<&Result<Value, String>>) -> Option<String> {
    match v? {
        Ok(Value::OctetString(b)) => {
            let s = String::from_utf8_lossy(b).trim().to_owned();
            (!s.is_empty()).then_some(s)
        }
        _ => None,
    }
}

/// One GET of sysDescr, sysObjectID, sysName and sysLocation.
pub async fn system_group(session: &mut SnmpSession) -> Result<SystemGroup, SnmpError> {
    let oids: Vec<Oid> =
        [SYS_DESCR, SYS_OBJECT_ID, SYS_NAME, SYS_LOCATION].iter().map(|a| Oid::from_slice(a)).collect();
    let got = session.get(&oids).await?;
    let object_id = match got.get(&oids[1]) {
        Some(Ok(Value::ObjectIdentifier(o))) => Some(o.to_string()),
        _ => None,
    };
    Ok(SystemGroup {
        object_id,
        descr: text(got.get(&oids[0])),
        name: text(got.get(&oids[2])),
        location: text(got.get(&oids[3])),
    })
}

/// One GETNEXT from every probe OID (dotted): the probes the agent has something under.
/// A probe that is not a numeric OID is never answered.
pub async fn probes_answered(session: &mut SnmpSession, probes: &[String]) -> Result<Vec<String>, SnmpError> {
    let asked: Vec<(&String, Oid)> = probes.iter().filter_map(|p| Some((p, Oid::parse(p).ok()?))).collect();
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<Oid> = asked.iter().map(|(_, o)| o.clone()).collect();
    let next = session.get_next(&oids).await?;
    Ok(asked
        .iter()
        .zip(next.iter())
        .filter(|((_, probe), (oid, value))| oid.starts_with(probe) && oid.len() > probe.len() && !value.is_exception())
        .map(|((name, _), _)| (*name).clone())
        .collect())
}
