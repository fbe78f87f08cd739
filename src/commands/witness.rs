//! `hallmonitor witness`: the gateway pair's third voter (docs/ha-design.md), a tiny process
//! on a third box on site. No devices, no broker, no store: a listener on `--listen`, the
//! same voter and link code as a gateway's (`agent::ha`), and its record in `--state`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::agent::ha::{VoterCore, VoterEvent, check_boottime, serve_voter};
use crate::config::{HA_MIN_KEY_LEN, HaSettings, parse_duration, read_secret_file};
use crate::error::UsageError;
use crate::ha::lease::LeaseParams;
use crate::ha::link::SharedKey;
use crate::logging::LogFormat;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `IP:port` to listen on; both gateways' `[ha] witness` point here.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The pair's shared key file (first line, at least 32 bytes), as the gateways' `[ha] key_file`.
    #[arg(long)]
    pub key_file: PathBuf,
    /// The voter's record (the highest term it granted, and to whom): written, synced, before
    /// each grant that changes it. Keep it across restarts.
    #[arg(long)]
    pub state: PathBuf,
    /// The pair's `[ha] lease`: it must be the same on both gateways and here.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lease: Duration,
}

pub fn run(args: Args, format: LogFormat) -> anyhow::Result<ExitCode> {
    crate::logging::init(format, None);
    let secret = read_secret_file(&args.key_file)
        .map_err(|e| UsageError(format!("--key-file {}: {e}", args.key_file.display())))?;
    if let Some(w) = secret.warning {
        tracing::warn!("{w}");
    }
    if secret.secret.expose().len() < HA_MIN_KEY_LEN {
        return Err(UsageError(format!(
            "--key-file {}: the key has {} bytes; the peer link needs at least {HA_MIN_KEY_LEN}",
            args.key_file.display(),
            secret.secret.expose().len()
        ))
        .into());
    }
    let key = Arc::new(SharedKey::new(secret.secret.expose().as_bytes()).map_err(|e| UsageError(e.to_string()))?);
    // The witness's voter needs only the lease; the drift and guard are the nodes' concern.
    HaSettings::check_timing(args.lease, 0, Duration::ZERO).map_err(|e| UsageError(format!("--lease: {e}")))?;
    let params = LeaseParams::new(args.lease, 0, Duration::ZERO).map_err(|e| UsageError(format!("--lease: {e}")))?;
    check_boottime()?;
    let rt = super::runtime()?;
    rt.block_on(serve(args, key, params))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args, key: Arc<SharedKey>, params: LeaseParams) -> anyhow::Result<()> {
    let mut voter = VoterCore::open(&args.state, params)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen: cannot bind {}", args.listen))?;
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let server = tokio::spawn(serve_voter(listener, key, tx, None, params.lease() * 4, stop.clone()));
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| anyhow!("installing the SIGTERM handler: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| anyhow!("installing the SIGINT handler: {e}"))?;
    info!(listen = %args.listen, state = %args.state.display(), lease = ?args.lease, "witness started (grants nothing for one lease)");
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            Some(event) = rx.recv() => match event {
                VoterEvent::Request(request, reply) => {
                    let _ = reply.send(voter.on_request(&request).await);
                }
                VoterEvent::Release(release) => voter.on_release(&release),
            },
        }
    }
    stop.cancel();
    let _ = server.await;
    info!("witness stopped");
    Ok(())
}
