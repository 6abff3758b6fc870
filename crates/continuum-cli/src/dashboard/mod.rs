//! The live dashboard: what a run is doing, redrawn once a second. The drawing
//! is a pure function of [`DashboardState`], so it renders the same into a real
//! terminal or into ratatui's `TestBackend`.

pub mod terminal;

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Sparkline};

use continuum::metrics::Snapshot;
use continuum::scenario::ClockMode;

/// Seconds of history the sparklines show.
pub const HISTORY_SECS: usize = 60;
/// Log lines the dashboard keeps.
pub const LOG_LINES: usize = 4;

/// The last minute of a few figures, one value a second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub ticks_per_sec: VecDeque<u64>,
    pub actions_per_sec: VecDeque<u64>,
    pub conflicts_per_sec: VecDeque<u64>,
    pub cpu_percent: VecDeque<u64>,
}

impl History {
    /// Adds this second's values, dropping those older than a minute.
    pub fn push(&mut self, s: &Snapshot) {
        for (series, value) in [
            (&mut self.ticks_per_sec, s.agent_ticks_per_sec),
            (&mut self.actions_per_sec, s.actions_per_sec),
            (&mut self.conflicts_per_sec, s.conflicts_per_sec),
            (&mut self.cpu_percent, s.cpu_percent),
        ] {
            if series.len() == HISTORY_SECS {
                series.pop_front();
            }
            series.push_back(value.max(0.0).round() as u64);
        }
    }
}

/// Everything the dashboard shows.
#[derive(Clone, Debug, PartialEq)]
pub struct DashboardState {
    pub scenario: String,
    pub mode: ClockMode,
    pub threads: usize,
    /// Virtual seconds the run lasts, if known.
    pub duration: Option<f64>,
    pub snapshot: Snapshot,
    /// Kind names, in kind order.
    pub kinds: Vec<String>,
    pub history: History,
    /// The latest log lines.
    pub log: VecDeque<String>,
}

/// Compact numbers: 1234 → 1.2k, 2_500_000 → 2.50M.
pub fn si(x: f64) -> String {
    match x.abs() {
        v if v >= 1e6 => format!("{:.2}M", x / 1e6),
        v if v >= 1e3 => format!("{:.1}k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl DashboardState {
    /// Fraction done, real-time speed-up and seconds left, in fast mode with a
    /// known duration.
    pub fn progress(&self) -> Option<(f64, f64, f64)> {
        let duration = self.duration.filter(|_| self.mode == ClockMode::Fast)?;
        let s = &self.snapshot;
        let done = (s.virtual_seconds / duration).clamp(0.0, 1.0);
        let speed = if s.wall_seconds > 0.0 {
            s.virtual_seconds / s.wall_seconds
        } else {
            0.0
        };
        let eta = if speed > 0.0 {
            (duration - s.virtual_seconds).max(0.0) / speed
        } else {
            f64::INFINITY
        };
        Some((done, speed, eta))
    }
}

fn row(label: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{label:<14}"), Style::default().fg(Color::Gray)),
        Span::styled(value, Style::default().add_modifier(Modifier::BOLD)),
    ])
}

/// Draws the dashboard over the whole frame.
pub fn draw(frame: &mut Frame, state: &DashboardState) {
    let s = &state.snapshot;
    let log_height = if state.log.is_empty() {
        0
    } else {
        state.log.len() as u16 + 2
    };
    let [header, progress, tables, sparks, log, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(if state.progress().is_some() { 3 } else { 0 }),
        Constraint::Length(9),
        Constraint::Min(8),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let title = format!(" Continuum · {} ", state.scenario);
    let line = Line::from(vec![
        Span::raw(format!(
            "virtual {:.1} s   wall {:.1} s   ",
            s.virtual_seconds, s.wall_seconds
        )),
        Span::styled(
            format!("real-time ratio {:.3}", s.realtime_ratio),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "   speed {}{}   {} mode, {} thread(s)",
            if state.mode == ClockMode::Fast {
                "n/a".to_string()
            } else {
                format!("×{}", s.speed)
            },
            if s.paused { "   PAUSED" } else { "" },
            state.mode.as_str(),
            state.threads
        )),
    ]);
    frame.render_widget(
        Paragraph::new(line).block(Block::default().borders(Borders::ALL).title(title)),
        header,
    );

    if let Some((done, speed, eta)) = state.progress() {
        let label = format!(
            "{:.0} %   ×{speed:.1} real time   ETA {eta:.1} s",
            done * 100.0
        );
        frame.render_widget(
            Gauge::default()
                .block(Block::default().borders(Borders::ALL).title(" Progress "))
                .gauge_style(Style::default().fg(Color::Green))
                .ratio(done)
                .label(label),
            progress,
        );
    }

    let [agents, actions, resources] =
        Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(tables);
    let mut agent_rows = vec![
        row("active", s.agents_active.to_string()),
        row("queued", s.agents_queued.to_string()),
        row("retired", s.agents_retired.to_string()),
        row("ticks/s", si(s.agent_ticks_per_sec)),
    ];
    for (name, rate) in state.kinds.iter().zip(&s.ticks_per_sec_by_kind) {
        agent_rows.push(row(&format!("  {name}"), format!("{}/s", si(*rate))));
    }
    frame.render_widget(
        Paragraph::new(agent_rows).block(Block::default().borders(Borders::ALL).title(" Agents ")),
        agents,
    );
    let mut action_rows = vec![
        row("submitted/s", si(s.actions_per_sec)),
        row("applied/s", si(s.applied_per_sec)),
        row("rejected/s", si(s.rejected_per_sec)),
        row("conflicts/s", si(s.conflicts_per_sec)),
        row("conflicts", s.conflicts.to_string()),
        row(
            "cache hits",
            format!(
                "{:.1} %, {} evicted",
                s.cache_hit_rate * 100.0,
                si(s.cache_evictions as f64)
            ),
        ),
    ];
    // Thinks under way (running, waiting for a slot) and late so far.
    if s.thinks_started > 0 {
        action_rows.push(row(
            "thinks",
            format!(
                "{} run {} wait {} late",
                s.thinks_in_flight, s.thinks_waiting, s.thinks_late
            ),
        ));
    }
    frame.render_widget(
        Paragraph::new(action_rows)
            .block(Block::default().borders(Borders::ALL).title(" Actions ")),
        actions,
    );
    frame.render_widget(
        Paragraph::new(vec![
            row("CPU", format!("{:.0} %", s.cpu_percent)),
            row("RSS", mib(s.rss_bytes)),
            row("step p50", format!("{:.3} ms", s.step_ms_p50)),
            row("step p99", format!("{:.3} ms", s.step_ms_p99)),
            row("step max", format!("{:.3} ms", s.step_ms_max)),
            row("steps", s.steps.to_string()),
        ])
        .block(Block::default().borders(Borders::ALL).title(" Resources ")),
        resources,
    );

    let h = &state.history;
    let spark_areas = Layout::vertical([Constraint::Ratio(1, 4); 4]).split(sparks);
    for (area, (title, data, color)) in spark_areas.iter().zip([
        (
            format!(" agent ticks/s  {} ", si(s.agent_ticks_per_sec)),
            &h.ticks_per_sec,
            Color::Green,
        ),
        (
            format!(" actions/s  {} ", si(s.actions_per_sec)),
            &h.actions_per_sec,
            Color::Blue,
        ),
        (
            format!(" conflicts/s  {} ", si(s.conflicts_per_sec)),
            &h.conflicts_per_sec,
            Color::Magenta,
        ),
        (
            format!(" CPU %  {:.0} ", s.cpu_percent),
            &h.cpu_percent,
            Color::Yellow,
        ),
    ]) {
        let data: Vec<u64> = data.iter().copied().collect();
        frame.render_widget(
            Sparkline::default()
                .block(Block::default().borders(Borders::TOP).title(title))
                .data(&data)
                .style(Style::default().fg(color)),
            *area,
        );
    }

    if !state.log.is_empty() {
        let lines: Vec<Line> = state.log.iter().map(|l| Line::raw(l.clone())).collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Log ")),
            log,
        );
    }
    frame.render_widget(
        Paragraph::new(Line::styled(
            " space: pause/resume · + -: speed ×2 ÷2 (realtime) · q, Ctrl-C: stop (report kept) · last 60 s above",
            Style::default().fg(Color::DarkGray),
        )),
        footer,
    );
}

/// A live-control key of the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Space: pause, or resume a paused run.
    TogglePause,
    /// `+` (or `=`, its unshifted key): double the speed.
    Faster,
    /// `-`: halve the speed.
    Slower,
}

/// The live-control keys in raw terminal input, in order.
pub fn control_keys(bytes: &[u8]) -> Vec<Control> {
    bytes
        .iter()
        .filter_map(|b| match b {
            b' ' => Some(Control::TogglePause),
            b'+' | b'=' => Some(Control::Faster),
            b'-' | b'_' => Some(Control::Slower),
            _ => None,
        })
        .collect()
}

/// Applies a live-control key to a running app and says what it did, for the
/// log. Pausing works in both modes (`Time<Virtual>` stops the fixed steps);
/// speed changes only in realtime mode, since a fast run takes one step per
/// update whatever the speed: there the key is refused with a message. The
/// speed stays within (0, `MAX_SPEED`]: at the bound the key says so.
pub fn apply_control(
    world: &mut bevy_ecs::world::World,
    control: Control,
    mode: ClockMode,
) -> String {
    use continuum::headless;
    match control {
        Control::TogglePause => {
            if headless::is_paused(world) {
                headless::resume(world);
                "resumed".into()
            } else {
                headless::pause(world);
                "paused".into()
            }
        }
        Control::Faster | Control::Slower if mode == ClockMode::Fast => {
            "speed n/a in fast mode (one step per update)".into()
        }
        Control::Faster | Control::Slower => {
            let now = headless::speed(world);
            let next = if control == Control::Faster {
                now * 2.0
            } else {
                now / 2.0
            };
            match headless::set_speed(world, next) {
                Ok(()) => format!("speed ×{next}"),
                Err(e) => format!("speed stays ×{now}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;
    use bevy_time::{Time, Virtual};

    #[test]
    fn keys_parse_in_order_and_ignore_others() {
        assert_eq!(
            control_keys(b" x+=-"),
            vec![
                Control::TogglePause,
                Control::Faster,
                Control::Faster,
                Control::Slower
            ]
        );
        assert!(control_keys(b"abc").is_empty());
    }

    #[test]
    fn keys_pause_resume_and_change_speed_in_realtime_only() {
        let mut world = bevy_ecs::world::World::new();
        world.insert_resource(Time::<Virtual>::default());
        assert_eq!(
            apply_control(&mut world, Control::TogglePause, ClockMode::Realtime),
            "paused"
        );
        assert!(world.resource::<Time<Virtual>>().is_paused());
        assert_eq!(
            apply_control(&mut world, Control::TogglePause, ClockMode::Realtime),
            "resumed"
        );
        assert!(!world.resource::<Time<Virtual>>().is_paused());
        apply_control(&mut world, Control::Faster, ClockMode::Realtime);
        apply_control(&mut world, Control::Faster, ClockMode::Realtime);
        assert_eq!(world.resource::<Time<Virtual>>().relative_speed_f64(), 4.0);
        apply_control(&mut world, Control::Slower, ClockMode::Realtime);
        assert_eq!(world.resource::<Time<Virtual>>().relative_speed_f64(), 2.0);
        let said = apply_control(&mut world, Control::Faster, ClockMode::Fast);
        assert!(said.contains("fast mode"), "{said}");
        assert_eq!(world.resource::<Time<Virtual>>().relative_speed_f64(), 2.0);
        assert_eq!(
            apply_control(&mut world, Control::TogglePause, ClockMode::Fast),
            "paused"
        );
    }
}
