//! `hallmonitor poll`: commissioning aid. Polls the configured devices and prints every
//! reading as one JSON line on stdout. No store, no MQTT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::UsageError;
use crate::sources::{self, SourceContext, SourceStats};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Poll only this device (repeatable).
    #[arg(long)]
    pub device: Vec<String>,
    /// Poll each device once and exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let mut devices = config.devices.clone();
    if !args.device.is_empty() {
        for want in &args.device {
            if !devices.iter().any(|d| d.id.as_str() == want) {
                return Err(UsageError(format!("no device {want:?} in {}", args.config.display())).into());
            }
        }
        devices.retain(|d| args.device.iter().any(|w| w == d.id.as_str()));
        // Polling a disabled device by name is what a technician commissioning it wants.
        for d in &mut devices {
            d.enabled = true;
        }
    }
    if devices.iter().all(|d| !d.enabled) {
        return Err(UsageError("no enabled devices to poll".into()).into());
    }
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (tx, mut rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let ctx = SourceContext {
            readings: tx,
            stats: Arc::new(SourceStats::default()),
            cancel: cancel.clone(),
            once: args.once,
        };
        let tasks = sources::spawn_all(&devices, &ctx);
        drop(ctx);
        let stdout = std::io::stdout();
        let mut bad = 0usize;
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(reading) => {
                        if reading.quality == crate::model::Quality::Bad {
                            bad += 1;
                        }
                        let mut out = stdout.lock();
                        serde_json::to_writer(&mut out, &reading)?;
                        out.write_all(b"\n")?;
                        out.flush()?;
                    }
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => {
                    cancel.cancel();
                    break;
                }
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        if args.once && bad > 0 {
            eprintln!("{bad} reading(s) had bad quality; see their \"error\" field");
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}
