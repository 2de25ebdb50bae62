//! Roster load of a large meeting: a full roster of 250 participants, then a stream of deltas.
//!
//! The official stack is reported to fall over at 50–60 bots in one meeting under roster load;
//! these figures show what one call's roster costs here (parse + apply + events).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use graph_signaling::models::CommsNotifications;
use graph_signaling::state::CallStateMachine;
use serde_json::{Value, json};

const CALL: &str = "2f1a1100-b174-40a0-aba7-0b405e01ed92";
const BOT_APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const PARTICIPANTS: u32 = 250;

fn participant(i: u32, muted: bool, seq: Option<i64>, removed: bool) -> Value {
    let mut p = json!({
        "@odata.type": "#microsoft.graph.participant",
        "info": {"@odata.type": "#microsoft.graph.participantInfo",
            "identity": {"@odata.type": "#microsoft.graph.identitySet",
                "user": {"@odata.type": "#microsoft.graph.identity", "displayName": format!("User {i}"),
                    "id": format!("00000000-0000-4000-8000-{i:012}")}},
            "languageId": "en-US"},
        "mediaStreams": [
            {"@odata.type": "#microsoft.graph.mediaStream", "mediaType": "audio", "sourceId": (i * 3 + 1).to_string(), "direction": "sendReceive", "serverMuted": false},
            {"@odata.type": "#microsoft.graph.mediaStream", "mediaType": "video", "sourceId": (i * 3 + 2).to_string(), "direction": "receiveOnly", "serverMuted": false}
        ],
        "isMuted": muted, "isInLobby": false, "id": format!("p-{i}")
    });
    if let Some(s) = seq {
        p["rosterSequenceNumber"] = json!(s);
    }
    if removed {
        p["removedState"] = json!({"reason": "Removed from roster"});
    }
    p
}

fn bot() -> Value {
    json!({"@odata.type": "#microsoft.graph.participant",
        "info": {"identity": {"application": {"id": BOT_APP, "displayName": "Calling Bot"}}},
        "mediaStreams": [{"mediaType": "audio", "sourceId": "999999", "direction": "sendReceive", "serverMuted": false}],
        "isMuted": false, "isInLobby": false, "id": "bot"})
}

fn notification(data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
        "@odata.type": "#microsoft.graph.commsNotification", "changeType": "updated",
        "resourceUrl": format!("/communications/calls/{CALL}/participants"), "resourceData": data}]}))
    .unwrap()
}

fn full_roster(muted_every: u32) -> Vec<u8> {
    let mut ps: Vec<Value> = (0..PARTICIPANTS)
        .map(|i| participant(i, i % muted_every == 0, None, false))
        .collect();
    ps.push(bot());
    notification(Value::Array(ps))
}

/// Deltas after the full roster: mute toggles, leaves and (re)joins, one participant each.
fn deltas(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let seq = k as i64 + 1;
            let i = (k as u32 * 7) % PARTICIPANTS;
            let p = match k % 4 {
                0 | 1 => participant(i, k % 2 == 0, Some(seq), false),
                2 => participant(i, false, Some(seq), true),
                _ => participant(PARTICIPANTS + k as u32, false, Some(seq), false),
            };
            notification(json!([{"@odata.type": "#microsoft.graph.deltaParticipants", "participants": [p], "sequenceNumber": seq}]))
        })
        .collect()
}

fn apply(m: &mut CallStateMachine, body: &[u8], now: Instant) -> usize {
    let batch = CommsNotifications::parse(body).unwrap();
    for n in &batch.value {
        m.handle_notification(n, now);
    }
    std::iter::from_fn(|| m.poll_event()).count()
}

fn roster(c: &mut Criterion) {
    let now = Instant::now();
    let full = full_roster(5);
    let full_changed = full_roster(3);
    let deltas = deltas(100);
    let mut warm = CallStateMachine::new(CALL, Some(BOT_APP.into()));
    assert_eq!(
        apply(&mut warm, &full, now),
        250 * 2 + 1,
        "250 joins + 250 binds + the bot's join"
    );

    let mut g = c.benchmark_group("roster");
    g.bench_function("parse_only/full_250", |b| {
        b.iter(|| CommsNotifications::parse(black_box(&full)).unwrap())
    });
    g.bench_function("parse_apply/full_250_into_empty", |b| {
        b.iter_batched(
            || CallStateMachine::new(CALL, Some(BOT_APP.into())),
            |mut m| apply(&mut m, black_box(&full), now),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("parse_apply/full_250_repeat_unchanged", |b| {
        b.iter_batched(
            || warm.clone(),
            |mut m| apply(&mut m, black_box(&full), now),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("parse_apply/full_250_with_mute_changes", |b| {
        b.iter_batched(
            || warm.clone(),
            |mut m| apply(&mut m, black_box(&full_changed), now),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("parse_apply/100_deltas_on_250", |b| {
        b.iter_batched(
            || warm.clone(),
            |mut m| {
                deltas
                    .iter()
                    .map(|d| apply(&mut m, black_box(d), now))
                    .sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, roster);
criterion_main!(benches);
