//! `hallmonitor demo [--seconds N]`: the whole pipeline on one machine, nothing else installed.
//!
//! Simulated thermal probes and CRAHs (Modbus TCP) and rack PDUs (SNMP) serve the scenario of
//! docs/scenario.md#the-demo on loopback; the real agent (sources, engine, sled outbox, MQTT publisher)
//! polls them on the simulator's compressed clock and publishes to an embedded broker through a
//! loopback proxy that the demo severs for one hot afternoon (a failing uplink); a subscriber
//! prints what the NOC receives. The end is a summary: noise reduction, whether the pattern
//! signal came before the major event, and what the outbox carried across the outage.
//!
//! The configurations are the shipped `config/sim-demo.toml` and `config/demo.toml`, compiled
//! in; the demo only swaps the broker address and the store path for its own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{Timestamp, humane_duration};

/// The simulated site (devices, scenario).
pub const SIM_CONFIG: &str = include_str!("../../config/sim-demo.toml");
/// The agent's configuration for it.
pub const AGENT_CONFIG: &str = include_str!("../../config/demo.toml");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Wall-clock length of the demo; the three-week scenario is fitted into it.
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Print only the summary, not every message the NOC receives.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(demo(args))
}

/// What the NOC side saw, for the summary.
#[derive(Default)]
struct Tally {
    /// seq -> msg_id of every message with an envelope.
    seen: BTreeMap<u64, String>,
    duplicates: u64,
    /// A seq seen twice with different msg_ids: a real bug, shown in the summary.
    conflicting: Vec<u64>,
    /// Health seqs, to tell which lost seqs were health messages.
    health_seqs: BTreeSet<u64>,
    incidents_opened: u64,
    incident_messages: u64,
    pattern_messages: u64,
    /// First recurrence pattern signal: (created_at, occurrences, summary).
    first_pattern: Option<(Timestamp, u64, String)>,
    /// First critical thermal incident event (the major event of the scenario), created_at.
    first_critical: Option<Timestamp>,
    /// Messages created during the outage and received after it ended.
    buffered: u64,
    outage: Option<(Timestamp, Timestamp)>,
    outage_ended: bool,
}

impl Tally {
    fn record(&mut self, payload: &Value) {
        let (Some(seq), Some(msg_id)) = (payload["seq"].as_u64(), payload["msg_id"].as_str()) else { return };
        if let Some(previous) = self.seen.get(&seq) {
            if previous == msg_id {
                self.duplicates += 1;
            } else {
                self.conflicting.push(seq);
            }
            return;
        }
        self.seen.insert(seq, msg_id.to_owned());
        let created = payload["created_at"].as_str().and_then(|s| Timestamp::parse_rfc3339(s).ok());
        if let (Some((from, to)), Some(c), true) = (self.outage, created, self.outage_ended)
            && c >= from
            && c < to
        {
            self.buffered += 1;
        }
        match payload["type"].as_str() {
            Some("health") => {
                self.health_seqs.insert(seq);
            }
            Some("incident") => {
                self.incident_messages += 1;
                if payload["event"] == "opened" {
                    self.incidents_opened += 1;
                }
                if payload["severity"] == "critical"
                    && payload["category"] == "thermal"
                    && self.first_critical.is_none()
                {
                    self.first_critical = created;
                }
            }
            Some("pattern") => {
                self.pattern_messages += 1;
                if payload["trigger"] == "recurrence"
                    && payload["category"] == "thermal"
                    && payload["state"] == "active"
                    && self.first_pattern.is_none()
                    && let Some(c) = created
                {
                    let occurrences = payload["occurrences"].as_u64().unwrap_or(0);
                    let summary = payload["summary"].as_str().unwrap_or_default().to_owned();
                    self.first_pattern = Some((c, occurrences, summary));
                }
            }
            _ => {}
        }
    }

    /// Seqs missing from 1..=max, excluding none: the caller decides what is allowed.
    fn missing(&self) -> Vec<u64> {
        let max = self.seen.keys().next_back().copied().unwrap_or(0);
        (1..=max).filter(|s| !self.seen.contains_key(s)).collect()
    }
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    use anyhow::Context;

    use crate::agent::{self, AgentOptions, Clock};
    use crate::sim::broker::EmbeddedBroker;
    use crate::sim::devices::{Ports, bind_all, start_servers};
    use crate::sim::proxy::Proxy;
    use crate::sim::scenario::{Scenario, drive, fitted_clock};
    use crate::sim::{SimValues, config as simcfg};

    let seconds = args.seconds.max(10);
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let sim = simcfg::load_str(Path::new("config/sim-demo.toml"), SIM_CONFIG)?.settings;
    let scenario = Arc::new(Scenario::new(Arc::new(sim)));
    let (clock, fit_line) = fitted_clock(&scenario, Duration::from_secs(seconds));

    let broker = EmbeddedBroker::start().context("starting the embedded MQTT broker")?;
    let proxy = Proxy::start("127.0.0.1:0".parse()?, broker.addr()).await.context("starting the uplink proxy")?;
    // The simulated devices get free ports (whatever else runs here); the agent is told which.
    let sockets = bind_all(scenario.settings(), Ports::AnyFree).await?;
    let store_dir = demo_dir()?;
    // demo.toml names its SNMP community file relative to itself: give it one beside it.
    write_private(&store_dir.join("snmp-community"), "public\n")?;
    let agent_text = AGENT_CONFIG
        .replace("mqtt://127.0.0.1:1883", &format!("mqtt://{}", proxy.local_addr()))
        .replace("/tmp/hallmonitor-demo", &store_dir.display().to_string());
    let mut config = crate::config::load_str(&store_dir.join("demo.toml"), &agent_text)?.config;
    use_bound_ports(&mut config, &sockets.bound)?;
    let site = config.site.clone();

    println!("hallmonitor demo: site {site}, {} simulated devices, three weeks of a data hall", config.devices.len());
    println!("{}", fit_line.trim());
    println!("  broker  embedded at {} (agent goes through an uplink proxy at {})", broker.addr(), proxy.local_addr());
    println!("  store   {}", store_dir.display());
    println!();

    // The simulated devices.
    let cancel = CancellationToken::new();
    let values = Arc::new(SimValues::new());
    scenario.apply(clock.now(), &values);
    for missing in start_servers(sockets, &values, &cancel).await {
        println!("demo: {missing}");
    }
    let tick = scenario.settings().tick;
    let driver = tokio::spawn(drive(scenario.clone(), clock.clone(), values, tick, cancel.clone()));

    // The NOC.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let noc =
        Noc::connect(broker.addr(), &format!("hallmonitor/v1/{site}/#"), tally.clone(), color, args.quiet).await?;

    // The agent, on the simulator's clock.
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(agent::run(
        config,
        AgentOptions {
            clock: Clock::simulated(clock.clone()),
            status_dir: store_dir.clone(),
            systemd: false,
            shutdown: shutdown.clone(),
        },
    ));

    // The uplink fails during a hot afternoon in the middle of the scenario.
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let horizon = clock.now().saturating_add(Duration::from_secs(60 * 86_400));
    let afternoons: Vec<_> = scenario
        .occurrences(clock.now(), horizon, Duration::ZERO)
        .into_iter()
        .filter(|(a, b)| b.since(*a) >= Duration::from_secs(2 * 3600) && b.since(*a) <= Duration::from_secs(3 * 3600))
        .collect();
    let outage = afternoons.get(afternoons.len() / 2).map(|(a, b)| {
        let cut = Instant::now() + clock.wall_until(*a);
        let back = Instant::now() + clock.wall_until(b.saturating_add(Duration::from_secs(3600)));
        (cut, back.max(cut + Duration::from_secs(3)))
    });
    if let Some((cut, back)) = outage {
        tokio::time::sleep_until(cut.min(end)).await;
        if Instant::now() < end {
            let from = clock.now();
            proxy.sever();
            banner(color, &format!("uplink down at simulated {from}: the agent keeps every message in its outbox"));
            tokio::time::sleep_until(back.min(end)).await;
            let to = clock.now();
            {
                let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                t.outage = Some((from, to));
                t.outage_ended = true;
            }
            proxy.restore();
            banner(color, &format!("uplink restored at simulated {to}: the outbox drains in order"));
        }
    }
    tokio::time::sleep_until(end).await;

    // Stop the agent cleanly (it drains its outbox), then give the NOC a moment.
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(15), agent).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.context("the agent failed")),
        Ok(Err(e)) => anyhow::bail!("the agent task panicked: {e}"),
        Err(_) => anyhow::bail!("the agent did not stop within 15 s"),
    }
    cancel.cancel();
    let _ = driver.await;
    let status = crate::status::read(&store_dir).ok();
    tokio::time::sleep(Duration::from_millis(500)).await;
    noc.stop();

    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    print_summary(&t, status.as_ref());
    let _ = std::fs::remove_dir_all(&store_dir);
    let lost: Vec<u64> = t.missing();
    Ok(if t.conflicting.is_empty() && lost.is_empty() && t.first_pattern.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(t: &Tally, status: Option<&crate::status::StatusSnapshot>) {
    println!();
    println!("── summary ─────────────────────────────────────────────────────────────");
    if let Some(s) = status {
        let n = &s.noise;
        println!(
            "noise      {} raw threshold crossings -> {} breaches -> {} incidents, {} incident messages",
            n.raw_crossings, n.breaches, n.incidents_opened, t.incident_messages
        );
    }
    println!("incidents  {} opened as seen by the NOC, {} pattern messages", t.incidents_opened, t.pattern_messages);
    match (&t.first_pattern, t.first_critical) {
        (Some((p, occ, summary)), Some(c)) if *p < c => {
            println!(
                "pattern    raised at simulated {p} ({occ} occurrences), {} before the major event at {c}",
                humane_duration(c.since(*p))
            );
            println!("           \"{summary}\"");
        }
        (Some((p, occ, summary)), Some(c)) => {
            println!("pattern    raised at simulated {p} ({occ} occurrences), NOT before the major event at {c}");
            println!("           \"{summary}\"");
        }
        (Some((p, occ, summary)), None) => {
            println!(
                "pattern    raised at simulated {p} ({occ} occurrences); no critical thermal event reached the NOC in this run"
            );
            println!("           \"{summary}\"");
        }
        (None, _) => println!("pattern    no thermal recurrence pattern reached the NOC (is the demo too short?)"),
    }
    match t.outage {
        Some((from, to)) => println!(
            "outage     {} of simulated time ({from} to {to}): {} messages were buffered and delivered after it",
            humane_duration(to.since(from)),
            t.buffered
        ),
        None => println!("outage     none in this run"),
    }
    let max = t.seen.keys().next_back().copied().unwrap_or(0);
    let missing = t.missing();
    let left = status.map_or(0, |s| s.outbox.depth);
    println!(
        "delivery   seq 1..{max}: {} received, {} missing, {} duplicates (same msg_id), {} conflicting; {} left in the outbox",
        t.seen.len(),
        missing.len(),
        t.duplicates,
        t.conflicting.len(),
        left
    );
    if missing.is_empty() && t.conflicting.is_empty() {
        println!("result     zero lost messages across the outage");
    } else {
        println!(
            "result     LOST seqs {missing:?} (of them health: {:?})",
            missing.iter().filter(|s| t.health_seqs.contains(s)).collect::<Vec<_>>()
        );
    }
}

fn banner(color: bool, text: &str) {
    if color {
        println!("\x1b[1;35m── {text} ──\x1b[0m");
    } else {
        println!("── {text} ──");
    }
}

/// Points the agent's devices at the ports the simulator actually bound (the shipped configs
/// name fixed ports, which anything else on the machine may hold).
fn use_bound_ports(config: &mut crate::config::Config, bound: &crate::sim::devices::BoundPorts) -> anyhow::Result<()> {
    use crate::config::Transport;
    for d in &mut config.devices {
        let (address, ports) = match &mut d.transport {
            Transport::ModbusTcp { address, .. } => (address, &bound.modbus),
            Transport::Snmp(s) => (&mut s.address, &bound.snmp),
            Transport::ModbusRtu { .. } => continue,
        };
        let configured = address.strip_prefix("127.0.0.1:").and_then(|p| p.parse::<u16>().ok());
        let Some(port) = configured.and_then(|p| ports.get(&p)) else {
            anyhow::bail!("demo: device {} polls {address}, which no simulated device serves", d.id);
        };
        *address = format!("127.0.0.1:{port}");
    }
    Ok(())
}

/// A fresh private directory for the demo's store and status snapshot.
fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hallmonitor-demo-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes a file only its owner can read (the demo's SNMP community).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(text.as_bytes())
}

/// The NOC's subscriber, connected straight to the broker (never through the severed uplink).
struct Noc {
    task: tokio::task::JoinHandle<()>,
}

impl Noc {
    async fn connect(
        broker: std::net::SocketAddr,
        filter: &str,
        tally: Arc<Mutex<Tally>>,
        color: bool,
        quiet: bool,
    ) -> anyhow::Result<Noc> {
        use crate::publish::BrokerUrl;
        use crate::publish::subscriber::{Received, Subscriber, subscriber_settings};
        let url = BrokerUrl { tls: false, host: broker.ip().to_string(), port: broker.port() };
        let mut settings = subscriber_settings(&url, format!("demo-noc-{}", std::process::id()));
        settings.reconnect_max = Duration::from_secs(2);
        let mut subscriber = Subscriber::new(&settings, vec![filter.to_owned()])?;
        // Wait for the subscription to be in place before the agent publishes anything.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, subscriber.next()).await {
                Ok(Received::Subscribed) => break,
                Ok(Received::Message { .. }) => {}
                Ok(Received::Retrying { error, .. }) => {
                    anyhow::bail!("the demo's NOC subscriber cannot reach the embedded broker: {error}")
                }
                Err(_) => anyhow::bail!("the embedded broker did not acknowledge the NOC subscription within 10 s"),
            }
        }
        let task = tokio::spawn(async move {
            loop {
                match subscriber.next().await {
                    Received::Message { topic, payload } => {
                        if let Ok(v) = serde_json::from_slice::<Value>(&payload) {
                            tally.lock().unwrap_or_else(|e| e.into_inner()).record(&v);
                        }
                        let show = !quiet && !topic.ends_with("/health");
                        if show {
                            let line = super::tail::render_line_styled(&topic, &payload, color);
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{line}");
                        }
                    }
                    Received::Subscribed => {}
                    Received::Retrying { error, delay } => {
                        tracing::warn!(error = %error, retry_in = %crate::model::humane_duration(delay), "demo NOC subscriber lost the broker; retrying");
                    }
                }
            }
        });
        Ok(Noc { task })
    }

    fn stop(self) {
        self.task.abort();
    }
}
