//! graph-sim: a local, faithful emulator of the Microsoft Graph calling service and its media side,
//! so a calling bot runs and is tested on one machine with no cloud tenant.
//!
//! - [`service`]: the calling service as a sans-IO core (calls, rosters, operations, keepAlive,
//!   incoming calls, tokens), answering requests and queueing notifications and media events.
//! - [`server`]: the HTTP shell: Graph's API, token endpoint, OpenID keys, signed notifications.
//! - [`scenario`]: the files that describe a simulation; [`netem`] and [`faults`]: seeded
//!   impairment of the media path and of signaling.
//! - [`media`]: the media side: plays simulated participants to the bot's mpUri, records what
//!   the bot sends, and measures echo delay and similarity per participant.
//! - [`softphone`]: a web page on the sim's server where a person joins a simulated call with
//!   a real microphone and speaker (WebRTC), as one more participant.

pub mod faults;
pub mod media;
pub mod netem;
pub mod scenario;
pub mod server;
pub mod service;
pub mod softphone;
