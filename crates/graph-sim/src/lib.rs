//! graph-sim: a local, faithful emulator of the Microsoft Graph calling service and its media side,
//! so a calling bot runs and is tested on one machine with no cloud tenant.
//!
//! So far it holds the seeded impairment models ([`netem`] for the media path, [`faults`] for
//! signaling) and the [`scenario`] files that describe a simulation.

pub mod faults;
pub mod netem;
pub mod scenario;
