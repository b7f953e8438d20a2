//! Standard output that a closed pipe cannot crash.
//!
//! `println!` panics when the reader of a pipe has gone (`lcs-sim store list demo | head -1`):
//! Rust ignores SIGPIPE, so the write fails with `BrokenPipe` and the macro turns that into a
//! panic and exit code 101. Every command prints through [`outln!`] and [`out!`] instead, which
//! end the process quietly with exit code 0 when the reader has gone, as ripgrep does: the reader
//! asked for no more, which is not an error. Any other write error is reported and exits 2.

use std::io::Write;

/// Writes formatted text to stdout; exits quietly if the reader has gone.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(2);
    }
}

/// Writes formatted text to stdout; `false` when it could not (the reader has gone), for a
/// command that must shut down cleanly rather than exit on the spot (`serve`).
pub fn try_write(args: std::fmt::Arguments<'_>) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.flush()).is_ok()
}

/// Like `println!`, but a closed pipe ends the process quietly (exit 0) instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `print!`, but a closed pipe ends the process quietly (exit 0) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
