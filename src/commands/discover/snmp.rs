//! `hallmonitor discover snmp RANGE`: asks every address of a range for its system group,
//! recognises the profile, confirms it with one poll and prints a draft config.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Addresses one scan covers at most (a /22): larger ranges are split by the engineer.
pub const MAX_ADDRESSES: u32 = 1024;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Addresses to scan: a CIDR (`10.0.4.0/24`) or a last-octet range (`10.0.4.10-40`).
    pub range: String,
    /// UDP port of the agents.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// File holding the SNMPv2c community (first line).
    #[arg(long, required_unless_present = "v3_user", conflicts_with = "v3_user")]
    pub community_file: Option<PathBuf>,
    /// SNMPv3 user (instead of a community).
    #[arg(long)]
    pub v3_user: Option<String>,
    /// SNMPv3 authentication: md5, sha1, sha224, sha256, sha384, sha512.
    #[arg(long, requires = "v3_user")]
    pub auth_protocol: Option<String>,
    /// File holding the SNMPv3 authentication password.
    #[arg(long, requires = "auth_protocol")]
    pub auth_key_file: Option<PathBuf>,
    /// SNMPv3 privacy: des, aes128, aes192, aes256.
    #[arg(long, requires = "auth_protocol")]
    pub priv_protocol: Option<String>,
    /// File holding the SNMPv3 privacy password.
    #[arg(long, requires = "priv_protocol")]
    pub priv_key_file: Option<PathBuf>,
    /// Requests per second at most over the whole scan, `N/s`.
    #[arg(long, default_value = "50/s", value_parser = super::pace::parse_rate)]
    pub rate: u32,
    /// Time to wait for an answer (one retry after it).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Zone the devices go in; without it they go in the zone "unassigned".
    #[arg(long)]
    pub zone: Option<String>,
}

/// Parses RANGE: `a.b.c.d/n` or `a.b.c.d-e` (last octet), at most `MAX_ADDRESSES`.
pub fn parse_range(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = |why: &str| format!("range {s:?}: {why}; expected a CIDR (10.0.4.0/24) or a.b.c.d-e (10.0.4.10-40)");
    let t = s.trim();
    let (first, count) = if let Some((addr, bits)) = t.split_once('/') {
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(|| bad("prefix length must be 0-32"))?;
        let size = if bits == 0 { u64::from(u32::MAX) + 1 } else { 1u64 << (32 - bits) };
        if size > u64::from(MAX_ADDRESSES) {
            return Err(format!("range {s:?} has {size} addresses; scan at most {MAX_ADDRESSES} (a /22) at a time"));
        }
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        let base = u32::from(addr) & mask;
        // Network and broadcast addresses hold no agent (except in /31 and /32).
        if size > 2 { (base + 1, size as u32 - 2) } else { (base, size as u32) }
    } else if let Some((addr, last)) = t.split_once('-') {
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let last: u8 = last.trim().parse().map_err(|_| bad("the end must be a last octet 0-255"))?;
        let o = addr.octets();
        if last < o[3] {
            return Err(bad("the end is below the start"));
        }
        (u32::from(addr), u32::from(last - o[3]) + 1)
    } else {
        let addr: Ipv4Addr = t.parse().map_err(|_| bad("not an IPv4 address"))?;
        (u32::from(addr), 1)
    };
    Ok((0..count).map(|i| Ipv4Addr::from(first + i)).collect())
}

pub fn run(_args: Args, _rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!("discover snmp is not built yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cidrs_or_last_octet_spans() {
        let r = parse_range("10.0.4.0/30").unwrap();
        assert_eq!(r, [Ipv4Addr::new(10, 0, 4, 1), Ipv4Addr::new(10, 0, 4, 2)]);
        assert_eq!(parse_range("10.0.4.9/32").unwrap(), [Ipv4Addr::new(10, 0, 4, 9)]);
        assert_eq!(parse_range("10.0.4.7/24").unwrap().len(), 254);
        let r = parse_range("127.0.0.20-22").unwrap();
        assert_eq!(r, [Ipv4Addr::new(127, 0, 0, 20), Ipv4Addr::new(127, 0, 0, 21), Ipv4Addr::new(127, 0, 0, 22)]);
        assert_eq!(parse_range("127.0.0.5").unwrap(), [Ipv4Addr::new(127, 0, 0, 5)]);
        assert_eq!(parse_range("10.0.0.0/22").unwrap().len(), 1022);
        for (bad, want) in [
            ("10.0.0.0/16", "has 65536 addresses; scan at most 1024"),
            ("10.0.0.0/0", "has 4294967296 addresses"),
            ("10.0.0.0/33", "prefix length must be 0-32"),
            ("10.0.0.300/24", "not an IPv4 address"),
            ("10.0.0.9-3", "the end is below the start"),
            ("10.0.0.9-300", "the end must be a last octet"),
            ("hall-2", "not an IPv4 address"),
        ] {
            let e = parse_range(bad).unwrap_err();
            assert!(e.starts_with(&format!("range {bad:?}")) && e.contains(want), "{bad}: {e}");
        }
    }
}
