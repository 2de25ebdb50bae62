//! A bot's settings from command-line flags and `MEDIABOT_*` environment variables, for a
//! command to flatten into its arguments (`#[command(flatten)] bot: BotArgs`).

use std::io::Read as _;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use audio_pipeline::PcmSpec;
use clap::{Args, ValueEnum};
use graph_signaling::client::{Credential, MAX_PEM_BYTES};

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
    /// The bot's client secret (or use --app-certificate and --app-private-key instead).
    #[arg(long, env = "MEDIABOT_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// A certificate registered with the app (PEM file, the leaf first if it holds a chain):
    /// the bot then proves itself with client assertions signed by --app-private-key instead
    /// of a client secret.
    #[arg(long, env = "MEDIABOT_APP_CERTIFICATE", value_name = "PEM")]
    pub app_certificate: Option<PathBuf>,
    /// The certificate's RSA private key (PEM file, PKCS#8 or PKCS#1), with --app-certificate.
    #[arg(long, env = "MEDIABOT_APP_PRIVATE_KEY", value_name = "PEM")]
    pub app_private_key: Option<PathBuf>,
    /// The tenant calls are placed in.
    #[arg(long, env = "MEDIABOT_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Public HTTPS URL of this instance's notification callback (graph needs it, or
    /// --public-url).
    #[arg(long, env = "MEDIABOT_CALLBACK_URL")]
    pub callback_url: Option<String>,
    /// Public base URL shared by every instance behind one proxy (`https://bot.example.com`):
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

/// Reads a PEM file of at most [`MAX_PEM_BYTES`], naming the flag in any error.
fn read_pem(path: &Path, flag: &str) -> Result<Vec<u8>, BotError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| BotError::Config(format!("--{flag} {}: {e}", path.display())))?;
    if bytes.len() > MAX_PEM_BYTES {
        return Err(BotError::Config(format!(
            "--{flag} {}: larger than {MAX_PEM_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

impl BotArgs {
    /// The credential the flags give: `--app-secret`, or `--app-certificate` with
    /// `--app-private-key`; `None` when neither is given. Giving both kinds, or one half of a
    /// certificate, is an error that names the flags.
    pub fn credential(&self) -> Result<Option<Credential>, BotError> {
        let certificate = match (&self.app_certificate, &self.app_private_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(BotError::Config(
                    "--app-certificate needs --app-private-key (MEDIABOT_APP_PRIVATE_KEY): the \
                     key that signs the client assertions"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(BotError::Config(
                    "--app-private-key needs --app-certificate (MEDIABOT_APP_CERTIFICATE): the \
                     certificate registered with the app"
                        .into(),
                ));
            }
        };
        match (&self.app_secret, certificate) {
            (Some(_), Some(_)) => Err(BotError::Config(
                "--app-secret and --app-certificate/--app-private-key are mutually exclusive \
                 (check MEDIABOT_APP_SECRET and MEDIABOT_APP_CERTIFICATE too): give the bot one \
                 credential"
                    .into(),
            )),
            (Some(secret), None) => Ok(Some(Credential::secret(secret.clone()))),
            (None, Some((cert, key))) => {
                let cert_pem = read_pem(cert, "app-certificate")?;
                let key_pem = read_pem(key, "app-private-key")?;
                Credential::certificate(&cert_pem, &key_pem)
                    .map(Some)
                    .map_err(|e| {
                        BotError::Config(format!(
                            "--app-certificate {} with --app-private-key {}: {e}",
                            cert.display(),
                            key.display()
                        ))
                    })
            }
            (None, None) => Ok(None),
        }
    }

    /// For `--target local`: the in-process sim's configuration, registering the credential
    /// the flags give (a secret, or a certificate, so a certificate is tried end to end on one
    /// machine), and that credential for the bot; without credential flags, the sim's
    /// defaults and `None`.
    pub fn local_registration(
        &self,
    ) -> Result<(graph_sim::service::SimConfig, Option<Credential>), BotError> {
        let mut config = graph_sim::service::SimConfig::default();
        let credential = self.credential()?;
        match &credential {
            Some(Credential::Secret(secret)) => config.app_secret = secret.clone(),
            Some(Credential::Certificate(_)) => {
                if let Some(path) = &self.app_certificate {
                    let pem = read_pem(path, "app-certificate")?;
                    config.app_certificate_pem = Some(String::from_utf8_lossy(&pem).into_owned());
                }
            }
            _ => {}
        }
        if let Some(app_id) = &self.app_id {
            config.app_id = app_id.clone();
        }
        Ok((config, credential))
    }

    /// The target the flags name; `None` for `local`, whose target comes from the
    /// [`super::LocalSim`] the caller starts.
    pub fn target(&self) -> Result<Option<Target>, BotError> {
        match self.target {
            TargetKind::Local => {
                // The in-process sim brings its own app registration, but conflicting or
                // half-given credential flags are still a mistake worth reporting.
                self.credential()?;
                Ok(None)
            }
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
                    credential: self
                        .credential()?
                        .unwrap_or(Credential::Secret(defaults.app_secret)),
                    tenant_id: tenant,
                })))
            }
            TargetKind::Graph => {
                let app_id = required(&self.app_id, "app-id")?;
                let credential = self.credential()?.ok_or_else(|| {
                    BotError::Config(
                        "--app-secret, or --app-certificate with --app-private-key, is required \
                         for this target"
                            .into(),
                    )
                })?;
                let tenant = required(&self.tenant_id, "tenant-id")?;
                Ok(Some(Target::graph_with_credential(
                    app_id, credential, tenant,
                )))
            }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bot: BotArgs,
    }

    /// Parses `args` after `--target graph` and an app and tenant id. (clap also reads the
    /// `MEDIABOT_*` variables; the test environment sets none of the credential ones.)
    fn parse(args: &[&str]) -> BotArgs {
        let mut all = vec![
            "bot",
            "--target",
            "graph",
            "--app-id",
            "a",
            "--tenant-id",
            "t",
        ];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().bot
    }

    fn config_error(args: &BotArgs) -> String {
        match args.target() {
            Err(BotError::Config(text)) => text,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn credential_flags_are_one_secret_or_one_certificate_with_its_key() {
        let dir = std::env::temp_dir().join(format!("mediabot-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = test_kit::certs::self_signed_rsa("bot.test");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, &cert.cert_pem).unwrap();
        std::fs::write(&key_path, &cert.key_pem).unwrap();
        let (c, k) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());

        let with_cert = parse(&["--app-certificate", c, "--app-private-key", k]);
        let target = with_cert.target().unwrap().unwrap();
        assert!(matches!(
            target.endpoints().credential,
            Credential::Certificate(_)
        ));
        let with_secret = parse(&["--app-secret", "s"]);
        assert_eq!(
            with_secret
                .target()
                .unwrap()
                .unwrap()
                .endpoints()
                .credential,
            Credential::secret("s")
        );

        let both = parse(&[
            "--app-secret",
            "s",
            "--app-certificate",
            c,
            "--app-private-key",
            k,
        ]);
        assert!(config_error(&both).contains("mutually exclusive"));
        assert!(config_error(&parse(&["--app-certificate", c])).contains("--app-private-key"));
        assert!(config_error(&parse(&["--app-private-key", k])).contains("--app-certificate"));
        assert!(config_error(&parse(&[])).contains("--app-secret"));
        // The key given as the certificate and the other way round: the error names both.
        let swapped = parse(&["--app-certificate", k, "--app-private-key", c]);
        let text = config_error(&swapped);
        assert!(
            text.contains("--app-certificate") && text.contains("CERTIFICATE"),
            "{text}"
        );
        let missing = parse(&[
            "--app-certificate",
            "/nonexistent.pem",
            "--app-private-key",
            k,
        ]);
        assert!(config_error(&missing).contains("/nonexistent.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
