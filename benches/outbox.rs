//! Store-and-forward figures through a local mosquitto (run by `scripts/bench-outbox`):
//! (1) durable enqueue + publish + PUBACK throughput, (2) drain time of 100,000 messages
//! buffered during an outage, (3) event-to-PUBACK latency p50/p99. Prints what it measured
//! and how; asserts nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hallmonitor::config::{MqttSettings, StoreSettings};
use hallmonitor::engine::{
    Breach, Event, IncidentContext, IncidentEvent, IncidentEventKind, PatternEvent, PatternState, PatternTrigger,
};
use hallmonitor::model::{Category, DeviceId, Metric, PointId, RackId, Severity, SiteId, Timestamp, ZoneId};
use hallmonitor::outbox::Outbound;
use hallmonitor::publish::message::outbound_for;
use hallmonitor::publish::{Publisher, PublisherOptions};
use hallmonitor::store::Store;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

struct Broker {
    conf: std::path::PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn new(dir: &Path) -> Broker {
        if !Path::new(MOSQUITTO).exists() {
            eprintln!("{MOSQUITTO} not found: install the Debian package `mosquitto`");
            std::process::exit(1);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
        )
        .unwrap();
        Broker { conf, port, child: None }
    }
    fn start(&mut self) {
        let c = Command::new(MOSQUITTO).arg("-c").arg(&self.conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        self.child = Some(c.expect("start mosquitto"));
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mqtt(port: u16, window: u16) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        tls: false,
        client_id: format!("bench-{port}"),
        topic_prefix: "hallmonitor/v1".into(),
        username: None,
        password: None,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
        keep_alive: Duration::from_secs(30),
        max_inflight: window,
        reconnect_max: Duration::from_secs(1),
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp(1_762_092_300_000 + ms)
}

/// A realistic incident `opened` message (two breaches, peak, context): about 1 KiB.
fn incident(i: u64) -> Outbound {
    let b = |d: &str, r: &str| Breach {
        device: DeviceId::new(d),
        point: PointId::new("sensor_temp"),
        label: None,
        metric: Metric::new("inlet_temp_c"),
        value: Some(28.4),
        unit: "°C".into(),
        threshold: Some(27.0),
        severity: Severity::Warning,
        rack: Some(RackId::new(r)),
        since: t(0),
        cleared_at: None,
        rule: "high".into(),
        peak: Some(28.4),
        clears_at: None,
    };
    let ev = Event::Incident(IncidentEvent {
        event: IncidentEventKind::Opened,
        incident_id: format!("fra1-hall1-b-thermal-{i}"),
        zone: ZoneId::new("hall1-b"),
        category: Category::Thermal,
        severity: Severity::Warning,
        opened_at: t(0),
        resolved_at: None,
        racks: vec![RackId::new("B07"), RackId::new("B08")],
        breaches: vec![b("sensor-b07", "B07"), b("sensor-b08", "B08")],
        peak: Default::default(),
        context: IncidentContext {
            hint: Some("B07 draws 38 % more than its 7-day median".into()),
            ..Default::default()
        },
        changes: Vec::new(),
        chronicle: None,
    });
    outbound_for("hallmonitor/v1", &SiteId::new("fra1"), &ev)
}

fn pattern() -> Outbound {
    let ev = Event::Pattern(PatternEvent {
        state: PatternState::Active,
        pattern_id: "fra1-hall1-b-thermal".into(),
        zone: ZoneId::new("hall1-b"),
        zones: vec![ZoneId::new("hall1-b")],
        category: Category::Thermal,
        trigger: PatternTrigger::Recurrence,
        occurrences: 3,
        window: "30d".into(),
        incident_ids: vec![],
        first_seen: t(0),
        last_seen: t(0),
        racks: vec![],
        time_of_day: None,
        summary: "s".into(),
    });
    outbound_for("hallmonitor/v1", &SiteId::new("fra1"), &ev)
}

fn open_store(dir: &Path) -> Store {
    Store::open(&StoreSettings { path: dir.to_owned(), max_bytes: 1 << 30 }, &SiteId::new("fra1")).unwrap()
}

async fn wait_acked(p: &Publisher, n: u64) {
    let mut st = p.status();
    let _ = st.wait_for(|s| s.acked_total >= n).await;
}

async fn throughput(dir: &Path, n: u64, batch: u64, window: u16) {
    let mut broker = Broker::new(dir);
    broker.start();
    let store = open_store(&dir.join("store"));
    let p =
        Publisher::start_with(PublisherOptions::new(&mqtt(broker.port, window), &SiteId::new("fra1")), store.clone())
            .unwrap();
    let mut st = p.status();
    let _ = st.wait_for(|s| s.connected).await;
    let msgs: Vec<Outbound> = (0..batch).map(incident).collect();
    let bytes = serde_json::to_vec(&msgs[0].payload).unwrap().len();
    let start = Instant::now();
    let mut committed = 0;
    let mut flushes = 0;
    while committed < n {
        // Keep the backlog bounded like a live agent would see it (engine output is bursty
        // but not unbounded): at most a few batches ahead of the acks.
        let _ = st.wait_for(|s| committed - s.acked_total <= 4 * batch).await;
        store.commit(&msgs, None, Timestamp::now()).await.unwrap();
        flushes += 1;
        committed += batch;
        p.poke();
    }
    wait_acked(&p, committed).await;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "(1) durable enqueue+publish+PUBACK: {committed} incident messages (~{bytes} B payload), commit batches of {batch} \
         ({flushes} flushes), in-flight window {window}: {:.2} s, {:.0} msgs/s",
        secs,
        committed as f64 / secs
    );
    p.shutdown(Duration::from_secs(2)).await;
    broker.stop();
}

async fn drain(dir: &Path, n: u64) {
    let mut broker = Broker::new(dir);
    let store = open_store(&dir.join("store"));
    let window = 100;
    let p =
        Publisher::start_with(PublisherOptions::new(&mqtt(broker.port, window), &SiteId::new("fra1")), store.clone())
            .unwrap();
    let fill = Instant::now();
    let msgs: Vec<Outbound> = (0..1000).map(incident).collect();
    for _ in 0..(n / 1000) {
        store.commit(&msgs, None, Timestamp::now()).await.unwrap();
    }
    let filled = fill.elapsed().as_secs_f64();
    let st0 = store.stats().unwrap();
    broker.start();
    let back = Instant::now();
    p.poke();
    let mut st = p.status();
    let _ = st.wait_for(|s| s.connected).await;
    let connected = back.elapsed().as_secs_f64();
    wait_acked(&p, n).await;
    let total = back.elapsed().as_secs_f64();
    println!(
        "(2) outage drain: {n} messages ({:.1} MiB in the outbox, buffered in {filled:.2} s) drained in {total:.2} s after \
         the broker came back ({connected:.2} s of it waiting for the reconnect backoff, reconnect_max 1 s), window {window}; \
         depth now {}",
        st0.bytes as f64 / 1048576.0,
        store.stats().unwrap().depth
    );
    p.shutdown(Duration::from_secs(2)).await;
    broker.stop();
}

async fn latency(dir: &Path, n: usize) {
    let mut broker = Broker::new(dir);
    broker.start();
    let store = open_store(&dir.join("store"));
    let p = Publisher::start_with(PublisherOptions::new(&mqtt(broker.port, 100), &SiteId::new("fra1")), store.clone())
        .unwrap();
    let mut st = p.status();
    let _ = st.wait_for(|s| s.connected).await;
    let msg = [pattern()];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let seq = store.commit(&msg, Some(b"engine state"), Timestamp::now()).await.unwrap()[0];
        p.poke();
        let _ = st.wait_for(|s| s.last_acked_seq.is_some_and(|a| a >= seq)).await;
        lat.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "(3) event-to-PUBACK latency (commit with engine state + flush, publish, PUBACK), {n} single events: \
         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    p.shutdown(Duration::from_secs(2)).await;
    broker.stop();
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let base = std::env::var("BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let tmp = tempfile::tempdir_in(base).unwrap();
    println!("hallmonitor outbox benchmark: sled store in {} , mosquitto on loopback", tmp.path().display());
    rt.block_on(async {
        for (i, (batch, window)) in [(500u64, 100u16), (1000, 1000)].into_iter().enumerate() {
            let d = tmp.path().join(format!("t{i}"));
            std::fs::create_dir_all(&d).unwrap();
            throughput(&d, 200_000, batch, window).await;
        }
        let d = tmp.path().join("drain");
        std::fs::create_dir_all(&d).unwrap();
        drain(&d, 100_000).await;
        let d = tmp.path().join("lat");
        std::fs::create_dir_all(&d).unwrap();
        latency(&d, 2000).await;
    });
}
