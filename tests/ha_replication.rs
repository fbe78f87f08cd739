//! The gateway pair's replication data path, without a network (issue 15, docs/ha-design.md):
//! two stores in temporary directories, the active's records carried as bytes to the standby
//! through `ha::replica`'s rules. What a user would check after a takeover: the standby's
//! outbox, next seq, msg_ids, engine state and drop report are the active's.

mod support;

use std::path::Path;
use std::time::Duration;

use hallmonitor::config::StoreSettings;
use hallmonitor::engine::{Engine, EngineState, IncidentEventKind};
use hallmonitor::ha::lease::Generation;
use hallmonitor::ha::replica::{Entry, Follower, Leader, LeaderParams, Record, Refusal, Reply, Verdict};
use hallmonitor::model::{SiteId, Timestamp};
use hallmonitor::outbox::{MessageClass, Outbound};
use hallmonitor::publish::message::outbound_for;
use hallmonitor::store::{
    DropReason, RecordKind, ReplicaPosition, ReplicationError, ReplicationRecord, Store, StoreError,
};
use proptest::prelude::*;
use support::engine::{Driver, MIN, T0, device, settings, temp};

const PREFIX: &str = "hallmonitor/v1";

fn site() -> SiteId {
    SiteId::new("fra1")
}

fn open(dir: &Path, max_bytes: u64) -> Store {
    Store::open(&StoreSettings { path: dir.to_path_buf(), max_bytes }, &site()).expect("open the store")
}

fn message(class: MessageClass, n: u64) -> Outbound {
    Outbound {
        topic: format!("{PREFIX}/fra1/t/{n}"),
        qos: if class == MessageClass::Health { 0 } else { 1 },
        retain: false,
        class,
        payload: serde_json::json!({"type": "x", "n": n, "pad": "p".repeat(200)}),
    }
}

fn generation(p: ReplicaPosition) -> Generation {
    Generation { term: p.term, index: p.index }
}

/// The active's records, through the wire encoding.
async fn take(a: &Store) -> Vec<ReplicationRecord> {
    let records = a.take_replication().await.expect("take the records");
    records.iter().map(|r| ReplicationRecord::decode(&r.encode()).expect("decodes")).collect()
}

/// Everything a user sees of a store, to compare two.
#[derive(Debug, PartialEq)]
struct Seen {
    epoch: String,
    msg_id_7: String,
    outbox: Vec<hallmonitor::outbox::StoredMessage>,
    depth: u64,
    bytes: u64,
    last_seq: u64,
    durable_seq: u64,
    engine_state: Option<Vec<u8>>,
    drops: hallmonitor::store::DropReport,
    position: ReplicaPosition,
}

fn seen(s: &Store) -> Seen {
    let stats = s.stats().unwrap();
    Seen {
        epoch: s.epoch(),
        msg_id_7: s.msg_id(7),
        outbox: s.peek_from(None, 100_000).unwrap(),
        depth: stats.depth,
        bytes: stats.bytes,
        last_seq: stats.last_seq,
        durable_seq: s.durable_seq(),
        engine_state: s.load_engine_state().unwrap(),
        drops: s.pending_drop_report(),
        position: s.replica_position().unwrap(),
    }
}

/// A fresh standby is another store: its first record is refused, a snapshot brings it in.
async fn join(a: &Store, b: &Store) {
    let snap = ReplicationRecord::decode(&a.snapshot().await.unwrap().encode()).unwrap();
    assert_eq!(snap.kind(), RecordKind::Snapshot);
    b.apply_replicated(&snap).await.expect("the snapshot applies");
}

fn hot_zone_config() -> String {
    let mut c = String::from(
        "[site]\nid = \"fra1\"\n\n[correlation]\nclear_hold = \"5m\"\nupdate_min_interval = \"60s\"\n\n[[zones]]\nid = \"hall1-b\"\nracks = [\"B01\"]\n\n",
    );
    c.push_str(&device("th-01", "test-probe", "hall1-b", Some("B01"), ""));
    c
}

#[tokio::test]
async fn the_standby_holds_what_the_active_committed_and_continues_the_incident_after_a_takeover() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    assert_ne!(a.epoch(), b.epoch());
    a.replicate_as(1).unwrap();

    // The standby's first record from another store is refused until it takes a snapshot.
    a.commit(&[message(MessageClass::Rollup, 0)], None, Timestamp(T0)).await.unwrap();
    let first = take(&a).await;
    assert_eq!(first.len(), 1);
    let err = b.apply_replicated(&first[0]).await.unwrap_err();
    assert!(matches!(err, ReplicationError::OtherEpoch { .. }), "{err}");
    assert!(err.to_string().contains("needs a snapshot"), "{err}");
    join(&a, &b).await;
    assert_eq!(seen(&b), seen(&a));

    // The engine opens an incident on the active; each poll's events are committed with the state.
    let mut d = Driver::new(settings(&hot_zone_config()));
    let mut t = T0;
    for step in 0..40 {
        let v = if (5..30).contains(&step) { 29.0 } else { 23.0 };
        d.feed(t, &[temp(t, "th-01", "hall1-b", Some("B01"), v)]);
        let mut msgs: Vec<Outbound> = d.events.drain(..).map(|(_, e)| outbound_for(PREFIX, &site(), &e)).collect();
        msgs.push(message(MessageClass::Rollup, step));
        let state = serde_json::to_vec(&d.engine.export_state()).unwrap();
        a.commit(&msgs, Some(&state), Timestamp(t)).await.unwrap();
        for r in take(&a).await {
            b.apply_replicated(&r).await.expect("in step");
        }
        if step == 20 {
            break; // the incident is open; the active dies here
        }
        t += MIN;
    }
    assert_eq!(d.engine.open_incidents().len(), 1);
    // The publisher acknowledged the first two messages; acks ride with the next record.
    assert!(a.ack(1).unwrap() && a.ack(2).unwrap());
    a.seal_removals().unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    let before = seen(&a);
    assert_eq!(seen(&b), before);
    assert_eq!(before.outbox.first().map(|m| m.seq), Some(3));
    let opened = &before.outbox.iter().find(|m| m.class == MessageClass::IncidentLifecycle).unwrap().payload;
    let opened: serde_json::Value = serde_json::from_slice(opened).unwrap();
    let incident_id = opened["incident_id"].clone();

    // Takeover: the standby is reopened as the active (a crash between is allowed).
    drop(a);
    drop(b);
    let b = open(db.path(), 1 << 20);
    assert_eq!(seen(&b), before, "the standby keeps everything across a restart");
    let mut engine = Engine::new(settings(&hot_zone_config()));
    let state: EngineState = serde_json::from_slice(&b.load_engine_state().unwrap().unwrap()).unwrap();
    engine.import_state(state);
    assert_eq!(engine.open_incidents().len(), 1);
    assert_eq!(serde_json::to_value(&engine.open_incidents()[0].incident_id).unwrap(), incident_id);

    // It continues the stream: no gap, no reused seq, the active's epoch in the msg_id.
    assert_eq!(b.replicate_as(2).unwrap(), before.position);
    let mut d = Driver { engine, events: Vec::new(), now: Timestamp(t) };
    for _ in 0..15 {
        t += MIN;
        d.feed(t, &[temp(t, "th-01", "hall1-b", Some("B01"), 23.0)]);
    }
    d.advance_to(t + 10 * MIN);
    let kinds: Vec<IncidentEventKind> = d.incidents().iter().map(|i| i.event).collect();
    assert!(kinds.contains(&IncidentEventKind::Resolved) && !kinds.contains(&IncidentEventKind::Opened), "{kinds:?}");
    let msgs: Vec<Outbound> = d.events.drain(..).map(|(_, e)| outbound_for(PREFIX, &site(), &e)).collect();
    let seqs = b.commit(&msgs, None, Timestamp(t)).await.unwrap();
    assert_eq!(seqs.first(), Some(&(before.last_seq + 1)));
    let resolved = b.peek_from(Some(before.last_seq), 10).unwrap();
    let resolved: serde_json::Value = serde_json::from_slice(&resolved[0].payload).unwrap();
    assert_eq!(resolved["msg_id"], format!("{}-{}", before.epoch, before.last_seq + 1));
    assert_eq!(resolved["incident_id"], incident_id);
    let record = take(&b).await.remove(0);
    assert_eq!(
        (record.prev(), record.position()),
        (before.position, ReplicaPosition { term: 2, index: before.position.index + 1 })
    );

    // The old active returns as the standby: the new active's record applies on its store.
    let a = open(da.path(), 1 << 20);
    a.apply_replicated(&record).await.expect("the old active follows the new one");
    assert_eq!(seen(&a), seen(&b));
}

#[tokio::test]
async fn acks_discards_and_the_drop_report_reach_the_standby() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Room for about ten messages: the rest sheds health messages, which the drop report says.
    let a = open(da.path(), 4000);
    let b = open(db.path(), 4000);
    a.replicate_as(1).unwrap();
    join(&a, &b).await;
    for n in 0..8 {
        let batch = [message(MessageClass::Health, n), message(MessageClass::IncidentLifecycle, n)];
        a.commit(&batch, Some(format!("state {n}").as_bytes()), Timestamp(T0 + n as i64)).await.unwrap();
    }
    assert!(!a.pending_drop_report().is_empty(), "the bound shed messages");
    assert!(a.ack(2).unwrap());
    assert!(a.discard(4, DropReason::Invalid).unwrap());
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    // The ack and the discard have not ridden yet: no commit since.
    assert_ne!(seen(&b).outbox, seen(&a).outbox);
    a.seal_removals().unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    assert_eq!(seen(&b), seen(&a));
    // The drop report taken for a health message leaves both.
    let report = a.take_drop_report().unwrap();
    assert!(!report.is_empty());
    a.commit(&[message(MessageClass::Health, 99)], None, Timestamp(T0 + 100)).await.unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    assert!(b.pending_drop_report().is_empty());
    assert_eq!(seen(&b), seen(&a));
}

#[tokio::test]
async fn a_standby_that_missed_records_catches_up_from_a_snapshot() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    a.replicate_as(1).unwrap();
    join(&a, &b).await;
    a.commit(&[message(MessageClass::Pattern, 1)], Some(b"one"), Timestamp(T0)).await.unwrap();
    let lost = take(&a).await;
    a.commit(&[message(MessageClass::Pattern, 2)], Some(b"two"), Timestamp(T0)).await.unwrap();
    let next = take(&a).await.remove(0);
    let before = seen(&b);
    let err = b.apply_replicated(&next).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Gap { .. }), "{err}");
    assert_eq!(seen(&b), before, "a refused record changes nothing");
    // A snapshot replaces everything, and the stream goes on from it.
    join(&a, &b).await;
    assert_eq!(seen(&b), seen(&a));
    // The lost record, delivered late, is refused rather than applied twice.
    assert!(b.apply_replicated(&lost[0]).await.is_err());
    a.commit(&[message(MessageClass::Pattern, 3)], Some(b"three"), Timestamp(T0)).await.unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    assert_eq!(seen(&b), seen(&a));
}

#[tokio::test]
async fn a_snapshot_removes_what_the_active_no_longer_holds() {
    // A node that was ahead (it committed as a deposed active) gets the new active's snapshot:
    // its own commits are gone and its seq goes back to the stream's.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    a.replicate_as(1).unwrap();
    join(&a, &b).await;
    let big = vec![b'x'; 40_000];
    b.commit(&[message(MessageClass::Rollup, 1), message(MessageClass::Rollup, 2)], Some(&big), Timestamp(T0))
        .await
        .unwrap();
    a.commit(&[message(MessageClass::Pattern, 1)], Some(b"small"), Timestamp(T0)).await.unwrap();
    join(&a, &b).await;
    assert_eq!(seen(&b), seen(&a));
    assert_eq!(b.load_engine_state().unwrap().as_deref(), Some(&b"small"[..]));
}

#[tokio::test]
async fn a_deposed_actives_entries_are_refused_by_the_standby() {
    // gw1 was active in term 1; gw3 (any node with gw1's content) took over in term 2. The
    // standby follows gw3; gw1's late term-1 entries are refused and change nothing.
    let (d1, d2, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let gw1 = open(d1.path(), 1 << 20);
    let standby = open(d2.path(), 1 << 20);
    let gw3 = open(d3.path(), 1 << 20);
    gw1.replicate_as(1).unwrap();
    let snap = gw1.snapshot().await.unwrap();
    standby.apply_replicated(&snap).await.unwrap();
    gw3.apply_replicated(&snap).await.unwrap();
    let mut follower = Follower::new(generation(standby.replica_position().unwrap()));
    let entry = |term: u64, r: &ReplicationRecord| Entry {
        term,
        generation: generation(r.position()),
        prev: generation(r.prev()),
        snapshot: r.kind() == RecordKind::Snapshot,
        upto_seq: r.upto_seq(),
        bytes: r.encode(),
    };

    gw3.replicate_as(2).unwrap();
    gw3.commit(&[message(MessageClass::Pattern, 3)], None, Timestamp(T0)).await.unwrap();
    let from_gw3 = entry(2, &gw3.take_replication().await.unwrap()[0]);
    assert_eq!(follower.check(&from_gw3), Ok(Verdict::Apply));
    standby.apply_replicated(&ReplicationRecord::decode(&from_gw3.bytes).unwrap()).await.unwrap();
    follower.applied(&from_gw3);

    gw1.commit(&[message(MessageClass::Pattern, 1)], None, Timestamp(T0)).await.unwrap();
    let from_gw1 = entry(1, &gw1.take_replication().await.unwrap()[0]);
    let before = seen(&standby);
    assert_eq!(follower.check(&from_gw1), Err(Refusal::StaleTerm { term: 1, newest: 2 }));
    assert_eq!(seen(&standby), before);
    assert_eq!(seen(&standby), seen(&gw3));
}

#[tokio::test]
async fn a_store_that_replicates_as_the_active_refuses_to_apply_records() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    a.replicate_as(1).unwrap();
    b.replicate_as(1).unwrap();
    let err = b.apply_replicated(&a.snapshot().await.unwrap()).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Active { .. }), "{err}");
    b.stop_replicating();
    b.apply_replicated(&a.snapshot().await.unwrap()).await.unwrap();
}

#[tokio::test]
async fn the_publisher_may_send_only_what_the_standby_acknowledged() {
    // The leader between the two stores: what `publishable_upto` lets through is in the
    // standby's outbox, always.
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    let position = a.replicate_as(1).unwrap();
    let params = LeaderParams { degrade_after: Duration::from_secs(3), max_unacked_bytes: 1 << 20 };
    let now = Duration::ZERO;
    let mut leader = Leader::new(now, params, 1, a.epoch(), generation(position), a.stats().unwrap().last_seq);
    let mut follower = Follower::new(generation(b.replica_position().unwrap()));
    // The standby greets with its position; it is another store, so it gets a snapshot.
    leader.on_reply(now, Reply::Behind { position: follower.position(), stream: b.epoch() });
    assert!(leader.needs_snapshot());
    let snap = a.snapshot().await.unwrap();
    let record = Record {
        generation: generation(snap.position()),
        prev: generation(snap.prev()),
        upto_seq: snap.upto_seq(),
        bytes: snap.encode(),
    };
    let mut wire: Vec<Entry> = leader.push_snapshot(now, record).into_iter().cloned().collect();
    for n in 0..5u64 {
        a.commit(&[message(MessageClass::Pattern, n)], None, Timestamp(T0)).await.unwrap();
        for r in a.take_replication().await.unwrap() {
            let record = Record {
                generation: generation(r.position()),
                prev: generation(r.prev()),
                upto_seq: r.upto_seq(),
                bytes: r.encode(),
            };
            wire.extend(leader.push(now, record).unwrap().cloned());
        }
        assert!(leader.publishable_upto() < n + 1, "nothing of commit {n} before the standby has it");
        // Deliver what is on the wire; the standby acknowledges each.
        for e in wire.drain(..) {
            assert_eq!(follower.check(&e), Ok(Verdict::Apply));
            b.apply_replicated(&ReplicationRecord::decode(&e.bytes).unwrap()).await.unwrap();
            follower.applied(&e);
            leader.on_reply(now, Reply::Applied(follower.position()));
        }
        assert_eq!(leader.publishable_upto(), n + 1);
        let on_standby: Vec<u64> = b.peek_from(None, 100).unwrap().iter().map(|m| m.seq).collect();
        assert!(on_standby.contains(&leader.publishable_upto()));
    }
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    Commit {
        messages: u8,
        class: u8,
        with_state: bool,
    },
    Ack(u8),
    Discard(u8),
    TakeDrops,
    Seal,
    /// The records made so far are lost on the way.
    Lose,
    Deliver,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..4, 0u8..5, any::<bool>())
            .prop_map(|(messages, class, with_state)| Step::Commit { messages, class, with_state }),
        2 => any::<u8>().prop_map(Step::Ack),
        1 => any::<u8>().prop_map(Step::Discard),
        1 => Just(Step::TakeDrops),
        1 => Just(Step::Seal),
        1 => Just(Step::Lose),
        3 => Just(Step::Deliver),
    ]
}

const CLASSES: [MessageClass; 5] = [
    MessageClass::Health,
    MessageClass::Rollup,
    MessageClass::IncidentUpdate,
    MessageClass::IncidentLifecycle,
    MessageClass::Pattern,
];

/// Delivers the records; on a refusal (a lost record before them) the standby takes a snapshot.
async fn deliver(a: &Store, b: &Store, records: Vec<ReplicationRecord>) -> Result<(), StoreError> {
    for r in records {
        match b.apply_replicated(&ReplicationRecord::decode(&r.encode()).unwrap()).await {
            Ok(()) => {}
            Err(ReplicationError::Gap { .. } | ReplicationError::OtherEpoch { .. }) => {
                b.apply_replicated(&a.snapshot().await?).await.expect("a snapshot always applies");
                return Ok(());
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the interleaving of commits, acks, discards and lost records, a standby that
    /// takes a snapshot when it is out of step ends up equal to the active.
    #[test]
    fn the_standby_converges_to_the_active(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let a = open(da.path(), 6000);
            let b = open(db.path(), 6000);
            a.replicate_as(1).unwrap();
            let mut n = 0u64;
            for s in steps {
                match s {
                    Step::Commit { messages, class, with_state } => {
                        let msgs: Vec<Outbound> = (0..messages)
                            .map(|i| message(CLASSES[(class as usize + i as usize) % CLASSES.len()], n + i as u64))
                            .collect();
                        n += messages as u64;
                        let state = format!("state after {n}");
                        a.commit(&msgs, with_state.then_some(state.as_bytes()), Timestamp(T0)).await.unwrap();
                    }
                    Step::Ack(i) => {
                        let waiting = a.peek_from(None, 1000).unwrap();
                        if !waiting.is_empty() {
                            a.ack(waiting[i as usize % waiting.len()].seq).unwrap();
                        }
                    }
                    Step::Discard(i) => {
                        let waiting = a.peek_from(None, 1000).unwrap();
                        if !waiting.is_empty() {
                            a.discard(waiting[i as usize % waiting.len()].seq, DropReason::Invalid).unwrap();
                        }
                    }
                    Step::TakeDrops => {
                        a.take_drop_report().unwrap();
                    }
                    Step::Seal => a.seal_removals().unwrap(),
                    Step::Lose => drop(a.take_replication().await.unwrap()),
                    Step::Deliver => deliver(&a, &b, a.take_replication().await.unwrap()).await.unwrap(),
                }
            }
            a.seal_removals().unwrap();
            deliver(&a, &b, a.take_replication().await.unwrap()).await.unwrap();
            // A standby whose last records were lost (or that never had one) says where it is
            // and of which store, and gets a snapshot.
            if (b.replica_position().unwrap(), b.epoch()) != (a.replica_position().unwrap(), a.epoch()) {
                b.apply_replicated(&a.snapshot().await.unwrap()).await.unwrap();
            }
            assert_eq!(seen(&b), seen(&a));
        });
    }
}

/// One event of the protocol property test.
#[derive(Debug, Clone)]
enum Event {
    Commit,
    ToStandby,
    ToLeader,
    /// The link drops what is in flight; the standby greets again on reconnecting.
    Reconnect,
    /// The standby restarts (its store keeps what it applied) and reconnects.
    RestartStandby,
    /// The snapshot the leader asked for is read and flushed (commits may come in between).
    SnapshotReady,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Commit),
        4 => Just(Event::ToStandby),
        4 => Just(Event::ToLeader),
        1 => Just(Event::Reconnect),
        1 => Just(Event::RestartStandby),
        2 => Just(Event::SnapshotReady),
    ]
}

/// The standby of the protocol test: a store reduced to its position and epoch (records chain,
/// so a position names the content), applying exactly what the real store would.
struct Standby {
    follower: Follower,
    position: Generation,
    stream: String,
}

impl Standby {
    fn on_entry(&mut self, e: &Entry) -> Reply {
        let e = &Entry::decode(&e.encode()).expect("an entry decodes");
        match self.follower.check(e) {
            Ok(Verdict::Apply) if e.snapshot || (e.prev == self.position && self.stream == "E") => {
                self.position = e.generation;
                self.stream = "E".into();
                self.follower.applied(e);
                Reply::Applied(self.position)
            }
            Ok(Verdict::Apply) => {
                self.follower.lost_step();
                Reply::Behind { position: self.position, stream: self.stream.clone() }
            }
            Ok(Verdict::Duplicate) => Reply::Applied(self.position),
            Err(Refusal::OutOfStep { .. }) => Reply::Behind { position: self.position, stream: self.stream.clone() },
            Err(Refusal::StaleTerm { newest, .. }) => Reply::Fenced { newest_term: newest },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Over a link that drops what is in flight and a standby that restarts, the publisher's
    /// limit never passes what the standby holds, and once the link is calm the standby holds
    /// everything and all of it is publishable.
    #[test]
    fn the_leader_never_lets_publish_what_the_standby_lacks(events in proptest::collection::vec(event(), 1..80)) {
        let params = LeaderParams { degrade_after: Duration::from_secs(3600), max_unacked_bytes: 4 };
        let now = Duration::ZERO;
        let g = |i: u64| Generation { term: 1, index: i };
        let mut active = 0u64; // its position's index; record i covers seq i
        let mut leader = Leader::new(now, params, 1, "E".into(), g(0), 0);
        let mut standby = Standby { follower: Follower::new(Generation::default()), position: Generation::default(), stream: "F".into() };
        let mut to_standby: std::collections::VecDeque<Entry> = Default::default();
        let mut to_leader: std::collections::VecDeque<Reply> = Default::default();
        to_leader.push_back(Reply::Behind { position: standby.position, stream: standby.stream.clone() });
        let holds = |s: &Standby| if s.stream == "E" { s.position.index } else { 0 };
        // The position of the snapshot being made, if one is.
        let mut snapshot: Option<u64> = None;
        let mut step = |e: &Event, leader: &mut Leader, standby: &mut Standby, active: &mut u64,
                        to_standby: &mut std::collections::VecDeque<Entry>, to_leader: &mut std::collections::VecDeque<Reply>| {
            match e {
                Event::Commit => {
                    *active += 1;
                    let r = Record { generation: g(*active), prev: g(*active - 1), upto_seq: *active, bytes: vec![0; 1] };
                    if let Some(e) = leader.push(now, r).expect("records chain") {
                        to_standby.push_back(e.clone());
                    }
                }
                Event::ToStandby => {
                    if let Some(e) = to_standby.pop_front() {
                        to_leader.push_back(standby.on_entry(&e));
                    }
                }
                Event::ToLeader => {
                    if let Some(r) = to_leader.pop_front() {
                        let r = Reply::decode(&r.encode()).expect("a reply decodes");
                        for e in leader.on_reply(now, r) {
                            to_standby.push_back(e.clone());
                        }
                    }
                }
                Event::Reconnect | Event::RestartStandby => {
                    if matches!(e, Event::RestartStandby) {
                        standby.follower = Follower::new(standby.position);
                    }
                    to_standby.clear();
                    to_leader.clear();
                    to_leader.push_back(Reply::Behind { position: standby.position, stream: standby.stream.clone() });
                }
                Event::SnapshotReady => {
                    if let Some(p) = snapshot.take() {
                        let r = Record { generation: g(p), prev: g(p), upto_seq: p, bytes: vec![0; 1] };
                        to_standby.extend(leader.push_snapshot(now, r).into_iter().cloned());
                    }
                }
            }
            if leader.needs_snapshot() && snapshot.is_none() {
                snapshot = Some(*active);
            }
        };
        for e in &events {
            step(e, &mut leader, &mut standby, &mut active, &mut to_standby, &mut to_leader);
            prop_assert!(leader.publishable_upto() <= holds(&standby),
                "after {e:?}: publishable {} but the standby holds {}", leader.publishable_upto(), holds(&standby));
        }
        // A calm link: everything arrives.
        for _ in 0..(4 * events.len() + 8) {
            step(&Event::ToStandby, &mut leader, &mut standby, &mut active, &mut to_standby, &mut to_leader);
            step(&Event::ToLeader, &mut leader, &mut standby, &mut active, &mut to_standby, &mut to_leader);
            step(&Event::SnapshotReady, &mut leader, &mut standby, &mut active, &mut to_standby, &mut to_leader);
            prop_assert!(leader.publishable_upto() <= holds(&standby));
        }
        prop_assert_eq!(holds(&standby), active);
        prop_assert_eq!(leader.publishable_upto(), active);
        prop_assert_eq!(leader.sync_state(now), hallmonitor::ha::replica::SyncState::InSync);
    }
}

/// Incident messages with long chronicles are stored in pieces (`store::record::split`); the
/// pieces travel with their message, an ack removes them on both nodes, and both count the
/// same bytes, live, after a snapshot and after a reopen.
#[tokio::test]
async fn messages_stored_in_pieces_replicate_and_their_acks_remove_every_piece() {
    let (da, db, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(da.path(), 1 << 20);
    let b = open(db.path(), 1 << 20);
    a.replicate_as(1).unwrap();
    join(&a, &b).await;
    let long = |n: u64| Outbound {
        payload: serde_json::json!({"type": "x", "n": n, "chronicle": "c".repeat(20_000 + n as usize)}),
        ..message(MessageClass::IncidentUpdate, n)
    };
    let batch = [long(1), message(MessageClass::Pattern, 2), long(3)];
    a.commit(&batch, Some(b"state"), Timestamp(T0)).await.unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    assert!(seen(&a).bytes > 40_000, "the long messages count whole");
    assert_eq!(seen(&b), seen(&a));
    assert!(a.ack(1).unwrap());
    a.seal_removals().unwrap();
    for r in take(&a).await {
        b.apply_replicated(&r).await.unwrap();
    }
    assert_eq!(seen(&b), seen(&a));
    assert_eq!(seen(&b).outbox.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3]);
    let c = open(dc.path(), 1 << 20);
    join(&a, &c).await;
    assert_eq!(seen(&c), seen(&a));
    drop(b);
    let b = open(db.path(), 1 << 20);
    assert_eq!(seen(&b), seen(&a), "a reopened standby counts the pieces as the active does");
}
