//! Configuring and starting a [`Bot`].

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audio_pipeline::{Engine, EngineConfig};
use graph_signaling::auth::{AuthConfig, TokenValidator};
use graph_signaling::client::{ClientCredentials, GraphClient, GraphClientConfig, TokenProvider};
use graph_signaling::notify::{Admission, NotificationLimits, notification_router};
use media_transport::pipeline::SendPump;
use media_transport::protocol::ProtocolConfig;
use media_transport::{EndpointConfig, ListenerLimits, MediaEndpoint, WebRtcConfig};
use tokio::sync::mpsc;

use super::{
    Bot, BotCounters, BotError, Calls, PcmFormat, ServerLimits, Shared, Target,
    dispatch_notifications, http, serve,
};
use crate::call_core::CallConfig;

/// Where the media endpoint listens and what address it advertises in the blob's `mpUri`.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// The internal address the `mpUri` WebSocket listener binds (port 0: any free port).
    pub bind: SocketAddr,
    /// The public host (IP or FQDN) written into the `mpUri`; the bind IP when `None`.
    pub public_host: Option<String>,
    /// The public port written into the `mpUri`, when a load balancer maps ports.
    pub public_port: Option<u16>,
    /// UDP ports the WebRTC media may use; any free port when `None`.
    pub udp_port_range: Option<RangeInclusive<u16>>,
    /// Public IPs announced as ICE candidates (behind 1:1 NAT).
    pub public_ips: Vec<IpAddr>,
    /// How long a call's media session waits for the calling service to connect before it
    /// ends with `NeverConnected` (and the bot hangs the call up). Default 60 s.
    pub connect_timeout: Duration,
    /// Connections the `mpUri` listener holds at once and how long one may take to upgrade;
    /// at the cap, a connection that has not presented a media session makes room.
    pub limits: ListenerLimits,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_host: None,
            public_port: None,
            udp_port_range: None,
            public_ips: Vec::new(),
            connect_timeout: Duration::from_secs(60),
            limits: ListenerLimits::default(),
        }
    }
}

/// Builds a [`Bot`]; see [`Bot::builder`].
#[derive(Debug, Clone)]
pub struct BotBuilder {
    target: Target,
    http_bind: SocketAddr,
    callback_url: Option<String>,
    public_url: Option<String>,
    media: MediaSettings,
    format: PcmFormat,
    engine: EngineConfig,
    display_name: String,
    capacity: usize,
    qoe_interval: Duration,
    keepalive_interval: Duration,
    instance_id: String,
    server_limits: ServerLimits,
}

/// The ordinal at the end of a host name (`mediabot-3` → `3`, as a StatefulSet names its pods),
/// or `0`.
pub(crate) fn default_instance_id(hostname: Option<&str>) -> String {
    hostname
        .and_then(|h| h.rsplit_once('-'))
        .map(|(_, n)| n)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("0")
        .to_owned()
}

/// This machine's host name, from the environment or the kernel.
pub(crate) fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
}

impl BotBuilder {
    pub(crate) fn new(target: Target) -> BotBuilder {
        BotBuilder {
            target,
            http_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            callback_url: None,
            public_url: None,
            media: MediaSettings::default(),
            format: PcmFormat::default(),
            engine: EngineConfig::default(),
            display_name: "mediabot".into(),
            capacity: 100,
            qoe_interval: Duration::from_secs(10),
            keepalive_interval: CallConfig::default().keepalive_interval,
            instance_id: default_instance_id(hostname().as_deref()),
            server_limits: ServerLimits::default(),
        }
    }

    /// Limits of the HTTP server: connections at once, header and request timeouts.
    pub fn server_limits(mut self, limits: ServerLimits) -> Self {
        self.server_limits = limits;
        self
    }

    /// This bot's instance id, carried by every log line about its calls. Default: the ordinal
    /// suffix of the host name (a StatefulSet pod's `name-N`), else `0`.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Where the bot's HTTP server (callback, `/metrics`, `/healthz`) listens. Default
    /// `127.0.0.1:0`.
    pub fn http_bind(mut self, addr: SocketAddr) -> Self {
        self.http_bind = addr;
        self
    }

    /// The public URL the calling service posts notifications to; its path is served. Required
    /// for real Graph (HTTPS, reachable from the internet, usually through a TLS proxy to
    /// [`BotBuilder::http_bind`]); against the sim it defaults to
    /// `http://<bound address>/callback`.
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// The public base URL shared by every instance of the bot behind one proxy
    /// (`https://bot.example.com`). Calls this instance places or answers then get the callback
    /// `{public_url}/instances/{instance_id}/callback`, and the server also takes the shared
    /// `/callback` (where the service offers incoming calls, to any instance) and answers a
    /// notification for another instance's path with `302 Found` to that instance's callback.
    /// An explicit [`BotBuilder::callback_url`] still names this instance's own callback.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The media endpoint's addresses.
    pub fn media(mut self, settings: MediaSettings) -> Self {
        self.media = settings;
        self
    }

    /// The PCM layout the application reads and writes. Default [`PcmFormat::Pcm16K`].
    pub fn audio_format(mut self, format: PcmFormat) -> Self {
        self.format = format;
        self
    }

    /// The audio engine's settings (threads, codec, jitter buffer, real-time priority).
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// The bot's display name in calls. Default `mediabot`.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = name.into();
        self
    }

    /// Calls the bot is sized for; `/healthz` reports HeavilyLoaded from 80 % of it and
    /// Overloaded above it. Default 100.
    pub fn capacity(mut self, calls: usize) -> Self {
        self.capacity = calls.max(1);
        self
    }

    /// How often [`super::CallEvent::Quality`] is reported while media is connected.
    pub fn qoe_interval(mut self, every: Duration) -> Self {
        self.qoe_interval = every.max(Duration::from_millis(100));
        self
    }

    /// How often each call sends `POST …/keepAlive`. The calling service ends a call that was
    /// not kept alive for 45 minutes; the default, 15 minutes, leaves a wide margin. Shorter
    /// intervals are for tests against a sim with a shortened keepAlive timeout
    /// ([`graph_sim::service::SimConfig::keepalive_timeout`]). Floor: 100 ms.
    pub fn keepalive_interval(mut self, every: Duration) -> Self {
        self.keepalive_interval = every.max(Duration::from_millis(100));
        self
    }

    /// Starts the engine, the media endpoint, the Graph client and the HTTP server. Must run
    /// inside a multi-threaded tokio runtime.
    pub async fn build(self) -> Result<Bot, BotError> {
        let endpoints = self.target.endpoints().clone();
        if !self.target.is_sim() {
            if self.callback_url.is_none() && self.public_url.is_none() {
                return Err(BotError::Config(
                    "real Microsoft Graph needs the public HTTPS callback URL (or public URL)"
                        .into(),
                ));
            }
            if self.media.public_host.is_none() {
                return Err(BotError::Config(
                    "real Microsoft Graph needs the media endpoint's public host".into(),
                ));
            }
        }
        let listener = tokio::net::TcpListener::bind(self.http_bind).await?;
        let local_addr = listener.local_addr()?;
        if !is_path_segment(&self.instance_id) {
            return Err(BotError::Config(format!(
                "instance id {:?}: use letters, digits, '-' and '_' (it is a URL path segment)",
                self.instance_id
            )));
        }
        let callback_url = match (&self.callback_url, &self.public_url) {
            (Some(url), _) => url.clone(),
            (None, Some(public)) => instance_callback(public, &self.instance_id),
            (None, None) => format!("http://{local_addr}/callback"),
        };
        let path = reqwest::Url::parse(&callback_url)
            .map_err(|e| BotError::Config(format!("callback URL {callback_url}: {e}")))?
            .path()
            .to_owned();
        if let Some(public) = &self.public_url {
            reqwest::Url::parse(public)
                .map_err(|e| BotError::Config(format!("public URL {public}: {e}")))?;
        }

        let engine = Engine::start(self.engine.clone())?;
        let send_pump = SendPump::start(&engine)?;
        let endpoint = MediaEndpoint::bind(EndpointConfig {
            bind: self.media.bind,
            public_host: self.media.public_host.clone(),
            public_port: self.media.public_port,
            webrtc: WebRtcConfig {
                udp_bind_ip: self.media.bind.ip(),
                udp_port_range: self.media.udp_port_range.clone(),
                public_ips: self.media.public_ips.clone(),
                ..WebRtcConfig::default()
            },
            protocol: ProtocolConfig {
                pending_timeout: self.media.connect_timeout,
                ..ProtocolConfig::default()
            },
            limits: self.media.limits,
            ..EndpointConfig::default()
        })
        .await?;

        let http_client = reqwest::Client::new();
        let mut auth = AuthConfig::new(&endpoints.app_id);
        auth.openid_config_url = endpoints.openid_config_url.clone();
        let validator = Arc::new(TokenValidator::with_client(auth, http_client.clone()));
        let admission = Admission::default();
        // This instance's callback, and behind a shared public URL also the shared one: one
        // queue for both, so the dispatcher sees every notification in arrival order.
        let (queue, batches) = mpsc::channel(256);
        let mut paths = vec![path];
        if self.public_url.is_some() && !paths.iter().any(|p| p == SHARED_CALLBACK_PATH) {
            paths.push(SHARED_CALLBACK_PATH.to_owned());
        }
        let mut notification_routes = axum::Router::new();
        for path in &paths {
            notification_routes = notification_routes.merge(notification_router(
                path,
                validator.clone(),
                queue.clone(),
                NotificationLimits::default(),
                admission.clone(),
            ));
        }
        drop(queue);
        let tokens = TokenProvider::client_credentials(
            ClientCredentials {
                token_url: endpoints.token_url.clone(),
                client_id: endpoints.app_id.clone(),
                credential: endpoints.credential.clone(),
                scope: self.target.scope().to_owned(),
            },
            http_client.clone(),
        );
        let client = GraphClient::with_http(
            GraphClientConfig {
                base_url: endpoints.api_url.clone(),
                ..GraphClientConfig::default()
            },
            tokens,
            http_client,
        );
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            target: self.target,
            client,
            engine,
            send_pump,
            endpoint,
            format: self.format,
            callback_url,
            display_name: self.display_name,
            capacity: self.capacity,
            instance_id: self.instance_id,
            call_config: CallConfig {
                app_id: Some(endpoints.app_id.clone()),
                keepalive_interval: self.keepalive_interval,
                quality_interval: self.qoe_interval,
                ..CallConfig::default()
            },
            calls: Mutex::new(Calls::default()),
            incoming: incoming_tx,
            admission,
            lifecycle: Default::default(),
            counters: BotCounters::default(),
            server: Default::default(),
            health: Mutex::new(http::HealthWindow::default()),
            metrics: http::MetricsState::new(),
        });

        // Count refused notifications: a steady stream of them means a misconfigured app id
        // or someone probing the callback. And legacy-format ones, answered 204 so the service
        // posts them again in Graph format: only the endpoint answers 204, for those alone.
        let weak = Arc::downgrade(&shared);
        let callback = notification_routes.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let weak = weak.clone();
                async move {
                    let response = next.run(request).await;
                    type Counter = fn(&BotCounters) -> &std::sync::atomic::AtomicU64;
                    let counter: Option<Counter> = match response.status() {
                        axum::http::StatusCode::UNAUTHORIZED => {
                            Some(|c| &c.notification_auth_failures)
                        }
                        axum::http::StatusCode::NO_CONTENT => Some(|c| &c.notifications_legacy),
                        _ => None,
                    };
                    if let Some(counter) = counter
                        && let Some(s) = weak.upgrade()
                    {
                        counter(&s.counters).fetch_add(1, Ordering::Relaxed);
                    }
                    response
                }
            },
        ));
        let mut router = callback.merge(http::router(Arc::downgrade(&shared)));
        if let Some(public) = self.public_url.clone() {
            router = router.merge(misrouted(public, Arc::downgrade(&shared)));
        }
        let server = tokio::spawn(serve::serve(
            listener,
            router,
            self.server_limits,
            shared.server.clone(),
        ));
        let routing = tokio::spawn(dispatch_notifications(Arc::downgrade(&shared), batches));
        Ok(Bot {
            shared,
            local_addr,
            incoming: Some(incoming),
            tasks: vec![server, routing],
        })
    }
}

/// Where the service offers incoming calls to every instance behind a shared public URL.
const SHARED_CALLBACK_PATH: &str = "/callback";

/// An instance's own callback behind the shared public URL.
fn instance_callback(public_url: &str, instance_id: &str) -> String {
    format!("{public_url}/instances/{instance_id}/callback")
}

/// Whether `s` can stand as one URL path segment as it is.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Notifications posted to another instance's callback path: a proxy sent them to the wrong
/// instance. They are not read; the sender is pointed at the owner with `302 Found`, as the
/// calling service follows it. This instance's own path is a static route, which axum
/// matches first.
fn misrouted(public_url: String, shared: std::sync::Weak<super::Shared>) -> axum::Router {
    use axum::extract::Path;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/instances/{instance}/callback",
        axum::routing::post(move |Path(instance): Path<String>| {
            let (public_url, shared) = (public_url.clone(), shared.clone());
            async move {
                if !is_path_segment(&instance) {
                    return StatusCode::NOT_FOUND.into_response();
                }
                if let Some(s) = shared.upgrade() {
                    s.counters
                        .notifications_redirected
                        .fetch_add(1, Ordering::Relaxed);
                }
                let owner = instance_callback(&public_url, &instance);
                tracing::debug!(%owner, "notification for another instance redirected");
                (StatusCode::FOUND, [(header::LOCATION, owner)]).into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::default_instance_id;

    #[test]
    fn the_instance_id_is_the_host_names_ordinal() {
        assert_eq!(default_instance_id(Some("mediabot-3")), "3");
        assert_eq!(default_instance_id(Some("bot-tier-12")), "12");
        assert_eq!(default_instance_id(Some("laptop")), "0");
        assert_eq!(default_instance_id(Some("web-x")), "0");
        assert_eq!(default_instance_id(Some("trailing-")), "0");
        assert_eq!(default_instance_id(None), "0");
    }
}
