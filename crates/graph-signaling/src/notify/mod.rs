//! Incoming notifications: the authenticated HTTP endpoint. What a batch means for a call is
//! the call owner's business (mediabot's `CallCore` feeds each notification to the call's
//! [`crate::state::CallStateMachine`]).

pub mod server;

pub use server::{
    Admission, Inbound, NotificationLimits, NotificationPipeline, notification_router, pipeline,
    serve,
};
