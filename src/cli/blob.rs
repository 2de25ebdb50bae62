//! `mediabot blob new` and `mediabot blob check`.

use std::fmt::Write as _;

use clap::Subcommand;
use media_session::{
    AudioFormat, AudioSocketSettings, BlobConfig, MediaSession, MpUri, StreamDirection,
};
use uuid::Uuid;

use super::{print_out, read_input};

#[derive(Debug, Subcommand)]
pub(crate) enum BlobCommand {
    /// Print a new blob for a media session with fresh context ids.
    New {
        /// Where the media processor listens: net.tcp://host:port/MediaProcessor
        #[arg(long, value_name = "URI")]
        mp_uri: MpUri,
        /// The call id, when already known.
        #[arg(long, value_name = "UUID")]
        call_id: Option<Uuid>,
        /// Audio format the bot exchanges: pcm16k or pcm44k-stereo.
        #[arg(long, default_value = "pcm16k")]
        format: AudioFormat,
        /// Audio direction: sendrecv, sendonly, recvonly or inactive.
        #[arg(long, default_value = "sendrecv")]
        direction: StreamDirection,
        /// Receive each speaker's audio separately (kept in the session; the blob has no field).
        #[arg(long)]
        unmixed: bool,
        /// Print the blob as the JSON string literal that goes into mediaConfig.blob.
        #[arg(long)]
        escaped: bool,
    },
    /// Validate a blob (raw, escaped, or inside a call/answer body) and summarise it.
    Check {
        /// File to read, or - for standard input.
        #[arg(value_name = "FILE|-")]
        input: String,
    },
}

impl BlobCommand {
    pub(crate) fn run(self) -> Result<(), String> {
        match self {
            BlobCommand::New {
                mp_uri,
                call_id,
                format,
                direction,
                unmixed,
                escaped,
            } => {
                let mut builder = MediaSession::builder(mp_uri)
                    .audio(AudioSocketSettings::new(direction, format).receive_unmixed(unmixed));
                if let Some(id) = call_id {
                    builder = builder.call_id(id);
                }
                let session = builder.build().map_err(|e| e.to_string())?;
                let config = session.blob_config();
                let text = if escaped {
                    config.to_json_string_literal()
                } else {
                    config.to_blob()
                };
                print_out(&format!("{text}\n"))
            }
            BlobCommand::Check { input } => {
                let text = read_input(&input)?;
                let config = media_session::parse_blob_or_body(&text)
                    .map_err(|e| format!("invalid blob: {e}"))?;
                print_out(&summary(&config))
            }
        }
    }
}

fn summary(config: &BlobConfig) -> String {
    let ids = |list: &[Uuid]| -> String {
        if list.is_empty() {
            "none".into()
        } else {
            list.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let opt = |v: Option<&str>| v.unwrap_or("null").to_owned();
    let mut out = String::from("valid blob\n");
    let mut line = |k: &str, v: String| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "  {k:<22} {v}");
    };
    line("mpUri", config.mp_uri.to_string());
    line(
        "supportedAudioFormat",
        config.supported_audio_format.to_string(),
    );
    line("audio render contexts", ids(&config.audio_render_contexts));
    line("audio source contexts", ids(&config.audio_source_contexts));
    line(
        "video contexts",
        format!(
            "{} render, {} source",
            config.video_render_contexts.len(),
            config.video_source_contexts.len()
        ),
    );
    line("mpMediaSessionId", config.mp_media_session_id.to_string());
    line(
        "callId",
        opt(config.call_id.map(|c| c.to_string()).as_deref()),
    );
    line("regionAffinity", opt(config.region_affinity.as_deref()));
    line(
        "versions",
        format!(
            "bots {}, stack {}, mp {}",
            opt(config.skype_media_bots_version.as_deref()),
            opt(config.media_stack_version.as_deref()),
            opt(config.mp_version.as_deref())
        ),
    );
    if !config.unknown_fields.is_empty() {
        line("ignored unknown fields", config.unknown_fields.join(", "));
    }
    out
}
