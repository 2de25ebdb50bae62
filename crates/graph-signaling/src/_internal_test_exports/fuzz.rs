//! Entry points for fuzz targets: thin `fuzz/` shims call these, so the checks live (and are
//! tested) here.

use std::collections::HashMap;
use std::time::Instant;

use crate::inspect;
use crate::models::CommsNotifications;
use crate::state::CallStateMachine;

/// The bot's app id the fuzzed calls recognise their own roster entry by.
const APP_ID: &str = "00000000-0000-0000-0000-000000000000";

/// One state machine per call id, as a call owner keeps them.
fn apply(calls: &mut HashMap<String, CallStateMachine>, batch: &CommsNotifications) {
    let now = Instant::now();
    for n in &batch.value {
        let Some(id) = n.call_id() else { continue };
        let call = calls
            .entry(id.to_owned())
            .or_insert_with(|| CallStateMachine::new(id, Some(APP_ID.into())));
        call.handle_notification(n, now);
        while call.poll_event().is_some() {}
    }
}

/// Parses arbitrary bytes as a notification body, then checks what must hold for any input:
/// no panic; a parsed batch serializes to JSON that parses back to the same JSON; applying it
/// to call state and describing it with `inspect` do not panic.
///
/// # Panics
/// Only when one of those properties is broken (that is the fuzzer's finding).
pub fn notification_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = inspect::inspect(text);
    }
    let Ok(batch) = CommsNotifications::parse(data) else {
        return;
    };
    let first = serde_json::to_value(&batch).expect("a parsed batch serializes");
    let again: CommsNotifications =
        serde_json::from_value(first.clone()).expect("serialized batch parses again");
    let second = serde_json::to_value(&again).expect("a parsed batch serializes");
    assert_eq!(first, second, "round trip is not stable");
    let mut calls = HashMap::new();
    apply(&mut calls, &batch);
    // A second delivery of the same batch must be harmless: it leaves the state as it was.
    let before = fingerprint(&calls, &batch);
    apply(&mut calls, &batch);
    assert_eq!(
        before,
        fingerprint(&calls, &batch),
        "a duplicate batch changed state"
    );
}

/// Everything observable about the calls a batch names.
fn fingerprint(
    calls: &HashMap<String, CallStateMachine>,
    batch: &CommsNotifications,
) -> Vec<String> {
    let mut out = Vec::new();
    for id in batch.value.iter().filter_map(|n| n.call_id()) {
        let Some(call) = calls.get(id) else {
            continue;
        };
        out.push(format!("{id} {:?} {:?}", call.state(), call.result_info()));
        let mut entries: Vec<String> = call
            .roster()
            .entries()
            .map(|(k, e)| format!("{k:?} {} {:?} {:?}", e.is_self, e.bound, e.participant))
            .collect();
        entries.sort();
        out.extend(entries);
        out.extend(call.content_sharing_sessions().map(str::to_owned));
    }
    out
}
