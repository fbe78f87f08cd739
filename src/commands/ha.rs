//! `hallmonitor ha handover [--config FILE] [--timeout 30s]`: a planned move of a gateway
//! pair's active role to the peer (before patching this gateway, say).
//!
//! The daemon keeps no socket for commands (its only listening socket is the peer link), so
//! the command finds the local daemon through its status snapshot (from `--config`, as
//! `status` does), checks that it is the active with the peer link up, sends it SIGUSR1 and
//! waits, bounded, until the snapshot shows it standby with the peer holding the lease. The
//! daemon does the handover itself (`Agent::on_handover`): stop polling, commit, drain the
//! outbox while it still holds the lease, disconnect cleanly, resign, stay as standby.
//!
//! Exit codes: 0 handed over; 1 failed or timed out (the daemon not running, the peer link
//! down, the peer not taking over); 2 usage (no `[ha]`, this gateway not the active).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::config::parse_duration;
use crate::error::UsageError;
use crate::model::{Timestamp, humane_duration};
use crate::status::StatusSnapshot;

/// A snapshot older than this (the daemon writes one every 2 s) means it is not running.
const FRESH: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

#[derive(clap::Subcommand, Debug)]
pub enum Ha {
    /// Move the active role to the peer gateway and stay as standby (run it on the active).
    Handover(HandoverArgs),
}

#[derive(clap::Args, Debug)]
pub struct HandoverArgs {
    /// The daemon's configuration file (its `[ha]` section, and where its status snapshot is).
    #[arg(long, short, default_value = "/etc/hallmonitor/hallmonitor.toml")]
    pub config: PathBuf,
    /// How long to wait for the peer to take over.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn run(command: Ha) -> anyhow::Result<ExitCode> {
    match command {
        Ha::Handover(args) => handover(&args),
    }
}

fn handover(args: &HandoverArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    if config.ha.is_none() {
        return Err(UsageError(format!(
            "{}: no [ha] section: this gateway is not in a pair, there is nothing to hand over",
            args.config.display()
        ))
        .into());
    }
    let snap = super::status::read_for_config(&config)
        .map_err(|e| anyhow!("cannot read the daemon's status ({e}): is `hallmonitor run` running?"))?;
    let age = Timestamp::now().since(snap.written_at);
    if age > FRESH {
        bail!("the daemon's status snapshot is {} old: is `hallmonitor run` running?", humane_duration(age));
    }
    let Some(ha) = &snap.ha else {
        bail!("the running daemon has no [ha] (the file gained it since it started?): restart it first");
    };
    if ha.role != "active" {
        let active = match ha.active_node.as_deref() {
            Some(other) if other != ha.node => format!("the active, {other}"),
            _ => "the active gateway".to_owned(),
        };
        return Err(UsageError(format!("{} is {}: run `hallmonitor ha handover` on {active}", ha.node, ha.role)).into());
    }
    if !ha.peer_link_up {
        bail!("{} stays active: the peer link is down, so the peer could not take over", ha.node);
    }
    if !crate::agent::replication::standby_can_take_over(&ha.replica.state) {
        bail!(
            "{} stays active: the standby does not hold what was published (replica {}), so it could not take over; \
             wait until `hallmonitor status` shows the replica in sync",
            ha.node,
            if ha.replica.state.is_empty() { "unknown" } else { &ha.replica.state }
        );
    }
    let pid = daemon_pid(&snap)?;
    println!("{}: active (term {}), peer link up; asking the daemon (pid {pid}) to hand over", ha.node, ha.term);
    let asked_at = Timestamp::now();
    let started = Instant::now();
    // SAFETY: kill(2) with a pid checked above to be a running `hallmonitor run`; no memory
    // is shared with the call.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("cannot signal the daemon (pid {pid}): {e} (run this as root or as the daemon's user)");
    }
    let me = ha.node.clone();
    let mut last = String::from("no new status yet");
    while started.elapsed() < args.timeout {
        std::thread::sleep(POLL);
        let Ok(now) = super::status::read_for_config(&config) else { continue };
        let Some(ha) = now.ha.as_ref().filter(|_| now.written_at >= asked_at) else { continue };
        let holder = ha.active_node.clone().unwrap_or_else(|| "nobody".to_owned());
        last = format!(
            "{me} {}, peer link {}, lease held by {holder}",
            ha.role,
            if ha.peer_link_up { "up" } else { "down" }
        );
        if ha.role == "standby" && ha.peer_link_up && ha.active_node.as_deref().is_some_and(|n| n != me) {
            println!("{me}: standby now; {holder} is active (after {:.1} s)", started.elapsed().as_secs_f64());
            return Ok(ExitCode::SUCCESS);
        }
    }
    bail!(
        "the peer did not take over within {} ({last}); see the daemon's log (`role changed`, `handover`)",
        humane_duration(args.timeout)
    )
}

/// The pid in the snapshot, checked to be a running `hallmonitor run`: a pid reused by another
/// process since must not get the signal.
fn daemon_pid(snap: &StatusSnapshot) -> anyhow::Result<i32> {
    let Some(pid) = snap.pid else {
        bail!("the running daemon (version {}) does not record its pid: too old for `ha handover`", snap.agent_version);
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| anyhow!("the daemon's pid {pid} is not running ({e})"))?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_daemon = args.first().is_some_and(|a| a.ends_with(b"hallmonitor")) && args.contains(&&b"run"[..]);
    if !is_daemon {
        bail!("pid {pid} (from the status snapshot) is not `hallmonitor run`");
    }
    i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))
}
