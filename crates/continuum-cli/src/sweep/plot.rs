//! `continuum sweep plot`: a sweep's figures against a numeric column of its
//! table (a parameter such as `param.groups[2].count`, or a figure such as
//! `agents_active`), one line per value of another column (such as
//! `param.conflicts`), one panel per figure.
//!
//! Each point is the mean over the runs that share its line and its x (the
//! replicates of a point, which differ only in their seed), and a bar spans
//! their least and greatest value: how much the figure depends on the seed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::{Manifest, RUNS_FILE, read_rows};
use crate::plot::{FONT, PALETTE, Picture, PlotError, bold, draw_mesh, is_picture, write_picture};

/// Height in pixels of the title above the panels.
const HEADER_HEIGHT: u32 = 80;
/// Height in pixels of each panel.
const PANEL_HEIGHT: u32 = 420;
/// Width in pixels of the whole picture.
const WIDTH: u32 = 1200;

/// Why a sweep's table could not be plotted.
#[derive(Debug, thiserror::Error)]
pub enum SweepPlotError {
    /// The folder holds no table.
    #[error("{}: no such file; `continuum sweep --out DIR` writes DIR/{RUNS_FILE}", .0.display())]
    NoTable(PathBuf),
    /// The table cannot be read or is malformed.
    #[error("{0}")]
    Table(String),
    /// The table has a header but no runs.
    #[error("{}: no runs to plot", .0.display())]
    Empty(PathBuf),
    /// A column named on the command line is not in the table.
    #[error(
        "{}: no column `{column}`; its columns: {}",
        .table.display(),
        .columns.join(", ")
    )]
    UnknownColumn {
        table: PathBuf,
        column: String,
        columns: Vec<String>,
    },
    /// An axis' column holds something other than a finite number.
    #[error(
        "{}: column `{column}` {} in run {run}, not a number; the columns with a number in \
         every run: {}",
        .table.display(),
        describe(.value),
        .numeric.join(", ")
    )]
    NotNumber {
        table: PathBuf,
        column: String,
        run: String,
        value: String,
        numeric: Vec<String>,
    },
    /// Not a picture file name, or the picture could not be drawn or written.
    #[error(transparent)]
    Picture(#[from] PlotError),
}

/// A cell's content for an error message.
fn describe(value: &str) -> String {
    if value.is_empty() {
        "is empty".to_owned()
    } else {
        format!("holds `{}`", continuum::config::clip(value, 40))
    }
}

/// What to draw: the table's columns by name.
#[derive(Clone, Copy, Debug)]
pub struct Axes<'a> {
    /// The numeric column along the x axis.
    pub x: &'a str,
    /// The column whose values name the lines; `None` draws a single line.
    pub group: Option<&'a str>,
    /// The numeric columns to draw, a panel each.
    pub figures: &'a [String],
}

/// `continuum sweep plot DIR --x COLUMN [--group COLUMN] --y FIGURE... -o PLOT`.
pub fn plot_command(dir: &Path, axes: Axes, output: &Path) -> ExitCode {
    match plot(dir, axes, output) {
        Ok(summary) => {
            outln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(SweepPlotError::Picture(PlotError::Draw(e))) => {
            errln!("error: cannot draw {}: {e}", output.display());
            ExitCode::FAILURE
        }
        Err(e) => crate::invalid(&e),
    }
}

/// Draws the table in `dir` to `output` (`.png` or `.svg`, written
/// atomically); gives a line saying what was drawn.
pub fn plot(dir: &Path, axes: Axes, output: &Path) -> Result<String, SweepPlotError> {
    if !is_picture(output) {
        return Err(PlotError::Format(output.display().to_string()).into());
    }
    let runs = Runs::read(dir)?;
    let panels = runs.panels(axes)?;
    let picture = SweepPicture::new(&sweep_name(dir), axes, panels, runs.rows.len());
    write_picture(output, (WIDTH, picture.height()), &picture)?;
    Ok(format!(
        "wrote {} ({} runs, {} panel{}, {} line{})",
        output.display(),
        runs.rows.len(),
        picture.panels.len(),
        plural(picture.panels.len()),
        picture.groups.len(),
        plural(picture.groups.len())
    ))
}

/// The sweep's name from its manifest, or else the folder's.
pub(super) fn sweep_name(dir: &Path) -> String {
    Manifest::read(dir)
        .ok()
        .flatten()
        .map(|m| m.name)
        .or_else(|| Some(dir.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// The ending of a count's noun.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A sweep's table as read for plotting: its columns and its rows, in run
/// order.
pub(super) struct Runs {
    pub(super) path: PathBuf,
    header: Vec<String>,
    pub(super) rows: Vec<Vec<String>>,
}

impl Runs {
    /// Reads `DIR/runs.csv`, which must hold at least one run.
    pub(super) fn read(dir: &Path) -> Result<Self, SweepPlotError> {
        let path = dir.join(RUNS_FILE);
        if !path.is_file() {
            return Err(SweepPlotError::NoTable(path));
        }
        let (header, rows) = read_rows(&path).map_err(SweepPlotError::Table)?;
        if rows.is_empty() {
            return Err(SweepPlotError::Empty(path));
        }
        Ok(Self {
            path,
            header,
            rows: rows.into_values().collect(),
        })
    }

    /// The position of column `name` (matched exactly).
    pub(super) fn column(&self, name: &str) -> Result<usize, SweepPlotError> {
        self.header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| SweepPlotError::UnknownColumn {
                table: self.path.clone(),
                column: name.to_owned(),
                columns: self.header.clone(),
            })
    }

    /// Column `name`'s cells, a row each.
    fn cells(&self, name: &str) -> Result<Vec<&str>, SweepPlotError> {
        let i = self.column(name)?;
        Ok(self
            .rows
            .iter()
            .map(|row| row.get(i).map_or("", String::as_str))
            .collect())
    }

    /// Column `name`'s numbers, a row each; a cell that is not a finite
    /// number is an error naming its run.
    pub(super) fn numbers(&self, name: &str) -> Result<Vec<f64>, SweepPlotError> {
        let cells = self.cells(name)?;
        cells
            .iter()
            .zip(&self.rows)
            .map(|(cell, row)| {
                number(cell).ok_or_else(|| SweepPlotError::NotNumber {
                    table: self.path.clone(),
                    column: name.to_owned(),
                    run: row[0].clone(),
                    value: (*cell).to_owned(),
                    numeric: self.numeric_columns(),
                })
            })
            .collect()
    }

    /// The columns with a number in every row: those an axis can use.
    fn numeric_columns(&self) -> Vec<String> {
        (0..self.header.len())
            .filter(|&i| {
                self.rows
                    .iter()
                    .all(|row| row.get(i).and_then(|c| number(c)).is_some())
            })
            .map(|i| self.header[i].clone())
            .collect()
    }

    /// One panel per figure of `axes`. Every column is looked up before any
    /// is read, so that a misspelt name is reported as such.
    fn panels(&self, axes: Axes) -> Result<Vec<Panel>, SweepPlotError> {
        let names = std::iter::once(axes.x)
            .chain(axes.group)
            .chain(axes.figures.iter().map(String::as_str));
        for name in names {
            self.column(name)?;
        }
        let xs = self.numbers(axes.x)?;
        let groups = match axes.group {
            Some(group) => self.cells(group)?,
            None => vec![""; self.rows.len()],
        };
        axes.figures
            .iter()
            .map(|figure| {
                let ys = self.numbers(figure)?;
                let samples = groups
                    .iter()
                    .zip(&xs)
                    .zip(&ys)
                    .map(|((g, x), y)| (*g, *x, *y));
                Ok(Panel {
                    figure: figure.clone(),
                    lines: aggregate(samples),
                })
            })
            .collect()
    }
}

/// A cell as a number, if it is a finite one.
fn number(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One point of a line: a figure over the runs that share a group and an x.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// How many runs the point sums up.
    pub runs: usize,
}

/// The points of one group, by increasing x.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub group: String,
    pub points: Vec<Point>,
}

/// A figure's panel: a line per group.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub figure: String,
    pub lines: Vec<Line>,
}

/// Sums up `(group, x, y)` samples as lines: one per group, in the order the
/// groups first appear (the table's run order, which is the sweep file's),
/// each with a point per distinct x, by increasing x, holding the mean, least
/// and greatest y of the samples there.
pub fn aggregate<'a>(samples: impl IntoIterator<Item = (&'a str, f64, f64)>) -> Vec<Line> {
    let mut groups: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for (group, x, y) in samples {
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, xy)) => xy.push((x, y)),
            None => groups.push((group, vec![(x, y)])),
        }
    }
    groups
        .into_iter()
        .map(|(group, mut xy)| {
            xy.sort_by(|a, b| a.0.total_cmp(&b.0));
            Line {
                group: group.to_owned(),
                points: xy.chunk_by(|a, b| a.0 == b.0).map(summarise).collect(),
            }
        })
        .collect()
}

/// The point of samples `(x, y)` that share their x.
fn summarise(xy: &[(f64, f64)]) -> Point {
    let ys = xy.iter().map(|&(_, y)| y);
    Point {
        x: xy[0].0,
        mean: ys.clone().sum::<f64>() / xy.len() as f64,
        min: ys.clone().fold(f64::INFINITY, f64::min),
        max: ys.fold(f64::NEG_INFINITY, f64::max),
        runs: xy.len(),
    }
}

/// Horizontal shifts of the lines, in x units: points of different groups at
/// one x are set a little apart (at most a third of the smallest gap between
/// two x values) so that their bars do not hide one another.
fn offsets(lines: &[Line]) -> Vec<f64> {
    let mut xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.x))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let gap = xs
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    let gap = if gap.is_finite() { gap } else { 1.0 };
    let step = gap * (0.3 / lines.len() as f64).min(0.04);
    let middle = (lines.len() as f64 - 1.0) / 2.0;
    (0..lines.len())
        .map(|i| (i as f64 - middle) * step)
        .collect()
}

/// The least low and the greatest high of `(low, high)` pairs.
fn extent(pairs: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    pairs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (l, h)| {
        (lo.min(l), hi.max(h))
    })
}

/// `lo..hi` widened by `margin` of its length on each side; a single value
/// gets a range around it.
fn padded(lo: f64, hi: f64, margin: f64) -> std::ops::Range<f64> {
    if hi > lo {
        let pad = (hi - lo) * margin;
        lo - pad..hi + pad
    } else {
        let pad = (lo.abs() * 0.1).max(1.0);
        lo - pad..hi + pad
    }
}

/// The colour of the `i`th line.
fn color(i: usize) -> RGBColor {
    match PALETTE.get(i) {
        Some(&c) => c,
        None => {
            let (r, g, b) = Palette99::pick(i).rgb();
            RGBColor(r, g, b)
        }
    }
}

/// The whole picture: a title, the panels stacked, and a legend beside them
/// naming the groups (when there are groups).
struct SweepPicture {
    title: String,
    subtitle: String,
    x_label: String,
    /// The column the lines are grouped by.
    group_by: Option<String>,
    /// The groups, in the lines' order (the same in every panel).
    groups: Vec<String>,
    panels: Vec<Panel>,
}

impl SweepPicture {
    /// The picture of `panels`, from the `runs` runs of sweep `name`.
    fn new(name: &str, axes: Axes, panels: Vec<Panel>, runs: usize) -> Self {
        let groups: Vec<String> = panels
            .first()
            .map(|p| p.lines.iter().map(|l| l.group.clone()).collect())
            .unwrap_or_default();
        Self {
            title: format!("Sweep `{name}`: {runs} run{}", plural(runs)),
            subtitle: subtitle(&panels, axes.group.is_some()),
            x_label: axes.x.to_owned(),
            group_by: axes.group.map(str::to_owned),
            groups,
            panels,
        }
    }

    /// The picture's height in pixels: the panels', or the legend's if it is
    /// taller.
    fn height(&self) -> u32 {
        let panels = PANEL_HEIGHT * self.panels.len() as u32;
        let legend = if self.group_by.is_some() {
            (LEGEND_TOP + LEGEND_ROW * (self.groups.len() as i32 + 1)) as u32
        } else {
            0
        };
        HEADER_HEIGHT + panels.max(legend)
    }

    /// The title, and below it what the points and bars are.
    fn draw_header<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        let middle = area.dim_in_pixel().0 as i32 / 2;
        let centred = Pos::new(HPos::Center, VPos::Top);
        area.draw(&Text::new(
            self.title.as_str(),
            (middle, 14),
            TextStyle::from(bold(24.0)).pos(centred),
        ))?;
        area.draw(&Text::new(
            self.subtitle.as_str(),
            (middle, 50),
            TextStyle::from((FONT, 15).into_font())
                .color(&RGBColor(90, 90, 90))
                .pos(centred),
        ))?;
        Ok(())
    }
}

/// What a point and its bar stand for, and how many runs a point sums up.
fn subtitle(panels: &[Panel], grouped: bool) -> String {
    let counts = panels
        .iter()
        .flat_map(|p| &p.lines)
        .flat_map(|l| &l.points)
        .map(|p| p.runs);
    let (fewest, most) = counts.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
    let shared = if grouped { "line and x" } else { "x" };
    if most <= 1 {
        return format!("each point: the one run with its {shared}");
    }
    let per_point = if fewest == most {
        format!("{most} runs")
    } else {
        format!("{fewest} to {most} runs")
    };
    format!(
        "each point: the mean over the {per_point} with its {shared}; bars: their least to \
         greatest value"
    )
}

impl Picture for SweepPicture {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        self.draw_header(&header)?;
        let charts = match &self.group_by {
            Some(heading) => {
                let width = legend_width(root, heading, &self.groups)?;
                let (charts, legend) = body.split_horizontally(body.dim_in_pixel().0 - width);
                draw_legend(&legend, heading, &self.groups)?;
                charts
            }
            None => body,
        };
        let areas = charts.split_evenly((self.panels.len(), 1));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_panel(area, panel, &self.x_label)?;
        }
        Ok(())
    }
}

/// One figure's chart: its lines, a filled point at each mean and a bar from
/// the least to the greatest value.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_label: &str,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let offsets = offsets(&panel.lines);
    let placed = || {
        panel
            .lines
            .iter()
            .zip(&offsets)
            .flat_map(|(l, dx)| l.points.iter().map(move |p| (p.x + dx, p)))
    };
    let (x_lo, x_hi) = extent(placed().map(|(x, _)| (x, x)));
    let (y_lo, y_hi) = extent(placed().map(|(_, p)| (p.min, p.max)));
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.figure, bold(20.0))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(100)
        .build_cartesian_2d(padded(x_lo, x_hi, 0.05), padded(y_lo, y_hi, 0.08))?;
    draw_mesh(&mut chart, x_label, &panel.figure)?;
    for (i, (line, dx)) in panel.lines.iter().zip(&offsets).enumerate() {
        let color = color(i);
        chart.draw_series(LineSeries::new(
            line.points.iter().map(|p| (p.x + dx, p.mean)),
            color.stroke_width(2),
        ))?;
        chart.draw_series(line.points.iter().map(|p| {
            ErrorBar::new_vertical(
                p.x + dx,
                p.min,
                p.mean,
                p.max,
                color.filled().stroke_width(2),
                10,
            )
        }))?;
    }
    Ok(())
}

/// Where the legend's heading is, from the top of the panels, in pixels:
/// level with the first panel's caption.
const LEGEND_TOP: i32 = 50;
/// The height of a legend entry, in pixels.
const LEGEND_ROW: i32 = 28;
/// Where an entry's name starts, right of its line and marker, in pixels.
const LEGEND_TEXT_X: i32 = 56;
/// The widest the legend gets, in pixels: the panels keep most of the width.
const LEGEND_MAX_WIDTH: u32 = 420;

/// The legend's heading: the name of the column the lines are grouped by.
fn legend_heading_style() -> TextStyle<'static> {
    TextStyle::from(bold(16.0)).pos(Pos::new(HPos::Left, VPos::Center))
}

/// A legend entry's name.
fn legend_entry_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center))
}

/// The width of the legend column: its longest text, with room for the
/// lines and markers, up to [`LEGEND_MAX_WIDTH`].
fn legend_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    heading: &str,
    groups: &[String],
) -> Result<u32, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut widest = root.estimate_text_size(heading, &legend_heading_style())?.0 + 12;
    for group in groups {
        let w = root
            .estimate_text_size(entry_name(group), &legend_entry_style())?
            .0;
        widest = widest.max(w + LEGEND_TEXT_X as u32);
    }
    Ok((widest + 24).min(LEGEND_MAX_WIDTH))
}

/// The legend: the grouping column's name, then each group's colour, marker
/// and name, beside the panels rather than over their data.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    heading: &str,
    groups: &[String],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.draw(&Text::new(
        heading,
        (12, LEGEND_TOP),
        legend_heading_style(),
    ))?;
    for (i, group) in groups.iter().enumerate() {
        let y = LEGEND_TOP + LEGEND_ROW * (i as i32 + 1);
        let color = color(i);
        area.draw(&PathElement::new(
            vec![(14, y), (44, y)],
            color.stroke_width(2),
        ))?;
        area.draw(&Circle::new((29, y), 5, color.filled()))?;
        area.draw(&Text::new(
            entry_name(group),
            (LEGEND_TEXT_X, y),
            legend_entry_style(),
        ))?;
    }
    Ok(())
}

/// A group's name in the legend: runs with an empty cell form a group too.
fn entry_name(group: &str) -> &str {
    if group.is_empty() { "(empty)" } else { group }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, mean: f64, min: f64, max: f64, runs: usize) -> Point {
        Point {
            x,
            mean,
            min,
            max,
            runs,
        }
    }

    #[test]
    fn points_are_the_mean_least_and_greatest_per_group_and_x() {
        let samples = [
            ("Timestamp", 400.0, 10.0),
            ("Random", 400.0, 7.0),
            ("Timestamp", 200.0, 4.0),
            ("Timestamp", 400.0, 16.0),
            ("Random", 50.0, 1.0),
            ("Timestamp", 1000.0, 2.0),
            ("Timestamp", 400.0, 13.0),
            ("Timestamp", 200.0, 6.0),
        ];
        let lines = aggregate(samples);
        assert_eq!(
            lines,
            [
                Line {
                    group: "Timestamp".into(),
                    points: vec![
                        point(200.0, 5.0, 4.0, 6.0, 2),
                        point(400.0, 13.0, 10.0, 16.0, 3),
                        // Numerically after 400, not as text ("1000" < "200").
                        point(1000.0, 2.0, 2.0, 2.0, 1),
                    ],
                },
                Line {
                    group: "Random".into(),
                    points: vec![
                        point(50.0, 1.0, 1.0, 1.0, 1),
                        point(400.0, 7.0, 7.0, 7.0, 1)
                    ],
                },
            ]
        );
    }

    #[test]
    fn lines_are_set_apart_by_a_fraction_of_the_smallest_gap() {
        let line = |group: &str| Line {
            group: group.into(),
            points: vec![
                point(200.0, 0.0, 0.0, 0.0, 1),
                point(400.0, 0.0, 0.0, 0.0, 1),
            ],
        };
        assert_eq!(offsets(&[line("a")]), [0.0]);
        assert_eq!(
            offsets(&[line("a"), line("b"), line("c")]),
            [-8.0, 0.0, 8.0]
        );
    }
}
