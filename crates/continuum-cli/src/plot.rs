//! Pictures of a run: agents, action rate, conflicts, CPU and memory over virtual
//! time, one panel each, from a metrics time series. PNG or SVG by extension.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use std::process::ExitCode;

use crate::invalid;
use crate::series::{MetricsRow, read_series};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot: the time series has no rows")]
    Empty,
    #[error("expected a .png or .svg file name, got {0}")]
    Format(String),
    #[error("cannot draw the plot: {0}")]
    Draw(String),
}

pub(crate) const FONT: &str = "sans-serif";
static FONT_ONCE: Once = Once::new();

/// Plots use the embedded DejaVu Sans: no system fonts needed.
fn register_font() {
    FONT_ONCE.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The plots' font at `size` pixels, bold: titles and captions.
pub(crate) fn bold(size: f64) -> FontDesc<'static> {
    (FONT, size).into_font().style(FontStyle::Bold)
}

/// Colours for lines told apart by colour alone (matplotlib's "tab10"), in
/// the order they are handed out.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Axes, grid and their descriptions in the plots' common style.
pub(crate) fn draw_mesh<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x_desc: &str,
    y_desc: &str,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let largest = |r: std::ops::Range<f64>| r.start.abs().max(r.end.abs());
    let (x_largest, y_largest) = (largest(chart.x_range()), largest(chart.y_range()));
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick_label(*v, x_largest))
        .y_label_formatter(&|v| tick_label(*v, y_largest))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(())
}

/// A tick label on an axis reaching `largest` (in absolute value): plain
/// numbers without trailing zeros, or powers of ten from a million on, where
/// plain ones grow too wide for the label area.
fn tick_label(v: f64, largest: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if largest >= 1e6 {
        let text = format!("{v:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.trim_end_matches('0').trim_end_matches('.')
        } else {
            mantissa
        };
        format!("{mantissa}e{exponent}")
    } else {
        plotters::data::float::FloatPrettyPrinter {
            allow_scientific: false,
            min_decimal: 0,
            max_decimal: 5,
        }
        .print(v)
    }
}

/// One line of a panel: its name, colour, and how to read it from a row and the
/// row before it (rates are differences of totals over virtual time).
struct Series {
    name: &'static str,
    color: RGBColor,
    value: fn(&MetricsRow, &MetricsRow) -> f64,
}

/// The change of a total per virtual second between two rows.
fn per_virtual_sec(now: &MetricsRow, before: &MetricsRow, total: fn(&MetricsRow) -> u64) -> f64 {
    let dt = now.virtual_time - before.virtual_time;
    if dt > 0.0 {
        total(now).saturating_sub(total(before)) as f64 / dt
    } else {
        0.0
    }
}

struct Panel {
    title: &'static str,
    unit: &'static str,
    series: Vec<Series>,
}

fn panels() -> Vec<Panel> {
    vec![
        Panel {
            title: "Agents",
            unit: "agents",
            series: vec![
                Series {
                    name: "active",
                    color: RGBColor(31, 119, 180),
                    value: |r, _| r.agents_active as f64,
                },
                Series {
                    name: "queued",
                    color: RGBColor(255, 127, 14),
                    value: |r, _| r.agents_queued as f64,
                },
            ],
        },
        Panel {
            title: "Actions per virtual second",
            unit: "actions/s",
            series: vec![
                Series {
                    name: "submitted",
                    color: RGBColor(31, 119, 180),
                    value: |r, b| per_virtual_sec(r, b, |x| x.actions_submitted),
                },
                Series {
                    name: "applied",
                    color: RGBColor(44, 160, 44),
                    value: |r, b| per_virtual_sec(r, b, |x| x.actions_applied),
                },
                Series {
                    name: "rejected",
                    color: RGBColor(214, 39, 40),
                    value: |r, b| per_virtual_sec(r, b, |x| x.actions_rejected),
                },
            ],
        },
        Panel {
            title: "Conflicts per virtual second",
            unit: "conflicts/s",
            series: vec![Series {
                name: "conflicts",
                color: RGBColor(148, 103, 189),
                value: |r, b| per_virtual_sec(r, b, |x| x.conflicts),
            }],
        },
        Panel {
            title: "CPU (percent of one core)",
            unit: "%",
            series: vec![Series {
                name: "CPU",
                color: RGBColor(140, 86, 75),
                value: |r, _| r.cpu_percent,
            }],
        },
        Panel {
            title: "Resident memory",
            unit: "MiB",
            series: vec![Series {
                name: "RSS",
                color: RGBColor(23, 190, 207),
                value: |r, _| r.rss_bytes as f64 / (1024.0 * 1024.0),
            }],
        },
    ]
}

/// What a picture file holds, drawn alike on the bitmap and the SVG backend.
pub(crate) trait Picture {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static;
}

/// A metrics time series as a picture: a title and one panel per quantity.
struct TimeSeries<'a>(&'a [MetricsRow]);

impl Picture for TimeSeries<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        draw_all(root, self.0)
    }
}

/// Draws `rows` to `path` (`.png` or `.svg`), atomically: the picture is
/// written under a temporary name and renamed to `path` only once it is whole,
/// so a failed plot leaves a previous picture as it was.
pub fn plot(rows: &[MetricsRow], path: &Path) -> Result<(), PlotError> {
    if rows.is_empty() {
        return Err(PlotError::Empty);
    }
    write_picture(path, (1200, 1500), &TimeSeries(rows))
}

/// Draws `picture` at `size` pixels to `path`, a PNG or an SVG file by its
/// extension, atomically: the picture is written under a temporary name and
/// renamed to `path` only once it is whole, so a failed plot leaves a previous
/// picture as it was.
pub(crate) fn write_picture(
    path: &Path,
    size: (u32, u32),
    picture: &impl Picture,
) -> Result<(), PlotError> {
    register_font();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let draw = |e: Box<dyn std::error::Error>| PlotError::Draw(e.to_string());
    let failed = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    match ext.as_deref() {
        Some("png") => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
            }
            // The encoder picks the format by the extension: keep `.png` last.
            let mut tmp = continuum::atomic_file::temporary_name(path).into_os_string();
            tmp.push(".png");
            let tmp = std::path::PathBuf::from(tmp);
            let result = (|| {
                let root = BitMapBackend::new(&tmp, size).into_drawing_area();
                picture.draw(&root).map_err(draw)?;
                root.present().map_err(|e| failed(&e))?;
                drop(root);
                std::fs::File::open(&tmp)
                    .and_then(|f| continuum::atomic_file::put_in_place(&f, &tmp, path))
                    .map_err(|e| failed(&e))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
        Some("svg") => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                picture.draw(&root).map_err(draw)?;
                root.present().map_err(|e| failed(&e))?;
            }
            continuum::atomic_file::write_bytes_atomically(path, svg.as_bytes())
                .map_err(|e| failed(&e))
        }
        _ => Err(PlotError::Format(path.display().to_string())),
    }
}

fn draw_all<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[MetricsRow],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let run = &rows[0].run;
    let (title, body) = root.split_vertically(50);
    title.titled(
        &format!(
            "{run}: {} rows, {:.0} virtual s",
            rows.len(),
            rows.last().map_or(0.0, |r| r.virtual_time)
        ),
        bold(26.0),
    )?;
    let panels = panels();
    let areas = body.split_evenly((panels.len(), 1));
    let x_max = rows
        .iter()
        .map(|r| r.virtual_time)
        .fold(0.0, f64::max)
        .max(1e-9);
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let start = MetricsRow::default(); // the run's start: all totals zero
        let start = &start;
        let points = |s: &Series| {
            let value = s.value;
            rows.iter().enumerate().map(move |(i, r)| {
                let before = if i == 0 { start } else { &rows[i - 1] };
                (r.virtual_time, value(r, before))
            })
        };
        let y_max = panel
            .series
            .iter()
            .flat_map(|s| points(s).map(|(_, y)| y))
            .fold(0.0, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, bold(20.0))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        draw_mesh(&mut chart, "virtual time (s)", panel.unit)?;
        for s in &panel.series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(points(s), color.stroke_width(2)))?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        if panel.series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.8))
                .border_style(RGBColor(200, 200, 200))
                .draw()?;
        }
    }
    Ok(())
}

/// Whether `path` names a picture this module can write (`.png`, `.svg`).
pub fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png") || e.eq_ignore_ascii_case("svg"))
}

pub fn plot_command(metrics: &Path, output: &Path) -> ExitCode {
    if !is_picture(output) {
        return invalid(&format!(
            "{}: expected a .png or .svg file name",
            output.display()
        ));
    }
    let rows = match read_series(metrics) {
        Ok(rows) => rows,
        Err(e) => return invalid(&e),
    };
    match plot(&rows, output) {
        Ok(()) => {
            outln!("wrote {} ({} rows)", output.display(), rows.len());
            ExitCode::SUCCESS
        }
        Err(PlotError::Empty) => invalid(&format!("{}: {}", metrics.display(), PlotError::Empty)),
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tick_label;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(200.0, 800.0), "200");
        assert_eq!(tick_label(0.25, 1.0), "0.25");
        assert_eq!(tick_label(-7500.0, 11500.0), "-7500");
        assert_eq!(tick_label(0.0, 3e10), "0");
        assert_eq!(tick_label(2.4e10, 3e10), "2.4e10");
        assert_eq!(tick_label(1.5e6, 2e6), "1.5e6");
        assert_eq!(tick_label(2e6, 2e6), "2e6");
    }
}
