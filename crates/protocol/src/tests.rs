#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

fn start(ticket: &str, task: &str, epoch: u64) -> StartScript {
    StartScript {
        ticket: ticket.into(),
        task_id: task.into(),
        step: "step-1".into(),
        attempt: 1,
        epoch,
        syntax: Syntax::Bash,
        body: "echo hi".into(),
        variables: vec![NameValue {
            name: "Secret".into(),
            value: "hunter2".into(),
        }],
        env: vec![],
        cwd: None,
    }
}

fn get(ticket: &str, task: &str, epoch: u64, log_offset: u64) -> GetStatus {
    GetStatus {
        ticket: ticket.into(),
        task_id: task.into(),
        epoch,
        log_offset,
        wait_ms: 0,
    }
}

fn cancel(ticket: &str, task: &str, epoch: u64) -> CancelScript {
    CancelScript {
        ticket: ticket.into(),
        task_id: task.into(),
        epoch,
    }
}

fn complete(ticket: &str, task: &str, epoch: u64) -> CompleteScript {
    CompleteScript {
        ticket: ticket.into(),
        task_id: task.into(),
        epoch,
    }
}

// ---------- messages and framing ----------

#[test]
fn envelope_shape_is_v_id_kind_body() {
    let env = Envelope::new(7, Message::CancelScript(cancel("t1", "ServerTasks-1", 3)));
    let bytes = encode_payload(&env, DEFAULT_MAX_FRAME).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"v":1,"id":7,"kind":"CancelScript",
            "body":{"ticket":"t1","task_id":"ServerTasks-1","epoch":3}})
    );
    assert_eq!(decode_payload(&bytes, DEFAULT_MAX_FRAME).unwrap(), env);
    let unit = encode_payload(&Envelope::new(1, Message::Health), 100).unwrap();
    assert_eq!(unit, br#"{"v":1,"id":1,"kind":"Health"}"#);
    assert_eq!(decode_payload(&unit, 100).unwrap().message, Message::Health);
}

#[test]
fn variables_are_not_in_debug_output() {
    let s = format!("{:?}", start("t", "T", 1));
    assert!(!s.contains("hunter2"), "{s}");
    assert!(s.contains("Secret"));
}

#[test]
fn frame_errors_are_clear() {
    assert!(matches!(
        decode_payload(br#"{"v":2,"id":1,"kind":"Health"}"#, 100),
        Err(FrameError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        decode_payload(br#"{"v":1,"id":1,"kind":"RmRf"}"#, 100),
        Err(FrameError::Malformed(_))
    ));
    assert!(matches!(
        decode_payload(&[b' '; 101], 100),
        Err(FrameError::TooLarge {
            len: 101,
            limit: 100
        })
    ));
    assert!(matches!(decode_payload(b"", 100), Err(FrameError::Empty)));
    let deep = "[".repeat(10_000);
    assert!(decode_payload(deep.as_bytes(), 1 << 20).is_err());
    let big = Envelope::new(
        1,
        Message::UploadChunk(UploadChunk {
            transfer: "x".into(),
            offset: 0,
            data: vec![0; 1000],
        }),
    );
    assert!(matches!(
        encode_frame(&big, 500),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn decoder_refuses_oversized_length_before_buffering_and_stays_closed() {
    let mut d = FrameDecoder::new(1024);
    let err = d.feed(&u32::MAX.to_be_bytes()).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }));
    assert_eq!(d.buffered(), 0);
    assert_eq!(d.feed(b"x").unwrap_err(), FrameError::Poisoned);
}

#[test]
fn chunk_data_travels_raw_in_a_binary_payload() {
    let env = Envelope::new(
        2,
        Message::UploadChunk(UploadChunk {
            transfer: "tr".into(),
            offset: 5,
            data: b"hello".to_vec(),
        }),
    );
    let bytes = encode_payload(&env, 1000).unwrap();
    assert_eq!(bytes[0], crate::frame::BINARY_MAGIC);
    assert!(bytes.ends_with(b"hello"));
    assert_eq!(decode_payload(&bytes, 1000).unwrap(), env);
    // Through the stream framing too.
    let mut dec = FrameDecoder::new(1000);
    assert_eq!(
        dec.feed(&encode_frame(&env, 1000).unwrap()).unwrap(),
        vec![env.clone()]
    );
    // JSON (base64) chunks are still understood.
    let json = br#"{"v":1,"id":2,"kind":"UploadChunk","body":{"transfer":"tr","offset":5,"data":"aGVsbG8="}}"#;
    assert_eq!(decode_payload(json, 1000).unwrap(), env);
    // A binary payload must carry an upload chunk, with a header that fits.
    let mut bad = vec![crate::frame::BINARY_MAGIC, 0, 0, 0, 200];
    bad.extend_from_slice(b"{}");
    assert!(decode_payload(&bad, 1000).is_err());
    let health = br#"{"v":1,"id":1,"kind":"Health"}"#;
    let mut other = vec![crate::frame::BINARY_MAGIC];
    other.extend_from_slice(&(health.len() as u32).to_be_bytes());
    other.extend_from_slice(health);
    other.extend_from_slice(b"tail");
    assert!(decode_payload(&other, 1000).is_err());
    assert!(decode_payload(&[crate::frame::BINARY_MAGIC, 0], 1000).is_err());
}

fn arb_message() -> impl Strategy<Value = Message> {
    let s = "[ -~]{0,12}";
    prop_oneof![
        Just(Message::Capabilities),
        Just(Message::Health),
        Just(Message::Ack),
        (s, s, any::<u64>(), any::<u64>()).prop_map(|(t, k, e, o)| Message::GetStatus(GetStatus {
            ticket: t,
            task_id: k,
            epoch: e,
            log_offset: o,
            wait_ms: 0,
        })),
        (s, s, any::<u64>(), s).prop_map(|(t, k, e, b)| {
            let mut m = start(&t, &k, e);
            m.body = b;
            Message::StartScript(m)
        }),
        (
            s,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(t, o, d)| Message::UploadChunk(UploadChunk {
                transfer: t,
                offset: o,
                data: d
            })),
        (any::<i32>(), proptest::collection::vec(s, 0..4)).prop_map(|(c, lines)| {
            Message::ScriptStatus(ScriptStatus {
                ticket: "t".into(),
                state: ScriptState::Exited(c),
                next_offset: lines.len() as u64,
                end_of_log: true,
                dropped_lines: 0,
                lines: lines
                    .into_iter()
                    .enumerate()
                    .map(|(i, text)| LogLine {
                        offset: i as u64,
                        stream: Stream::Stdout,
                        text,
                        at_ms: 1,
                    })
                    .collect(),
            })
        }),
        any::<u64>().prop_map(|n| Message::Ping(KeepAlive { nonce: n })),
        s.prop_map(|m| Message::Error(AgentError::new(ErrorCode::StaleEpoch, m))),
    ]
}

proptest! {
    #[test]
    fn decoder_never_panics_and_bounds_memory(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
    ) {
        let limit = 256;
        let mut d = FrameDecoder::new(limit);
        for c in &chunks {
            let _ = d.feed(c);
            prop_assert!(d.buffered() <= limit + 4);
        }
        for c in &chunks {
            let _ = decode_payload(c, limit);
        }
    }

    #[test]
    fn frames_round_trip_across_any_split(
        msgs in proptest::collection::vec((any::<u64>(), arb_message()), 1..8),
        splits in proptest::collection::vec(1usize..50, 1..40),
    ) {
        let envs: Vec<Envelope> = msgs.into_iter().map(|(id, m)| Envelope::new(id, m)).collect();
        let mut wire = Vec::new();
        for e in &envs {
            wire.extend(encode_frame(e, DEFAULT_MAX_FRAME).unwrap());
        }
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        let mut rest = wire.as_slice();
        let mut i = 0;
        while !rest.is_empty() {
            let n = splits[i % splits.len()].min(rest.len());
            let (a, b) = rest.split_at(n);
            got.extend(d.feed(a).unwrap());
            rest = b;
            i += 1;
        }
        prop_assert!(d.is_idle());
        prop_assert_eq!(got, envs);
    }

    #[test]
    fn mutated_frames_never_panic(msg in arb_message(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut wire = encode_frame(&Envelope::new(1, msg), DEFAULT_MAX_FRAME).unwrap();
        for (pos, b) in flips {
            let n = wire.len();
            wire[pos % n] = b;
        }
        let mut d = FrameDecoder::new(4096);
        let _ = d.feed(&wire);
        prop_assert!(d.buffered() <= 4096 + 4);
    }
}

// ---------- tickets ----------

#[test]
fn start_is_idempotent_and_spawns_once() {
    let mut t = Tickets::default();
    let a = t.start(&start("t1", "T", 1), 0).unwrap();
    assert_eq!(a.action, StartAction::Spawn);
    let b = t.start(&start("t1", "T", 1), 1).unwrap();
    assert_eq!(b.action, StartAction::Attach);
    // A newer epoch (a new node took the task over) re-attaches, never re-spawns.
    let c = t.start(&start("t1", "T", 2), 2).unwrap();
    assert_eq!(c.action, StartAction::Attach);
    // The same ticket for another attempt is a conflict.
    let mut other = start("t1", "T", 2);
    other.attempt = 2;
    assert_eq!(
        t.start(&other, 3).unwrap_err().code,
        ErrorCode::TicketConflict
    );
}

#[test]
fn stale_epochs_are_refused_everywhere() {
    let mut t = Tickets::default();
    t.start(&start("t1", "T", 5), 0).unwrap();
    let e = t.start(&start("t2", "T", 4), 0).unwrap_err();
    assert_eq!((e.code, e.current_epoch), (ErrorCode::StaleEpoch, Some(5)));
    assert_eq!(
        t.status(&get("t1", "T", 4, 0), 0).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        t.cancel(&cancel("t1", "T", 4), 0).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        t.complete(&complete("t1", "T", 4), 0).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    // A GetStatus from a newer epoch raises the fence for everything after it.
    t.status(&get("t1", "T", 6, 0), 0).unwrap();
    assert_eq!(
        t.cancel(&cancel("t1", "T", 5), 0).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(t.epoch("T"), Some(6));
    assert_eq!(t.len(), 1);
}

#[test]
fn logs_resume_after_reconnect_without_loss_or_duplicates() {
    let mut t = Tickets::default();
    t.start(&start("t1", "T", 1), 0).unwrap();
    for i in 0..5 {
        t.append("t1", Stream::Stdout, &format!("line {i}"), i)
            .unwrap();
    }
    let s = t.status(&get("t1", "T", 1, 0), 10).unwrap();
    assert_eq!(s.lines.len(), 5);
    assert_eq!(s.next_offset, 5);
    // The reply was lost: the server asks again from 0 and gets the same lines.
    let again = t.status(&get("t1", "T", 1, 0), 11).unwrap();
    assert_eq!(again.lines, s.lines);
    t.append("t1", Stream::Stderr, "line 5", 12).unwrap();
    t.exited("t1", 3, 13).unwrap();
    let s2 = t.status(&get("t1", "T", 1, 5), 14).unwrap();
    assert_eq!(
        s2.lines.iter().map(|l| l.offset).collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(s2.state, ScriptState::Exited(3));
    assert!(s2.end_of_log);
    let bad = t.status(&get("t1", "T", 1, 99), 15).unwrap_err();
    assert_eq!(
        (bad.code, bad.expected_offset),
        (ErrorCode::BadOffset, Some(6))
    );
}

#[test]
fn full_buffer_drops_lines_with_a_note() {
    let cfg = TicketsConfig {
        max_log_lines: 3,
        ..TicketsConfig::default()
    };
    let mut t = Tickets::new(cfg);
    t.start(&start("t1", "T", 1), 0).unwrap();
    for i in 0..10 {
        t.append("t1", Stream::Stdout, &format!("{i}"), 0).unwrap();
    }
    let s = t.status(&get("t1", "T", 1, 0), 1).unwrap();
    assert_eq!(s.lines.len(), 3);
    assert_eq!(s.dropped_lines, 7);
    // "late" arrives while the buffer is still full: dropped too.
    t.append("t1", Stream::Stdout, "late", 2).unwrap();
    // Acknowledging frees room; the note comes first, then new lines.
    let s = t.status(&get("t1", "T", 1, 3), 3).unwrap();
    assert_eq!(s.lines.len(), 1);
    assert!(
        s.lines[0].text.contains("8 line(s) of output dropped"),
        "{s:?}"
    );
    assert_eq!(s.lines[0].stream, Stream::Agent);
    t.append("t1", Stream::Stdout, "after", 4).unwrap();
    t.exited("t1", 0, 5).unwrap();
    let s = t.status(&get("t1", "T", 1, s.next_offset), 6).unwrap();
    let texts: Vec<_> = s.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, vec!["after"]);
    assert_eq!(
        (s.state, s.end_of_log, s.dropped_lines),
        (ScriptState::Exited(0), true, 8)
    );
}

#[test]
fn cancel_kills_once_and_ends_canceled() {
    let mut t = Tickets::default();
    t.start(&start("t1", "T", 1), 0).unwrap();
    assert!(t.cancel(&cancel("t1", "T", 1), 1).unwrap().kill);
    assert!(!t.cancel(&cancel("t1", "T", 1), 2).unwrap().kill);
    assert_eq!(t.exited("t1", 137, 3).unwrap(), ScriptState::Canceled);
    // Cancel before start: the late start never spawns.
    let c = t.cancel(&cancel("t2", "T", 1), 4).unwrap();
    assert_eq!((c.kill, c.status.state), (false, ScriptState::Canceled));
    let s = t.start(&start("t2", "T", 1), 5).unwrap();
    assert_eq!(
        (s.action, s.status.state),
        (StartAction::Attach, ScriptState::Canceled)
    );
}

#[test]
fn complete_forgets_and_a_late_start_is_refused() {
    let mut t = Tickets::default();
    t.start(&start("t1", "T", 1), 0).unwrap();
    assert_eq!(
        t.complete(&complete("t1", "T", 1), 1).unwrap_err().code,
        ErrorCode::BadRequest
    );
    t.exited("t1", 0, 2).unwrap();
    t.complete(&complete("t1", "T", 1), 3).unwrap();
    t.complete(&complete("t1", "T", 1), 4).unwrap();
    assert!(t.is_empty());
    assert_eq!(
        t.status(&get("t1", "T", 1, 0), 5).unwrap().state,
        ScriptState::Unknown
    );
    assert_eq!(
        t.start(&start("t1", "T", 1), 6).unwrap_err().code,
        ErrorCode::TicketConflict
    );
}

#[test]
fn finished_tickets_expire_and_epochs_outlive_them() {
    let cfg = TicketsConfig {
        retain_finished_ms: 100,
        retain_tombstones_ms: 1000,
        retain_epochs_ms: 10_000,
        ..TicketsConfig::default()
    };
    let mut t = Tickets::new(cfg);
    t.start(&start("t1", "T", 3), 0).unwrap();
    t.start(&start("t2", "T", 3), 0).unwrap();
    t.exited("t1", 0, 10).unwrap();
    assert_eq!(t.expire(50), Vec::<String>::new());
    assert_eq!(t.expire(110), vec!["t1".to_string()]);
    assert_eq!(t.running(), vec!["t2".to_string()]);
    assert_eq!(
        t.start(&start("t1", "T", 3), 200).unwrap_err().code,
        ErrorCode::TicketConflict
    );
    t.lost("t2", "agent restarted", 300).unwrap();
    t.expire(20_000);
    assert!(t.is_empty());
    assert_eq!(t.epoch("T"), None);
}

#[test]
fn state_survives_a_restart() {
    let mut t = Tickets::default();
    t.start(&start("t1", "T", 2), 0).unwrap();
    t.append("t1", Stream::Stdout, "before restart", 1).unwrap();
    let bytes = t.to_json().unwrap();
    let mut r = Tickets::restore(&bytes, TicketsConfig::default()).unwrap();
    assert_eq!(r, t);
    assert_eq!(
        r.start(&start("t1", "T", 2), 2).unwrap().action,
        StartAction::Attach
    );
    assert_eq!(
        r.start(&start("t9", "T", 1), 2).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(r.running(), vec!["t1".to_string()]);
    r.lost(
        "t1",
        "the agent restarted; the script's outcome is unknown",
        3,
    )
    .unwrap();
    let s = r.status(&get("t1", "T", 2, 0), 4).unwrap();
    assert_eq!(s.state, ScriptState::Lost);
    assert_eq!(s.lines.len(), 2);
}

#[derive(Clone, Debug)]
enum Op {
    Start(u8, u64),
    Status(u8, u64),
    Cancel(u8, u64),
    Complete(u8, u64),
    Append(u8),
    Exit(u8, i32),
    Expire,
    Restart,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let tk = 0u8..4;
    let ep = 0u64..6;
    prop_oneof![
        4 => (tk.clone(), ep.clone()).prop_map(|(a, b)| Op::Start(a, b)),
        4 => (tk.clone(), ep.clone()).prop_map(|(a, b)| Op::Status(a, b)),
        1 => (tk.clone(), ep.clone()).prop_map(|(a, b)| Op::Cancel(a, b)),
        1 => (tk.clone(), ep.clone()).prop_map(|(a, b)| Op::Complete(a, b)),
        5 => tk.clone().prop_map(Op::Append),
        1 => (tk, any::<i32>()).prop_map(|(a, c)| Op::Exit(a, c)),
        1 => Just(Op::Expire),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random interleavings of retries, status polls, cancels, completes, output, exits,
    /// expiry and restarts: no ticket spawns twice, every stale epoch is refused, and the
    /// log each ticket's reader collects is 0, 1, 2, … with nothing skipped or repeated.
    #[test]
    fn tickets_invariants(ops in proptest::collection::vec(arb_op(), 1..120), small in any::<bool>()) {
        let cfg = TicketsConfig {
            max_log_lines: if small { 4 } else { 10_000 },
            max_status_lines: if small { 2 } else { 1000 },
            retain_finished_ms: 5,
            ..TicketsConfig::default()
        };
        let mut t = Tickets::new(cfg.clone());
        let task = "T";
        let mut max_epoch: Option<u64> = None;
        let mut spawned: BTreeSet<String> = BTreeSet::new();
        let mut reader: BTreeMap<String, u64> = BTreeMap::new();
        let mut now = 0u64;
        for op in ops {
            now += 1;
            let name = |i: u8| format!("ticket-{i}");
            let fenced = |e: u64, r: &Result<(), AgentError>, max: &mut Option<u64>| {
                let stale = max.is_some_and(|m| e < m);
                match r {
                    Err(err) if err.code == ErrorCode::StaleEpoch => {
                        assert!(stale, "epoch {e} refused but max is {max:?}");
                    }
                    _ => {
                        assert!(!stale, "stale epoch {e} accepted (max {max:?})");
                        *max = Some(max.map_or(e, |m| m.max(e)));
                    }
                }
            };
            match op {
                Op::Start(i, e) => {
                    let r = t.start(&start(&name(i), task, e), now);
                    fenced(e, &r.as_ref().map(|_| ()).map_err(Clone::clone), &mut max_epoch);
                    if let Ok(s) = r {
                        if s.action == StartAction::Spawn {
                            prop_assert!(spawned.insert(name(i)), "{} spawned twice", name(i));
                        }
                    }
                }
                Op::Status(i, e) => {
                    let off = reader.get(&name(i)).copied().unwrap_or(0);
                    let r = t.status(&get(&name(i), task, e, off), now);
                    fenced(e, &r.as_ref().map(|_| ()).map_err(Clone::clone), &mut max_epoch);
                    if let Ok(s) = r {
                        let mut expect = off;
                        for l in &s.lines {
                            prop_assert_eq!(l.offset, expect, "skip or repeat");
                            expect += 1;
                        }
                        prop_assert_eq!(s.next_offset, expect);
                        prop_assert!(s.lines.len() <= cfg.max_status_lines);
                        reader.insert(name(i), expect);
                    }
                }
                Op::Cancel(i, e) => {
                    let r = t.cancel(&cancel(&name(i), task, e), now);
                    fenced(e, &r.as_ref().map(|_| ()).map_err(Clone::clone), &mut max_epoch);
                }
                Op::Complete(i, e) => {
                    let r = t.complete(&complete(&name(i), task, e), now);
                    fenced(e, &r, &mut max_epoch);
                }
                Op::Append(i) => {
                    let _ = t.append(&name(i), Stream::Stdout, "out", now);
                }
                Op::Exit(i, c) => {
                    let _ = t.exited(&name(i), c, now);
                }
                Op::Expire => {
                    t.expire(now);
                }
                Op::Restart => {
                    let bytes = t.to_json().unwrap();
                    t = Tickets::restore(&bytes, cfg.clone()).unwrap();
                }
            }
        }
    }
}

// ---------- uploads ----------

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn begin(data: &[u8], name: Option<&str>) -> UploadBegin {
    UploadBegin {
        transfer: "tr-1".into(),
        name: name.map(Into::into),
        size: data.len() as u64,
        sha256: sha(data),
        package_id: None,
        delta_from: None,
        result_sha256: None,
        result_size: None,
    }
}

#[test]
fn upload_refuses_bad_names_sizes_gaps_and_hashes() {
    let data = b"hello world".to_vec();
    for bad in ["../x", "a/b", "..", "", "a\0b"] {
        let e = UploadAssembler::begin(&begin(&data, Some(bad)), UploadLimits::default());
        assert_eq!(e.unwrap_err().code, ErrorCode::BadRequest, "{bad:?}");
    }
    let limits = UploadLimits {
        max_size: 5,
        max_chunk: 4,
    };
    assert_eq!(
        UploadAssembler::begin(&begin(&data, None), limits)
            .unwrap_err()
            .code,
        ErrorCode::TooLarge
    );
    let limits = UploadLimits {
        max_size: 100,
        max_chunk: 4,
    };
    let mut u = UploadAssembler::begin(&begin(&data, Some("pkg.zip")), limits).unwrap();
    assert_eq!(
        u.chunk(0, &data[..5]).unwrap_err().code,
        ErrorCode::TooLarge
    );
    assert_eq!(u.chunk(0, &data[..4]).unwrap(), b"hell");
    let gap = u.chunk(8, &data[8..]).unwrap_err();
    assert_eq!(
        (gap.code, gap.expected_offset),
        (ErrorCode::BadOffset, Some(4))
    );
    assert_eq!(u.finish().unwrap_err().code, ErrorCode::BadOffset);
    assert_eq!(u.chunk(10, b"xx").unwrap_err().code, ErrorCode::TooLarge);
    // Wrong content with the right length: hash mismatch.
    u.chunk(4, b"XXXX").unwrap();
    u.chunk(8, &data[8..]).unwrap();
    assert_eq!(u.finish().unwrap_err().code, ErrorCode::HashMismatch);
}

proptest! {
    #[test]
    fn upload_assembles_any_chunking_with_retries(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in proptest::collection::vec(1usize..300, 1..20),
        retries in proptest::collection::vec(any::<bool>(), 1..20),
    ) {
        let limits = UploadLimits { max_size: 4096, max_chunk: 300 };
        let mut u = UploadAssembler::begin(&begin(&data, None), limits).unwrap();
        let mut file = Vec::new();
        let mut off = 0usize;
        let mut i = 0;
        while off < data.len() {
            let n = sizes[i % sizes.len()].min(data.len() - off);
            file.extend_from_slice(u.chunk(off as u64, &data[off..off + n]).unwrap());
            if retries[i % retries.len()] {
                // The reply was lost: the same chunk again, and an overlapping one.
                prop_assert!(u.chunk(off as u64, &data[off..off + n]).unwrap().is_empty());
                let back = off.saturating_sub(7);
                let end = (off + n + 3).min(data.len()).min(back + 300);
                file.extend_from_slice(u.chunk(back as u64, &data[back..end]).unwrap());
                off = end.max(off + n);
            } else {
                off += n;
            }
            i += 1;
        }
        prop_assert_eq!(&file, &data);
        let done = u.finish().unwrap();
        prop_assert_eq!(done.sha256, sha(&data));
    }
}

#[test]
fn split_frames_equal_whole_frames() {
    for env in [
        Envelope::new(
            9,
            Message::UploadChunk(UploadChunk {
                transfer: "t".into(),
                offset: 3,
                data: vec![7u8; 5000],
            }),
        ),
        Envelope::new(1, Message::Health),
    ] {
        let whole = encode_frame(&env, DEFAULT_MAX_FRAME).unwrap();
        let (head, tail) =
            crate::frame::encode_frame_split(env.clone(), DEFAULT_MAX_FRAME).unwrap();
        let mut joined = head;
        joined.extend_from_slice(&tail);
        assert_eq!(joined, whole);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        assert_eq!(dec.feed(&joined).unwrap(), vec![env]);
    }
}
