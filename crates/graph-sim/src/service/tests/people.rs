//! People acting on calls from outside the bot (the softphone's side doors): joining, muting,
//! leaving and calling the bot as one more participant, and the reasons they are refused.

use super::*;
use crate::service::roster::MemberState;

const CALLBACK: &str = "http://127.0.0.1:9/callback";

fn offer(sim: &mut Sim, now: Instant, from: usize) -> String {
    let action = PersonAction::CallBot {
        callback_uri: CALLBACK,
        caller: Caller::ScenarioUser(from),
    };
    sim.handle_person(now, action).unwrap().call_id
}

fn join(sim: &mut Sim, now: Instant, call_id: &str, name: &str) -> Result<u32, PersonError> {
    sim.handle_person(now, PersonAction::Join { call_id, name })
        .map(|o| o.source_id)
}

fn mute(sim: &mut Sim, now: Instant, call_id: &str, source_id: u32, muted: bool) -> bool {
    let action = PersonAction::Mute {
        call_id,
        source_id,
        muted,
    };
    sim.handle_person(now, action).is_ok()
}

fn leave(sim: &mut Sim, now: Instant, call_id: &str, source_id: u32) -> bool {
    let action = PersonAction::Leave { call_id, source_id };
    sim.handle_person(now, action).is_ok()
}

fn established_incoming(sim: &mut Sim, now: Instant) -> String {
    let id = offer(sim, now, 0);
    // Pretend the bot answered with app-hosted media: established with a blob.
    let call = sim.calls.get_mut(&id).unwrap();
    call.awaiting_answer = false;
    call.state = CallState::Established;
    call.blob = Some(
        media_session::MediaSession::builder(
            "net.tcp://127.0.0.1:9/MediaProcessor".parse().unwrap(),
        )
        .build()
        .unwrap()
        .blob_config(),
    );
    for m in &mut call.members {
        m.state = MemberState::Present;
    }
    id
}

#[test]
fn a_person_joins_mutes_and_leaves_like_any_participant() {
    let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
    let now = Instant::now();
    let id = established_incoming(&mut sim, now);
    while sim.poll_event().is_some() {}
    let source = join(&mut sim, now, &id, "  Pat  ").unwrap();
    let ev = sim.poll_event().unwrap();
    assert!(
        matches!(&ev, SimEvent::SourceAdded { source_id, name, .. } if *source_id == source && name == "Pat"),
        "{ev:?}"
    );
    let roster = sim.roster(&id).unwrap();
    assert!(roster[0].bot);
    assert!(
        roster
            .iter()
            .any(|r| r.name == "Pat" && r.source_id == source)
    );
    assert!(mute(&mut sim, now, &id, source, true));
    assert!(
        sim.roster(&id)
            .unwrap()
            .iter()
            .any(|r| r.name == "Pat" && r.muted)
    );
    assert!(leave(&mut sim, now + Duration::from_secs(1), &id, source));
    assert!(matches!(
        sim.poll_event(),
        Some(SimEvent::SourceRemoved { source_id, .. }) if source_id == source
    ));
    assert!(!leave(&mut sim, now, &id, source));
    assert_eq!(sim.call_summaries().len(), 1);
}

#[test]
fn joining_is_refused_with_a_reason() {
    let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
    let now = Instant::now();
    assert!(matches!(
        join(&mut sim, now, "nope", "Pat"),
        Err(PersonError::NoCall(_))
    ));
    let id = offer(&mut sim, now, 0);
    assert!(matches!(
        join(&mut sim, now, &id, "Pat"),
        Err(PersonError::NotEstablished(..))
    ));
    let id = established_incoming(&mut sim, now);
    for bad in ["", "   ", "a\u{7}b", &"x".repeat(MAX_PERSON_NAME_CHARS + 1)] {
        assert_eq!(join(&mut sim, now, &id, bad), Err(PersonError::BadName));
    }
}

#[test]
fn a_person_can_call_the_bot() {
    let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
    let now = Instant::now();
    let action = PersonAction::CallBot {
        callback_uri: CALLBACK,
        caller: Caller::Person("Pat"),
    };
    let PersonOutcome {
        call_id: id,
        source_id: source,
    } = sim.handle_person(now, action).unwrap();
    assert_eq!(sim.call_state(&id), Some(CallState::Incoming));
    assert!(source > 0);
    assert_eq!(sim.last_callback_uri(), Some(CALLBACK));
}

#[test]
fn muting_leaving_and_calling_are_refused_with_a_reason() {
    let mut sim = Sim::new(SimConfig::default(), Scenario::two_users());
    let now = Instant::now();
    let id = established_incoming(&mut sim, now);
    let mute = |call_id| PersonAction::Mute {
        call_id,
        source_id: 99,
        muted: true,
    };
    assert!(matches!(
        sim.handle_person(now, mute("nope")),
        Err(PersonError::NoCall(_))
    ));
    assert_eq!(
        sim.handle_person(now, mute(&id)),
        Err(PersonError::NoParticipant {
            call_id: id.clone(),
            source_id: 99
        })
    );
    let from_nobody = PersonAction::CallBot {
        callback_uri: CALLBACK,
        caller: Caller::ScenarioUser(2),
    };
    assert_eq!(
        sim.handle_person(now, from_nobody),
        Err(PersonError::NoScenarioUser(2))
    );
    assert_eq!(sim.active_calls().count(), 1, "nothing was offered");
}
