//! The MQTT broker URL, `mqtt[s]://host[:port]`: parsed once, here, for `[mqtt] url` in the
//! config (errors positioned by `validate`) and for `tail --broker` (a usage error), so the two
//! accept exactly the same addresses. Also the host-name rule Modbus/SNMP addresses share.

use std::fmt;
use std::net::Ipv6Addr;

/// A broker address as a URL names it: `mqtt://host[:port]` or `mqtts://host[:port]`
/// (ports 1883 and 8883 by default, IPv6 hosts in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    /// An IP address (IPv6 without brackets) or a DNS name.
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// Parses a broker URL; the error names the URL and what is wrong with it.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let port_of = |p: &str| p.parse::<u16>().map_err(|_| format!("{url:?}: bad port {p:?}"));
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            if h.parse::<Ipv6Addr>().is_err() {
                return Err(format!("{url:?}: {h:?} in brackets is not an IPv6 address"));
            }
            match p.strip_prefix(':') {
                Some(p) => (h, port_of(p)?),
                None if p.is_empty() => (h, default_port),
                None => return Err(format!("{url:?}: unexpected {p:?} after the address")),
            }
        } else {
            let (h, p) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, port_of(p)?),
                None => (rest, default_port),
            };
            if h.contains(':') {
                return Err(format!("{url:?}: an IPv6 address goes in brackets, e.g. mqtt://[::1]:1883"));
            }
            if !h.is_empty() && !is_host_name(h) {
                return Err(format!("{url:?}: {h:?} is not a host name or IP address"));
            }
            (h, p)
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(BrokerUrl { tls, host: host.to_owned(), port })
    }
}

/// `mqtt://host:port` or `mqtts://host:port`, IPv6 hosts in brackets: what `parse` reads back.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A DNS name or an IPv4 address: dot-separated labels of letters, digits and `-`.
pub(crate) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerUrl::parse("mqtts://noc.example.net").unwrap(),
            BrokerUrl { tls: true, host: "noc.example.net".into(), port: 8883 }
        );
        assert_eq!(BrokerUrl::parse("mqtt://127.0.0.1:1884/").unwrap().port, 1884);
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]:1884").unwrap(),
            BrokerUrl { tls: false, host: "::1".into(), port: 1884 }
        );
        assert_eq!(BrokerUrl::parse("mqtt://[::1]").unwrap().port, 1883);
        for bad in [
            "http://x",
            "mqtt://x:notaport",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://[::1",
            "mqtt://[::1]x",
            "mqtt://[broker]:1883",
            "mqtt://::1",
            "mqtt://::1:65535",
            "mqtt://x:70000",
            "mqtt://bro ker:1883",
            "mqtt://a..b",
        ] {
            let e = BrokerUrl::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_url_prints_as_it_parses() {
        for url in ["mqtt://127.0.0.1:1883", "mqtts://noc.example.net:8883", "mqtt://[::1]:1884"] {
            let parsed = BrokerUrl::parse(url).unwrap();
            assert_eq!(parsed.to_string(), url);
        }
    }
}
