//! A meeting bot: joins a Teams meeting by its join id and passcode, reports the roster as it
//! changes (who, what kind of identity, muted, waiting in the lobby), then leaves. A wrong
//! passcode or unknown meeting id is refused by the service, and the bot exits with its error.
//!
//! `cargo run --example meeting_bot -- --duration 6`
//! `cargo run --example meeting_bot -- --passcode wrong`   (refused: 403)
//! `cargo run --example meeting_bot -- --by-link`          (joins by the meeting's join link)
//! `cargo run --example meeting_bot -- --join-url 'https://teams.microsoft.com/l/meetup-join/…'`
#![allow(clippy::print_stdout)] // an example reports to its terminal

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mediabot::bot::{Bot, CallEvent, CallTarget, LocalSim, LocalSimOptions};
use mediabot::crates::graph_signaling::models::Participant;
use mediabot::crates::graph_signaling::state::ParticipantKey;
use mediabot::crates::graph_sim::media::MediaOptions;
use mediabot::crates::graph_sim::scenario::Scenario;

type Error = Box<dyn std::error::Error>;

/// The meeting graph-sim hosts unless `--scenario` names another file.
const DEFAULT_SCENARIO: &str = include_str!("../crates/graph-sim/scenarios/meeting-passcode.toml");

/// Joins a meeting hosted by graph-sim and reports its roster.
#[derive(Parser)]
struct Args {
    /// Seconds to stay in the meeting.
    #[arg(long, default_value_t = 6)]
    duration: u64,
    /// A graph-sim scenario file with a `[meeting]` section (default: the shipped
    /// `meeting-passcode.toml`).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// The join id to give (default: the scenario's).
    #[arg(long)]
    join_id: Option<String>,
    /// The passcode to give (default: the scenario's).
    #[arg(long)]
    passcode: Option<String>,
    /// Join by the meeting's join link (what people have in their invitation) instead of its
    /// id and passcode: the link the sim shows for its meeting.
    #[arg(long, conflicts_with_all = ["join_id", "passcode", "join_url"])]
    by_link: bool,
    /// Join by this Teams join link.
    #[arg(long, conflicts_with_all = ["join_id", "passcode"])]
    join_url: Option<String>,
}

/// One roster entry as the report shows it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    kind: &'static str,
    muted: bool,
    lobby: bool,
}

impl Entry {
    fn of(p: &Participant) -> Entry {
        let who = p
            .info
            .get()
            .and_then(|i| i.identity.get())
            .and_then(|s| s.primary());
        let name = who
            .and_then(|(_, i)| i.display_name.as_deref().or(i.id.as_deref()))
            .unwrap_or("(unnamed)");
        Entry {
            // Names come from the service: keep one line per entry whatever they hold.
            name: name.chars().filter(|c| !c.is_control()).take(80).collect(),
            kind: who.map_or("unknown", |(kind, _)| kind),
            muted: p.is_muted.get().copied().unwrap_or(false),
            lobby: p.is_in_lobby.get().copied().unwrap_or(false),
        }
    }

    fn line(&self) -> String {
        format!(
            "name={:?} kind={} muted={} lobby={}",
            self.name, self.kind, self.muted, self.lobby
        )
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let (text, voice_dir) = match &args.scenario {
        Some(path) => (
            std::fs::read_to_string(path)?,
            path.parent().map(PathBuf::from),
        ),
        None => (DEFAULT_SCENARIO.to_owned(), None),
    };
    let scenario = Scenario::parse(&text)?;
    let meeting = scenario.meeting.clone();
    let mut media = MediaOptions::for_scenario(&scenario);
    media.voice_dir = voice_dir;
    let sim = LocalSim::start_with(
        scenario,
        LocalSimOptions {
            media: Some(media),
            ..LocalSimOptions::default()
        },
    )
    .await?;
    let bot = Bot::builder(sim.target()).build().await?;

    // What a real bot gets from the meeting invitation; here the scenario's values by default.
    let link = match (&args.join_url, args.by_link) {
        (Some(url), _) => Some(url.clone()),
        (None, true) => Some(
            sim.meeting_join_url()
                .ok_or("the scenario declares no meeting")?
                .to_url(),
        ),
        (None, false) => None,
    };
    let target = match link {
        Some(link) => {
            let target = CallTarget::meeting_url(&link)?;
            println!("joining meeting by its link");
            target
        }
        None => {
            let join_meeting_id = args
                .join_id
                .or_else(|| meeting.as_ref().map(|m| m.join_meeting_id.clone()))
                .ok_or("no --join-id and the scenario declares no meeting")?;
            let passcode = args.passcode.or_else(|| meeting.and_then(|m| m.passcode));
            println!("joining meeting {join_meeting_id}");
            CallTarget::Meeting {
                join_meeting_id,
                passcode,
            }
        }
    };
    let mut call = bot
        .place_call(target)
        .await
        // The service refuses a wrong passcode or unknown id at once, with Graph's error.
        .map_err(|e| format!("join refused: {e}"))?;

    let mut roster: BTreeMap<ParticipantKey, Entry> = BTreeMap::new();
    let leave_at = tokio::time::sleep(Duration::from_secs(args.duration));
    tokio::pin!(leave_at);
    loop {
        tokio::select! {
            event = call.next_event() => match event {
                Some(CallEvent::StateChanged { to, .. }) => println!("call {to}"),
                Some(CallEvent::ParticipantJoined(key, p)) => {
                    let entry = Entry::of(&p);
                    println!("joined  {}", entry.line());
                    roster.insert(key, entry);
                }
                Some(CallEvent::ParticipantUpdated(key, p)) => {
                    let entry = Entry::of(&p);
                    // Only say so when something the report shows changed.
                    if roster.get(&key) != Some(&entry) {
                        println!("updated {}", entry.line());
                        roster.insert(key, entry);
                    }
                }
                Some(CallEvent::ParticipantLeft(key, _)) => {
                    if let Some(entry) = roster.remove(&key) {
                        println!("left    {}", entry.line());
                    }
                }
                Some(CallEvent::Terminated(info)) => {
                    return Err(format!("the meeting ended the call: {info:?}").into());
                }
                None => return Err("the call's events stopped".into()),
                Some(_) => {}
            },
            () = &mut leave_at => break,
        }
    }

    println!("roster at {} s: {} entries", args.duration, roster.len());
    for entry in roster.values() {
        println!("roster  {}", entry.line());
    }
    // Leaving a meeting is hanging up the bot's own leg; the meeting goes on without it. The
    // bot hangs up whatever it holds and waits until each call is released.
    bot.shutdown().await;
    while let Some(event) = call.next_event().await {
        if let CallEvent::Terminated(_) = event {
            println!("left the meeting");
            break;
        }
    }
    Ok(())
}
