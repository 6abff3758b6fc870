//! The dashboard in a real terminal: raw mode on the alternate screen of stderr
//! (stdout stays free for the summary), keys, and a clean exit even on panic.

use std::io::{self, Stderr};
use std::time::Duration;

use super::{DashboardState, draw};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::crossterm::{cursor, execute};

use crate::logging::LogSink;

/// The terminal while the dashboard owns it.
pub struct Tui {
    terminal: Terminal<CrosstermBackend<Stderr>>,
    log: LogSink,
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stderr(), LeaveAlternateScreen, cursor::Show);
}

impl Tui {
    /// Takes over the terminal.
    pub fn start(log: LogSink) -> io::Result<Self> {
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
        let terminal = Terminal::new(CrosstermBackend::new(io::stderr()))?;
        log.capture(true);
        Ok(Self { terminal, log })
    }

    /// Whether `q`, Esc or Ctrl-C was pressed (reads pending keys, never waits).
    pub fn stop_requested(&mut self) -> bool {
        let mut stop = false;
        while event::poll(Duration::ZERO).unwrap_or(false) {
            if let Ok(Event::Key(key)) = event::read()
                && key.kind == KeyEventKind::Press
            {
                stop |= matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                    || (key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL));
            }
        }
        stop
    }

    /// Redraws the dashboard.
    pub fn draw(&mut self, state: &mut DashboardState) {
        state.log = self.log.recent();
        let _ = self.terminal.draw(|frame| draw(frame, state));
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
        self.log.capture(false);
    }
}
