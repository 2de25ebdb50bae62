//! graph-sim: a local, faithful emulator of the Microsoft Graph calling service and its media side,
//! so a calling bot runs and is tested on one machine with no cloud tenant.
//!
//! This first part holds the seeded network impairment model ([`netem`]) the media side applies
//! per direction.

pub mod netem;
