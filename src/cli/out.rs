//! Standard output that a closed pipe cannot crash.
//!
//! `println!` panics when the reader of a pipe has gone (`lcs-sim store list demo | head -1`):
//! Rust ignores SIGPIPE, so the write fails with `BrokenPipe` and the macro turns that into a
//! panic and exit code 101. Every command prints through [`outln!`] and [`out!`] instead. When
//! the reader has gone they print nothing more, quietly, and the command runs to its end: the
//! reader asked for no more output, but the exit code is still the command's (`doctor DIR | head
//! -1` on a broken deployment exits 1 every time, whichever of the two finishes first). Exiting
//! on the spot with 0 made that code depend on a race. Any other write error is reported and
//! exits 3 (internal: lcs-sim could not write its output).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone: later writes are skipped.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Writes formatted text to stdout; writes nothing once the reader has gone.
pub fn write(args: std::fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            READER_GONE.store(true, Ordering::Relaxed);
            return;
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(super::exit::INTERNAL.into());
    }
}

/// Writes formatted text to stdout; `false` when it could not (the reader has gone), for a
/// command that must shut down cleanly rather than exit on the spot (`serve`).
pub fn try_write(args: std::fmt::Arguments<'_>) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.flush()).is_ok()
}

/// Like `println!`, but a closed pipe silences it instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `print!`, but a closed pipe silences it instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
