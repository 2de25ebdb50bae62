//! The rest of the Graph calling surface through the bot API against graph-sim (HTTP, signed
//! notifications): participants listed, muted, held with music and removed; operations read
//! back; audio routing groups; content sharing sessions; screen sharing role; large gallery
//! view; device quality reports; several invitees at once; a P2P call turned into a group
//! call; a participant moved between meetings; incoming calls redirected or rejected with a
//! reason.

use std::collections::HashMap;
use std::time::Duration;

use mediabot::bot::{Bot, BotError, Call, CallEvent, CallTarget, LocalSim};
use mediabot::crates::graph_signaling::models::{
    AudioRoutingGroup, CallState, IdentitySet, InvitationParticipantInfo, Participant,
    RejectReason, RoutingMode, ScreenSharingRole, TeleconferenceDeviceQuality,
};
use mediabot::crates::graph_sim::scenario::{Scenario, ScreenShare, SimUser, Voice};

const WAIT: Duration = Duration::from_secs(20);

fn people(names: &[&str]) -> Scenario {
    Scenario {
        users: names
            .iter()
            .map(|n| SimUser::new(*n, Voice::Speech))
            .collect(),
        ..Scenario::default()
    }
}

/// The user object id of a roster entry.
fn user_of(p: &Participant) -> Option<String> {
    p.info.get()?.identity.get()?.user.get()?.id.get().cloned()
}

/// Whether a roster entry has a stream of `media_type`.
fn has_stream(p: &Participant, media_type: &str) -> bool {
    p.media_streams
        .get()
        .is_some_and(|s| s.iter().any(|s| s.media_type.as_str() == media_type))
}

/// Reads events until `done` says so; returns what it saw.
async fn until(call: &mut Call, mut done: impl FnMut(&CallEvent) -> bool) -> Vec<CallEvent> {
    tokio::time::timeout(WAIT, async {
        let mut seen = Vec::new();
        while let Some(e) = call.next_event().await {
            let stop = done(&e);
            seen.push(e);
            if stop {
                return seen;
            }
        }
        panic!("the call's events ended first: {seen:?}");
    })
    .await
    .expect("the event came in time")
}

/// Participant ids by user id, once `count` people joined.
async fn joined(call: &mut Call, count: usize) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    until(call, |e| {
        if let CallEvent::ParticipantJoined(_, p) = e
            && let (Some(user), Some(pid)) = (user_of(p), p.id.get())
        {
            ids.insert(user, pid.clone());
        }
        ids.len() >= count
    })
    .await;
    ids
}

fn user(id: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::user(id, None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_are_listed_muted_held_and_removed() {
    let mut scenario = people(&["Alice", "Bob", "Carol"]);
    // Bob shares his screen from the moment he joins.
    scenario.users[1].shares = Some(ScreenShare {
        from_ms: 0,
        for_ms: None,
    });
    let sim = LocalSim::start(scenario).await.unwrap();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let users: Vec<(String, Option<String>)> =
        sim.users().iter().map(|u| (u.id.clone(), None)).collect();
    let (alice, bob, carol) = (
        sim.users()[0].id.clone(),
        sim.users()[1].id.clone(),
        sim.users()[2].id.clone(),
    );
    let mut call = bot
        .place_call(CallTarget::Group {
            users,
            subject: Some("surface".into()),
        })
        .await
        .unwrap();
    let ids = joined(&mut call, 3).await;
    // The call resource, read back.
    let resource = call.resource().await.unwrap();
    assert_eq!(resource.id.get().map(String::as_str), Some(call.id()));
    assert_eq!(resource.state.get(), Some(&CallState::Established));
    // Listed: the bot and the three.
    let listed = call.participants().await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let one = call.participant(&ids[&alice]).await.unwrap();
    assert_eq!(user_of(&one).as_deref(), Some(alice.as_str()));
    assert!(call.participant("no-such-participant").await.is_err());

    // Muted by the bot: the roster says so.
    let muted = call.mute_participant(&ids[&alice]).await.unwrap();
    assert_eq!(muted.kind(), "muteParticipantOperation");
    until(&mut call, |e| {
        matches!(e, CallEvent::ParticipantUpdated(_, p)
            if user_of(p).as_deref() == Some(alice.as_str()) && p.is_muted.get() == Some(&true))
    })
    .await;
    // The operation can be read back.
    let op_id = muted.id.get().cloned().unwrap();
    let read = call.operation(&op_id).await.unwrap();
    assert_eq!(read.kind(), "muteParticipantOperation");
    assert!(read.is_finished());

    // Held with music for a moment.
    let held = call.start_hold_music(&ids[&bob], None).await.unwrap();
    assert_eq!(held.kind(), "startHoldMusicOperation");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let unheld = call.stop_hold_music(&ids[&bob]).await.unwrap();
    assert_eq!(unheld.kind(), "stopHoldMusicOperation");
    assert!(
        call.stop_hold_music(&ids[&bob]).await.is_err(),
        "not on hold any more"
    );

    // Removed: Carol leaves the roster.
    call.remove_participant(&ids[&carol]).await.unwrap();
    until(&mut call, |e| matches!(e, CallEvent::ParticipantLeft(..))).await;
    assert_eq!(call.participants().await.unwrap().len(), 3);

    // Bob's screen is a content sharing session.
    let sessions = call.content_sharing_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let bobs = sessions[0].id.get().cloned().unwrap();
    assert_eq!(
        call.content_sharing_session(&bobs).await.unwrap().id.get(),
        Some(&bobs)
    );
    assert!(call.content_sharing_session("nothing").await.is_err());
    // The bot as sharer takes over: Bob's session ends, the bot's starts, and the bot's own
    // entry carries its screen-sharing stream.
    call.change_screen_sharing_role(ScreenSharingRole::Sharer)
        .await
        .unwrap();
    until(
        &mut call,
        |e| matches!(e, CallEvent::ContentSharingEnded(id) if *id == bobs),
    )
    .await;
    until(
        &mut call,
        |e| matches!(e, CallEvent::SelfUpdated(p) if has_stream(p, "videoBasedScreenSharing")),
    )
    .await;
    let sessions = call.content_sharing_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_ne!(sessions[0].id.get(), Some(&bobs));
    call.change_screen_sharing_role(ScreenSharingRole::Viewer)
        .await
        .unwrap();
    until(&mut call, |e| {
        matches!(e, CallEvent::ContentSharingEnded(_))
    })
    .await;
    assert!(call.content_sharing_sessions().await.unwrap().is_empty());
    // The large gallery: a video stream on the bot's own entry.
    let gallery = call.add_large_gallery_view().await.unwrap();
    assert_eq!(gallery.kind(), "addLargeGalleryViewOperation");
    until(
        &mut call,
        |e| matches!(e, CallEvent::SelfUpdated(p) if has_stream(p, "video")),
    )
    .await;

    // Audio routing groups: created, read, changed, deleted.
    let group = AudioRoutingGroup::new(
        RoutingMode::OneToOne,
        vec![ids[&alice].clone()],
        vec![ids[&bob].clone()],
    );
    let created = call.create_audio_routing_group(&group).await.unwrap();
    let gid = created.id.clone().unwrap();
    assert_eq!(call.audio_routing_groups().await.unwrap().len(), 1);
    assert_eq!(
        call.audio_routing_group(&gid).await.unwrap().sources,
        vec![ids[&alice].clone()]
    );
    let changed = AudioRoutingGroup::new(
        RoutingMode::Multicast,
        vec![ids[&alice].clone(), ids[&bob].clone()],
        vec![ids[&bob].clone()],
    );
    let updated = call
        .update_audio_routing_group(&gid, &changed)
        .await
        .unwrap();
    assert_eq!(updated.routing_mode, RoutingMode::Multicast);
    call.delete_audio_routing_group(&gid).await.unwrap();
    assert!(call.audio_routing_groups().await.unwrap().is_empty());
    let stranger = AudioRoutingGroup::new(
        RoutingMode::OneToOne,
        vec!["not-in-the-call".into()],
        vec![ids[&bob].clone()],
    );
    assert!(matches!(
        call.create_audio_routing_group(&stranger).await,
        Err(BotError::Graph(e)) if e.status() == Some(400)
    ));

    // A device quality report.
    let quality: TeleconferenceDeviceQuality = serde_json::from_value(serde_json::json!({
        "callChainId": "7e1b4346-85a6-4bdd-abe3-d11c5d420efe",
        "participantId": "7e1b4346-85a6-4bdd-abe3-d11c5d420efd",
        "mediaLegId": "7e1b4346-85a6-4bdd-abe3-d11c5d420efc",
        "deviceName": "room-1",
        "deviceDescription": "Conference room 1",
        "mediaQualityList": [{"@odata.type": "#microsoft.graph.teleconferenceDeviceAudioQuality",
            "channelIndex": 1, "mediaDuration": "PT1M", "networkLinkSpeedInBytes": 13000}]
    }))
    .unwrap();
    bot.log_teleconference_device_quality(quality)
        .await
        .unwrap();

    call.hang_up().await.unwrap();
    let report = sim.finish().await.unwrap();
    let heard = report
        .heard
        .iter()
        .find(|h| h.call_id == call.id())
        .unwrap();
    assert!(
        heard.pieces >= 1 && heard.sound_ms >= 1000,
        "hold music was heard: {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_several_turn_a_p2p_call_into_a_group_call_and_move_a_participant() {
    let sim = LocalSim::start(people(&["Alice", "Bob", "Carol", "Dan", "Eve"]))
        .await
        .unwrap();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let id = |i: usize| sim.users()[i].id.clone();
    // A P2P call with Alice ...
    let mut p2p = bot.place_call(CallTarget::user(id(0), None)).await.unwrap();
    until(&mut p2p, |e| {
        matches!(
            e,
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    // ... and a group call with Bob and Carol, into which Dan and Eve are invited at once.
    let mut group = bot
        .place_call(CallTarget::Group {
            users: vec![(id(1), None), (id(2), None)],
            subject: None,
        })
        .await
        .unwrap();
    joined(&mut group, 2).await;
    let several = group
        .invite_all(vec![user(&id(3)), user(&id(4))])
        .await
        .unwrap();
    assert_eq!(several.kind(), "inviteParticipantsOperation");
    // Alice moves over: the P2P call ends, replaced.
    group.invite_replacing(&id(0), p2p.id()).await.unwrap();
    let ended = until(&mut p2p, |e| matches!(e, CallEvent::Terminated(_))).await;
    let Some(CallEvent::Terminated(Some(info))) = ended.last() else {
        panic!("{ended:?}");
    };
    assert_eq!(
        info.subcode.get(),
        Some(&5005),
        "ended as replaced: {info:?}"
    );
    // A second meeting, and Dan moved into it from the first: he leaves the first.
    let mut other = bot
        .place_call(CallTarget::Group {
            users: vec![(id(1), None), (id(2), None)],
            subject: None,
        })
        .await
        .unwrap();
    joined(&mut other, 2).await;
    let roster = group.participants().await.unwrap();
    let dan_pid = roster
        .iter()
        .find(|p| user_of(p).as_deref() == Some(id(3).as_str()))
        .and_then(|p| p.id.get().cloned())
        .expect("Dan is in the first group call");
    other
        .move_participant(&id(3), &dan_pid, group.id())
        .await
        .unwrap();
    until(
        &mut group,
        |e| matches!(e, CallEvent::ParticipantLeft(k, _) if k.to_string().contains(&dan_pid)),
    )
    .await;
    // A phone number needs an application instance as the caller: refused here, clearly.
    assert!(matches!(
        group.invite_phone("+14255550123").await,
        Err(BotError::Action(_)) | Err(BotError::Graph(_))
    ));
    group.hang_up().await.unwrap();
    other.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_calls_are_redirected_or_rejected_with_a_reason() {
    let sim = LocalSim::start(people(&["Alice", "Bob"])).await.unwrap();
    let mut bot = Bot::builder(sim.target()).build().await.unwrap();
    let mut incoming = bot.incoming_calls().unwrap();
    let first = sim
        .offer_incoming_call(bot.callback_url(), 0)
        .await
        .unwrap();
    let offered = incoming.next().await.unwrap();
    assert_eq!(offered.id(), first);
    let bob = sim.users()[1].id.clone();
    offered.redirect(vec![user(&bob)], Some(20)).await.unwrap();
    let second = sim
        .offer_incoming_call(bot.callback_url(), 0)
        .await
        .unwrap();
    let offered = incoming.next().await.unwrap();
    assert_eq!(offered.id(), second);
    offered.reject_with(RejectReason::Forbidden).await.unwrap();
    // Both leave the bot: the service ends them.
    for id in [&first, &second] {
        tokio::time::timeout(WAIT, async {
            while sim.call_state(id).await != Some(CallState::Terminated) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("call {id} ended"));
    }
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_user_calls_the_bots_number() {
    use mediabot::crates::graph_sim::scenario::IdentityKind;
    let mut caller = SimUser::new("Phone Pat", Voice::Speech);
    caller.identity = IdentityKind::Phone;
    caller.phone = Some("+14255550123".into());
    let sim = LocalSim::start(Scenario {
        users: vec![caller],
        ..Scenario::default()
    })
    .await
    .unwrap();
    let mut bot = Bot::builder(sim.target()).build().await.unwrap();
    let mut incoming = bot.incoming_calls().unwrap();
    sim.offer_incoming_call(bot.callback_url(), 0)
        .await
        .unwrap();
    let offered = incoming.next().await.unwrap();
    // Offered to the bot's application instance, from a phone number.
    let caller = offered.caller().expect("the caller's identity");
    assert_eq!(
        caller
            .phone
            .get()
            .and_then(|p| p.id.get())
            .map(String::as_str),
        Some("+14255550123")
    );
    let target = offered.offer().unwrap().targets.get().unwrap()[0]
        .identity
        .get()
        .unwrap()
        .clone();
    assert!(target.application_instance.get().is_some(), "{target:?}");
    let mut call = offered.answer_service_hosted().await.unwrap();
    until(&mut call, |e| {
        matches!(
            e,
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    call.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_application_instance_invites_another_phone() {
    use mediabot::crates::graph_sim::scenario::IdentityKind;
    let phone_user = |name: &str, number: &str| {
        let mut u = SimUser::new(name, Voice::Speech);
        u.identity = IdentityKind::Phone;
        u.phone = Some(number.into());
        u
    };
    let sim = LocalSim::start(Scenario {
        users: vec![
            phone_user("Carol (mobile)", "+14255550123"),
            phone_user("Dave (desk)", "+14255550177"),
        ],
        ..Scenario::default()
    })
    .await
    .unwrap();
    let bot = Bot::builder(sim.target()).build().await.unwrap();
    let instance = sim.application_instance_id().unwrap().to_owned();
    let mut call = bot
        .place_call(CallTarget::phone("+14255550123", instance).unwrap())
        .await
        .unwrap();
    until(&mut call, |e| {
        matches!(
            e,
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    // The roster shows the bot as its application instance, with its number; the bot knows
    // that entry as its own.
    let me = call.participants().await.unwrap();
    assert!(
        me.iter()
            .any(|p| p.identity_label().starts_with("applicationInstance:")),
        "{me:?}"
    );
    let op = call.invite_phone("+14255550177").await.unwrap();
    assert_eq!(op.kind(), "inviteParticipantsOperation");
    // Dave's phone joins the roster.
    until(&mut call, |e| {
        matches!(e, CallEvent::ParticipantJoined(_, p) if p.identity_label().contains("+14255550177"))
    })
    .await;
    // A number that is not E.164 never leaves the bot.
    assert!(matches!(
        call.invite_phone("4255550177").await,
        Err(BotError::Action(_))
    ));
    call.hang_up().await.unwrap();
    sim.finish().await.unwrap();
}
