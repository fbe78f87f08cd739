//! `hallmonitor probe snmp ADDRESS --oid OID`: walks a subtree and prints each varbind with
//! its SNMP type, one per line (`OID = TYPE: value`), for writing profiles in the field.
//! A scalar instance OID is fetched with GET. Exit code 1 when the agent cannot be asked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use async_snmp::{Oid, Value};

use super::client::SnmpSession;
use crate::config::{Secret, SnmpSettings, SnmpV3, SnmpVersion, V3Protocol, read_secret_file};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Agent address, host:port (port 161 if omitted).
    pub address: String,
    /// Subtree to walk (numeric, e.g. 1.3.6.1.4.1.318.1.1.26), or a scalar instance to GET.
    #[arg(long)]
    pub oid: String,
    /// SNMP version: 1, 2c or 3.
    #[arg(long, default_value = "2c")]
    pub version: String,
    /// File holding the community (v1/v2c); "public" when not given.
    #[arg(long)]
    pub community_file: Option<PathBuf>,
    #[command(flatten)]
    pub v3: Box<V3Args>,
    /// Request timeout.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Retries per request.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
}

/// SNMPv3 options of `probe snmp` (boxed: they make the arguments large).
#[derive(clap::Args, Debug)]
pub struct V3Args {
    /// SNMPv3 user.
    #[arg(long)]
    pub user: Option<String>,
    /// SNMPv3 authentication: md5, sha1, sha224, sha256, sha384, sha512.
    #[arg(long)]
    pub auth: Option<String>,
    /// File holding the SNMPv3 authentication password.
    #[arg(long)]
    pub auth_password_file: Option<PathBuf>,
    /// SNMPv3 privacy: des, aes128, aes192, aes256.
    #[arg(long = "priv")]
    pub privacy: Option<String>,
    /// File holding the SNMPv3 privacy password.
    #[arg(long)]
    pub priv_password_file: Option<PathBuf>,
}

/// Reads a secret file named on the command line; a permission problem is a warning on stderr.
fn read_secret(path: &Path, what: &str) -> anyhow::Result<Secret> {
    let read = read_secret_file(path).map_err(|e| usage(format!("{what} file {}: {e}", path.display())))?;
    if let Some(w) = read.warning {
        eprintln!("warning: {w}");
    }
    Ok(read.secret)
}

fn usage(msg: String) -> anyhow::Error {
    crate::error::UsageError(msg).into()
}

/// `--auth` or `--priv` (`P::KEY`) with its password file, when given.
fn v3_key<P: V3Protocol>(
    name: Option<&String>,
    password_file: Option<&PathBuf>,
) -> anyhow::Result<Option<(P, Secret)>> {
    let Some(name) = name else { return Ok(None) };
    let key = P::KEY;
    let proto = P::from_name(name).ok_or_else(|| usage(format!("--{key} {name:?}: expected {}", P::NAMES)))?;
    let file = password_file.ok_or_else(|| usage(format!("--{key} needs --{key}-password-file")))?;
    Ok(Some((proto, read_secret(file, &format!("{key} password"))?)))
}

/// Turns the command line into the settings a configured device would have.
pub fn settings(args: &Args) -> anyhow::Result<SnmpSettings> {
    let address = if args.address.contains(':') { args.address.clone() } else { format!("{}:161", args.address) };
    let version = SnmpVersion::from_name(&args.version)
        .ok_or_else(|| usage(format!("--version {:?}: expected {}", args.version, SnmpVersion::NAMES)))?;
    let community = match &args.community_file {
        Some(p) => read_secret(p, "community")?,
        None => Secret::new("public"),
    };
    let v3 = if version == SnmpVersion::V3 {
        let args = &args.v3;
        let user = args.user.clone().ok_or_else(|| usage("--version 3 needs --user".into()))?;
        let auth = v3_key(args.auth.as_ref(), args.auth_password_file.as_ref())?;
        if args.privacy.is_some() && auth.is_none() {
            return Err(usage("--priv requires --auth".into()));
        }
        let privacy = v3_key(args.privacy.as_ref(), args.priv_password_file.as_ref())?;
        Some(SnmpV3 { user, auth, privacy })
    } else {
        None
    };
    Ok(SnmpSettings { address, version, community, v3, max_oids_per_request: 32, max_repetitions: 25 })
}

/// One varbind as printed: `OID = TYPE: value`.
pub fn format_varbind(oid: &Oid, value: &Value) -> String {
    let shown = match value {
        Value::OctetString(b) => match std::str::from_utf8(b) {
            Ok(s) if s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => format!("{s:?}"),
            _ => format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        },
        Value::Integer(i) => i.to_string(),
        Value::Gauge32(u) | Value::Counter32(u) | Value::UInteger32(u) | Value::TimeTicks(u) => u.to_string(),
        Value::Counter64(u) => u.to_string(),
        other => other.to_string(),
    };
    format!("{oid} = {}: {shown}", value.kind())
}

/// Runs the probe on `rt` (the command layer owns the runtime).
pub fn run(args: Args, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let root = Oid::parse(args.oid.trim_start_matches('.'))
        .map_err(|e| usage(format!("--oid {:?} is not a numeric OID: {e}", args.oid)))?;
    let settings = settings(&args)?;
    rt.block_on(async move {
        let mut session = match SnmpSession::connect(&settings, args.timeout, args.retries).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        };
        match session.walk_subtree(&root).await {
            Ok(items) => {
                for (oid, value) in &items {
                    println!("{}", format_varbind(oid, value));
                }
                eprintln!("{} varbind(s) under {root} from {}", items.len(), session.address());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthProtocol, PrivProtocol};

    #[test]
    fn v3_options_are_checked_as_the_config_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "secret-123\n").unwrap();
        std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let args = |auth: Option<&str>, auth_file: bool, privacy: Option<&str>, priv_file: bool| Args {
            address: "127.0.0.1".into(),
            oid: "1.3.6.1.2.1.1".into(),
            version: "3".into(),
            community_file: None,
            v3: Box::new(V3Args {
                user: Some("m".into()),
                auth: auth.map(Into::into),
                auth_password_file: auth_file.then(|| pass.clone()),
                privacy: privacy.map(Into::into),
                priv_password_file: priv_file.then(|| pass.clone()),
            }),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        let v3 = settings(&args(Some("SHA256"), true, Some("aes"), true)).unwrap().v3.unwrap();
        assert_eq!(v3.auth.map(|(p, s)| (p, s.expose().to_owned())), Some((AuthProtocol::Sha256, "secret-123".into())));
        assert_eq!(v3.privacy.map(|(p, _)| p), Some(PrivProtocol::Aes128));
        for (bad, want) in [
            (args(Some("sha3"), true, None, false), "--auth \"sha3\": expected md5, sha1"),
            (args(Some("md5"), false, None, false), "--auth needs --auth-password-file"),
            (args(None, false, Some("des"), true), "--priv requires --auth"),
            (args(Some("md5"), true, Some("rot13"), true), "--priv \"rot13\": expected des, aes128"),
            (args(Some("md5"), true, Some("des"), false), "--priv needs --priv-password-file"),
        ] {
            let e = settings(&bad).unwrap_err();
            assert!(e.downcast_ref::<crate::error::UsageError>().is_some() && e.to_string().starts_with(want), "{e}");
        }
        let mut v4 = args(None, false, None, false);
        v4.version = "4".into();
        assert_eq!(settings(&v4).unwrap_err().to_string(), "--version \"4\": expected 1, 2c or 3");
    }

    #[test]
    fn varbinds_print_with_their_type() {
        let oid = Oid::parse("1.3.6.1.4.1.318.1.1.26.6.3.1.5.1").unwrap();
        assert_eq!(format_varbind(&oid, &Value::Integer(28)), "1.3.6.1.4.1.318.1.1.26.6.3.1.5.1 = integer: 28");
        assert_eq!(
            format_varbind(&oid, &Value::OctetString("web-01".into())),
            "1.3.6.1.4.1.318.1.1.26.6.3.1.5.1 = octet_string: \"web-01\""
        );
        assert_eq!(format_varbind(&oid, &Value::Gauge32(7)), "1.3.6.1.4.1.318.1.1.26.6.3.1.5.1 = gauge32: 7");
    }
}
