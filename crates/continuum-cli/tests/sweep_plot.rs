//! `continuum sweep plot`: pictures of a sweep's table (PNG and SVG, with a
//! legend and a panel per figure), and clear errors (exit code 2) for unknown
//! or non-numeric columns, an empty table and other picture formats; and
//! `continuum sweep compare`, the points of a table against a baseline.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::continuum;

/// A table as `continuum sweep` writes it: two conflict strategies at three
/// populations, two replicates each, and a column that is not a number.
const RUNS: &str = "\
run,point,replicate,seed,param.groups[0].count,param.conflicts,conflicts,world.harvested,mode
0,0,0,1,100,Timestamp,10,5.5,fast
1,0,1,2,100,Timestamp,14,6.5,fast
2,1,0,1,100,Random,8,5,fast
3,1,1,2,100,Random,9,4,fast
4,2,0,1,20,Timestamp,30,7,fast
5,2,1,2,20,Timestamp,34,7.5,fast
6,3,0,1,20,Random,25,6,fast
7,3,1,2,20,Random,27,6.5,fast
8,4,0,1,5,Timestamp,50,9,fast
9,4,1,2,5,Timestamp,55,9.5,fast
10,5,0,1,5,Random,45,8,fast
11,5,1,2,5,Random,41,8.5,fast
";

/// The manifest beside the table: the picture's title names the sweep.
const MANIFEST: &str = r#"{
  "name": "hand-made",
  "fingerprint": "0000000000000000",
  "runs": 12,
  "shard": null,
  "series": false,
  "columns": ["run", "point", "replicate", "seed", "param.groups[0].count",
              "param.conflicts", "conflicts", "world.harvested", "mode"],
  "engine": "0.0.0"
}
"#;

/// A results folder of its own for one test, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, runs: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "continuum-sweep-plot-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("runs.csv"), runs).unwrap();
        std::fs::write(dir.join("sweep.json"), MANIFEST).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `continuum sweep plot DIR ARGS... -o OUTPUT`.
fn sweep_plot(dir: &Path, args: &[&str], output: &Path) -> Output {
    let mut all: Vec<&OsStr> = vec!["sweep".as_ref(), "plot".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    all.extend([OsStr::new("-o"), output.as_os_str()]);
    continuum(all)
}

const GROUPED: [&str; 6] = [
    "--x",
    "param.groups[0].count",
    "--group",
    "param.conflicts",
    "--y",
    "conflicts,world.harvested",
];

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

/// Asserts a refusal: exit code 2, an error holding every one of `expected`,
/// no panic, and no picture written.
fn assert_refused(out: &Output, output: &Path, expected: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for e in expected {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert!(!output.exists(), "{} was written", output.display());
}

#[test]
fn an_svg_has_a_panel_per_figure_and_a_legend_naming_the_groups() {
    let dir = Scratch::new("svg", RUNS);
    let svg = dir.path().join("plot.svg");
    let out = sweep_plot(dir.path(), &GROUPED, &svg);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("12 runs, 2 panels, 2 lines"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    let texts = texts(&text);
    // Panel titles, axis descriptions, the legend's heading and its groups.
    for label in [
        "conflicts",
        "world.harvested",
        "param.groups[0].count",
        "param.conflicts",
        "Timestamp",
        "Random",
    ] {
        assert!(texts.iter().any(|t| t == label), "no {label} in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.contains("`hand-made`")),
        "the title names the sweep: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("mean over the 2 runs")),
        "the title says what a point is: {texts:?}"
    );
}

/// The texts an SVG picture shows, trimmed.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let (_, rest) = t.split_once('>')?;
            let (content, _) = rest.split_once("</text>")?;
            Some(content.trim().to_owned())
        })
        .collect()
}

#[test]
fn a_png_is_a_picture_as_tall_as_its_panels() {
    let dir = Scratch::new("png", RUNS);
    let png = dir.path().join("plot.png");
    assert_ok(&sweep_plot(dir.path(), &GROUPED, &png));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10_000, "only {} bytes", bytes.len());
    let dimension = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    // The IHDR chunk's width and height: a title and two panels.
    assert_eq!((dimension(16), dimension(20)), (1200, 80 + 2 * 420));
    // No temporary file left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn without_a_group_one_line_goes_through_all_runs() {
    let dir = Scratch::new("single", RUNS);
    let svg = dir.path().join("plot.svg");
    let out = sweep_plot(
        dir.path(),
        &["--x", "param.groups[0].count", "--y", "conflicts"],
        &svg,
    );
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 panel, 1 line)"));
    let shown = texts(&std::fs::read_to_string(&svg).unwrap());
    assert!(
        shown.iter().any(|t| t.contains("mean over the 4 runs")),
        "{shown:?}"
    );
    assert!(
        !shown
            .iter()
            .any(|t| t == "Timestamp" || t == "param.conflicts"),
        "no legend without groups: {shown:?}"
    );
    // A point per run: no mean to speak of.
    assert_ok(&sweep_plot(
        dir.path(),
        &["--x", "run", "--y", "conflicts"],
        &svg,
    ));
    let single = texts(&std::fs::read_to_string(&svg).unwrap());
    assert!(
        single
            .iter()
            .any(|t| t.contains("each point: the one run with its x")),
        "{single:?}"
    );
}

#[test]
fn unknown_columns_are_refused_with_the_columns_listed() {
    let dir = Scratch::new("unknown", RUNS);
    let png = dir.path().join("plot.png");
    let columns = "its columns: run, point, replicate, seed, param.groups[0].count, \
                   param.conflicts, conflicts, world.harvested, mode";
    for (args, column) in [
        (
            [
                "--x",
                "groups[0].count",
                "--group",
                "param.conflicts",
                "--y",
                "conflicts",
            ],
            "no column `groups[0].count`",
        ),
        (
            [
                "--x",
                "param.groups[0].count",
                "--group",
                "conflict",
                "--y",
                "conflicts",
            ],
            "no column `conflict`",
        ),
        (
            [
                "--x",
                "param.groups[0].count",
                "--group",
                "param.conflicts",
                "--y",
                "conflicts,harvested",
            ],
            "no column `harvested`",
        ),
    ] {
        assert_refused(
            &sweep_plot(dir.path(), &args, &png),
            &png,
            &[column, columns],
        );
    }
}

#[test]
fn non_numeric_columns_are_refused_with_the_numeric_ones_listed() {
    let dir = Scratch::new("text", RUNS);
    let png = dir.path().join("plot.png");
    let numeric = "every run: run, point, replicate, seed, param.groups[0].count, conflicts, \
                   world.harvested";
    let out = sweep_plot(
        dir.path(),
        &["--x", "param.conflicts", "--y", "conflicts"],
        &png,
    );
    assert_refused(
        &out,
        &png,
        &[
            "column `param.conflicts` holds `Timestamp` in run 0",
            numeric,
        ],
    );
    let out = sweep_plot(
        dir.path(),
        &["--x", "conflicts", "--y", "world.harvested,mode"],
        &png,
    );
    assert_refused(
        &out,
        &png,
        &["column `mode` holds `fast` in run 0", numeric],
    );
    let holey = RUNS.replace(
        "11,5,1,2,5,Random,41,8.5,fast",
        "11,5,1,2,5,Random,41,,fast",
    );
    let dir = Scratch::new("empty-cell", &holey);
    let out = sweep_plot(dir.path(), &GROUPED, &png);
    assert_refused(&out, &png, &["column `world.harvested` is empty in run 11"]);
}

#[test]
fn an_empty_or_missing_table_and_other_formats_are_refused() {
    let header = RUNS.lines().next().unwrap().to_owned() + "\n";
    let dir = Scratch::new("empty", &header);
    let png = dir.path().join("plot.png");
    assert_refused(
        &sweep_plot(dir.path(), &GROUPED, &png),
        &png,
        &["no runs to plot"],
    );
    std::fs::remove_file(dir.path().join("runs.csv")).unwrap();
    assert_refused(
        &sweep_plot(dir.path(), &GROUPED, &png),
        &png,
        &["runs.csv: no such file"],
    );
    let dir = Scratch::new("jpeg", RUNS);
    let jpeg = dir.path().join("plot.jpg");
    assert_refused(
        &sweep_plot(dir.path(), &GROUPED, &jpeg),
        &jpeg,
        &["expected a .png or .svg file name", "plot.jpg"],
    );
}

#[test]
fn a_refused_plot_leaves_the_previous_picture_as_it_was() {
    let dir = Scratch::new("keep", RUNS);
    let svg = dir.path().join("plot.svg");
    assert_ok(&sweep_plot(dir.path(), &GROUPED, &svg));
    let before = std::fs::read(&svg).unwrap();
    let out = sweep_plot(dir.path(), &["--x", "nope", "--y", "conflicts"], &svg);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&svg).unwrap(), before);
}

/// Runs `continuum sweep compare DIR ARGS...`.
fn sweep_compare(dir: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&OsStr> = vec!["sweep".as_ref(), "compare".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    continuum(all)
}

#[test]
fn compare_pairs_each_point_with_the_baseline_seed_by_seed() {
    let dir = Scratch::new("compare", RUNS);
    let out = sweep_compare(dir.path(), &["--y", "conflicts"]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = |point: &str| {
        text.lines()
            .find(|l| l.split_whitespace().take(2).eq(["conflicts", point]))
            .unwrap_or_else(|| panic!("no row for point {point}:\n{text}"))
            .to_owned()
    };
    // Point 1 against point 0: 8 − 10 and 9 − 14, a mean of −3.5 on a
    // baseline of 12, below on both seeds; two pairs leave a wide interval.
    let one = row("1");
    for expected in ["2", "12.0", "-3.500 (-29.17 %)", "0/2"] {
        assert!(one.contains(expected), "{expected:?} not in {one:?}");
    }
    assert!(!one.contains('*'), "{one}");
    // Point 2: 20 more on both seeds, with no spread: clear of the noise.
    let two = row("2");
    assert!(
        two.contains("+20.000 (+166.67 %)") && two.contains("[+20.000, +20.000] *"),
        "{two}"
    );
    assert!(two.ends_with("2/0"), "{two}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("conflicts")).count(),
        5
    );

    let other = sweep_compare(dir.path(), &["--y", "conflicts", "--baseline", "2"]);
    assert_ok(&other);
    assert!(String::from_utf8_lossy(&other.stdout).contains("against point 2"));
}

#[test]
fn compare_refuses_an_unknown_baseline_or_figure() {
    let dir = Scratch::new("compare-bad", RUNS);
    let out = sweep_compare(dir.path(), &["--y", "conflicts", "--baseline", "9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no point 9 to compare with; its points: 0, 1, 2, 3, 4, 5"));
    let out = sweep_compare(dir.path(), &["--y", "harvest"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no column `harvest`"),
        "{}",
        stderr(&out)
    );
    let out = sweep_compare(dir.path(), &["--y", "mode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a number"), "{}", stderr(&out));
}
