//! Checks a parsed `FileConfig` and builds the runtime `Config`, collecting every problem.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::broker::{BrokerUrl, is_host_name};
use super::file::*;
use super::runtime::*;
use super::{
    ConfigError, Diagnostic, Loaded, Source, parse_duration, parse_size, read_secret_file, secret_file_warning,
};
use crate::model::{DeviceId, Metric, RackId, SiteId, ZoneId, humane_duration};
use crate::profiles::{self, Profile, ProfileConfig};

/// Smallest and largest accepted value of a duration setting.
type DurationRange = (Duration, Duration);

/// The accepted range of every duration setting: wide enough for any site, narrow enough that
/// a typo (`"400000000000y"`, `"0s"` for an interval) is caught here, not by a timer overflow.
mod ranges {
    use super::DurationRange;
    use std::time::Duration;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    const MIN: u64 = 60;
    const HOUR: u64 = 3_600;
    const DAY: u64 = 86_400;

    /// Poll interval of a device.
    pub const POLL_INTERVAL: DurationRange = (ms(100), s(DAY));
    /// One request to a device.
    pub const REQUEST_TIMEOUT: DurationRange = (ms(10), s(5 * MIN));
    /// Quiet time between requests on an RTU bus.
    pub const BUS_SPACING: DurationRange = (ms(0), s(10));
    /// MQTT keep-alive (the protocol caps it at about 18 h; below 1 s the client refuses it).
    pub const KEEP_ALIVE: DurationRange = (s(1), s(HOUR));
    /// Longest MQTT reconnect backoff.
    pub const RECONNECT_MAX: DurationRange = (ms(100), s(HOUR));
    /// A threshold's `for` and the correlation holds: zero means "at once".
    pub const HOLD: DurationRange = (ms(0), s(DAY));
    /// A threshold's `rise_within`.
    pub const RISE_WITHIN: DurationRange = (s(1), s(DAY));
    /// How long an incident lasts before it is major.
    pub const MAJOR_AFTER: DurationRange = (s(1), s(30 * DAY));
    /// The rolling windows of patterns and the load baseline.
    pub const WINDOW: DurationRange = (s(MIN), s(365 * DAY));
    /// Rollup and health messages.
    pub const REPORT_INTERVAL: DurationRange = (s(1), s(DAY));
    /// The gateway pair's lease.
    pub const HA_LEASE: DurationRange = (s(1), s(10 * MIN));
    /// The gateway pair's guard.
    pub const HA_GUARD: DurationRange = (ms(0), s(5 * MIN));
}

struct Checker<'a> {
    src: &'a Source<'a>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Secret files already warned about.
    warned_files: HashSet<PathBuf>,
}

/// The span of a value, `None` for defaults (which carry an empty span).
fn span_of<T>(v: &Spanned<T>) -> Option<Range<usize>> {
    let s = v.span();
    (s.end > 0).then_some(s)
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        self.errors.push(self.src.diag(span_of(at), msg));
    }
    fn error_nowhere(&mut self, msg: impl Into<String>) {
        self.errors.push(self.src.diag(None, msg));
    }
    fn warn<T>(&mut self, at: &Spanned<T>, msg: impl Into<String>) {
        self.warnings.push(self.src.diag(span_of(at), msg));
    }

    /// A duration that must lie within `range` (see `ranges`); outside it, an error naming the
    /// range. The value returned is always inside the range, so nothing downstream overflows.
    fn duration(&mut self, d: &DurationStr, what: &str, range: DurationRange) -> Duration {
        let (min, max) = range;
        match parse_duration(d.get_ref()) {
            Ok(v) if (min..=max).contains(&v) => v,
            Ok(v) => {
                self.error(
                    d,
                    format!(
                        "{what}: {} is out of range ({}..{})",
                        d.get_ref().trim(),
                        humane_duration(min),
                        humane_duration(max)
                    ),
                );
                v.clamp(min, max)
            }
            Err(e) => {
                self.error(d, format!("{what}: {e}"));
                min
            }
        }
    }

    fn ident(&mut self, id: &Spanned<String>, what: &str) -> bool {
        let s = id.get_ref();
        let ok =
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            self.error(id, format!("{what} {s:?} must match [a-z0-9_-]+"));
        }
        ok
    }

    fn relative_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_owned() } else { self.src.path.parent().unwrap_or(Path::new(".")).join(p) }
    }

    /// Reads a secret from `*_file` or `*_env`; at most one may be given.
    fn secret(&mut self, file: &Option<Spanned<String>>, env: &Option<Spanned<String>>, what: &str) -> Option<Secret> {
        match (file, env) {
            (Some(f), Some(_)) => {
                self.error(f, format!("give {what}_file or {what}_env, not both"));
                None
            }
            (Some(f), None) => {
                let path = self.relative_path(f.get_ref());
                match read_secret_file(&path) {
                    Ok(read) => {
                        if let Some(w) = read.warning {
                            self.warn_once(f, &path, w);
                        }
                        Some(read.secret)
                    }
                    Err(e) => {
                        self.error(f, format!("{what} file {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, Some(v)) => match std::env::var(v.get_ref()) {
                Ok(s) => Some(Secret::new(s)),
                Err(_) => {
                    self.error(v, format!("environment variable {} for {what} is not set", v.get_ref()));
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// A permission warning about a secret file, once per file (many devices share one).
    fn warn_once(&mut self, at: &Spanned<String>, path: &Path, warning: String) {
        if self.warned_files.insert(path.to_owned()) {
            self.warn(at, warning);
        }
    }

    fn thresholds(&mut self, map: &BTreeMap<Spanned<String>, ThresholdConfig>) -> HashMap<Metric, ThresholdLayer> {
        let mut out = HashMap::new();
        for (metric, t) in map {
            out.insert(Metric::new(metric.get_ref()), self.threshold(metric, t));
        }
        out
    }

    fn threshold(&mut self, metric: &Spanned<String>, t: &ThresholdConfig) -> ThresholdLayer {
        let name = metric.get_ref();
        let v = |x: &Option<Spanned<f64>>| x.as_ref().map(|s| *s.get_ref());
        for (lo, hi, what) in [
            (&t.warn_high, &t.crit_high, "warn_high must be below crit_high"),
            (&t.crit_low, &t.warn_low, "crit_low must be below warn_low"),
        ] {
            if let (Some(a), Some(b)) = (lo, hi)
                && a.get_ref() >= b.get_ref()
            {
                self.error(a, format!("thresholds.{name}: {what} ({} >= {})", a.get_ref(), b.get_ref()));
            }
        }
        if let (Some(lo), Some(hi)) = (&t.warn_low, &t.warn_high)
            && lo.get_ref() >= hi.get_ref()
        {
            self.error(lo, format!("thresholds.{name}: warn_low must be below warn_high"));
        }
        for x in [
            &t.warn_high,
            &t.crit_high,
            &t.warn_low,
            &t.crit_low,
            &t.hysteresis,
            &t.rise,
            &t.breaker_warn,
            &t.breaker_crit,
        ]
        .into_iter()
        .flatten()
        {
            if !x.get_ref().is_finite() {
                self.error(x, format!("thresholds.{name}: value must be a finite number"));
            }
        }
        if let Some(h) = &t.hysteresis
            && *h.get_ref() < 0.0
        {
            self.error(h, format!("thresholds.{name}: hysteresis must not be negative"));
        }
        for f in [&t.breaker_warn, &t.breaker_crit].into_iter().flatten() {
            if !(0.0..=1.0).contains(f.get_ref()) || *f.get_ref() == 0.0 {
                self.error(f, format!("thresholds.{name}: breaker fractions are in (0, 1], e.g. 0.8"));
            }
        }
        let hold_for = t.hold_for.as_ref().map(|d| self.duration(d, &format!("thresholds.{name}.for"), ranges::HOLD));
        let rise = match (&t.rise, &t.rise_within) {
            (Some(r), Some(w)) => {
                if *r.get_ref() <= 0.0 {
                    self.error(r, format!("thresholds.{name}: rise must be positive"));
                }
                Some((*r.get_ref(), self.duration(w, &format!("thresholds.{name}.rise_within"), ranges::RISE_WITHIN)))
            }
            (Some(r), None) => {
                self.error(r, format!("thresholds.{name}: rise needs rise_within (e.g. \"5m\")"));
                None
            }
            (None, Some(w)) => {
                self.error(w, format!("thresholds.{name}: rise_within needs rise"));
                None
            }
            (None, None) => None,
        };
        ThresholdLayer {
            warn_high: v(&t.warn_high),
            crit_high: v(&t.crit_high),
            warn_low: v(&t.warn_low),
            crit_low: v(&t.crit_low),
            hysteresis: v(&t.hysteresis),
            hold_for,
            rise,
            breaker_warn: v(&t.breaker_warn),
            breaker_crit: v(&t.breaker_crit),
        }
    }

    fn profile_problems(&mut self, name: &str, problems: Vec<profiles::ProfileProblem>, src: Option<&Source<'_>>) {
        for p in problems {
            let diag = match src {
                Some(s) => s.diag(p.span, format!("profile {name}: {}", p.message)),
                None => self.src.diag(p.span, format!("profile {name}: {}", p.message)),
            };
            self.errors.push(diag);
        }
    }
}

/// Checks that every topic under `prefix` is a valid MQTT topic a NOC can subscribe to:
/// no wildcards, no empty level, not in the broker's reserved `$` space.
fn check_topic_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.contains(['+', '#']) {
        Err("contains a wildcard (+ or #); topics cannot")
    } else if prefix.starts_with('$') {
        Err("starts with $, which brokers reserve for their own topics ($SYS)")
    } else if prefix.contains('\0') {
        Err("contains a NUL character")
    } else if prefix.split('/').any(str::is_empty) {
        Err("has an empty level (a//b, or a leading or trailing /)")
    } else {
        Ok(())
    }
}

/// `host:port` with a default port; the host may be an IP or a DNS name.
fn parse_address(s: &str, default_port: u16) -> Result<String, String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, default_port).to_string());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port in address {s:?}"))?),
        None => (s, default_port),
    };
    if is_host_name(host) { Ok(format!("{host}:{port}")) } else { Err(format!("address {s:?} is not host:port")) }
}

pub(super) fn build(src: &Source<'_>, file: FileConfig) -> Result<Loaded, ConfigError> {
    let mut c = Checker { src, errors: Vec::new(), warnings: Vec::new(), warned_files: HashSet::new() };

    c.ident(&file.site.id, "site id");
    let site = SiteId::new(file.site.id.get_ref());

    // Polling defaults.
    let interval = c.duration(&file.polling.interval, "polling.interval", ranges::POLL_INTERVAL);
    let timeout = c.duration(&file.polling.timeout, "polling.timeout", ranges::REQUEST_TIMEOUT);
    if file.polling.down_after == 0 {
        c.error_nowhere("polling.down_after must be at least 1");
    }

    // Zones.
    let mut zones = Vec::new();
    let mut zone_ids: HashMap<String, Range<usize>> = HashMap::new();
    let mut rack_zone: HashMap<String, String> = HashMap::new();
    for z in &file.zones {
        c.ident(&z.id, "zone id");
        if zone_ids.insert(z.id.get_ref().clone(), z.id.span()).is_some() {
            c.error(&z.id, format!("duplicate zone id {:?}", z.id.get_ref()));
        }
        for r in &z.racks {
            if let Some(other) = rack_zone.insert(r.get_ref().clone(), z.id.get_ref().clone()) {
                c.error(r, format!("rack {:?} is already in zone {other:?}", r.get_ref()));
            }
        }
    }
    for z in &file.zones {
        for a in &z.adjacent {
            if !zone_ids.contains_key(a.get_ref()) {
                c.error(a, format!("zone {:?} lists unknown adjacent zone {:?}", z.id.get_ref(), a.get_ref()));
            } else if a.get_ref() == z.id.get_ref() {
                c.error(a, "a zone cannot be adjacent to itself");
            }
        }
        zones.push(Zone {
            id: ZoneId::new(z.id.get_ref()),
            racks: z.racks.iter().map(|r| RackId::new(r.get_ref())).collect(),
            adjacent: z.adjacent.iter().map(|a| ZoneId::new(a.get_ref())).collect(),
        });
    }
    for rack in file.racks.keys() {
        if !rack_zone.contains_key(rack.get_ref()) {
            c.error(rack, format!("[racks.{}] names a rack that no zone lists", rack.get_ref()));
        }
    }

    // Profiles: built-ins, then the directory, then inline (later ones override by name).
    let mut profile_table: HashMap<String, Profile> = HashMap::new();
    for (name, built) in profiles::builtins() {
        match built {
            Ok(p) => {
                profile_table.insert(name, p);
            }
            Err(e) => c.error_nowhere(e),
        }
    }
    if let Some(dir) = &file.profiles_dir {
        let path = c.relative_path(dir.get_ref());
        match crate::profiles::profile_files(&path) {
            Err(e) => c.error(dir, format!("profiles_dir {}: {e}", path.display())),
            Ok(files) => {
                for f in files {
                    let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    let text = match std::fs::read_to_string(&f) {
                        Ok(t) => t,
                        Err(e) => {
                            c.errors.push(Diagnostic {
                                file: f.clone(),
                                position: None,
                                message: format!("cannot read profile: {e}"),
                            });
                            continue;
                        }
                    };
                    let psrc = Source { path: &f, text: &text };
                    match toml::from_str::<ProfileConfig>(&text) {
                        Err(e) => c.errors.push(psrc.toml_error(&e)),
                        Ok(pc) => match pc.build(&name) {
                            Ok(p) => {
                                profile_table.insert(name, p);
                            }
                            Err(problems) => c.profile_problems(&name, problems, Some(&psrc)),
                        },
                    }
                }
            }
        }
    }
    for (name, pc) in &file.profiles {
        c.ident(name, "profile name");
        match pc.build(name.get_ref()) {
            Ok(p) => {
                profile_table.insert(name.get_ref().clone(), p);
            }
            Err(problems) => c.profile_problems(name.get_ref(), problems, None),
        }
    }

    // Devices.
    let mut devices = Vec::new();
    let mut metas = Vec::new();
    let mut device_ids: HashSet<String> = HashSet::new();
    let class = match &file.site.ashrae_class {
        None => AshraeClass::A1,
        Some(v) => AshraeClass::parse(v.get_ref()).unwrap_or_else(|| {
            c.error(v, format!("site.ashrae_class must be A1, A2, A3 or A4, not {:?}", v.get_ref()));
            AshraeClass::A1
        }),
    };
    let mut rules = ThresholdRules::for_ashrae_class(class);
    rules.site = c.thresholds(&file.thresholds);
    for z in &file.zones {
        let layers = c.thresholds(&z.thresholds);
        if !layers.is_empty() {
            rules.zones.insert(ZoneId::new(z.id.get_ref()), layers);
        }
    }
    for (rack, rc) in &file.racks {
        let layers = c.thresholds(&rc.thresholds);
        rules.racks.insert(RackId::new(rack.get_ref()), layers);
    }

    for d in &file.devices {
        c.ident(&d.id, "device id");
        if !device_ids.insert(d.id.get_ref().clone()) {
            c.error(&d.id, format!("duplicate device id {:?}", d.id.get_ref()));
        }
        let dev_name = d.id.get_ref();
        if !zone_ids.contains_key(d.zone.get_ref()) {
            c.error(&d.zone, format!("device {dev_name:?} is in unknown zone {:?}", d.zone.get_ref()));
        } else if d.zone.get_ref() == super::UNASSIGNED_ZONE {
            c.warn(
                &d.zone,
                format!("device {dev_name:?} is in the zone \"unassigned\" (from `discover`): move it to its real zone and rack"),
            );
        }
        if let Some(r) = &d.rack {
            match rack_zone.get(r.get_ref()) {
                None => c.error(
                    r,
                    format!("device {dev_name:?} is in unknown rack {:?} (list it in its zone's racks)", r.get_ref()),
                ),
                Some(z) if z != d.zone.get_ref() && zone_ids.contains_key(d.zone.get_ref()) => c.error(
                    r,
                    format!(
                        "device {dev_name:?}: rack {:?} belongs to zone {z:?}, not {:?}",
                        r.get_ref(),
                        d.zone.get_ref()
                    ),
                ),
                _ => {}
            }
        }
        let profile = profile_table.get(d.profile.get_ref()).cloned();
        if profile.is_none() {
            let mut known: Vec<_> = profile_table.keys().cloned().collect();
            known.sort();
            c.error(
                &d.profile,
                format!(
                    "device {dev_name:?} uses unknown profile {:?} (known: {})",
                    d.profile.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let dev_interval = d.interval.as_ref().map_or(interval, |i| c.duration(i, "interval", ranges::POLL_INTERVAL));
        let dev_timeout = d.timeout.as_ref().map_or(timeout, |t| c.duration(t, "timeout", ranges::REQUEST_TIMEOUT));
        let feed = match d.feed.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None => None,
            Some((_, "a" | "A")) => Some(Feed::A),
            Some((_, "b" | "B")) => Some(Feed::B),
            Some((f, other)) => {
                c.error(f, format!("feed {other:?}: expected \"a\" or \"b\""));
                None
            }
        };
        if let Some(b) = &d.breaker_a
            && !(b.get_ref().is_finite() && *b.get_ref() > 0.0)
        {
            c.error(b, "breaker_a must be a positive number of amps");
        }
        let transport = match (&d.modbus, &d.snmp) {
            (Some(_), Some(s)) => {
                c.error(s, format!("device {dev_name:?} has both [devices.modbus] and [devices.snmp]; give one"));
                None
            }
            (None, None) => {
                c.error(&d.id, format!("device {dev_name:?} needs a [devices.modbus] or [devices.snmp] table"));
                None
            }
            (Some(m), None) => modbus_transport(&mut c, dev_name, m),
            (None, Some(s)) => snmp_transport(&mut c, dev_name, s),
        };
        if let (Some(p), Some(t)) = (&profile, &transport)
            && p.protocol() != t.protocol()
        {
            c.error(
                &d.profile,
                format!(
                    "device {dev_name:?}: profile {:?} is {} but the device is polled over {}",
                    d.profile.get_ref(),
                    p.protocol(),
                    t.protocol()
                ),
            );
        }
        let layers = c.thresholds(&d.thresholds);
        if !layers.is_empty() {
            rules.devices.insert(DeviceId::new(dev_name), layers);
        }
        if let (Some(profile), Some(transport)) = (profile, transport) {
            let is_cooling_unit = match &profile {
                Profile::Modbus(p) => p
                    .points
                    .iter()
                    .any(|pt| pt.metric.as_str() == "supply_air_temp_c" || pt.metric.as_str() == "return_air_temp_c"),
                Profile::Snmp(_) => false,
            };
            let spec = DeviceSpec {
                id: DeviceId::new(dev_name),
                zone: ZoneId::new(d.zone.get_ref()),
                rack: d.rack.as_ref().map(|r| RackId::new(r.get_ref())),
                interval: dev_interval,
                timeout: dev_timeout,
                retries: file.polling.retries,
                down_after: file.polling.down_after.max(1),
                profile,
                transport,
                enabled: d.enabled,
            };
            // The engine knows only devices that are polled: a disabled device's open
            // breaches end (see `Engine::reconfigure`) instead of waiting for readings.
            if spec.enabled {
                metas.push(DeviceMeta {
                    id: spec.id.clone(),
                    zone: spec.zone.clone(),
                    rack: spec.rack.clone(),
                    feed,
                    breaker_a: d.breaker_a.as_ref().map(|b| *b.get_ref()),
                    is_cooling_unit,
                });
            }
            devices.push(spec);
        }
    }

    // MQTT.
    let mqtt = file.mqtt.as_ref().and_then(|m| mqtt_settings(&mut c, m, &site));

    // Store.
    let max_bytes = match parse_size(file.store.max_bytes.get_ref()) {
        Ok(b) if b >= 64 * 1024 => b,
        Ok(_) => {
            c.error(&file.store.max_bytes, "store.max_bytes must be at least 64KiB");
            64 * 1024
        }
        Err(e) => {
            c.error(&file.store.max_bytes, format!("store.max_bytes: {e}"));
            0
        }
    };

    // Engine.
    let clear_hold = c.duration(&file.correlation.clear_hold, "correlation.clear_hold", ranges::HOLD);
    let update_min_interval =
        c.duration(&file.correlation.update_min_interval, "correlation.update_min_interval", ranges::HOLD);
    let baseline_window = c.duration(&file.correlation.baseline_window, "correlation.baseline_window", ranges::WINDOW);
    let recurrence = *file.patterns.recurrence.get_ref();
    if !(1..=1000).contains(&recurrence) {
        c.error(&file.patterns.recurrence, "patterns.recurrence must be between 1 and 1000");
    }
    let window = c.duration(&file.patterns.window, "patterns.window", ranges::WINDOW);
    let major_after = c.duration(&file.patterns.major_after, "patterns.major_after", ranges::MAJOR_AFTER);
    let unreachable_major_after =
        c.duration(&file.patterns.unreachable_major_after, "patterns.unreachable_major_after", ranges::MAJOR_AFTER);
    let rollup_interval =
        file.rollups.interval.as_ref().map(|i| c.duration(i, "rollups.interval", ranges::REPORT_INTERVAL));
    let health_interval = c.duration(&file.health.interval, "health.interval", ranges::REPORT_INTERVAL);
    let ha = file.ha.as_ref().and_then(|h| ha_settings(&mut c, h, &devices));

    if !c.errors.is_empty() {
        return Err(ConfigError { errors: c.errors });
    }
    let engine = EngineSettings {
        site: site.clone(),
        zones: zones.clone(),
        devices: metas,
        thresholds: rules,
        down_after: file.polling.down_after.max(1),
        clear_hold,
        update_min_interval,
        baseline_window,
        recurrence: recurrence as u32,
        window,
        major_after,
        unreachable_major_after,
        rollup_interval,
    };
    let config = Config {
        path: src.path.to_owned(),
        site,
        mqtt,
        store: StoreSettings { path: PathBuf::from(&file.store.path), max_bytes },
        log_level: file.log.level.clone(),
        zones,
        devices,
        engine,
        health_interval,
        ha,
    };
    Ok(Loaded { config, warnings: c.warnings })
}

fn modbus_transport(c: &mut Checker<'_>, dev: &str, m: &Spanned<ModbusDeviceConfig>) -> Option<Transport> {
    let mc = m.get_ref();
    let unit_v = *mc.unit.get_ref();
    let unit = if (0..=255).contains(&unit_v) {
        unit_v as u8
    } else {
        c.error(&mc.unit, format!("device {dev:?}: unit {unit_v} is outside 0..=255"));
        0
    };
    let max_block = *mc.max_block.get_ref();
    if !(1..=125).contains(&max_block) {
        c.error(&mc.max_block, "max_block must be 1..=125 registers");
    }
    let blocks = BlockLimits { max_gap: mc.max_gap, max_block: max_block.clamp(1, 125) };
    match (&mc.address, &mc.serial) {
        (Some(a), Some(_)) => {
            c.error(a, format!("device {dev:?}: give modbus `address` (TCP) or `serial` (RTU), not both"));
            None
        }
        (None, None) => {
            c.error(m, format!("device {dev:?}: [devices.modbus] needs `address` (TCP) or `serial` (RTU)"));
            None
        }
        (Some(a), None) => match parse_address(a.get_ref(), 502) {
            Ok(address) => Some(Transport::ModbusTcp { address, unit, blocks }),
            Err(e) => {
                c.error(a, format!("device {dev:?}: {e}"));
                None
            }
        },
        (None, Some(s)) => {
            let parity = match mc.parity.get_ref().as_str() {
                "none" => Parity::None,
                "even" => Parity::Even,
                "odd" => Parity::Odd,
                other => {
                    c.error(&mc.parity, format!("parity {other:?}: expected none, even or odd"));
                    Parity::Even
                }
            };
            if !matches!(mc.data_bits, 7 | 8) || !matches!(mc.stop_bits, 1 | 2) {
                c.error(s, format!("device {dev:?}: data_bits must be 7 or 8 and stop_bits 1 or 2"));
            }
            if mc.baud == 0 {
                c.error(s, format!("device {dev:?}: baud must be positive"));
            }
            let spacing = c.duration(&mc.spacing, "spacing", ranges::BUS_SPACING);
            Some(Transport::ModbusRtu {
                serial: SerialSettings {
                    path: s.get_ref().clone(),
                    baud: mc.baud,
                    parity,
                    data_bits: mc.data_bits,
                    stop_bits: mc.stop_bits,
                    spacing,
                },
                unit,
                blocks,
            })
        }
    }
}

fn snmp_transport(c: &mut Checker<'_>, dev: &str, s: &Spanned<SnmpDeviceConfig>) -> Option<Transport> {
    let sc = s.get_ref();
    let address = match parse_address(sc.address.get_ref(), 161) {
        Ok(a) => Some(a),
        Err(e) => {
            c.error(&sc.address, format!("device {dev:?}: {e}"));
            None
        }
    };
    let Some(version) = SnmpVersion::from_name(sc.version.get_ref()) else {
        let names = SnmpVersion::NAMES;
        c.error(&sc.version, format!("SNMP version {:?}: expected {names}", sc.version.get_ref()));
        return None;
    };
    if sc.max_oids_per_request == 0 || sc.max_repetitions == 0 {
        c.error(s, format!("device {dev:?}: max_oids_per_request and max_repetitions must be positive"));
    }
    // No silent "public": a v1/v2c device names where its community is. v3 does not use one.
    if version != SnmpVersion::V3 && sc.community_file.is_none() && sc.community_env.is_none() {
        c.error(
            s,
            format!(
                "device {dev:?}: SNMP v{} needs community_file or community_env (even for \"public\": \
                 put it in a file)",
                sc.version.get_ref()
            ),
        );
    }
    let community = c.secret(&sc.community_file, &sc.community_env, "community").unwrap_or_else(|| Secret::new(""));
    let v3 = if version == SnmpVersion::V3 {
        let Some(user) = &sc.user else {
            c.error(s, format!("device {dev:?}: SNMPv3 needs `user`"));
            return None;
        };
        let auth = sc.auth.as_ref().and_then(|a| v3_key(c, dev, a, &sc.auth_password_file, &sc.auth_password_env));
        if let (Some(p), None) = (&sc.privacy, &sc.auth) {
            c.error(p, "priv requires auth (SNMPv3 has no noAuthPriv)");
        }
        let privacy =
            sc.privacy.as_ref().and_then(|p| v3_key(c, dev, p, &sc.priv_password_file, &sc.priv_password_env));
        Some(SnmpV3 { user: user.get_ref().clone(), auth, privacy })
    } else {
        for f in [&sc.user, &sc.auth, &sc.privacy].into_iter().flatten() {
            c.error(
                f,
                format!("device {dev:?}: user/auth/priv are SNMPv3 settings but version is {:?}", sc.version.get_ref()),
            );
        }
        None
    };
    Some(Transport::Snmp(SnmpSettings {
        address: address?,
        version,
        community,
        v3,
        max_oids_per_request: sc.max_oids_per_request.max(1),
        max_repetitions: sc.max_repetitions.max(1),
    }))
}

/// An SNMPv3 `auth` or `priv` setting (`P::KEY`): a known protocol, a weak one warned about,
/// and its password from a file or the environment.
fn v3_key<P: V3Protocol>(
    c: &mut Checker<'_>,
    dev: &str,
    name: &Spanned<String>,
    password_file: &Option<Spanned<String>>,
    password_env: &Option<Spanned<String>>,
) -> Option<(P, Secret)> {
    let key = P::KEY;
    let proto = P::from_name(name.get_ref());
    match proto {
        None => c.error(name, format!("{key} {:?}: expected {}", name.get_ref(), P::NAMES)),
        Some(p) if p.is_weak() => c.warn(
            name,
            format!(
                "device {dev:?}: {key} {} is broken; use {} or stronger if the device offers it",
                name.get_ref().to_ascii_lowercase(),
                P::STRONGER
            ),
        ),
        Some(_) => {}
    }
    let password = c.secret(password_file, password_env, &format!("{key}_password"));
    if password.is_none() && password_file.is_none() && password_env.is_none() {
        c.error(name, format!("device {dev:?}: {key} needs {key}_password_file or {key}_password_env"));
    }
    proto.zip(password)
}

fn mqtt_settings(c: &mut Checker<'_>, m: &MqttConfig, site: &SiteId) -> Option<MqttSettings> {
    let BrokerUrl { tls, host, port } = match BrokerUrl::parse(m.url.get_ref()) {
        Ok(url) => url,
        Err(e) => {
            c.error(&m.url, format!("mqtt.url {e}"));
            return None;
        }
    };
    let password = c.secret(&m.password_file, &m.password_env, "password");
    let file = |c: &mut Checker<'_>, f: &Option<Spanned<String>>, what: &str| -> Option<PathBuf> {
        let f = f.as_ref()?;
        let p = c.relative_path(f.get_ref());
        if !p.is_file() {
            c.error(f, format!("mqtt.{what} {} does not exist", p.display()));
        }
        Some(p)
    };
    let ca_file = file(c, &m.ca_file, "ca_file");
    let client_cert_file = file(c, &m.client_cert_file, "client_cert_file");
    let client_key_file = file(c, &m.client_key_file, "client_key_file");
    if let Some(k) = &m.client_key_file {
        let path = c.relative_path(k.get_ref());
        if let Some(w) = secret_file_warning(&path) {
            c.warn_once(k, &path, w);
        }
    }
    if client_cert_file.is_some() != client_key_file.is_some() {
        c.error(&m.url, "mqtt: client_cert_file and client_key_file go together");
    }
    if tls && ca_file.is_none() {
        c.error(&m.url, "mqtts:// needs mqtt.ca_file (the CA that signed the broker's certificate)");
    }
    if !tls && (ca_file.is_some() || client_cert_file.is_some()) {
        c.error(&m.url, "mqtt.ca_file and client certificates need an mqtts:// url");
    }
    let keep_alive = c.duration(&m.keep_alive, "mqtt.keep_alive", ranges::KEEP_ALIVE);
    let reconnect_max = c.duration(&m.reconnect_max, "mqtt.reconnect_max", ranges::RECONNECT_MAX);
    if m.max_inflight == 0 {
        c.error(&m.url, "mqtt.max_inflight must be at least 1");
    }
    if let Err(e) = check_topic_prefix(m.topic_prefix.get_ref()) {
        c.error(&m.topic_prefix, format!("mqtt.topic_prefix {:?} {e}", m.topic_prefix.get_ref()));
    }
    let client_id = m.client_id.clone().unwrap_or_else(|| format!("hallmonitor-{site}"));
    if client_id.is_empty() {
        c.error(&m.url, "mqtt.client_id must not be empty");
    }
    Some(MqttSettings {
        host,
        port,
        tls,
        client_id,
        topic_prefix: m.topic_prefix.get_ref().clone(),
        username: m.username.clone(),
        password,
        ca_file,
        client_cert_file,
        client_key_file,
        keep_alive,
        max_inflight: m.max_inflight.max(1),
        reconnect_max,
    })
}

/// The port of the peer link when an address gives none.
const HA_DEFAULT_PORT: u16 = 7411;

fn ha_settings(c: &mut Checker<'_>, h: &HaConfig, devices: &[DeviceSpec]) -> Option<HaSettings> {
    c.ident(&h.node, "ha.node");
    let listen = match h.listen.get_ref().parse::<std::net::SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.error(&h.listen, format!("ha.listen {:?} must be IP:port (the address to bind)", h.listen.get_ref()));
            None
        }
    };
    let address =
        |c: &mut Checker<'_>, a: &Spanned<String>, what: &str| match parse_address(a.get_ref(), HA_DEFAULT_PORT) {
            Ok(s) => Some(s),
            Err(e) => {
                c.error(a, format!("ha.{what}: {e}"));
                None
            }
        };
    let peer = address(c, &h.peer, "peer");
    let witness = address(c, &h.witness, "witness");
    let key_file = c.relative_path(h.key_file.get_ref());
    let key = match read_secret_file(&key_file) {
        Ok(read) => {
            if let Some(w) = read.warning {
                c.warn_once(&h.key_file, &key_file, w);
            }
            let len = read.secret.expose().len();
            if len < HA_MIN_KEY_LEN {
                c.error(
                    &h.key_file,
                    format!(
                        "ha.key_file {}: the key has {len} bytes; the peer link needs at least {HA_MIN_KEY_LEN} \
                         (e.g. `openssl rand -hex 32`)",
                        key_file.display()
                    ),
                );
                None
            } else {
                Some(read.secret)
            }
        }
        Err(e) => {
            c.error(&h.key_file, format!("ha.key_file {}: {e}", key_file.display()));
            None
        }
    };
    let lease = c.duration(&h.lease, "ha.lease", ranges::HA_LEASE);
    let guard = c.duration(&h.guard, "ha.guard", ranges::HA_GUARD);
    let drift_ppm = match parse_percent(h.drift.get_ref()) {
        Ok(ppm) => Some(ppm),
        Err(e) => {
            c.error(&h.drift, format!("ha.drift: {e}"));
            None
        }
    };
    if let Some(ppm) = drift_ppm
        && let Err(e) = HaSettings::check_timing(lease, ppm, guard)
    {
        let at = if span_of(&h.lease).is_some() { &h.lease } else { &h.guard };
        c.error(at, format!("[ha]: {e}"));
    }
    if let Some(slowest) = devices.iter().filter(|d| d.enabled).max_by_key(|d| d.timeout)
        && slowest.timeout > guard
    {
        c.error(
            &h.guard,
            format!(
                "ha.guard {} is shorter than device {:?}'s request timeout {}: a request started just before the \
                 lease ends could outlast it (raise the guard, or lower the timeout)",
                humane_duration(guard),
                slowest.id.as_str(),
                humane_duration(slowest.timeout)
            ),
        );
    }
    Some(HaSettings {
        node: h.node.get_ref().clone(),
        listen: listen?,
        peer: peer?,
        witness: witness?,
        key_file,
        key: key?,
        lease,
        drift_ppm: drift_ppm?,
        guard,
    })
}

/// `"1%"`, `"0.5 %"`: a rate in parts per million, above 0 and at most 10 %.
fn parse_percent(s: &str) -> Result<u32, String> {
    let number = s.trim().strip_suffix('%').ok_or_else(|| format!("{s:?} must be a percentage, e.g. \"1%\""))?;
    match number.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 10.0 => Ok((p * 10_000.0).round() as u32),
        Ok(_) => Err(format!("{s:?} is out of range (above 0%, at most 10%)")),
        Err(_) => Err(format!("{s:?} must be a percentage, e.g. \"1%\"")),
    }
}
