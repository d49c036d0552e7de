//! A spinner on stderr for the CLI's long commands (`plugin build`,
//! `deploy --wait`, `savepoint`, `rescale`, `upgrade`): one line redrawn
//! ten times a second with what is going on and the seconds so far.
//!
//! Drawn only when stderr is a terminal: in a pipe, a log file or a test,
//! nothing is drawn and the commands' plain lines stay as they are.
//! [`line`] prints a line above a running spinner (or plainly without
//! one); [`step`] changes its message.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(100);
/// Erases the terminal's current line.
const CLEAR: &str = "\r\x1b[2K";

struct Inner {
    message: Mutex<String>,
    stop: AtomicBool,
    started: Instant,
}

/// The spinner being drawn, if any (one at a time).
static ACTIVE: Mutex<Option<Arc<Inner>>> = Mutex::new(None);

/// A running spinner; it disappears when dropped.
pub struct Spinner {
    inner: Option<Arc<Inner>>,
    thread: Option<JoinHandle<()>>,
}

/// The spinner's line: frame `tick`, the message and the time so far.
pub fn render(tick: usize, message: &str, elapsed: Duration) -> String {
    format!("{} {message} ({:.0} s)", FRAMES[tick % FRAMES.len()], elapsed.as_secs_f64().floor())
}

impl Spinner {
    /// Starts a spinner showing `message`, if stderr is a terminal.
    pub fn start(message: impl Into<String>) -> Spinner {
        Self::start_on(message, std::io::stderr().is_terminal())
    }

    fn start_on(message: impl Into<String>, terminal: bool) -> Spinner {
        let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        if !terminal || active.is_some() {
            return Spinner { inner: None, thread: None };
        }
        let inner = Arc::new(Inner {
            message: Mutex::new(message.into()),
            stop: AtomicBool::new(false),
            started: Instant::now(),
        });
        *active = Some(inner.clone());
        let drawn = inner.clone();
        let thread = std::thread::Builder::new()
            .name("flinkw-spinner".into())
            .spawn(move || {
                let mut tick = 0;
                while !drawn.stop.load(Ordering::SeqCst) {
                    let text = {
                        let m = drawn.message.lock().unwrap_or_else(|p| p.into_inner());
                        render(tick, &m, drawn.started.elapsed())
                    };
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "{CLEAR}{text}");
                    let _ = err.flush();
                    drop(err);
                    tick += 1;
                    std::thread::sleep(TICK);
                }
            })
            .ok();
        Spinner { inner: Some(inner), thread }
    }

    /// Whether it is drawn (stderr is a terminal).
    pub fn is_drawn(&self) -> bool {
        self.inner.is_some()
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR}");
        let _ = err.flush();
    }
}

/// Changes the running spinner's message (nothing without one).
pub fn step(message: impl Into<String>) {
    if let Some(inner) = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        *inner.message.lock().unwrap_or_else(|p| p.into_inner()) = message.into();
    }
}

/// Prints `text` as a line on stderr, above the spinner if one runs.
pub fn line(text: &str) {
    let spinning = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let mut err = std::io::stderr().lock();
    let _ = if spinning { writeln!(err, "{CLEAR}{text}") } else { writeln!(err, "{text}") };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_turn_and_show_the_seconds() {
        assert_eq!(render(0, "building", Duration::from_millis(2500)), "⠋ building (2 s)");
        assert_eq!(render(11, "x", Duration::ZERO), "⠙ x (0 s)");
    }

    #[test]
    fn nothing_is_drawn_without_a_terminal() {
        let s = Spinner::start_on("quiet", false);
        assert!(!s.is_drawn() && s.thread.is_none());
        step("ignored"); // no spinner: a no-op
        assert!(ACTIVE.lock().unwrap().is_none());
    }
}
