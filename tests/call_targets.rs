//! Every call target of the bot API, placed through a real bot (HTTP, signed notifications)
//! against graph-sim in-process on loopback: a user, a group, a meeting by join id, by join
//! link, by organizer and chat thread, a channel meeting, a meeting joined as a guest, and a
//! phone number called from the bot's application instance. Each call must establish, show
//! the expected people in its roster, carry their audio to the bot and hang up cleanly; the
//! requests the service refuses come back as Graph's errors.

use std::collections::BTreeMap;
use std::time::Duration;

use mediabot::bot::{
    Bot, BotError, Call, CallEvent, CallTarget, LocalSim, LocalSimOptions, ReceivedAudio,
};
use mediabot::crates::audio_pipeline::EngineConfig;
use mediabot::crates::graph_signaling::client::GraphError;
use mediabot::crates::graph_signaling::models::{CallState, Participant};
use mediabot::crates::graph_signaling::state::ParticipantKey;
use mediabot::crates::graph_sim::scenario::{IdentityKind, Meeting, Scenario, SimUser, Voice};
use mediabot::crates::graph_sim::service::SimConfig;

/// Generous deadline for anything signaling or media setup does (milliseconds when all is
/// well); nothing asserts how long it took.
const WAIT: Duration = Duration::from_secs(15);

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The tests of this binary run one at a time, so no call competes with another's real-time
/// threads on a small machine. A panicking test releases its turn.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

fn small_engine() -> EngineConfig {
    EngineConfig {
        send_threads: 1,
        receive_threads: 1,
        realtime_priority: None,
        ..EngineConfig::default()
    }
}

const JOIN_ID: &str = "1234567890123";
const PASSCODE: &str = "Xy7pQ2";
const CHANNEL_THREAD: &str = "19:4f3b8a2e9c1d4b7a8e6f5d4c3b2a1908@thread.tacv2";
const CHANNEL_POST: &str = "1603984381935";
const PHONE: &str = "+14255550123";

fn meeting_scenario() -> Scenario {
    Scenario {
        meeting: Some(Meeting {
            join_meeting_id: JOIN_ID.into(),
            passcode: Some(PASSCODE.into()),
            ..Meeting::default()
        }),
        ..Scenario::two_users()
    }
}

fn channel_scenario() -> Scenario {
    Scenario {
        meeting: Some(Meeting {
            join_meeting_id: JOIN_ID.into(),
            thread_id: Some(CHANNEL_THREAD.into()),
            message_id: Some(CHANNEL_POST.into()),
            ..Meeting::default()
        }),
        ..Scenario::two_users()
    }
}

/// A scenario whose only person answers the phone.
fn phone_scenario() -> Scenario {
    let mut carol = SimUser::new("Carol (mobile)", Voice::Tone { tone_hz: 440.0 });
    carol.identity = IdentityKind::Phone;
    carol.phone = Some(PHONE.into());
    Scenario {
        users: vec![carol],
        ..Scenario::default()
    }
}

async fn start(scenario: Scenario) -> (LocalSim, Bot) {
    start_with(scenario, SimConfig::default()).await
}

async fn start_with(scenario: Scenario, config: SimConfig) -> (LocalSim, Bot) {
    let options = LocalSimOptions {
        config,
        ..LocalSimOptions::default()
    };
    let sim = LocalSim::start_with(scenario, options).await.unwrap();
    let bot = Bot::builder(sim.target())
        .engine(small_engine())
        .build()
        .await
        .unwrap();
    (sim, bot)
}

/// The display name and identity label of a roster entry.
fn who(p: &Participant) -> (String, String) {
    let name = p
        .info
        .get()
        .and_then(|i| i.identity.get())
        .and_then(|s| s.primary())
        .and_then(|(_, i)| i.display_name.get().cloned())
        .unwrap_or_default();
    (name, p.identity_label())
}

/// A call being watched: its events, the roster they describe, and whether audio came.
struct Watched {
    call: Call,
    roster: BTreeMap<ParticipantKey, (String, String)>,
    /// The bot's own entry: display name and identity label.
    me: Option<(String, String)>,
    states: Vec<CallState>,
}

impl Watched {
    fn new(call: Call) -> Watched {
        Watched {
            call,
            roster: BTreeMap::new(),
            me: None,
            states: Vec::new(),
        }
    }

    fn apply(&mut self, e: &CallEvent) {
        match e {
            // The bot's own entry never comes as one of the people.
            CallEvent::ParticipantJoined(k, p) | CallEvent::ParticipantUpdated(k, p) => {
                self.roster.insert(k.clone(), who(p));
            }
            CallEvent::SelfUpdated(p) => self.me = Some(who(p)),
            CallEvent::ParticipantLeft(k, _) => {
                self.roster.remove(k);
            }
            CallEvent::StateChanged { to, .. } => self.states.push(to.clone()),
            _ => {}
        }
    }

    /// Reads events until `done` holds for this watch, up to [`WAIT`].
    async fn until(&mut self, what: &str, done: impl Fn(&Watched) -> bool) {
        let reached = tokio::time::timeout(WAIT, async {
            while !done(self) {
                match self.call.next_event().await {
                    Some(e) => self.apply(&e),
                    None => return false,
                }
            }
            true
        })
        .await;
        assert!(
            reached == Ok(true),
            "{what}: states {:?}, roster {:?}",
            self.states,
            self.roster
        );
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.roster.values().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    fn labels(&self) -> Vec<String> {
        self.roster.values().map(|(_, l)| l.clone()).collect()
    }
}

/// Establishes the call, waits until the roster names exactly `people` (the bot's own entry
/// left out), checks their audio reaches the bot, and hangs up.
async fn establish_and_hang_up(call: Call, people: &[&str]) -> Watched {
    let mut w = Watched::new(call);
    let mut audio = w.call.audio_receiver().expect("first take of the audio");
    w.until("established", |w| {
        w.states.contains(&CallState::Established)
    })
    .await;
    let mut expected: Vec<String> = people.iter().map(|p| (*p).to_owned()).collect();
    expected.sort();
    w.until("the expected roster", |w| w.names() == expected)
        .await;
    // Someone's own (unmixed) audio arrives: the media path carries the participants' voices.
    let heard = tokio::time::timeout(WAIT, async {
        loop {
            match audio.recv().await {
                Some(ReceivedAudio::Unmixed(_)) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(heard, Ok(true), "no participant's audio reached the bot");
    w.call.hang_up().await.expect("hang-up accepted");
    w.until("terminated", |w| w.states.contains(&CallState::Terminated))
        .await;
    w
}

/// The Graph error a refused request came back with: status and `code`.
fn refusal(e: BotError) -> (u16, String) {
    match e {
        BotError::Graph(GraphError::Http { status, code, .. }) => {
            (status, code.unwrap_or_default())
        }
        other => panic!("not a Graph refusal: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user() {
    let _turn = serial().await;
    let (sim, bot) = start(Scenario::two_users()).await;
    let alice = sim.users()[0].clone();
    let call = bot
        .place_call(CallTarget::user(&alice.id, Some(alice.name.clone())))
        .await
        .unwrap();
    establish_and_hang_up(call, &["Alice"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group() {
    let _turn = serial().await;
    let (sim, bot) = start(Scenario::two_users()).await;
    let users = sim
        .users()
        .iter()
        .map(|u| (u.id.clone(), Some(u.name.clone())))
        .collect();
    let target = CallTarget::Group {
        users,
        subject: Some("Stand-up".into()),
    };
    let call = bot.place_call(target).await.unwrap();
    establish_and_hang_up(call, &["Alice", "Bob"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_by_join_id_and_passcode() {
    let _turn = serial().await;
    let (sim, bot) = start(meeting_scenario()).await;
    let wrong = bot
        .place_call(CallTarget::meeting(JOIN_ID, Some("guess".into())))
        .await
        .unwrap_err();
    assert_eq!(refusal(wrong), (403, "Forbidden".into()));
    let call = bot
        .place_call(CallTarget::meeting(JOIN_ID, Some(PASSCODE.into())))
        .await
        .unwrap();
    establish_and_hang_up(call, &["Alice", "Bob"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_by_its_join_link() {
    let _turn = serial().await;
    let (sim, bot) = start(meeting_scenario()).await;
    let link = sim
        .meeting_join_url()
        .expect("the scenario has a meeting")
        .to_url();
    assert!(
        link.starts_with("https://teams.microsoft.com/l/meetup-join/19%3Ameeting_sim"),
        "{link}"
    );
    // A link to another meeting of the same organizer is no meeting the service knows.
    let other = link.replace("meeting_sim", "meeting_other");
    let refused = bot
        .place_call(CallTarget::meeting_url(&other).unwrap())
        .await
        .unwrap_err();
    assert_eq!(refusal(refused), (404, "NotFound".into()));
    // The link is the invitation: no passcode.
    let call = bot
        .place_call(CallTarget::meeting_url(&link).unwrap())
        .await
        .unwrap();
    establish_and_hang_up(call, &["Alice", "Bob"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_by_organizer_and_chat_thread() {
    let _turn = serial().await;
    let (sim, bot) = start(meeting_scenario()).await;
    let known = sim.meeting_join_url().unwrap().clone();
    // What the Get onlineMeeting API gives: the chat thread, the organizer and their tenant.
    let target = CallTarget::meeting_by_organizer(
        known.thread_id.clone(),
        known.organizer_id.clone(),
        known.tenant_id.clone(),
    );
    let stranger = CallTarget::meeting_by_organizer(
        known.thread_id.clone(),
        "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96",
        known.tenant_id.clone(),
    );
    let refused = bot.place_call(stranger).await.unwrap_err();
    assert_eq!(refusal(refused), (404, "NotFound".into()));
    let call = bot.place_call(target).await.unwrap();
    establish_and_hang_up(call, &["Alice", "Bob"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_meeting() {
    let _turn = serial().await;
    let (sim, bot) = start(channel_scenario()).await;
    let link = sim.meeting_join_url().unwrap().clone();
    assert!(link.is_channel_meeting());
    let from_link = CallTarget::meeting_url(&link.to_url()).unwrap();
    let by_parts = CallTarget::channel_meeting(
        CHANNEL_THREAD,
        CHANNEL_POST,
        link.organizer_id.clone(),
        link.tenant_id.clone(),
    );
    assert_eq!(from_link, by_parts, "the link names the channel post");
    // The channel's thread with another post is another meeting.
    let other_post = CallTarget::channel_meeting(
        CHANNEL_THREAD,
        "1603984399999",
        link.organizer_id.clone(),
        link.tenant_id.clone(),
    );
    let refused = bot.place_call(other_post).await.unwrap_err();
    assert_eq!(refusal(refused), (404, "NotFound".into()));
    let call = bot.place_call(by_parts).await.unwrap();
    establish_and_hang_up(call, &["Alice", "Bob"]).await;
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_as_a_guest() {
    let _turn = serial().await;
    let config = SimConfig {
        // Admitted from the lobby soon; the test does not measure how soon.
        lobby_admit_after: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let (sim, bot) = start_with(meeting_scenario(), config).await;
    let link = sim.meeting_join_url().unwrap().to_url();
    // Graph takes guests into meetings only.
    let alice = sim.users()[0].clone();
    let refused = bot
        .place_call(CallTarget::user(&alice.id, None).as_guest("Visitor"))
        .await
        .unwrap_err();
    assert_eq!(refusal(refused), (400, "BadRequest".into()));
    let target = CallTarget::meeting_url(&link).unwrap().as_guest("Visitor");
    let call = bot.place_call(target).await.unwrap();
    let w = establish_and_hang_up(call, &["Alice", "Bob"]).await;
    // The meeting shows the bot as the guest it joined as.
    let (name, label) = w.me.clone().expect("the bot's own entry");
    assert_eq!(name, "Visitor");
    assert!(label.starts_with("guest:"), "{label}");
    // The call waited in the lobby (establishing) before it was admitted.
    let establishing = w.states.iter().position(|s| *s == CallState::Establishing);
    let established = w.states.iter().position(|s| *s == CallState::Established);
    assert!(
        matches!((establishing, established), (Some(a), Some(b)) if a < b),
        "{:?}",
        w.states
    );
    sim.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_from_the_application_instance() {
    let _turn = serial().await;
    let (sim, bot) = start(phone_scenario()).await;
    let instance = sim.application_instance_id().unwrap().to_owned();
    assert!(
        CallTarget::phone("4255550123", &instance).is_err(),
        "not E.164: refused before anything is sent"
    );
    // An application instance of another app is refused, as Graph checks it against the token.
    let refused = bot
        .place_call(CallTarget::phone(PHONE, "0f0f0f0f-0000-4000-8000-000000000000").unwrap())
        .await
        .unwrap_err();
    assert_eq!(refusal(refused), (403, "Forbidden".into()));
    let call = bot
        .place_call(CallTarget::phone(PHONE, &instance).unwrap())
        .await
        .unwrap();
    let w = establish_and_hang_up(call, &["Carol (mobile)"]).await;
    assert_eq!(
        w.labels(),
        [format!("phone:{PHONE}")],
        "a phone participant"
    );
    // The bot calls as its application instance, and the roster shows it so.
    let (_, label) = w.me.clone().expect("the bot's own entry");
    assert_eq!(label, format!("applicationInstance:{instance}"));
    sim.finish().await.unwrap();
}
