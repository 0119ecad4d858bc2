//! Everything the CLI prints on stdout goes through here, so that a reader that goes away
//! (`workforce replay ... | head -1`) ends the command quietly instead of with a panic. Writes
//! return `io::Result`; `main` treats a broken pipe anywhere in an error's chain as a quiet,
//! successful exit.

use std::io::{self, Write};

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `outln!(...)`: `println!` that returns the write's `io::Result` instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Whether `error` (or one of its causes) is stdout's reader having gone away.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// For callers that cannot return the error: a broken pipe exits quietly (the reader has what
/// it wanted); any other write error is reported and exits with the error code.
pub fn settle(written: io::Result<()>) {
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            std::process::exit(crate::exit::SUCCESS)
        }
        Err(error) => {
            eprintln!("workforce: cannot write to stdout: {error}");
            std::process::exit(crate::exit::ERROR_CODE)
        }
    }
}
