//! The one error type of onnx-rap. Every error says which file, node or tensor it is about and
//! what to do; its kind decides the process exit code (2: bad input or usage, 1: runtime).

use std::fmt;

/// What went wrong, as the command line reports it.
#[derive(Debug)]
pub enum Error {
    /// The user gave something we cannot use: a malformed model, an unsupported op, a bad flag.
    Input(String),
    /// Our side failed on a valid input: a runtime error, an I/O error while writing.
    Runtime(String),
}

impl Error {
    /// Exit code for the command line: 2 for bad input or usage, 1 for a runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Runtime(_) => 1,
        }
    }

    /// Prefix the message with more context (a file name, a node name), keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Error {
        match self {
            Error::Input(m) => Error::Input(format!("{what}: {m}")),
            Error::Runtime(m) => Error::Runtime(format!("{what}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m) | Error::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Build an [`Error::Input`] from a format string.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => { $crate::error::Error::Input(format!($($arg)*)) };
}

/// Build an [`Error::Runtime`] from a format string.
#[macro_export]
macro_rules! runtime_err {
    ($($arg:tt)*) => { $crate::error::Error::Runtime(format!($($arg)*)) };
}
