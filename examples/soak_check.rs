//! The NOC side of `scripts/soak`: records what a persistent-session subscriber receives, then
//! checks it against the `seq` contract and the incident lifecycle.
//!
//! `soak_check record --port P --site S --out FILE`
//!   Subscribes to `hallmonitor/v1/S/#` at QoS 1 with `clean_session = false` (the broker
//!   queues for it while it is away), writes one JSON line per message received
//!   (`{"t": unix seconds, "topic", "payload"}`) and only then acknowledges it (manual acks),
//!   so a message is either in the file or redelivered. Reconnects after broker restarts.
//!   Runs until killed.
//!
//! `soak_check verify --messages FILE --faults FILE --status FILE`
//!   Reads the recording, the nemesis's fault log (`start end kind detail` per line, unix
//!   seconds) and the agent's final status snapshot (`hallmonitor status --json`), prints a
//!   summary and every violation, and exits 1 if there is one:
//!   - every `seq` from 1 to the highest received arrived, except those inside a range that a
//!     health message reported in `dropped.ranges`;
//!   - a `seq` received twice has the same `msg_id` and the same payload;
//!   - per incident, in `seq` order: one `opened` first, `updated`s, at most one `resolved`
//!     last, and the first arrivals came in that order;
//!   - every incident that opened is resolved or open in the agent's final state, and every
//!     incident open there was seen opening;
//!   - every pattern signal names incidents that were seen, in its zones, and its states go
//!     active -> updated* -> cleared.
//!
//!   It also prints messages by type, incidents, patterns, max outbox depth (from health), drops, and
//!   per fault the recovery time: from its end until the first message created after it
//!   arrived.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use hallmonitor::model::Timestamp;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need = |name: &str| {
        flag(name).unwrap_or_else(|| {
            eprintln!("soak_check: {name} is required (see the module docs of examples/soak_check.rs)");
            std::process::exit(2)
        })
    };
    match args.first().map(String::as_str) {
        Some("record") => {
            let port: u16 = need("--port").parse().unwrap_or_else(|_| {
                eprintln!("soak_check: --port must be a port number");
                std::process::exit(2)
            });
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
            match rt.block_on(record(port, &need("--site"), &need("--out"))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("soak_check record: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("verify") => verify(&need("--messages"), &need("--faults"), &need("--status")),
        _ => {
            eprintln!(
                "usage: soak_check record --port P --site S --out FILE | verify --messages F --faults F --status F"
            );
            ExitCode::from(2)
        }
    }
}

async fn record(port: u16, site: &str, out: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out)?;
    let mut opts = MqttOptions::new(format!("soak-noc-{site}"), "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(8 << 20, 64 << 10);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let filter = format!("hallmonitor/v1/{site}/#");
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                eprintln!("soak_check record: connected (session present: {})", ack.session_present);
                if !ack.session_present {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let t = Timestamp::now().as_millis() as f64 / 1000.0;
                let payload = String::from_utf8_lossy(&p.payload);
                let line = serde_json::json!({"t": t, "topic": p.topic, "payload": payload});
                // One write per line, before the PUBACK: a message is in the file or redelivered.
                file.write_all(format!("{line}\n").as_bytes())?;
                let _ = client.try_ack(&p);
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("soak_check record: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// One received message with a `seq`.
struct Msg {
    t: f64,
    payload_text: String,
    v: Value,
}

impl Msg {
    fn created(&self) -> f64 {
        self.v["created_at"]
            .as_str()
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .map_or(0.0, |c| c.as_millis() as f64 / 1000.0)
    }
}

struct Fault {
    start: f64,
    end: f64,
    kind: String,
    detail: String,
}

struct Violation {
    at: Option<f64>,
    what: String,
}

fn verify(messages: &str, faults: &str, status: &str) -> ExitCode {
    let read = |p: &str| {
        std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("soak_check verify: {p}: {e}");
            std::process::exit(2)
        })
    };
    let mut violations: Vec<Violation> = Vec::new();
    let mut v = |at: Option<f64>, what: String| violations.push(Violation { at, what });

    // --- the recording: first arrival per seq, duplicates compared -------------------------
    let mut by_seq: BTreeMap<u64, Msg> = BTreeMap::new();
    let (mut received, mut duplicates, mut without_seq) = (0u64, 0u64, 0u64);
    let file = std::fs::File::open(messages).unwrap_or_else(|e| {
        eprintln!("soak_check verify: {messages}: {e}");
        std::process::exit(2)
    });
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        let Ok(rec) = serde_json::from_str::<Value>(&line) else {
            // The recorder was killed mid-line at the very end: nothing after it.
            eprintln!("soak_check verify: {messages}:{}: unparseable line (ignored)", n + 1);
            continue;
        };
        received += 1;
        let t = rec["t"].as_f64().unwrap_or(0.0);
        let text = rec["payload"].as_str().unwrap_or_default().to_owned();
        let Ok(payload) = serde_json::from_str::<Value>(&text) else {
            v(Some(t), format!("unparseable payload on {}", rec["topic"]));
            continue;
        };
        let Some(seq) = payload["seq"].as_u64() else {
            without_seq += 1;
            continue;
        };
        match by_seq.get(&seq) {
            Some(first) => {
                duplicates += 1;
                if first.v["msg_id"] != payload["msg_id"] {
                    v(
                        Some(t),
                        format!("seq {seq} arrived with msg_id {} and {}", first.v["msg_id"], payload["msg_id"]),
                    );
                } else if first.payload_text != text {
                    v(
                        Some(t),
                        format!("seq {seq} (msg_id {}) arrived twice with different payloads", payload["msg_id"]),
                    );
                }
            }
            None => {
                by_seq.insert(seq, Msg { t, payload_text: text, v: payload });
            }
        }
    }

    // --- gaps, except what health reported as shed ----------------------------------------
    let mut shed: Vec<(u64, u64)> = Vec::new();
    // class, first_seq, last_seq of every reported shed range.
    let mut shed_ranges: Vec<(String, u64, u64)> = Vec::new();
    let mut shed_total = 0u64;
    let mut shed_classes: BTreeMap<String, u64> = BTreeMap::new();
    let mut max_depth = 0u64;
    let mut truncated = false;
    for m in by_seq.values().filter(|m| m.v["type"] == "health") {
        max_depth = max_depth.max(m.v["outbox"]["depth"].as_u64().unwrap_or(0));
        let d = &m.v["dropped"];
        shed_total += d["total"].as_u64().unwrap_or(0);
        truncated |= d["ranges_truncated"].as_bool().unwrap_or(false);
        if let Some(by_class) = d["by_class"].as_object() {
            for (c, n) in by_class {
                *shed_classes.entry(c.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        for r in d["ranges"].as_array().into_iter().flatten() {
            if let (Some(a), Some(b)) = (r["first_seq"].as_u64(), r["last_seq"].as_u64()) {
                shed.push((a, b));
                shed_ranges.push((r["class"].as_str().unwrap_or("?").to_owned(), a, b));
            }
        }
    }
    let is_shed = |s: u64| shed.iter().any(|&(a, b)| a <= s && s <= b);
    let max_seq = by_seq.keys().next_back().copied().unwrap_or(0);
    let missing: Vec<u64> = (1..=max_seq).filter(|s| !by_seq.contains_key(s) && !is_shed(*s)).collect();
    for run in runs(&missing) {
        // When it should have arrived: the first message after the gap.
        let at = by_seq.range(run.1..).next().map(|(_, m)| m.t);
        v(at, format!("seq {}..={} missing and not reported as shed", run.0, run.1));
    }
    if truncated && !missing.is_empty() {
        v(None, "a health message truncated its dropped.ranges: the gaps above may be reported shed".into());
    }

    // --- incidents ---------------------------------------------------------------------------
    let mut incidents: BTreeMap<String, Vec<&Msg>> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for m in by_seq.values() {
        let ty = m.v["type"].as_str().unwrap_or("?").to_owned();
        *counts.entry(ty.clone()).or_default() += 1;
        if ty == "incident"
            && let Some(id) = m.v["incident_id"].as_str()
        {
            incidents.entry(id.to_owned()).or_default().push(m);
        }
    }
    let final_state: Value = serde_json::from_str(&read(status)).unwrap_or_else(|e| {
        eprintln!("soak_check verify: {status}: {e}");
        std::process::exit(2)
    });
    let open_at_end: BTreeSet<String> = final_state["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["incident_id"].as_str().map(str::to_owned))
        .collect();
    // What a reported shed may explain: a lost `opened`/`resolved` or pattern signal, when a
    // range of that class was shed strictly between seqs `lo` and `hi`.
    let shed_between =
        |class: &str, lo: u64, hi: u64| shed_ranges.iter().any(|(c, a, b)| c == class && *a < hi && *b > lo);
    let lifecycle_shed = shed_classes.get("incident_lifecycle").copied().unwrap_or(0) > 0;
    let seq_of = |m: &Msg| m.v["seq"].as_u64().unwrap_or(0);
    let mut excused = 0u64;
    let (mut opened, mut resolved) = (0u64, 0u64);
    let mut zone_of: HashMap<String, String> = HashMap::new();
    for (id, evs) in &incidents {
        zone_of.insert(id.clone(), evs[0].v["zone"].as_str().unwrap_or_default().to_owned());
        let kinds: Vec<&str> = evs.iter().map(|m| m.v["event"].as_str().unwrap_or("?")).collect();
        let n_open = kinds.iter().filter(|k| **k == "opened").count();
        let n_res = kinds.iter().filter(|k| **k == "resolved").count();
        opened += n_open.min(1) as u64;
        resolved += n_res.min(1) as u64;
        let at = Some(evs[0].t);
        if n_open > 1 {
            v(at, format!("incident {id} opened {n_open} times (events {kinds:?})"));
        }
        let (first_seq, last_seq) = (seq_of(evs[0]), seq_of(evs[evs.len() - 1]));
        if kinds[0] != "opened" && shed_between("incident_lifecycle", 0, first_seq) {
            excused += 1;
        } else if kinds[0] != "opened" {
            v(at, format!("incident {id}: first event is {} (events {kinds:?})", kinds[0]));
        }
        if n_res > 1 || (n_res == 1 && kinds.last() != Some(&"resolved")) {
            v(at, format!("incident {id}: events after or beside its resolution {kinds:?}"));
        }
        if evs.windows(2).any(|w| w[1].t < w[0].t) {
            v(at, format!("incident {id}: events arrived out of seq order"));
        }
        if n_res == 0 && !open_at_end.contains(id) && shed_between("incident_lifecycle", last_seq, u64::MAX) {
            excused += 1;
        } else if n_res == 0 && !open_at_end.contains(id) {
            v(at, format!("incident {id} opened, never resolved, and not open in the agent's final state"));
        }
        if n_res == 1 && open_at_end.contains(id) {
            v(at, format!("incident {id} resolved but still open in the agent's final state"));
        }
    }
    for id in &open_at_end {
        if !incidents.contains_key(id) && lifecycle_shed {
            excused += 1;
        } else if !incidents.contains_key(id) {
            v(None, format!("incident {id} is open in the agent's final state but never reached the NOC"));
        }
    }

    // --- patterns ----------------------------------------------------------------------------
    // pattern id -> (state, seq) of its last signal.
    let mut pattern_state: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for m in by_seq.values().filter(|m| m.v["type"] == "pattern") {
        let id = m.v["pattern_id"].as_str().unwrap_or("?").to_owned();
        let zones: BTreeSet<&str> = m.v["zones"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for inc in m.v["incident_ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            match zone_of.get(inc) {
                None if shed_between("incident_lifecycle", 0, seq_of(m)) => excused += 1,
                None => v(Some(m.t), format!("pattern {id} names incident {inc}, which never reached the NOC")),
                Some(z) if !zones.is_empty() && !zones.contains(z.as_str()) => {
                    v(Some(m.t), format!("pattern {id} names incident {inc} of zone {z}, not in its zones {zones:?}"))
                }
                _ => {}
            }
        }
        let state = m.v["state"].as_str().unwrap_or("?").to_owned();
        let (before, before_seq) = pattern_state.get(&id).map_or(("cleared", 0), |(s, q)| (s.as_str(), *q));
        let ok =
            matches!((before, state.as_str()), ("cleared", "active") | ("active" | "updated", "updated" | "cleared"));
        if !ok && shed_between("pattern", before_seq, seq_of(m)) {
            excused += 1;
        } else if !ok {
            v(Some(m.t), format!("pattern {id}: {state} after {before}"));
        }
        pattern_state.insert(id, (state, seq_of(m)));
    }

    // --- faults and recovery -------------------------------------------------------------------
    let faults: Vec<Fault> = read(faults)
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(4, ' ');
            Some(Fault {
                start: it.next()?.parse().ok()?,
                end: it.next()?.parse().ok()?,
                kind: it.next()?.to_owned(),
                detail: it.next().unwrap_or("").to_owned(),
            })
        })
        .collect();
    let mut by_kind: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    let mut longest: Option<(f64, &Fault)> = None;
    // Arrivals by time, to find the first message created after each fault's end.
    let mut arrivals: Vec<(f64, f64)> = by_seq.values().map(|m| (m.t, m.created())).collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    for f in &faults {
        let e = by_kind.entry(f.kind.as_str()).or_default();
        e.0 += 1;
        if let Some(&(t, _)) = arrivals.iter().find(|(t, c)| *t >= f.end && *c >= f.end) {
            let rec = t - f.end;
            e.1 = e.1.max(rec);
            if longest.is_none_or(|(l, _)| rec > l) {
                longest = Some((rec, f));
            }
        }
    }

    // --- summary --------------------------------------------------------------------------------
    println!(
        "soak_check: {received} messages received ({without_seq} without seq: status), {} distinct seqs 1..={max_seq}, {duplicates} duplicates",
        by_seq.len()
    );
    println!("  by type:      {}", counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "));
    println!(
        "  incidents:    {} seen, {opened} opened, {resolved} resolved, {} open at the end (agent state)",
        incidents.len(),
        open_at_end.len()
    );
    println!(
        "  patterns:     {} signals over {} pattern ids",
        counts.get("pattern").copied().unwrap_or(0),
        pattern_state.len()
    );
    println!(
        "  outbox:       max depth {max_depth} (health), shed {shed_total} ({}), {} left at the end",
        shed_classes.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        final_state["outbox"]["depth"]
    );
    if excused > 0 {
        println!("  excused:      {excused} lifecycle/pattern checks that a reported shed of those classes explains");
    }
    println!(
        "  faults:       {} ({})",
        faults.len(),
        by_kind.iter().map(|(k, (n, r))| format!("{k} {n}, max recovery {r:.1}s")).collect::<Vec<_>>().join("; ")
    );
    if let Some((r, f)) = longest {
        println!("  longest recovery: {r:.1}s after {} {} ending at {:.0}", f.kind, f.detail, f.end);
    }
    if violations.is_empty() {
        println!("  violations:   none");
        return ExitCode::SUCCESS;
    }
    println!("  violations:   {}", violations.len());
    for x in violations.iter().take(50) {
        println!("VIOLATION {}", x.what);
        if let Some(at) = x.at {
            println!("  at {at:.1}; faults around it:");
            for f in faults.iter().filter(|f| f.start - 30.0 <= at && at <= f.end + 120.0) {
                println!("    {:.1}..{:.1} {} {}", f.start, f.end, f.kind, f.detail);
            }
        }
    }
    ExitCode::FAILURE
}

/// Consecutive runs in a sorted list: [1,2,3,7] -> [(1,3),(7,7)].
fn runs(xs: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &x in xs {
        match out.last_mut() {
            Some(r) if r.1 + 1 == x => r.1 = x,
            _ => out.push((x, x)),
        }
    }
    out
}
