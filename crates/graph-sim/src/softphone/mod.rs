//! The softphone: a web page, served by the sim's own HTTP server, where a person joins a
//! simulated call as one more participant with a real microphone and speaker.
//!
//! - The page (`assets/`, compiled into the crate) is a WebRTC client. It offers, the sim
//!   answers with [`media_transport::browser::BrowserPeer`], and the sim's core adds the person
//!   to the call ([`crate::service::Sim::handle_person`]): the bot sees a roster update with a new
//!   `sourceId`, like any join.
//! - The media side ([`crate::media::MediaSide`], given the same [`Softphone`] in
//!   [`crate::media::MediaOptions::softphone`]) adds that `sourceId`'s m-line to the call's
//!   service session toward the bot and hands it to the person's relay (`relay.rs`), which
//!   forwards the browser's Opus packets unchanged when they hold 20 ms (browsers' default) and
//!   re-encodes only packets of other durations. The bot's audio goes back to the page the same
//!   way, unchanged.
//! - `http.rs` holds the routes: the page, the call list, join / create / mute / hang up, and
//!   a Server-Sent Events stream of the roster with levels and speaking flags.
//!
//! The exchange is specified in `docs/softphone.md`.

mod http;
mod relay;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use media_transport::WebRtcConfig;
use tokio::sync::oneshot;

use crate::media::report::CallMeasure;
use crate::server::SimHandle;
use crate::service::PersonAction;

pub use http::MAX_BODY_BYTES;
pub(crate) use http::routes;
pub(crate) use relay::Attach;

/// Path the page is served under.
pub const PAGE_PATH: &str = "/softphone/";

/// Most people in softphone sessions at once (each holds a WebRTC peer).
pub const MAX_PEOPLE: usize = 16;

/// How the softphone behaves.
#[derive(Debug, Clone, Default)]
pub struct SoftphoneOptions {
    /// WebRTC settings of the peers facing browsers (loopback by default).
    pub webrtc: WebRtcConfig,
    /// Where "call the bot" offers the new call; without it, the callback URL of the most
    /// recent call the sim saw is used, and with none, creating a call is refused.
    pub bot_callback_url: Option<String>,
}

struct Person {
    /// Taken by the media side when it has the person's stream toward the bot.
    attach: Option<oneshot::Sender<Attach>>,
    /// Dropped (or fired) to stop the relay.
    stop: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    people: HashMap<(String, u32), Person>,
    calls: HashMap<String, Arc<Mutex<CallMeasure>>>,
}

struct Inner {
    options: SoftphoneOptions,
    state: Mutex<State>,
    sim: OnceLock<SimHandle>,
}

/// The softphone's shared state: give one clone to [`crate::server::ServerOptions::softphone`]
/// and one to [`crate::media::MediaOptions::softphone`].
#[derive(Clone)]
pub struct Softphone {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Softphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Softphone")
            .field("people", &self.state().people.len())
            .finish()
    }
}

impl Softphone {
    /// A softphone with `options`.
    pub fn new(options: SoftphoneOptions) -> Softphone {
        Softphone {
            inner: Arc::new(Inner {
                options,
                state: Mutex::new(State::default()),
                sim: OnceLock::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain maps; a panic elsewhere leaves them usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn options(&self) -> &SoftphoneOptions {
        &self.inner.options
    }

    /// Called by the server once it runs: the routes reach the core through this.
    pub(crate) fn attach_sim(&self, sim: SimHandle) {
        // A softphone serves one server; a second attach keeps the first.
        let _ = self.inner.sim.set(sim);
    }

    pub(crate) fn sim(&self) -> Option<&SimHandle> {
        self.inner.sim.get()
    }

    /// True when `source` of `call_id` is a person of this softphone (the media side then
    /// relays their browser instead of playing a voice).
    pub fn is_person(&self, call_id: &str, source: u32) -> bool {
        self.state()
            .people
            .contains_key(&(call_id.to_owned(), source))
    }

    pub(crate) fn people_count(&self) -> usize {
        self.state().people.len()
    }

    pub(crate) fn add_person(
        &self,
        call_id: &str,
        source: u32,
        attach: oneshot::Sender<Attach>,
        stop: oneshot::Sender<()>,
    ) {
        self.state().people.insert(
            (call_id.to_owned(), source),
            Person {
                attach: Some(attach),
                stop: Some(stop),
            },
        );
    }

    /// The media side has the person's stream toward the bot: hand it to their relay.
    pub(crate) fn attach(&self, call_id: &str, source: u32, attach: Attach) {
        let tx = self
            .state()
            .people
            .get_mut(&(call_id.to_owned(), source))
            .and_then(|p| p.attach.take());
        if let Some(tx) = tx {
            let _ = tx.send(attach);
        }
    }

    /// The person left (or the call ended): stop their relay, which closes the browser's peer.
    pub(crate) fn detach(&self, call_id: &str, source: u32) {
        let person = self.state().people.remove(&(call_id.to_owned(), source));
        if let Some(tx) = person.and_then(|mut p| p.stop.take()) {
            let _ = tx.send(());
        }
    }

    /// The media side serves `call_id`; its measurements give the page its levels.
    pub(crate) fn call_started(&self, call_id: &str, measure: Arc<Mutex<CallMeasure>>) {
        self.state().calls.insert(call_id.to_owned(), measure);
    }

    /// The levels of a call's bot and participants, when the media side serves it.
    pub(crate) fn levels(&self, call_id: &str) -> Option<(f32, Vec<(u32, f32)>)> {
        let measure = self.state().calls.get(call_id).cloned()?;
        let m = measure.lock().unwrap_or_else(|p| p.into_inner());
        Some(m.levels())
    }

    /// The relay ended on its own (the browser went away): the person leaves the call.
    pub(crate) fn person_gone(&self, call_id: &str, source: u32) {
        let known = self
            .state()
            .people
            .remove(&(call_id.to_owned(), source))
            .is_some();
        if known && let Some(sim) = self.sim() {
            let action = PersonAction::Leave {
                call_id,
                source_id: source,
            };
            // The call may have ended meanwhile, taking the person with it.
            let _ = sim.with_sim(|s, now| s.handle_person(now, action));
        }
    }
}
