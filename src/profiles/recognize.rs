//! Which SNMP profile fits a device, from its sysObjectID and the probe OIDs it answers
//! (for `discover`). No IO: the caller asks the device and says which probes answered.
//!
//! Order of preference: profiles whose `sys_object_ids` hold a prefix of the device's
//! sysObjectID, the longest matching prefix first (ties in the order the profiles were
//! given: user profiles before built-ins); then profiles with only a `probe_oid` (generic
//! MIBs such as UPS-MIB or ENTITY-SENSOR-MIB). A profile with a `probe_oid` fits only if
//! the probe answers; the first that fits wins. A probe "answers" when the device has
//! something under the probe OID (what a GETNEXT from it returns lies under it), so a probe
//! may name a scalar object (its instance `.0` lies under it) or a table column (any row).

use super::ProfileConfig;
use super::snmp::normalize_oid;

/// How one profile is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognition {
    pub profile: String,
    /// sysObjectID prefixes, dotted, no leading dot.
    pub sys_object_ids: Vec<String>,
    /// OID the device must have something under, dotted, no leading dot.
    pub probe_oid: Option<String>,
}

/// The recognisable SNMP profiles, in order of preference for ties.
#[derive(Debug, Clone, Default)]
pub struct Recognizer {
    profiles: Vec<Recognition>,
}

/// True when `prefix` is `oid` or an ancestor of it (whole arcs: 1.3.6.1.4.1.318.1.3.4.6 is
/// not a prefix of 1.3.6.1.4.1.318.1.3.4.60).
pub fn oid_has_prefix(oid: &str, prefix: &str) -> bool {
    oid == prefix || oid.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

fn arcs(oid: &str) -> usize {
    oid.split('.').count()
}

impl Recognizer {
    pub fn new(profiles: Vec<Recognition>) -> Self {
        Self { profiles }
    }

    /// The SNMP profiles among `profiles` that say how to recognise them, in the order given.
    /// Malformed OIDs are skipped here (profile checks report them).
    pub fn from_configs<'a>(profiles: impl IntoIterator<Item = (&'a str, &'a ProfileConfig)>) -> Self {
        let mut out = Vec::new();
        for (name, cfg) in profiles {
            if cfg.protocol.get_ref() != "snmp" {
                continue;
            }
            let sys_object_ids: Vec<String> =
                cfg.sys_object_ids.iter().filter_map(|s| normalize_oid(s.get_ref())).collect();
            let probe_oid = cfg.probe_oid.as_ref().and_then(|p| normalize_oid(p.get_ref()));
            if sys_object_ids.is_empty() && probe_oid.is_none() {
                continue;
            }
            out.push(Recognition { profile: name.to_owned(), sys_object_ids, probe_oid });
        }
        Self { profiles: out }
    }

    /// Every profile in the order it is tried for a device with this sysObjectID (`None` when
    /// the device gave none): matching prefixes longest first, then the probe-only ones.
    fn candidates(&self, sys_object_id: Option<&str>) -> Vec<&Recognition> {
        let sys = sys_object_id.and_then(normalize_oid);
        let mut by_prefix: Vec<(usize, usize, &Recognition)> = Vec::new();
        if let Some(sys) = &sys {
            for (i, r) in self.profiles.iter().enumerate() {
                let longest = r.sys_object_ids.iter().filter(|p| oid_has_prefix(sys, p)).map(|p| arcs(p)).max();
                if let Some(len) = longest {
                    by_prefix.push((len, i, r));
                }
            }
        }
        by_prefix.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let generic = self.profiles.iter().filter(|r| r.sys_object_ids.is_empty() && r.probe_oid.is_some());
        by_prefix.into_iter().map(|(_, _, r)| r).chain(generic).collect()
    }

    /// The probe OIDs worth asking this device, in order: those of every candidate up to the
    /// first that needs no probe. Empty when the best candidate needs none.
    pub fn probes(&self, sys_object_id: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.candidates(sys_object_id) {
            match &r.probe_oid {
                None => break,
                Some(p) if !out.contains(p) => out.push(p.clone()),
                Some(_) => {}
            }
        }
        out
    }

    /// The profile that fits, given which probes answered (`answered(probe_oid)`).
    pub fn pick(&self, sys_object_id: Option<&str>, answered: impl Fn(&str) -> bool) -> Option<&str> {
        self.candidates(sys_object_id)
            .into_iter()
            .find(|r| r.probe_oid.as_deref().is_none_or(&answered))
            .map(|r| r.profile.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(profile: &str, sys: &[&str], probe: Option<&str>) -> Recognition {
        Recognition {
            profile: profile.into(),
            sys_object_ids: sys.iter().map(|s| s.to_string()).collect(),
            probe_oid: probe.map(Into::into),
        }
    }

    fn recognizer() -> Recognizer {
        Recognizer::new(vec![
            rec("ups-mib", &[], Some("1.3.6.1.2.1.33.1.1.1")),
            rec("vendor-any", &["1.3.6.1.4.1.99"], Some("1.3.6.1.4.1.99.1")),
            rec("vendor-pdu", &["1.3.6.1.4.1.99.3.4"], None),
            rec("vendor-pdu2", &["1.3.6.1.4.1.99.3.4.6"], Some("1.3.6.1.4.1.99.26")),
            rec("entity-sensor", &[], Some("1.3.6.1.2.1.99.1.1.1.1")),
        ])
    }

    #[test]
    fn prefixes_match_whole_arcs() {
        assert!(oid_has_prefix("1.3.6.1.4.1.318.1.3.4.6", "1.3.6.1.4.1.318.1.3.4.6"));
        assert!(oid_has_prefix("1.3.6.1.4.1.318.1.3.4.6.1", "1.3.6.1.4.1.318.1.3.4"));
        assert!(!oid_has_prefix("1.3.6.1.4.1.318.1.3.4.60", "1.3.6.1.4.1.318.1.3.4.6"));
        assert!(!oid_has_prefix("1.3.6.1.4.1.318", "1.3.6.1.4.1.318.1"));
    }

    #[test]
    fn the_longest_prefix_wins_when_its_probe_answers() {
        let r = recognizer();
        let all = |_: &str| true;
        assert_eq!(r.pick(Some("1.3.6.1.4.1.99.3.4.6"), all), Some("vendor-pdu2"));
        assert_eq!(r.pick(Some(".1.3.6.1.4.1.99.3.4.6.2"), all), Some("vendor-pdu2"));
        // Its probe is silent: the next longest prefix, which needs no probe.
        assert_eq!(r.pick(Some("1.3.6.1.4.1.99.3.4.6"), |p| p != "1.3.6.1.4.1.99.26"), Some("vendor-pdu"));
        assert_eq!(r.probes(Some("1.3.6.1.4.1.99.3.4.6")), ["1.3.6.1.4.1.99.26"]);
        // A sibling model: only the vendor-wide prefix, decided by its probe, then the generic ones.
        assert_eq!(r.pick(Some("1.3.6.1.4.1.99.3.5"), all), Some("vendor-any"));
        assert_eq!(
            r.probes(Some("1.3.6.1.4.1.99.3.5")),
            ["1.3.6.1.4.1.99.1", "1.3.6.1.2.1.33.1.1.1", "1.3.6.1.2.1.99.1.1.1.1"]
        );
        assert_eq!(r.pick(Some("1.3.6.1.4.1.99.3.5"), |p| p == "1.3.6.1.2.1.99.1.1.1.1"), Some("entity-sensor"));
    }

    #[test]
    fn generic_profiles_come_last_in_their_order() {
        let r = recognizer();
        // An unknown vendor: only the probe-only profiles, UPS-MIB before ENTITY-SENSOR.
        assert_eq!(r.pick(Some("1.3.6.1.4.1.8072.3.2.10"), |_| true), Some("ups-mib"));
        assert_eq!(r.pick(Some("1.3.6.1.4.1.8072.3.2.10"), |p| p == "1.3.6.1.2.1.99.1.1.1.1"), Some("entity-sensor"));
        // A host with only the system group answers no probe: no profile.
        assert_eq!(r.pick(Some("1.3.6.1.4.1.8072.3.2.10"), |_| false), None);
        assert_eq!(r.pick(None, |_| true), Some("ups-mib"));
    }

    #[test]
    fn recognition_oids_are_checked_like_every_oid() {
        let cfg: ProfileConfig = toml::from_str(
            "protocol = \"snmp\"\nsys_object_ids = [\"1.3.6.1.4.1.318\", \"apc\"]\nprobe_oid = \"1.3.x\"\n\
             [[points]]\nname = \"a\"\nmetric = \"power_w\"\noid = \"1.3.6.1.2.1.1.3.0\"\n",
        )
        .unwrap();
        let got: Vec<String> = cfg.build("p").err().unwrap().into_iter().map(|p| p.message).collect();
        assert_eq!(
            got,
            [
                "\"apc\" is not a numeric OID (e.g. 1.3.6.1.4.1.318.1.3.4.6)",
                "\"1.3.x\" is not a numeric OID (e.g. 1.3.6.1.4.1.318.1.3.4.6)"
            ]
        );
        // Only the valid prefix takes part in recognition.
        let r = Recognizer::from_configs([("p", &cfg)]);
        assert_eq!(r.profiles[0].sys_object_ids, ["1.3.6.1.4.1.318"]);
        assert_eq!(r.profiles[0].probe_oid, None);
    }

    #[test]
    fn every_builtin_snmp_profile_is_recognisable() {
        let parsed: Vec<(&str, ProfileConfig)> =
            super::super::BUILTIN.iter().map(|(n, t)| (*n, toml::from_str(t).unwrap())).collect();
        let r = Recognizer::from_configs(parsed.iter().map(|(n, c)| (*n, c)));
        for (name, cfg) in &parsed {
            if cfg.protocol.get_ref() == "snmp" {
                assert!(r.profiles.iter().any(|p| p.profile == *name), "{name} says nothing about recognition");
            }
        }
    }
}
