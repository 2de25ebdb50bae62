//! The end-to-end suite: a bot built with the public API (`Bot::builder`) against graph-sim
//! in-process (`LocalSim`), everything on loopback, each server on port 0.
//!
//! - `impairments`: an echo bot under 0 / 5 / 15 % loss with jitter and reordering in both
//!   directions; the echo stays continuous and alike enough.
//! - `calls`: two concurrent calls whose audio never crosses, an incoming call answered, an
//!   invitee's stream bound by its `sourceId` and a leaver's unbound, keepAlive.
//! - `faults`: a 429 storm at call creation, duplicated and reordered notifications, a forged
//!   notification, an unknown session knocking on the media endpoint.
//!
//! Every test here runs real-time audio, so they take turns (see [`common::serial`]): on two
//! shared cores, concurrent calls would disturb the timing each one measures.

mod calls;
mod common;
mod faults;
mod impairments;
