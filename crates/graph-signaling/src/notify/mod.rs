//! Incoming notifications: the authenticated HTTP endpoint and the task that applies them.

pub mod server;

pub use server::{
    Inbound, NotificationLimits, NotificationPipeline, notification_router, pipeline, serve,
    spawn_processor,
};
