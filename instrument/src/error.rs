//! Why instrumentation failed, as a type a caller can branch on.

/// An instrumentation failure. [`Error::kind`] says which; the message is written for a person.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input does not start with the WebAssembly magic number and version 1.
    #[error("not a WebAssembly module: {reason}")]
    NotWasm {
        /// What was found instead.
        reason: String,
    },
    /// The input is malformed or fails validation.
    #[error("invalid module at byte offset {offset:#x}: {message}")]
    Invalid {
        /// The validator's message.
        message: String,
        /// Byte offset into the input.
        offset: usize,
    },
    /// The input is a valid module, but uses a proposal that ri-sandbox does not meter or that
    /// is not deterministic (GC, threads, relaxed SIMD, legacy exceptions, stack switching, ...).
    #[error("unsupported feature at byte offset {offset:#x}: {message} (ri-sandbox meters WebAssembly 2.0 plus tail calls, multi-memory, memory64, exception handling, extended-const and function references)")]
    Unsupported {
        /// Names the proposal or construct.
        message: String,
        /// Byte offset into the input.
        offset: usize,
    },
    /// The input already carries an `ri_sandbox` custom section.
    #[error("module is already instrumented (it has an `ri_sandbox` custom section); instrument the original module instead")]
    AlreadyInstrumented,
    /// The input exports a name the ABI reserves (`ri_sandbox_*`).
    #[error("module exports `{name}`, a name reserved by the ri-sandbox ABI (every `ri_sandbox_*` name is)")]
    ReservedName {
        /// The clashing export name.
        name: String,
    },
    /// The module is larger than the ABI can describe (more than 2^32 - 2 globals, say).
    #[error("module exceeds an implementation limit: {message}")]
    Limit {
        /// Which limit.
        message: String,
    },
    /// A cost file or cost-model update was rejected.
    #[error("invalid cost model: {message}")]
    CostModel {
        /// What is wrong with it.
        message: String,
    },
    /// The rewritten module failed validation: a bug in ri-sandbox, never in the input.
    #[error("internal error: the instrumented module does not validate ({message}); please report this with the input module")]
    Internal {
        /// The validator's message about the output.
        message: String,
    },
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error {
            kind: Box::new(kind),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The byte offset into the input the error refers to, when there is one.
    pub fn offset(&self) -> Option<usize> {
        match *self.kind {
            ErrorKind::Invalid { offset, .. } | ErrorKind::Unsupported { offset, .. } => {
                Some(offset)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<super::Error>(),
            std::mem::size_of::<usize>()
        );
    }
}
