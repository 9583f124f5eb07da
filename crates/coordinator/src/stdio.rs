//! Writing to stderr and stdout without ever panicking: a closed pipe (`coordinator ... 2>&1 |
//! head -1`) must not end a run, nor change its exit code. `eprintln!` and `println!` panic
//! when the write fails; these helpers drop what cannot be written instead. The tracing
//! subscriber writes through [`Stderr`] for the same reason.

use std::io::{self, Write};

/// stderr, with a closed pipe (or any other write error) swallowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Nobody is reading: the bytes are dropped, as if written.
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// One line on stderr; lost if stderr is closed.
pub fn eline(text: &str) {
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{text}");
}

/// Text on stdout; lost if stdout is closed (`coordinator plan ... | head -1`).
pub fn out(text: &str) {
    let mut o = io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}
