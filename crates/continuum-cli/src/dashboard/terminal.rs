//! The dashboard in a real terminal: raw mode on the alternate screen of stderr
//! (stdout stays free for the summary), keys, and a clean exit even on panic.

use std::io::{self, Stderr};
use std::mem::ManuallyDrop;
#[cfg(not(unix))]
use std::time::Duration;

use super::{DashboardState, draw};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
#[cfg(not(unix))]
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};

use crate::logging::LogSink;

/// The terminal while the dashboard owns it.
pub struct Tui {
    /// Dropped only if the terminal is still there: ratatui's drop shows the
    /// cursor and `eprintln!`s an error if it cannot, which panics once the
    /// terminal is gone.
    terminal: ManuallyDrop<Terminal<CrosstermBackend<Stderr>>>,
    log: LogSink,
    keys: Keys,
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stderr(), LeaveAlternateScreen, cursor::Show);
}

impl Tui {
    /// Takes over the terminal.
    pub fn start(log: LogSink) -> io::Result<Self> {
        let keys = Keys::open()?;
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stderr(), EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e);
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let terminal = match Terminal::new(CrosstermBackend::new(io::stderr())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        log.capture(true);
        Ok(Self {
            terminal: ManuallyDrop::new(terminal),
            log,
            keys,
        })
    }

    /// Reads pending keys, never waits: whether `q`, Esc or Ctrl-C was
    /// pressed, or the terminal is gone (hung up: its window or SSH connection
    /// closed).
    pub fn input(&mut self) -> Input {
        self.keys.read()
    }

    /// Redraws the dashboard. An error means the terminal is gone.
    pub fn draw(&mut self, state: &mut DashboardState) -> io::Result<()> {
        state.log = self.log.recent();
        self.terminal.draw(|frame| draw(frame, state)).map(|_| ())
    }
}

/// What the terminal said since the last look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Nothing,
    /// `q`, Esc or Ctrl-C.
    Stop,
    /// The terminal hung up or cannot be read.
    Gone,
    /// Live-control keys, in the order pressed (see [`super::control_keys`]).
    Controls(Vec<super::Control>),
}

/// The keyboard, read straight from the terminal. Not through crossterm's
/// event reader: on a hung-up terminal (a read gives end of file or an error)
/// it loops inside `event::poll` forever at full speed, and the run never
/// gets to see a stop signal.
#[cfg(unix)]
struct Keys {
    fd: std::os::fd::RawFd,
    /// `/dev/tty`, when stdin is not the terminal (the fd above is then its).
    _tty: Option<std::fs::File>,
}

#[cfg(unix)]
impl Keys {
    /// The terminal crossterm put in raw mode: stdin if it is one, else
    /// `/dev/tty`.
    fn open() -> io::Result<Self> {
        use std::io::IsTerminal;
        use std::os::fd::AsRawFd;
        if io::stdin().is_terminal() {
            return Ok(Self {
                fd: libc::STDIN_FILENO,
                _tty: None,
            });
        }
        let tty = std::fs::File::open("/dev/tty")?;
        Ok(Self {
            fd: tty.as_raw_fd(),
            _tty: Some(tty),
        })
    }

    fn read(&mut self) -> Input {
        let mut input = Input::Nothing;
        // A bounded number of reads: keys come a few at a time.
        for _ in 0..64 {
            let mut poll = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no waiting.
            let ready = unsafe { libc::poll(&mut poll, 1, 0) };
            if ready < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Input::Gone;
            }
            if ready == 0 {
                break;
            }
            if poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return Input::Gone;
            }
            let mut buf = [0u8; 256];
            // SAFETY: reads into a buffer of the length given; poll said there
            // is something to read, so this does not wait.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => return Input::Gone,
                n if n < 0 => match io::Error::last_os_error().kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Input::Gone,
                },
                n => {
                    let bytes = &buf[..n as usize];
                    if stop_key(bytes) {
                        input = Input::Stop;
                    } else if input != Input::Stop {
                        let keys = super::control_keys(bytes);
                        match &mut input {
                            Input::Controls(all) => all.extend(keys),
                            _ if !keys.is_empty() => input = Input::Controls(keys),
                            _ => {}
                        }
                    }
                }
            }
        }
        input
    }
}

/// Whether raw terminal input holds `q`, Ctrl-C or a lone Esc (one not
/// starting an escape sequence such as an arrow key's).
#[cfg(unix)]
fn stop_key(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'q' | 0x03 => true,
        0x1b => bytes.get(i + 1).is_none_or(|&next| next == 0x1b),
        _ => false,
    })
}

/// The keyboard through crossterm's events.
#[cfg(not(unix))]
struct Keys;

#[cfg(not(unix))]
impl Keys {
    fn open() -> io::Result<Self> {
        Ok(Self)
    }

    fn read(&mut self) -> Input {
        let mut input = Input::Nothing;
        for _ in 0..64 {
            match event::poll(Duration::ZERO) {
                Ok(false) => break,
                Ok(true) => {}
                Err(_) => return Input::Gone,
            }
            match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL))
                    {
                        input = Input::Stop;
                    } else if let KeyCode::Char(c) = key.code
                        && input != Input::Stop
                    {
                        let mut utf8 = [0u8; 4];
                        let keys = super::control_keys(c.encode_utf8(&mut utf8).as_bytes());
                        match &mut input {
                            Input::Controls(all) => all.extend(keys),
                            _ if !keys.is_empty() => input = Input::Controls(keys),
                            _ => {}
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => return Input::Gone,
            }
        }
        input
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::stop_key;

    #[test]
    fn stop_keys_in_raw_input() {
        assert!(stop_key(b"q"));
        assert!(stop_key(b"\x03"));
        assert!(stop_key(b"\x1b"));
        assert!(stop_key(b"ab\x1b\x1b[A"));
        assert!(!stop_key(b"\x1b[A"));
        assert!(!stop_key(b"x"));
        assert!(!stop_key(b""));
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        if self.terminal.show_cursor().is_ok() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.terminal) };
        }
        restore();
        self.log.capture(false);
    }
}
