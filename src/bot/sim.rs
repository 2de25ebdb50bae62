//! graph-sim in-process, with its media side running, for examples, tests and the demo.

use graph_signaling::client::Credential;
use graph_signaling::join_url::MeetingJoinUrl;
use graph_signaling::models::CallState;
use graph_sim::media::{MediaOptions, MediaReport, MediaSide};
use graph_sim::scenario::Scenario;
use graph_sim::server::{NotifierStats, ServerOptions, SimServer};
use graph_sim::service::{Caller, PersonAction, SimConfig};
use graph_sim::softphone::{Softphone, SoftphoneOptions};
use media_session::SourceId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{BotError, ServiceEndpoints, Target};

/// A simulated user the bot can call or invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUserInfo {
    /// Display name.
    pub name: String,
    /// Object id to call.
    pub id: String,
}

enum Command {
    OfferIncoming {
        callback_url: String,
        from: usize,
        reply: oneshot::Sender<Option<String>>,
    },
    Leave {
        call_id: String,
        source: u32,
        reply: oneshot::Sender<bool>,
    },
    Stats(oneshot::Sender<NotifierStats>),
    State {
        call_id: String,
        reply: oneshot::Sender<Option<CallState>>,
    },
    Finish,
}

/// A graph-sim server on loopback (port 0) and its media side, fed with the sim's events on a
/// task of their own. [`LocalSim::finish`] ends every call's media and returns the
/// measurements (frames, echo delay, similarity per participant).
#[derive(Debug)]
pub struct LocalSim {
    target: Target,
    users: Vec<SimUserInfo>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<MediaReport>,
    softphone_url: Option<String>,
    meeting_join_url: Option<MeetingJoinUrl>,
    application_instance_id: Option<String>,
}

/// How a [`LocalSim`] runs, beyond its scenario.
#[derive(Debug, Clone, Default)]
pub struct LocalSimOptions {
    /// How the simulated service behaves (keepAlive timeout, answer window, setup delays).
    /// Its `base_url` is replaced by the server's own address.
    pub config: SimConfig,
    /// The media side's options (recordings of what the bot sent, the folder of a scenario's
    /// WAV voices); `None`: [`MediaOptions::for_scenario`].
    pub media: Option<MediaOptions>,
    /// Serve the softphone page, where a person joins a call from a browser
    /// ([`LocalSim::softphone_url`]).
    pub softphone: bool,
}

impl LocalSim {
    /// Starts the sim with `scenario` and the default app registration.
    pub async fn start(scenario: Scenario) -> Result<LocalSim, BotError> {
        LocalSim::start_with(scenario, LocalSimOptions::default()).await
    }

    /// Starts the sim with `scenario` and its softphone page.
    pub async fn start_with_softphone(scenario: Scenario) -> Result<LocalSim, BotError> {
        let options = LocalSimOptions {
            softphone: true,
            ..LocalSimOptions::default()
        };
        LocalSim::start_with(scenario, options).await
    }

    /// Starts the sim with `scenario` and `options` (a shortened keepAlive timeout, a folder
    /// for recordings of what the bot sent, the softphone page).
    pub async fn start_with(
        scenario: Scenario,
        options: LocalSimOptions,
    ) -> Result<LocalSim, BotError> {
        let LocalSimOptions {
            config,
            media,
            softphone,
        } = options;
        let softphone = softphone.then(|| Softphone::new(SoftphoneOptions::default()));
        let server_options = ServerOptions {
            softphone: softphone.clone(),
            ..ServerOptions::default()
        };
        let mut sim = SimServer::start(config.clone(), scenario.clone(), server_options)
            .await
            .map_err(|e| BotError::Sim(e.to_string()))?;
        let softphone_url = sim.softphone_url();
        let target = Target::Sim(ServiceEndpoints {
            api_url: sim.api_url(),
            token_url: sim.token_url(),
            openid_config_url: sim.openid_config_url(),
            app_id: config.app_id,
            credential: Credential::Secret(config.app_secret),
            tenant_id: config.tenant_id,
        });
        let meeting_join_url = sim.with_sim(|s, _| s.meeting_join_url());
        let application_instance_id = config.application_instances.first().map(|i| i.id.clone());
        let users = sim.with_sim(|s, _| {
            s.directory()
                .map(|(u, id)| SimUserInfo {
                    name: u.name.clone(),
                    id: id.to_owned(),
                })
                .collect()
        });
        let mut media = MediaSide::new(MediaOptions {
            softphone,
            recordings: Some(sim.recordings()),
            ..media.unwrap_or_else(|| MediaOptions::for_scenario(&scenario))
        });
        let (commands, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = sim.next_event() => match event {
                        // A refused or failed media request is in the report; the loop goes on.
                        Some(e) => { let _ = media.handle_event(e); }
                        None => break,
                    },
                    command = rx.recv() => match command {
                        Some(Command::OfferIncoming { callback_url, from, reply }) => {
                            let action = PersonAction::CallBot {
                                callback_uri: &callback_url,
                                caller: Caller::ScenarioUser(from),
                            };
                            let offered = sim.with_sim(|s, now| s.handle_person(now, action));
                            let _ = reply.send(offered.ok().map(|o| o.call_id));
                        }
                        Some(Command::Stats(reply)) => {
                            let _ = reply.send(sim.notifier_stats());
                        }
                        Some(Command::State { call_id, reply }) => {
                            let _ = reply.send(sim.with_sim(|s, _| s.call_state(&call_id)));
                        }
                        Some(Command::Leave { call_id, source, reply }) => {
                            let action = PersonAction::Leave { call_id: &call_id, source_id: source };
                            let left = sim.with_sim(|s, now| s.handle_person(now, action));
                            let _ = reply.send(left.is_ok());
                        }
                        Some(Command::Finish) | None => break,
                    },
                }
            }
            // Events already queued (a call's end) still reach the media side.
            while let Some(e) = sim.try_event() {
                let _ = media.handle_event(e);
            }
            media.shutdown().await
        });
        Ok(LocalSim {
            target,
            users,
            commands,
            task,
            softphone_url,
            meeting_join_url,
            application_instance_id,
        })
    }

    /// The softphone page's URL, when started with [`LocalSim::start_with_softphone`].
    pub fn softphone_url(&self) -> Option<&str> {
        self.softphone_url.as_deref()
    }

    /// The target to build a bot with.
    pub fn target(&self) -> Target {
        self.target.clone()
    }

    /// The join link of the scenario's meeting (`None` without a `[meeting]`), the way
    /// Teams shows it to attendees: [`super::CallTarget::meeting_url`] joins it.
    pub fn meeting_join_url(&self) -> Option<&MeetingJoinUrl> {
        self.meeting_join_url.as_ref()
    }

    /// The application instance (with a phone number) the sim links to the bot's app, for
    /// [`super::CallTarget::phone`].
    pub fn application_instance_id(&self) -> Option<&str> {
        self.application_instance_id.as_deref()
    }

    /// The simulated users, in the scenario's order.
    pub fn users(&self) -> &[SimUserInfo] {
        &self.users
    }

    /// Has scenario user `from` (an index into [`LocalSim::users`]) call the bot at
    /// `callback_url`. Returns the call id.
    pub async fn offer_incoming_call(&self, callback_url: &str, from: usize) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::OfferIncoming {
                callback_url: callback_url.to_owned(),
                from,
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// The participant of `call_id` with `source` hangs up now, as a person would: the bot gets
    /// the roster change. Tests use it to order a departure after what they wait for, instead
    /// of racing a scenario's `leave_ms` against the machine. False if no such participant.
    pub async fn participant_leaves(&self, call_id: &str, source: SourceId) -> bool {
        let (reply, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Leave {
            call_id: call_id.to_owned(),
            source: source.get(),
            reply,
        });
        sent.is_ok() && rx.await.unwrap_or(false)
    }

    /// What the sim's notifier did so far: delivered, refused, posted again after a 503.
    pub async fn notifier_stats(&self) -> NotifierStats {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Stats(reply)).is_err() {
            return NotifierStats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The state of `call_id` as the service sees it (`None` for a call it never had).
    pub async fn call_state(&self, call_id: &str) -> Option<CallState> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::State {
                call_id: call_id.to_owned(),
                reply,
            })
            .ok()?;
        rx.await.ok().flatten()
    }

    /// Stops the sim: hangs up the media of calls still running, waits for them to wind down
    /// (a few seconds at most) and returns the media side's report.
    pub async fn finish(self) -> Result<MediaReport, BotError> {
        let _ = self.commands.send(Command::Finish);
        self.task
            .await
            .map_err(|e| BotError::Sim(format!("the sim's task failed: {e}")))
    }
}
