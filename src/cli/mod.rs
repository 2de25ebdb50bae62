//! Subcommands of the `mediabot` binary. Each module turns arguments into calls on the library
//! crates and their results into text; none holds logic of its own.

// The command line's job is to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod blob;
mod bot;
mod demo;
mod inspect;
mod sim;

/// mediabot: Linux-native engine for Microsoft Graph calling bots with application-hosted media.
#[derive(Debug, Parser)]
#[command(name = "mediabot", version, about)]
pub(crate) struct Cli {
    /// Log lines on stderr as text or one JSON object per line; the level comes from
    /// RUST_LOG (default info).
    #[arg(
        long,
        global = true,
        env = "MEDIABOT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: mediabot::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or check an appHostedMediaConfig blob.
    #[command(subcommand)]
    Blob(blob::BlobCommand),
    /// Describe a Graph calling payload (call, commsNotifications, operation, invite body, error
    /// body) one line per item.
    Inspect {
        /// File to read, or - for standard input.
        #[arg(value_name = "FILE|-")]
        input: String,
    },
    /// Run graph-sim, the local emulator of the Graph calling service, for a bot to talk to.
    Sim(sim::SimArgs),
    /// The demo: graph-sim in-process and an echo bot calling two simulated users.
    Demo(demo::DemoArgs),
    /// An echo bot configured from flags and MEDIABOT_* variables, for graph-sim or real
    /// Microsoft Graph (where media cannot connect: see the README).
    // Boxed: its many flags make it several times larger than the other variants.
    Bot(Box<bot::BotCommandArgs>),
}

impl Cli {
    pub(crate) fn run(self) -> ExitCode {
        if let Err(e) = mediabot::logging::init(self.log_format) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        let result = match self.command {
            Command::Blob(cmd) => cmd.run(),
            Command::Inspect { input } => inspect::run(&input),
            Command::Sim(args) => sim::run(args),
            Command::Demo(args) => demo::run(args),
            Command::Bot(args) => bot::run(*args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Largest input file a subcommand reads; payloads and blobs are far smaller.
const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a file, or standard input for `-`, refusing anything over [`MAX_INPUT_BYTES`] or not UTF-8.
fn read_input(path: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if path == "-" {
        io::stdin()
            .lock()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("{path} is larger than {MAX_INPUT_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))
}

/// Writes to standard output; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn print_out(text: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write output: {e}")),
    }
}
