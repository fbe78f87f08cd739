//! The demo's three-week scenario as recorded readings, for `hallmonitor replay`:
//!
//! ```sh
//! cargo run --example demo_readings > /tmp/demo-readings.jsonl          # every 5 minutes
//! cargo run -- replay --config config/demo.toml --readings /tmp/demo-readings.jsonl
//! ```
//!
//! Values come from the same scenario the demo's simulated devices serve
//! (`config/sim-demo.toml`), sampled every `STEP` of simulated time without any network:
//! a device in a fault excursion gives bad readings, as a poll would. Table rows are labeled by
//! their row number (the real pollers read a label column or a prefix; the engine only needs
//! the label to tell rows apart).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use hallmonitor::model::Timestamp;
use hallmonitor::sim::config::load;
use hallmonitor::sim::scenario::Scenario;
use hallmonitor::sim::{SimFault, SimValues};

/// Sampling period of simulated time.
const STEP_MS: i64 = 5 * 60_000;
/// Length of the recording: the demo's three weeks and the major event on day 21.
const DAYS: i64 = 22;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "config/sim-demo.toml".to_owned());
    let loaded = load(Path::new(&path)).map_err(|e| format!("{e}"))?;
    let start = loaded.settings.start;
    let scenario = Scenario::new(Arc::new(loaded.settings));
    let values = SimValues::new();
    let points: Vec<_> = scenario.points().map(|(d, p, m, r)| (d.clone(), p.clone(), m.clone(), r)).collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut at = start.0;
    while at < start.0 + DAYS * Timestamp::MS_PER_DAY {
        let t = Timestamp(at);
        scenario.apply(t, &values);
        for (device, point, metric, row) in &points {
            let label = if *row > 0 { format!(",\"label\":\"{row}\"") } else { String::new() };
            if values.fault(device) == SimFault::None {
                let v = values.get(device, point, *row).unwrap_or(f64::NAN);
                if v.is_finite() {
                    writeln!(
                        out,
                        "{{\"at\":\"{t}\",\"device\":\"{device}\",\"point\":\"{point}\",\"metric\":\"{metric}\",\"value\":{v:.3}{label}}}"
                    )?;
                }
            } else {
                writeln!(
                    out,
                    "{{\"at\":\"{t}\",\"device\":\"{device}\",\"point\":\"{point}\",\"metric\":\"{metric}\",\"quality\":\"bad\",\"error\":\"timeout\"{label}}}"
                )?;
            }
        }
        at += STEP_MS;
    }
    out.flush()?;
    Ok(())
}
