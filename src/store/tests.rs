//! Tests of the store: the outbox against an in-memory model (proptest), reopen, refusals,
//! shedding. Compiled only under `#[cfg(test)]` (see the `mod tests` line in mod.rs).

use std::collections::VecDeque;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn settings(dir: &Path, max_bytes: u64) -> StoreSettings {
    StoreSettings { path: dir.to_path_buf(), max_bytes }
}

fn site() -> SiteId {
    SiteId::new("fra1")
}

fn msg(class: MessageClass, fill: usize) -> Outbound {
    let qos = if class == MessageClass::Health { 0 } else { 1 };
    Outbound {
        topic: "hallmonitor/v1/fra1/t".into(),
        qos,
        retain: false,
        class,
        payload: json!({"type": "x", "fill": "f".repeat(fill)}),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// What one ~1 KiB message (`msg(_, 1000)`) takes in an outbox, to size full outboxes with.
fn one_message_bytes(rt: &tokio::runtime::Runtime) -> u64 {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(&settings(d.path(), 1 << 20), &site()).unwrap();
    rt.block_on(s.commit(&[msg(MessageClass::Health, 1000)], None, Timestamp(0))).unwrap();
    s.stats().unwrap().bytes
}

#[test]
fn committed_messages_carry_envelope_and_survive_reopen_with_engine_state() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let epoch;
    {
        let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
        epoch = store.epoch().to_owned();
        let seqs = rt
            .block_on(store.commit(
                &[msg(MessageClass::Pattern, 1), msg(MessageClass::Rollup, 1)],
                Some(b"S1"),
                Timestamp(5000),
            ))
            .unwrap();
        assert_eq!(seqs, vec![1, 2]);
        let got = store.peek_from(None, 10).unwrap();
        assert_eq!(got.len(), 2);
        let v: Value = serde_json::from_slice(&got[0].payload).unwrap();
        assert_eq!(v["schema"], "hallmonitor/v1");
        assert_eq!(v["site"], "fra1");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["msg_id"], format!("{epoch}-1"));
        assert_eq!(v["created_at"], "1970-01-01T00:00:05Z");
        assert_eq!(v["type"], "x");
        assert!(store.ack(1).unwrap());
        assert!(!store.ack(1).unwrap(), "a second ack finds nothing");
    }
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.load_engine_state().unwrap().as_deref(), Some(&b"S1"[..]));
    let left = store.peek_from(None, 10).unwrap();
    assert_eq!(left.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
    let seqs = rt.block_on(store.commit(&[msg(MessageClass::Pattern, 1)], None, Timestamp(6000))).unwrap();
    assert_eq!(seqs, vec![3], "seq continues after reopen and is never reused");
    assert_eq!(store.load_engine_state().unwrap().as_deref(), Some(&b"S1"[..]), "None keeps the saved state");
    let st = store.stats().unwrap();
    assert_eq!(st.depth, 2);
    assert_eq!(st.oldest_created_at, Some(Timestamp(5000)));
    assert_eq!(st.oldest_age(Timestamp(8000)), Some(Duration::from_secs(3)));
}

#[test]
fn peek_from_continues_after_a_seq_and_respects_n() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    let batch: Vec<_> = (0..10).map(|_| msg(MessageClass::IncidentLifecycle, 1)).collect();
    rt().block_on(store.commit(&batch, None, Timestamp(0))).unwrap();
    let page = store.peek_from(Some(3), 4).unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
    assert!(store.peek_from(Some(10), 4).unwrap().is_empty());
}

#[test]
fn the_publish_limit_holds_back_what_the_standby_does_not_have() {
    let d = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = Store::open(&settings(d.path(), 1 << 20), &site()).unwrap();
    s.set_publish_limit(0);
    rt.block_on(s.commit(&[msg(MessageClass::Health, 10), msg(MessageClass::Health, 10)], None, Timestamp(0))).unwrap();
    assert!(s.peek_from(None, 10).unwrap().is_empty(), "durable, but the standby holds nothing yet");
    s.set_publish_limit(1);
    assert_eq!(s.peek_from(None, 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), [1]);
    assert!(s.peek_from(Some(1), 10).unwrap().is_empty());
    s.set_publish_limit(u64::MAX);
    assert_eq!(s.peek_from(Some(1), 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), [2]);
}

#[test]
fn newer_schema_is_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
        rt().block_on(store.commit(&[msg(MessageClass::Pattern, 1)], Some(b"S"), Timestamp(0))).unwrap();
    }
    {
        let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
        db.insert(META_SCHEMA, &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&settings(dir.path(), 1 << 20), &site()).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, StoreError::NewerSchema { found: 99, .. }), "{text}");
    assert!(text.contains("nothing was deleted"), "{text}");
    let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
    assert_eq!(db.scan_prefix([record::OUTBOX]).count(), 1);
    assert!(db.get(record::state_chunk_key(0)).unwrap().is_some(), "the engine state is kept");
}

#[test]
fn corrupt_entry_is_refused_with_its_seq_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
        rt().block_on(store.commit(&[msg(MessageClass::Pattern, 1)], None, Timestamp(0))).unwrap();
    }
    {
        let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
        db.insert(record::outbox_key(1), &b"\x07garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&settings(dir.path(), 1 << 20), &site()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("outbox seq 1"), "{err}");
    let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
    assert_eq!(db.get(record::outbox_key(1)).unwrap().as_deref(), Some(&b"\x07garbage"[..]));
}

#[test]
fn a_stored_next_seq_of_zero_is_a_corrupt_store_named_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    // An empty outbox: nothing else in the store contradicts the bad value.
    drop(Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap());
    {
        let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
        db.insert(META_NEXT_SEQ, &0u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&settings(dir.path(), 1 << 20), &site()).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
    assert!(text.contains("next seq") && text.contains("nothing was deleted"), "{text}");
    assert!(text.contains(&dir.path().join(SLED_DIR).display().to_string()), "{text}");
    let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
    assert_eq!(db.get(META_NEXT_SEQ).unwrap().as_deref(), Some(&0u64.to_be_bytes()[..]), "nothing was rewritten");
    assert!(db.get(META_EPOCH).unwrap().is_some(), "nothing was deleted");
}

#[test]
fn a_store_held_by_someone_else_is_a_clear_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    // sled's flock is per open file description, so a second open in this process
    // conflicts just like another process would.
    let err = Store::open(&settings(dir.path(), 1 << 20), &site()).err().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("already running"), "{err}");
}

#[test]
fn a_foreign_non_empty_sled_database_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
        db.insert(b"something", b"else").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&settings(dir.path(), 1 << 20), &site()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn full_outbox_sheds_health_then_rollups_then_updates_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    // Room for exactly eight ~1 KiB messages (the 2-digit seqs are 2 bytes longer).
    let one = one_message_bytes(&rt);
    let max = 8 * one + 20;
    let store = Store::open(&settings(dir.path(), max), &site()).unwrap();
    let mut first = Vec::new();
    for class in
        [MessageClass::IncidentLifecycle, MessageClass::Health, MessageClass::Rollup, MessageClass::IncidentUpdate]
    {
        first.push(msg(class, 1000));
        first.push(msg(class, 1000));
    }
    // seqs 1..=8: L L H H R R U U
    rt.block_on(store.commit(&first, None, Timestamp(0))).unwrap();
    assert!(store.pending_drop_report().is_empty());
    // Four more lifecycle events (seqs 9..=12) must push out both health, both rollups.
    let more: Vec<_> = (0..4).map(|_| msg(MessageClass::IncidentLifecycle, 1000)).collect();
    rt.block_on(store.commit(&more, None, Timestamp(1000))).unwrap();
    let left: Vec<_> = store.peek_from(None, 100).unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(left, vec![1, 2, 7, 8, 9, 10, 11, 12]);
    let st = store.stats().unwrap();
    assert!(st.bytes <= max, "{st:?}");
    let report = store.take_drop_report().unwrap();
    assert_eq!(report.total, 4);
    assert_eq!(report.by_class[&MessageClass::Health], 2);
    assert_eq!(report.by_class[&MessageClass::Rollup], 2);
    assert_eq!(report.ranges.iter().map(|r| (r.first_seq, r.last_seq)).collect::<Vec<_>>(), vec![(3, 4), (5, 6)]);
    assert!(store.take_drop_report().unwrap().is_empty(), "taking resets the report");
    // A new health message carries the report: older incident updates go before it.
    rt.block_on(store.commit(
        &[msg(MessageClass::Health, 1000), msg(MessageClass::IncidentLifecycle, 1000)],
        None,
        Timestamp(2000),
    ))
    .unwrap();
    let report = store.take_drop_report().unwrap();
    assert_eq!(report.by_class.get(&MessageClass::Health), None);
    assert_eq!(report.by_class.get(&MessageClass::IncidentUpdate), Some(&2), "the oldest updates");
    let left: Vec<_> = store.peek_from(None, 100).unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(left, vec![1, 2, 9, 10, 11, 12, 13, 14]);
}

#[test]
fn a_shed_health_message_hands_its_drop_report_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let one = one_message_bytes(&rt);
    let store = Store::open(&settings(dir.path(), 4 * one + 200), &site()).unwrap();
    let (l, r) = (msg(MessageClass::IncidentLifecycle, 1000), msg(MessageClass::Rollup, 1000));
    // seqs 1..=4: L L R R; seq 5 (L) sheds rollup 3.
    rt.block_on(store.commit(&[l.clone(), l.clone(), r.clone(), r], None, Timestamp(0))).unwrap();
    rt.block_on(store.commit(std::slice::from_ref(&l), None, Timestamp(0))).unwrap();
    let report = store.take_drop_report().unwrap();
    assert_eq!(report.ranges.iter().map(|r| (r.first_seq, r.last_seq)).collect::<Vec<_>>(), vec![(3, 3)]);
    // Health seq 6 carries that report (and sheds rollup 4); then seq 7 sheds health 6.
    let mut health = msg(MessageClass::Health, 1000);
    health.payload["dropped"] = serde_json::to_value(&report).unwrap();
    rt.block_on(store.commit(&[health], None, Timestamp(0))).unwrap();
    rt.block_on(store.commit(&[l], None, Timestamp(0))).unwrap();
    let left: Vec<_> = store.peek_from(None, 100).unwrap().iter().map(|m| m.seq).collect();
    assert!(!left.contains(&6), "the health message was shed: {left:?}");
    // The next health message must still report seq 3, not only 4 and 6.
    let report = store.take_drop_report().unwrap();
    let covered = |s: u64| report.ranges.iter().any(|r| r.first_seq <= s && s <= r.last_seq);
    assert!(covered(3) && covered(4) && covered(6), "{report:?}");
    assert_eq!(report.total, 3);
    assert_eq!(report.ranges[0].first_seq, 3, "the older report first");
}

#[test]
fn drop_report_survives_a_restart_until_taken() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&settings(dir.path(), 3_000), &site()).unwrap();
        let batch: Vec<_> = (0..4).map(|_| msg(MessageClass::Rollup, 1000)).collect();
        rt().block_on(store.commit(&batch, None, Timestamp(0))).unwrap();
        assert_eq!(store.pending_drop_report().total, 2);
    }
    let store = Store::open(&settings(dir.path(), 3_000), &site()).unwrap();
    assert_eq!(store.take_drop_report().unwrap().total, 2);
}

#[test]
fn oversize_message_is_dropped_at_commit_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { max_payload_bytes: 2000, ..StoreOptions::default() };
    let store = Store::open_with(&settings(dir.path(), 1 << 20), &site(), &opts).unwrap();
    let seqs = rt()
        .block_on(store.commit(
            &[msg(MessageClass::IncidentLifecycle, 5000), msg(MessageClass::Pattern, 10)],
            None,
            Timestamp(0),
        ))
        .unwrap();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(store.peek_from(None, 10).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2]);
    let r = store.take_drop_report().unwrap();
    assert_eq!(r.ranges[0].reason, DropReason::Oversize);
    assert_eq!(r.ranges[0].first_seq, 1);
}

#[test]
fn an_oversize_chronicle_is_trimmed_in_the_middle_instead_of_dropping_the_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { max_payload_bytes: 4000, ..StoreOptions::default() };
    let store = Store::open_with(&settings(dir.path(), 1 << 20), &site(), &opts).unwrap();
    let chronicle: Vec<Value> = (0..200)
        .map(|i| json!({"at": Timestamp(i * 1000).to_rfc3339(), "what": "breach_joined", "detail": format!("entry {i}")}))
        .collect();
    let resolved = Outbound {
        topic: "hallmonitor/v1/fra1/incidents/z".into(),
        qos: 1,
        retain: false,
        class: MessageClass::IncidentLifecycle,
        payload: json!({"type": "incident", "event": "resolved", "chronicle": chronicle}),
    };
    rt().block_on(store.commit(&[resolved], None, Timestamp(0))).unwrap();
    let got = store.peek_from(None, 10).unwrap();
    assert_eq!(got.len(), 1, "the resolution is kept");
    assert!(got[0].payload.len() <= 4000);
    let v: Value = serde_json::from_slice(&got[0].payload).unwrap();
    let c = v["chronicle"].as_array().unwrap();
    assert_eq!(c[0]["detail"], "entry 0");
    assert_eq!(c[c.len() - 1]["detail"], "entry 199");
    let marker = c.iter().find(|e| e["what"] == "truncated").unwrap();
    let omitted: usize = marker["detail"].as_str().unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(omitted + c.len() - 1, 200, "the marker counts exactly what is missing");
    assert!(store.pending_drop_report().is_empty());
}

// ---- property test: the outbox against a simple in-memory model ----

#[derive(Debug, Clone)]
enum Op {
    Commit(Vec<(u8, usize)>),
    /// Ack the i-th (mod depth) waiting message.
    Ack(usize),
    /// Ack a seq that was never assigned or is gone.
    AckMissing,
    Reopen,
}

fn class_of(c: u8) -> MessageClass {
    [
        MessageClass::Health,
        MessageClass::Rollup,
        MessageClass::IncidentUpdate,
        MessageClass::IncidentLifecycle,
        MessageClass::Pattern,
    ][c as usize % 5]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..5, 0usize..600), 1..6).prop_map(Op::Commit),
        3 => (0usize..50).prop_map(Op::Ack),
        1 => Just(Op::AckMissing),
        1 => Just(Op::Reopen),
    ]
}

/// The model: a FIFO of (seq, class, bytes) with the drop policy spelled out naively.
#[derive(Default)]
struct Model {
    q: VecDeque<(u64, MessageClass, u64)>,
    next: u64,
    dropped: BTreeMap<MessageClass, u64>,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.q.iter().map(|e| e.2).sum()
    }
    fn commit(&mut self, new: Vec<(u64, MessageClass, u64)>, max: u64) {
        let first_new = new.first().map(|n| n.0).unwrap_or(u64::MAX);
        self.q.extend(new);
        // Ranks doubled so a new health message can sit between updates (4) and lifecycle (6).
        let rank = |e: &(u64, MessageClass, u64)| {
            if e.0 >= first_new && e.1 == MessageClass::Health { 5 } else { e.1.drop_rank() * 2 }
        };
        while self.bytes() > max {
            let lowest = self.q.iter().map(rank).min().unwrap();
            let pos = self.q.iter().position(|e| rank(e) == lowest).unwrap();
            let (_, class, _) = self.q.remove(pos).unwrap();
            *self.dropped.entry(class).or_default() += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A serializer writes the state in pieces of any size: the chunks are those of the whole.
    #[test]
    fn a_state_written_in_pieces_is_cut_as_the_whole_is(
        state in prop::collection::vec(any::<u8>(), 0..3 * STATE_CHUNK_BYTES + 100),
        cuts in prop::collection::vec(0usize..STATE_CHUNK_BYTES + 10, 0..12),
    ) {
        let mut chunks = StateChunks::new();
        let mut rest = state.as_slice();
        for cut in cuts {
            let (piece, tail) = rest.split_at(cut.min(rest.len()));
            std::io::Write::write_all(&mut chunks, piece).unwrap();
            rest = tail;
        }
        std::io::Write::write_all(&mut chunks, rest).unwrap();
        prop_assert_eq!(chunks.len(), state.len());
        let got: Vec<Vec<u8>> = chunks.into_chunks().iter().map(|c| c.to_vec()).collect();
        let want: Vec<Vec<u8>> = state.chunks(STATE_CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_behaves_like_a_bounded_fifo_model(ops in prop::collection::vec(op(), 1..40)) {
        let max = 6_000u64;
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let mut store = Some(Store::open(&settings(dir.path(), max), &site()).unwrap());
        let mut model = Model { next: 1, ..Model::default() };
        let mut dropped_seen: BTreeMap<MessageClass, u64> = BTreeMap::new();
        let epoch = store.as_ref().unwrap().epoch().to_owned();
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Commit(spec) => {
                    let msgs: Vec<Outbound> = spec.iter().map(|&(c, fill)| msg(class_of(c), fill)).collect();
                    let now = Timestamp(1_000);
                    let new: Vec<_> = msgs.iter().enumerate().map(|(i, m)| {
                        let seq = model.next + i as u64;
                        let p = enveloped_payload(&site(), &epoch, seq, now, &m.payload);
                        (seq, m.class, entry_bytes(&m.topic, p.len()))
                    }).collect();
                    model.next += msgs.len() as u64;
                    let seqs = rt.block_on(s.commit(&msgs, None, now)).unwrap();
                    prop_assert_eq!(seqs, new.iter().map(|n| n.0).collect::<Vec<_>>());
                    model.commit(new, max);
                }
                Op::Ack(i) => {
                    if !model.q.is_empty() {
                        let (seq, _, _) = model.q.remove(i % model.q.len()).unwrap();
                        prop_assert!(s.ack(seq).unwrap());
                    }
                }
                Op::AckMissing => {
                    prop_assert!(!s.ack(model.next + 7).unwrap());
                }
                Op::Reopen => {
                    for (c, n) in s.take_drop_report().unwrap().by_class {
                        *dropped_seen.entry(c).or_default() += n;
                    }
                    drop(store.take());
                    store = Some(Store::open(&settings(dir.path(), max), &site()).unwrap());
                }
            }
            let s = store.as_ref().unwrap();
            let got: Vec<_> = s.peek_from(None, 10_000).unwrap().iter().map(|m| (m.seq, m.class, m.stored_bytes)).collect();
            let want: Vec<_> = model.q.iter().cloned().collect();
            prop_assert_eq!(&got, &want);
            let st = s.stats().unwrap();
            prop_assert_eq!(st.depth, model.q.len() as u64);
            prop_assert_eq!(st.bytes, model.bytes());
            prop_assert!(st.bytes <= max);
        }
        for (c, n) in store.as_ref().unwrap().take_drop_report().unwrap().by_class {
            *dropped_seen.entry(c).or_default() += n;
        }
        prop_assert_eq!(dropped_seen, model.dropped);
    }
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() { dir_bytes(&e.path()) } else { m.len() }
        })
        .sum()
}

/// A state of `len` bytes that differs from save to save (as a real one does).
fn varied_state(len: usize, save: u32) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(save) as u8).collect()
}

#[test]
fn a_large_engine_state_survives_reopen_and_a_smaller_one_replaces_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let big = varied_state(340_000, 1);
    let small = varied_state(40_000, 2);
    {
        let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
        let mut written = StateChunks::new();
        for piece in big.chunks(1000) {
            std::io::Write::write_all(&mut written, piece).unwrap();
        }
        rt.block_on(store.commit_chunks(&[], Some(written), Timestamp(1000))).unwrap();
        assert_eq!(store.load_engine_state().unwrap(), Some(big.clone()));
    }
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    assert_eq!(store.load_engine_state().unwrap(), Some(big), "the chunks read back in order after reopen");
    rt.block_on(store.save_engine_state(&small, Timestamp(2000))).unwrap();
    assert_eq!(store.load_engine_state().unwrap(), Some(small.clone()));
    let chunks = store.inner.db.scan_prefix([b's']).count();
    assert_eq!(chunks, small.len().div_ceil(STATE_CHUNK_BYTES), "no chunk of the larger state is left behind");
}

#[test]
fn a_state_saved_as_one_value_by_an_older_version_is_read_then_replaced_by_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    store.inner.db.insert(ENGINE_STATE, &b"old layout"[..]).unwrap();
    assert_eq!(store.load_engine_state().unwrap().as_deref(), Some(&b"old layout"[..]));
    rt.block_on(store.save_engine_state(b"new", Timestamp(1000))).unwrap();
    assert_eq!(store.load_engine_state().unwrap().as_deref(), Some(&b"new"[..]));
    assert!(store.inner.db.get(ENGINE_STATE).unwrap().is_none(), "the old single value is removed");
}

/// Regression: sled 0.34 wrote a state larger than ~128 KiB as a blob file of its own on
/// every save and reclaimed them slowly; in a soak the store grew by 13 MiB a minute.
#[test]
fn repeated_saves_of_a_large_engine_state_keep_the_store_small() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    for save in 0..200 {
        let state = varied_state(340_000, save);
        rt.block_on(store.commit(&[msg(MessageClass::IncidentUpdate, 500)], Some(&state), Timestamp(1000))).unwrap();
        let seq = store.peek_from(None, 1).unwrap()[0].seq;
        assert!(store.ack(seq).unwrap());
    }
    let mib = dir_bytes(dir.path()) as f64 / (1024.0 * 1024.0);
    // 68 MB of state written; one copy is 0.3 MB. Before the fix this was ~80 MiB.
    assert!(mib < 24.0, "the store holds {mib:.1} MiB after 200 saves of a 340 KB state");
}

/// Regression (issue 16's soak: the store grew ~1 MiB a minute under agent restarts): sled
/// 0.34 writes a tree page larger than ~128 KiB as a blob file and forgets the removals it has
/// deferred when the process stops, so every restart left a few ~300 KB blob files behind for
/// good. With chunks small enough that no page of them reaches that size, none are written.
#[test]
fn saves_across_many_restarts_write_no_blob_files_and_keep_the_store_small() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut store = Store::open(&settings(dir.path(), 512 * 1024), &site()).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for save in 0..400u32 {
        if save % 10 == 9 {
            drop(store);
            store = Store::open(&settings(dir.path(), 512 * 1024), &site()).unwrap();
        }
        let state = varied_state(300_000 + rng.usize(0..30_000), save);
        let msgs: Vec<_> =
            (0..rng.usize(1..6)).map(|_| msg(MessageClass::IncidentUpdate, rng.usize(200..3000))).collect();
        rt.block_on(store.commit(&msgs, Some(&state), Timestamp(1000))).unwrap();
        for m in store.peek_from(None, 100).unwrap() {
            store.ack(m.seq).unwrap();
        }
    }
    let blobs = std::fs::read_dir(store.path().join("blobs")).map(|d| d.count()).unwrap_or(0);
    let mib = dir_bytes(dir.path()) as f64 / (1024.0 * 1024.0);
    // With 32 KiB chunks: ~80 blob files and over 25 MiB here, growing with every restart.
    assert_eq!(blobs, 0, "blob files left after 400 saves and 40 restarts ({mib:.1} MiB in all)");
    assert!(mib < 12.0, "the store holds {mib:.1} MiB after 400 saves of a 300 KB state and 40 restarts");
}

/// A store of the previous release holds the state in 32 KiB chunks: it loads, and the next
/// save replaces it with chunks of the current size, leaving none of the old ones behind.
#[test]
fn a_state_saved_in_32_kib_chunks_by_the_previous_release_loads_and_is_rechunked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let old = varied_state(100_000, 1);
    {
        let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
        let db = &store.inner.db;
        let chunks = old.chunks(32 * 1024);
        let count = chunks.len() as u32;
        for (n, c) in (0u32..).zip(chunks) {
            db.insert(record::state_chunk_key(n), c).unwrap();
        }
        db.insert(META_STATE_CHUNKS, &count.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    assert_eq!(store.load_engine_state().unwrap(), Some(old), "the 32 KiB chunks read back after reopen");
    let new = varied_state(90_000, 2);
    rt.block_on(store.save_engine_state(&new, Timestamp(1000))).unwrap();
    drop(store);
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    assert_eq!(store.load_engine_state().unwrap(), Some(new.clone()));
    let chunks = store.inner.db.scan_prefix([b's']).count();
    assert_eq!(chunks, new.len().div_ceil(STATE_CHUNK_BYTES), "exactly the new state's chunks are stored");
}

/// Incident messages with long chronicles are tens of KiB; sixteen of them in one sled leaf
/// made it a blob file, and a restart left the replaced ones behind (issue 16's 60-minute
/// soak: the store grew from 4 to 12 MiB). Outbox records are stored in pieces that keep every
/// leaf inline, so an outbox that filled up across restarts and then drained leaves nothing.
#[test]
fn an_outbox_of_large_messages_filled_across_restarts_leaves_no_blob_files_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = settings(dir.path(), 8 << 20);
    let mut store = Store::open(&s, &site()).unwrap();
    let mut rng = fastrand::Rng::with_seed(16);
    let mut sent = Vec::new();
    for round in 0..120u32 {
        if round % 6 == 5 {
            drop(store);
            store = Store::open(&s, &site()).unwrap();
        }
        let msgs: Vec<_> = (0..3).map(|_| msg(MessageClass::IncidentUpdate, rng.usize(6_000..60_000))).collect();
        sent.extend(msgs.iter().map(|m| m.payload.clone()));
        rt.block_on(store.commit(&msgs, None, Timestamp(1000))).unwrap();
        if round % 40 == 39 {
            let got = store.peek_from(None, 1000).unwrap();
            assert_eq!(got.len(), sent.len(), "every message is in the outbox before the drain");
            for (m, want) in got.iter().zip(&sent) {
                let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(body["fill"], want["fill"], "seq {} reads back whole", m.seq);
                store.ack(m.seq).unwrap();
            }
            sent.clear();
        }
    }
    rt.block_on(store.flush()).unwrap();
    drop(store);
    let store = Store::open(&s, &site()).unwrap();
    assert_eq!(store.stats().unwrap().depth, 0);
    let blobs = std::fs::read_dir(store.path().join("blobs")).map(|d| d.count()).unwrap_or(0);
    let mib = dir_bytes(dir.path()) as f64 / (1024.0 * 1024.0);
    assert_eq!(blobs, 0, "blob files left by a drained outbox ({mib:.1} MiB in all)");
}

/// A store of layout 1 (every record whole) opens, its messages read back, and it is marked
/// layout 2, so the release before this one refuses it by name rather than as corrupt.
#[test]
fn a_layout_1_store_opens_reads_back_and_is_marked_layout_2() {
    let dir = tempfile::tempdir().unwrap();
    let whole = record::encode(MessageClass::Pattern, 1, false, Timestamp(7), "hallmonitor/v1/fra1/t", &[b'x'; 9000]);
    {
        let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
        db.insert(META_SCHEMA, &1u32.to_be_bytes()).unwrap();
        db.insert(META_EPOCH, b"00000000000000aa").unwrap();
        db.insert(META_NEXT_SEQ, &2u64.to_be_bytes()).unwrap();
        db.insert(record::outbox_key(1), whole.as_slice()).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&settings(dir.path(), 1 << 20), &site()).unwrap();
    let got = store.peek_from(None, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, vec![b'x'; 9000]);
    assert_eq!(store.stats().unwrap().bytes, 9 + whole.len() as u64);
    assert!(store.ack(1).unwrap());
    assert_eq!(store.stats().unwrap().bytes, 0);
    drop(store);
    let db = sled::open(dir.path().join(SLED_DIR)).unwrap();
    assert_eq!(db.get(META_SCHEMA).unwrap().unwrap().as_ref(), &2u32.to_be_bytes());
}

/// Pieces whose first piece is gone (a crash between the two removals of an ack) are removed
/// at open; the messages around them are untouched.
#[test]
fn pieces_left_by_an_interrupted_ack_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let store = Store::open(&settings(dir.path(), 4 << 20), &site()).unwrap();
        let msgs: Vec<_> = (0..3).map(|_| msg(MessageClass::IncidentUpdate, 20_000)).collect();
        rt.block_on(store.commit(&msgs, None, Timestamp(0))).unwrap();
        // An ack that stopped after its first removal.
        store.inner.db.remove(record::outbox_key(2)).unwrap();
        store.inner.db.flush().unwrap();
    }
    let store = Store::open(&settings(dir.path(), 4 << 20), &site()).unwrap();
    assert_eq!(store.inner.db.scan_prefix(record::pieces_prefix(2)).count(), 0, "the orphan pieces are gone");
    let got = store.peek_from(None, 10).unwrap();
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 3]);
    for m in &got {
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["fill"].as_str().map(str::len), Some(20_000));
    }
}
