//! How an answer on the invoke path (`/fn/...`) came about: the `Kiln-Outcome`
//! kinds, one enum for the server that sets them, the metrics that count them,
//! and the clients and tests that read them. `docs/api.md` lists the same kinds.

use std::fmt;
use std::str::FromStr;

/// `Kiln-Outcome`: how the invocation ended, on every `/fn` answer.
pub const OUTCOME_HEADER: &str = "kiln-outcome";
/// The exit code of a command that exited with one other than 0 (whether a
/// failure or, with `ok_exit`, an answer).
pub const EXIT_CODE_HEADER: &str = "kiln-exit-code";
/// Usage receipt: guest CPU time in µs, on responses of functions deployed with `receipt`.
pub const CPU_HEADER: &str = "kiln-cpu-us";
/// Usage receipt: wall time in µs.
pub const WALL_HEADER: &str = "kiln-wall-us";
/// Usage receipt: peak linear memory in bytes.
pub const PEAK_MEMORY_HEADER: &str = "kiln-peak-memory";

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Every way an invoke-path request can end. The name (`Kind::as_str`)
        /// is what `Kiln-Outcome` carries and what metrics are labelled with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
        }

        impl Kind {
            /// Every kind, in the order metrics list them.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name on the wire: `success`, `exit`, `too-large`, ...
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// The function ran and succeeded: 200, or the status its CGI headers set.
    Success = "success",
    /// A command exited with a non-zero code (502).
    Exit = "exit",
    /// The guest trapped (500).
    Trap = "trap",
    /// The guest crossed its wall-time limit (504).
    Timeout = "timeout",
    /// The guest crossed its memory limit (507).
    Memory = "memory",
    /// The guest wrote past its output limit (509).
    Output = "output",
    /// The guest's scratch directory went past its bytes or files limit (507).
    Scratch = "scratch",
    /// A CGI function printed malformed headers (502).
    Cgi = "cgi",
    /// A wasi:http component ended without a response (502).
    NoResponse = "no-response",
    /// The request body is over the function's limit (413).
    TooLarge = "too-large",
    /// Every instance slot is busy (503).
    Capacity = "capacity",
    /// The tenant's quota, spending cap or rate limit was reached (429).
    Quota = "quota",
    /// No such function (404).
    NotFound = "not-found",
    /// A private function was called without a token (401).
    Unauthorized = "unauthorized",
    /// A private function was called with another tenant's token (403).
    Forbidden = "forbidden",
    /// The function or the metadata store cannot be reached right now (503).
    Unavailable = "unavailable",
    /// The request could not be read or passed on (400).
    BadRequest = "bad-request",
    /// The client stalled while sending the body (408).
    RequestTimeout = "request-timeout",
    /// The server already had its maximum of connections open (503, before
    /// any request was read).
    TooManyConnections = "too-many-connections",
    /// Kiln itself failed; the server log has the cause (500).
    Internal = "internal",
}

impl Kind {
    /// Whether the function ran to a successful end.
    pub fn is_success(self) -> bool {
        self == Kind::Success
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Kiln-Outcome` value that names no [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownKind(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
        }
        assert!("other".parse::<Kind>().is_err());
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len(), "names are unique");
    }
}
