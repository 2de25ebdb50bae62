//! Placing, answering, inviting: states, binds by sourceId and audio, deterministically.

use std::time::Duration;

use mediabot::call_core::{AppRequest, CallAction, CallEvent, Ticket};
use mediabot::crates::graph_signaling::models::{
    CallState, IdentitySet, InvitationParticipantInfo,
};
use mediabot::crates::graph_sim::scenario::Voice;
use mediabot::crates::graph_sim::service::PersonAction;
use mediabot::crates::media_session::SourceId;
use test_kit::similarity::tone_power;

use crate::{SETTLE, call, established, hang_up, harness, placed, states, terminated, tones};

/// A placed call goes establishing → established, binds its callee's source, delivers her
/// audio every 20 ms, sends the bot's echo, and ends and releases on the bot's hang-up.
#[test]
fn a_placed_call_carries_audio_and_is_released_after_the_hang_up() {
    let mut h = harness(tones(&[("Alice", 440.0)]));
    let id = placed(&mut h, 0);
    let source = call(&h, &id).streams();
    assert_eq!(source.len(), 1, "Alice's stream is bound");
    // Past the start (the echo's first frame waits for the player's start), then measured.
    h.run_for(Duration::from_millis(500));
    let c = call(&h, &id);
    let (before, sent_before) = (
        c.unmixed.get(&source[0]).copied().unwrap_or(0),
        c.packets_out,
    );
    h.run_for(Duration::from_secs(2));
    let c = call(&h, &id);
    // Made-up time: exactly one frame per 20 ms tick, each way.
    assert_eq!(c.unmixed[&source[0]] - before, 100, "{:?}", c.unmixed);
    assert_eq!(c.packets_out - sent_before, 100, "the echo is sent");
    assert_eq!(
        states(c),
        [CallState::Establishing, CallState::Established],
        "{:?}",
        c.events
    );
    let ticket = hang_up(&mut h, &id);
    let c = call(&h, &id);
    assert!(matches!(&c.replies[..], [(t, Ok(None))] if *t == ticket));
    assert!(terminated(c));
    assert!(c.streams().is_empty());
    assert_eq!(h.sim().active_calls().count(), 0);
}

/// Two calls on one engine: each call's bot hears only its own user's tone (the sim numbers
/// sources per call, so both may well be source 2: only the sound tells them apart).
#[test]
fn two_concurrent_calls_never_cross_audio() {
    let tone = [440.0, 1230.0];
    let mut h = harness(tones(&[("Alice", 440.0), ("Bob", 1230.0)]));
    let a = placed(&mut h, 0);
    let b = placed(&mut h, 1);
    assert_ne!(a, b);
    h.run_for(Duration::from_secs(2));
    for (i, id) in [&a, &b].into_iter().enumerate() {
        let c = call(&h, id);
        assert_eq!(c.streams().len(), 1);
        assert!(c.unmixed.values().sum::<u64>() >= 100, "{:?}", c.unmixed);
        let (own, other) = (tone[i], tone[1 - i]);
        let power = |hz: f32| tone_power(&c.mixed_pcm, 16_000, f64::from(hz));
        let (p_own, p_other) = (power(own), power(other));
        assert!(
            p_own > 1e3 * p_other,
            "call {i} heard {own} Hz at {p_own:.3e} and {other} Hz at {p_other:.3e}"
        );
    }
    hang_up(&mut h, &a);
    hang_up(&mut h, &b);
}

/// An incoming call is offered once, answered, and flows like a placed one.
#[test]
fn an_incoming_call_is_offered_once_and_answered() {
    let mut h = harness(tones(&[("Alice", 440.0)]));
    let id = h.offer_incoming_call(0).expect("offered");
    h.run_until(SETTLE, |h| h.offers().next().is_some());
    assert_eq!(h.offers().collect::<Vec<_>>(), [id.as_str()]);
    h.run_for(Duration::from_millis(500));
    assert_eq!(h.offers().count(), 1, "offered once");
    h.answer(&id).expect("answered");
    assert!(h.run_until(SETTLE, |h| established(h, &id)));
    h.run_for(Duration::from_secs(1));
    let c = call(&h, &id);
    // The notification that offered the call was replayed to its core.
    assert_eq!(
        states(c).first(),
        Some(&CallState::Incoming),
        "{:?}",
        c.events
    );
    let heard: u64 = c.unmixed.values().sum();
    assert!(heard >= 40, "{:?}", c.unmixed);
    hang_up(&mut h, &id);
}

/// Bob is invited: bound by the sourceId his roster entry names, his audio arrives under it.
/// Alice then hangs up: her stream is unbound, no more of her audio is delivered, Bob's goes
/// on, and the call stays up.
#[test]
fn an_invitee_is_bound_by_source_id_and_a_leaver_unbound() {
    let mut h = harness(tones(&[("Alice", 440.0), ("Bob", 1230.0)]));
    let id = placed(&mut h, 0);
    let alice = call(&h, &id).streams()[0];
    let bob_id = h.user_id(1);
    let ticket = h.request(
        &id,
        AppRequest::Action(
            Ticket(0),
            CallAction::Invite(vec![InvitationParticipantInfo::new(IdentitySet::user(
                &bob_id, None,
            ))]),
        ),
    );
    assert!(h.run_until(SETTLE, |h| call(h, &id).streams().len() == 2));
    let c = call(&h, &id);
    let op = c
        .replies
        .iter()
        .find(|(t, _)| *t == ticket)
        .and_then(|(_, r)| r.as_ref().ok())
        .cloned()
        .flatten()
        .expect("the invite completed");
    assert!(op.is_finished(), "{op:?}");
    let bob: SourceId = *c.streams().iter().find(|s| **s != alice).unwrap();
    // His roster entry names that source.
    assert!(
        c.events
            .iter()
            .any(|e| matches!(e, CallEvent::ParticipantJoined(_, p)
        if p.identity_label().contains(&bob_id) && p.audio_sources().any(|s| s == bob)))
    );
    h.run_for(Duration::from_secs(1));
    let bob_before = call(&h, &id).unmixed[&bob];
    assert!(bob_before >= 40);

    let now = h.now();
    let leaves = PersonAction::Leave {
        call_id: &id,
        source_id: alice.get(),
    };
    assert!(h.sim_mut().handle_person(now, leaves).is_ok());
    assert!(h.run_until(SETTLE, |h| call(h, &id).streams() == [bob]));
    h.run_for(Duration::from_millis(100));
    let (alice_after, bob_mid) = {
        let c = call(&h, &id);
        (c.unmixed[&alice], c.unmixed[&bob])
    };
    h.run_for(Duration::from_secs(1));
    let c = call(&h, &id);
    assert_eq!(c.unmixed[&alice], alice_after, "no audio after the unbind");
    assert_eq!(c.unmixed[&bob] - bob_mid, 50, "Bob heard every tick");
    assert!(!terminated(c), "Bob keeps the call going");
    let lefts = c
        .events
        .iter()
        .filter(|e| matches!(e, CallEvent::ParticipantLeft(..)))
        .count();
    assert_eq!(lefts, 1);
    hang_up(&mut h, &id);
}

/// Audio of a source the roster does not list is held briefly, never delivered, and counted
/// as dropped; the listed source's audio is unaffected.
#[test]
fn an_unlisted_source_is_never_delivered_and_is_counted() {
    let mut h = harness(tones(&[("Alice", 440.0)]));
    let id = placed(&mut h, 0);
    let alice = call(&h, &id).streams()[0];
    assert_eq!(call(&h, &id).gate_dropped(), 0);
    let stranger = 77;
    h.add_voice(&id, stranger, &Voice::Tone { tone_hz: 880.0 });
    h.run_for(Duration::from_secs(2));
    let c = call(&h, &id);
    assert_eq!(c.unmixed.keys().copied().collect::<Vec<_>>(), [alice]);
    assert_eq!(c.streams(), [alice]);
    // 100 packets arrived; the gate holds at most 25 (those younger than its 500 ms hold).
    assert!(c.gate_dropped() >= 75, "{}", c.gate_dropped());
    hang_up(&mut h, &id);
}
