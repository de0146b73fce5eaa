//! Whether trying again can help, decided by what went wrong. Every error type of the crate
//! answers [`Retryable::is_retryable`] from its cause: throttling, server errors, timeouts, an
//! unreachable endpoint and running out of memory are worth another attempt; bad input, a missing
//! table or bucket and denied access are not, however often they are tried.

/// A boxed error with its chain of causes, kept so `-v` can show all of it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error that knows whether the same work, tried again later, can succeed.
pub trait Retryable {
    /// `true` when the cause is transient.
    fn is_retryable(&self) -> bool;
}

/// Whether an I/O error is worth another attempt: everything except data or requests that are
/// wrong in themselves.
pub fn io_is_retryable(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    !matches!(
        err.kind(),
        ErrorKind::InvalidData
            | ErrorKind::InvalidInput
            | ErrorKind::Unsupported
            | ErrorKind::NotFound
            | ErrorKind::PermissionDenied
    )
}
