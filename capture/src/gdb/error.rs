//! Errors of the GDB remote client. Each names what the client was doing,
//! so the command line can print one line per failure.

use std::io;

use super::packet::FrameError;
use super::target_xml::TargetXmlError;

/// Errors of requests to a GDB remote stub.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The TCP connection could not be made.
    ///
    /// Not a `#[source]`: the message already contains the error, and the
    /// command line prints sources after it.
    #[error("{}", connect_message(.error))]
    Connect {
        /// The error from `connect`.
        error: io::Error,
    },
    /// The host part of `HOST:PORT` did not resolve.
    #[error("cannot resolve '{address}'")]
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// A socket read or write failed.
    #[error("{activity}: {source}")]
    Io {
        /// The client's activity, e.g. `reading memory at 0x1000`.
        activity: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The stub closed the connection.
    #[error("connection closed while {activity}")]
    Closed {
        /// The client's activity.
        activity: String,
    },
    /// The stub sent nothing within the timeout.
    #[error("timed out after {timeout_secs:.1} s while {activity}")]
    Timeout {
        /// The client's activity.
        activity: String,
        /// The timeout in force, in seconds.
        timeout_secs: f64,
    },
    /// The peer does not speak the GDB remote protocol.
    #[error("not a GDB remote stub: {source}")]
    NotAStub {
        /// The bytes that arrived instead of a packet.
        #[source]
        source: FrameError,
    },
    /// A packet was malformed.
    #[error("invalid packet while {activity}: {source}")]
    Frame {
        /// The client's activity.
        activity: String,
        /// The framing error.
        #[source]
        source: FrameError,
    },
    /// The stub replied `Enn`.
    #[error("stub returned error {code} to '{request}'")]
    ErrorReply {
        /// The request, truncated for display.
        request: String,
        /// The error code as sent (`E14`, `E.message`).
        code: String,
    },
    /// The stub replied with an empty packet, meaning it does not know the
    /// request.
    #[error("stub does not support '{request}'")]
    Unsupported {
        /// The request, truncated for display.
        request: String,
    },
    /// The reply does not have the form the request calls for.
    #[error("invalid reply '{reply}' to '{request}'")]
    InvalidReply {
        /// The request, truncated for display.
        request: String,
        /// The reply, truncated for display.
        reply: String,
    },
    /// A signal asked the program to stop.
    #[error("interrupted by {}", signal_name(*.signal))]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// The target description is unusable.
    #[error("reading the target description: {0}")]
    TargetXml(#[from] TargetXmlError),
}

fn connect_message(source: &io::Error) -> String {
    match source.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        _ => format!("cannot connect: {source}"),
    }
}

/// Returns the conventional name of the signals the capture handles.
pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".to_owned(),
        15 => "SIGTERM".to_owned(),
        other => format!("signal {other}"),
    }
}

/// Shortens a packet for an error message.
pub(crate) fn display_packet(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 60;
    let text: String = bytes
        .iter()
        .take(MAX_CHARS)
        .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' })
        .collect();
    if bytes.len() > MAX_CHARS {
        format!("{text}...")
    } else {
        text
    }
}
