//! An echo bot: calls the first user of an in-process graph-sim, plays back what it hears,
//! and hangs up after N seconds (`cargo run --example echo_bot -- 10`).
#![allow(clippy::print_stdout)] // an example reports to its terminal

use std::time::Duration;

use mediabot::bot::{Bot, BotError, CallEvent, CallTarget, LocalSim, ReceivedAudio};
use mediabot::crates::graph_sim::scenario::Scenario;

#[tokio::main]
async fn main() -> Result<(), BotError> {
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let sim = LocalSim::start(Scenario::two_users()).await?;
    let bot = Bot::builder(sim.target()).build().await?;
    let user = sim.users()[0].clone();
    let mut call = bot
        .place_call(CallTarget::user(user.id, Some(user.name)))
        .await?;
    let (mut audio, out) = (
        call.audio_receiver().expect("first take"),
        call.audio_sender(),
    );
    tokio::spawn(async move {
        while let Some(received) = audio.recv().await {
            // Echo what was heard in the same period; a hiccup costs a frame, not lasting delay.
            if let ReceivedAudio::Mixed { frame, .. } = received {
                out.push_reply(&frame);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    // Hangs up every call the bot holds and waits until each is released.
    bot.shutdown().await;
    while let Some(event) = call.next_event().await {
        match event {
            CallEvent::StateChanged { to, .. } => println!("call {to}"),
            CallEvent::Terminated(_) => break,
            _ => {}
        }
    }
    for p in sim
        .finish()
        .await?
        .calls
        .iter()
        .flat_map(|c| &c.participants)
    {
        println!(
            "{}: {} frames echoed, similarity {:?}",
            p.name, p.frames_received, p.similarity
        );
    }
    Ok(())
}
