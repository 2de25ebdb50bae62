//! A bot's settings from command-line flags and `MEDIABOT_*` environment variables, for a
//! command to flatten into its arguments (`#[command(flatten)] bot: BotArgs`).

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use audio_pipeline::PcmSpec;
use clap::{Args, ValueEnum};

use super::{BotBuilder, BotError, MediaSettings, PcmFormat, ServiceEndpoints, Target};

/// Which calling service the bot talks to. There is no default: the choice is explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// graph-sim started inside this process (with its media side).
    Local,
    /// A graph-sim already running (`mediabot sim`), at `--sim-url`.
    Sim,
    /// Real Microsoft Graph: signaling works, media never connects (its protocol is closed).
    Graph,
}

/// The bot's flags; each can also come from the environment variable named in its help.
#[derive(Debug, Clone, Args)]
pub struct BotArgs {
    /// Calling service: local (graph-sim in-process), sim (a running graph-sim) or graph.
    #[arg(long = "target", env = "MEDIABOT_TARGET", value_enum)]
    pub target: TargetKind,
    /// Base URL of a running graph-sim (`http://127.0.0.1:8931`), for `--target sim`.
    #[arg(long, env = "MEDIABOT_SIM_URL")]
    pub sim_url: Option<String>,
    /// The bot's application (client) id. Default for a sim: the sim's default.
    #[arg(long, env = "MEDIABOT_APP_ID")]
    pub app_id: Option<String>,
    /// The bot's client secret.
    #[arg(long, env = "MEDIABOT_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// The tenant calls are placed in.
    #[arg(long, env = "MEDIABOT_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Public HTTPS URL of this instance's notification callback (graph needs it, or
    /// --public-url).
    #[arg(long, env = "MEDIABOT_CALLBACK_URL")]
    pub callback_url: Option<String>,
    /// Public base URL shared by every instance behind one proxy (https://bot.example.com):
    /// this instance's callback is {public-url}/instances/{instance-id}/callback, the shared
    /// {public-url}/callback takes offers of incoming calls, and a notification for another
    /// instance's path is answered 302 to it.
    #[arg(long, env = "MEDIABOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the bot's HTTP server (callback, /metrics, /healthz) listens.
    #[arg(long, env = "MEDIABOT_HTTP_BIND", default_value = "127.0.0.1:0")]
    pub http_bind: SocketAddr,
    /// Internal address of the media endpoint (the mpUri listener).
    #[arg(long, env = "MEDIABOT_MEDIA_BIND", default_value = "127.0.0.1:0")]
    pub media_bind: SocketAddr,
    /// Public host written into the mpUri (required for graph).
    #[arg(long, env = "MEDIABOT_MEDIA_PUBLIC_HOST")]
    pub media_public_host: Option<String>,
    /// Public port written into the mpUri, when a load balancer maps it.
    #[arg(long, env = "MEDIABOT_MEDIA_PUBLIC_PORT")]
    pub media_public_port: Option<u16>,
    /// Public IP addresses announced in the WebRTC candidates instead of the bound ones, comma
    /// separated (a host behind 1:1 NAT, such as most cloud VMs).
    #[arg(long, env = "MEDIABOT_MEDIA_PUBLIC_IPS", value_delimiter = ',')]
    pub media_public_ips: Vec<std::net::IpAddr>,
    /// UDP ports for WebRTC media, as `FIRST-LAST`.
    #[arg(long, env = "MEDIABOT_MEDIA_PORT_RANGE", value_parser = parse_port_range)]
    pub media_port_range: Option<RangeInclusive<u16>>,
    /// This instance's id, in every log line about its calls (default: the ordinal at the end
    /// of the host name, as a StatefulSet pod has, else 0).
    #[arg(long, env = "MEDIABOT_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Audio the application handles: pcm16k, pcm44kstereo, or RATE[/CHANNELS].
    #[arg(long, env = "MEDIABOT_AUDIO_FORMAT", default_value = "pcm16k", value_parser = parse_format)]
    pub audio_format: PcmFormat,
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: expected FIRST-LAST"))?;
    let first: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let last: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if first == 0 || first > last {
        return Err(format!("{text:?}: need 1 <= FIRST <= LAST"));
    }
    Ok(first..=last)
}

fn parse_format(text: &str) -> Result<PcmFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "pcm16k" => Ok(PcmFormat::Pcm16K),
        "pcm44kstereo" => Ok(PcmFormat::Pcm44KStereo),
        other => {
            let (rate, channels) = other.split_once('/').unwrap_or((other, "1"));
            let rate: u32 = rate
                .parse()
                .map_err(|_| format!("{text:?}: unknown format"))?;
            let channels: u16 = channels
                .parse()
                .map_err(|_| format!("{text:?}: bad channel count"))?;
            PcmSpec::new(rate, channels)
                .map(PcmFormat::Other)
                .ok_or_else(|| {
                    format!(
                        "{text:?}: rates {:?}, 1 or 2 channels",
                        PcmSpec::SUPPORTED_RATES
                    )
                })
        }
    }
}

fn required(value: &Option<String>, flag: &str) -> Result<String, BotError> {
    value
        .clone()
        .ok_or_else(|| BotError::Config(format!("--{flag} is required for this target")))
}

impl BotArgs {
    /// The target the flags name; `None` for `local`, whose target comes from the
    /// [`super::LocalSim`] the caller starts.
    pub fn target(&self) -> Result<Option<Target>, BotError> {
        match self.target {
            TargetKind::Local => Ok(None),
            TargetKind::Sim => {
                let url = required(&self.sim_url, "sim-url")?;
                let url = url.trim_end_matches('/');
                let defaults = graph_sim::service::SimConfig::default();
                let tenant = self.tenant_id.clone().unwrap_or(defaults.tenant_id);
                Ok(Some(Target::Sim(ServiceEndpoints {
                    api_url: format!("{url}/v1.0"),
                    token_url: format!("{url}/{tenant}/oauth2/v2.0/token"),
                    openid_config_url: format!("{url}/v1/.well-known/OpenIdConfiguration"),
                    app_id: self.app_id.clone().unwrap_or(defaults.app_id),
                    app_secret: self.app_secret.clone().unwrap_or(defaults.app_secret),
                    tenant_id: tenant,
                })))
            }
            TargetKind::Graph => Ok(Some(Target::graph(
                required(&self.app_id, "app-id")?,
                required(&self.app_secret, "app-secret")?,
                required(&self.tenant_id, "tenant-id")?,
            ))),
        }
    }

    /// A builder for `target` with these flags' addresses and audio format applied.
    pub fn builder(&self, target: Target) -> BotBuilder {
        let mut b = BotBuilder::new(target)
            .http_bind(self.http_bind)
            .audio_format(self.audio_format)
            .media(MediaSettings {
                bind: self.media_bind,
                public_host: self.media_public_host.clone(),
                public_port: self.media_public_port,
                udp_port_range: self.media_port_range.clone(),
                public_ips: self.media_public_ips.clone(),
                ..MediaSettings::default()
            });
        if let Some(url) = &self.callback_url {
            b = b.callback_url(url);
        }
        if let Some(url) = &self.public_url {
            b = b.public_url(url);
        }
        if let Some(id) = &self.instance_id {
            b = b.instance_id(id);
        }
        b
    }
}
