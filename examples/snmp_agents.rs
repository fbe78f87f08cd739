//! Starts N simulated SNMP agents on loopback (one UDP socket each) and writes a
//! hallmonitor configuration polling all of them, for `scripts/bench-snmp`.
//!
//! Each agent serves a "bench" profile of `--scalars` scalar points and one table of two
//! columns with `--rows` rows (plus a name column), all values in tenths as a PDU would.
//! Prints `ready CONFIG_PATH` on stdout once every agent listens; on SIGINT/SIGTERM it prints what the agents were asked and exits.
//!
//! `cargo run --release --example snmp_agents -- --agents 200 --scalars 20 --rows 10 --dir /tmp/bench`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Parser;
use hallmonitor::model::{DeviceId, PointId};
use hallmonitor::profiles::{Profile, ProfileConfig};
use hallmonitor::sim::SimValues;
use hallmonitor::sim::snmp::{self as simsnmp, SimSnmpDevice, SimSnmpOptions, SimSnmpStats};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Simulated agents (one device each, own UDP port).
    #[arg(long, default_value_t = 200)]
    agents: u32,
    /// Scalar points per device.
    #[arg(long, default_value_t = 20)]
    scalars: u32,
    /// Rows of the two-column table per device.
    #[arg(long, default_value_t = 10)]
    rows: u32,
    /// Poll interval written into the configuration.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Where to write hallmonitor.toml and the community file.
    #[arg(long)]
    dir: PathBuf,
}

/// The bench profile; `table` is `""` for a profile file or `"profiles.bench."` inline.
fn profile_toml(scalars: u32, table: &str) -> String {
    let head = if table.is_empty() { String::new() } else { "[profiles.bench]\n".to_owned() };
    let mut t = format!("{head}protocol = \"snmp\"\ndescription = \"benchmark PDU\"\n");
    for i in 1..=scalars {
        let _ = write!(
            t,
            "[[{table}points]]\nname = \"s{i}\"\nmetric = \"inlet_temp_c\"\noid = \"1.3.6.1.4.1.99999.1.{i}.0\"\nscale = 0.1\n"
        );
    }
    let _ = write!(
        t,
        "[[{table}points]]\nname = \"outlet_current\"\nmetric = \"outlet_current_a\"\n\
         column = \"1.3.6.1.4.1.99999.2.1.2\"\nlabel_column = \"1.3.6.1.4.1.99999.2.1.1\"\nscale = 0.1\n\
         [[{table}points]]\nname = \"outlet_power\"\nmetric = \"power_w\"\n\
         column = \"1.3.6.1.4.1.99999.2.1.3\"\nlabel_column = \"1.3.6.1.4.1.99999.2.1.1\"\n"
    );
    t
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let profile_text = profile_toml(args.scalars, "profiles.bench.");
    // Build the profile from the same points as the config, so agent and poller agree.
    let cfg: ProfileConfig = toml::from_str(&profile_toml(args.scalars, ""))?;
    let Ok(Profile::Snmp(profile)) = cfg.build("bench") else { anyhow::bail!("bench profile does not build") };

    let values = Arc::new(SimValues::new());
    let stats = Arc::new(SimSnmpStats::default());
    let cancel = CancellationToken::new();
    let mut agents = Vec::new();
    let mut devices_toml = String::new();
    for a in 0..args.agents {
        let id = DeviceId::new(format!("pdu-{a:03}"));
        for (k, p) in profile.points.iter().enumerate() {
            let rows = if k < args.scalars as usize { 0..=0 } else { 1..=args.rows };
            for r in rows {
                values.set(&id, &PointId::new(p.id.as_str()), r, 20.0 + f64::from(a % 10) + f64::from(r) / 10.0);
            }
        }
        let devices = HashMap::from([(
            "public".to_owned(),
            SimSnmpDevice { id: id.clone(), profile: profile.clone(), rows: args.rows },
        )]);
        let options = SimSnmpOptions { stats: Some(stats.clone()), ..Default::default() };
        let agent =
            simsnmp::serve_with("127.0.0.1:0".parse()?, devices, values.clone(), cancel.clone(), options).await?;
        let _ = write!(
            devices_toml,
            "[[devices]]\nid = \"{id}\"\nprofile = \"bench\"\nzone = \"hall1\"\n[devices.snmp]\naddress = \"{}\"\ncommunity_file = \"community\"\n",
            agent.local_addr
        );
        agents.push(agent);
    }
    let config = format!(
        "[site]\nid = \"bench\"\n[store]\npath = \"{}\"\n[polling]\ninterval = \"{}\"\ntimeout = \"500ms\"\nretries = 1\n\
         [[zones]]\nid = \"hall1\"\n{profile_text}{devices_toml}",
        args.dir.join("store").display(),
        args.interval
    );
    let path = args.dir.join("hallmonitor.toml");
    std::fs::write(&path, config)?;
    let community = args.dir.join("community");
    std::fs::write(&community, "public\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&community, std::fs::Permissions::from_mode(0o600))?;
    }
    println!("ready {}", path.display());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!(
        "requests {} get_requests {} varbinds {}",
        stats.requests.load(Ordering::Relaxed),
        stats.get_requests.load(Ordering::Relaxed),
        stats.varbinds.load(Ordering::Relaxed)
    );
    for a in agents {
        a.stop().await;
    }
    Ok(())
}
