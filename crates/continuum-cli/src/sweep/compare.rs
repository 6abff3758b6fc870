//! `continuum sweep compare`: every point of a sweep against a baseline point,
//! seed by seed.
//!
//! The replicates of every point run the same seeds (common random numbers),
//! so the difference between two points on one seed is the effect of their
//! parameters, not the luck of the seed. The comparison pairs the runs of a
//! point with the baseline's runs of the same seed and gives the mean paired
//! difference with its 95 % confidence interval (Student's t over the pairs),
//! and on how many seeds the point came out above and below the baseline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::plot::{Runs, SweepPlotError, sweep_name};

/// The confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// Paired differences (a point's figure minus the baseline's, one per seed).
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// Seeds both ran.
    pub pairs: usize,
    /// The baseline's mean over those seeds.
    pub baseline_mean: f64,
    /// The mean difference.
    pub mean: f64,
    /// Half the width of its [`CONFIDENCE`] interval (`None` below two pairs).
    pub half_width: Option<f64>,
    /// Seeds on which the point came out above the baseline, and below.
    pub higher: usize,
    pub lower: usize,
}

impl Paired {
    /// Pairs `(seed, value)` samples of a point with the baseline's by seed.
    pub fn new(point: &BTreeMap<u64, f64>, baseline: &BTreeMap<u64, f64>) -> Self {
        let pairs: Vec<(f64, f64)> = point
            .iter()
            .filter_map(|(seed, &v)| baseline.get(seed).map(|&b| (v, b)))
            .collect();
        let n = pairs.len();
        let diffs: Vec<f64> = pairs.iter().map(|(v, b)| v - b).collect();
        let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
        let half_width = (n >= 2).then(|| {
            let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .expect("positive degrees of freedom")
                .inverse_cdf(0.5 + CONFIDENCE / 2.0);
            t * (var / n as f64).sqrt()
        });
        Self {
            pairs: n,
            baseline_mean: pairs.iter().map(|(_, b)| b).sum::<f64>() / n.max(1) as f64,
            mean,
            half_width,
            higher: diffs.iter().filter(|&&d| d > 0.0).count(),
            lower: diffs.iter().filter(|&&d| d < 0.0).count(),
        }
    }

    /// Whether the interval leaves out zero: the difference stands clear of
    /// the seeds' noise.
    pub fn is_clear(&self) -> bool {
        self.half_width.is_some_and(|h| self.mean.abs() > h)
    }
}

/// One figure of one point against the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub figure: String,
    pub point: u64,
    pub paired: Paired,
}

/// Compares every point of the sweep in `dir` with point `baseline`, figure
/// by figure.
pub fn compare(
    dir: &Path,
    figures: &[String],
    baseline: u64,
) -> Result<Vec<Comparison>, SweepPlotError> {
    let runs = Runs::read(dir)?;
    for name in ["point", "seed"]
        .into_iter()
        .chain(figures.iter().map(String::as_str))
    {
        runs.column(name)?;
    }
    let points = runs.numbers("point")?;
    let seeds = runs.numbers("seed")?;
    let ids: Vec<(u64, u64)> = points
        .iter()
        .zip(&seeds)
        .map(|(&p, &s)| (p as u64, s as u64))
        .collect();
    let mut known: Vec<u64> = ids.iter().map(|&(p, _)| p).collect();
    known.sort_unstable();
    known.dedup();
    if !known.contains(&baseline) {
        return Err(SweepPlotError::Table(format!(
            "{}: no point {baseline} to compare with; its points: {}",
            runs.path.display(),
            known
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut out = Vec::new();
    for figure in figures {
        let values = runs.numbers(figure)?;
        let mut by_point: BTreeMap<u64, BTreeMap<u64, f64>> = BTreeMap::new();
        for (&(point, seed), &value) in ids.iter().zip(&values) {
            by_point.entry(point).or_default().insert(seed, value);
        }
        let base = &by_point[&baseline];
        for (&point, samples) in by_point.iter().filter(|(p, _)| **p != baseline) {
            out.push(Comparison {
                figure: figure.clone(),
                point,
                paired: Paired::new(samples, base),
            });
        }
    }
    Ok(out)
}

/// `continuum sweep compare DIR --y FIGURE... [--baseline POINT]`.
pub fn compare_command(dir: &Path, figures: &[String], baseline: u64) -> ExitCode {
    match compare(dir, figures, baseline) {
        Ok(comparisons) => {
            outln!("{}", render(&sweep_name(dir), baseline, &comparisons));
            ExitCode::SUCCESS
        }
        Err(e) => crate::invalid(&e),
    }
}

/// A figure's value in a few significant digits.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.3}"),
        _ => format!("{v:.4e}"),
    }
}

/// [`num`] with its sign.
fn signed(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", num(v))
    } else {
        num(v)
    }
}

/// The comparisons as a table, a row per figure and point.
pub fn render(sweep: &str, baseline: u64, comparisons: &[Comparison]) -> String {
    let mut out = format!(
        "{sweep}: each point against point {baseline}, seed by seed (mean paired difference, \
         its {:.0} % interval, seeds above / below)\n",
        CONFIDENCE * 100.0
    );
    let _ = writeln!(
        out,
        "{:<24} {:>5} {:>5} {:>14} {:>22} {:>26} {:>11}",
        "figure", "point", "pairs", "baseline", "difference", "interval", "above/below"
    );
    for c in comparisons {
        let p = &c.paired;
        let relative = |v: f64| {
            if p.baseline_mean != 0.0 {
                format!(" ({:+.2} %)", v / p.baseline_mean * 100.0)
            } else {
                String::new()
            }
        };
        let interval = p.half_width.map_or("n/a (< 2 seeds)".to_owned(), |h| {
            format!(
                "[{}, {}]{}",
                signed(p.mean - h),
                signed(p.mean + h),
                if p.is_clear() { " *" } else { "" }
            )
        });
        let _ = writeln!(
            out,
            "{:<24} {:>5} {:>5} {:>14} {:>22} {:>26} {:>11}",
            c.figure,
            c.point,
            p.pairs,
            num(p.baseline_mean),
            format!("{}{}", signed(p.mean), relative(p.mean)),
            interval,
            format!("{}/{}", p.higher, p.lower)
        );
    }
    out.push_str("* the interval leaves out zero: the difference stands clear of the seeds' noise");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[(u64, f64)]) -> BTreeMap<u64, f64> {
        values.iter().copied().collect()
    }

    #[test]
    fn pairs_by_seed_with_a_student_interval() {
        let base = samples(&[
            (1, 10.0),
            (2, 20.0),
            (3, 30.0),
            (4, 40.0),
            (5, 50.0),
            (9, 0.0),
        ]);
        // Differences 1, 2, 3, 4, 5: mean 3, standard deviation √2.5; seed 7
        // has no partner and seed 9 none here.
        let point = samples(&[
            (1, 11.0),
            (2, 22.0),
            (3, 33.0),
            (4, 44.0),
            (5, 55.0),
            (7, 1e9),
        ]);
        let p = Paired::new(&point, &base);
        assert_eq!((p.pairs, p.higher, p.lower), (5, 5, 0));
        assert!((p.mean - 3.0).abs() < 1e-12);
        assert!((p.baseline_mean - 30.0).abs() < 1e-12);
        // t(4, 0.975) = 2.7764: 2.7764 × √2.5 / √5 = 1.9632.
        let h = p.half_width.unwrap();
        assert!((h - 1.9632).abs() < 1e-3, "{h}");
        assert!(p.is_clear());
    }

    #[test]
    fn noise_is_not_clear_and_one_seed_has_no_interval() {
        let base = samples(&[(1, 10.0), (2, 10.0), (3, 10.0)]);
        let point = samples(&[(1, 12.0), (2, 7.0), (3, 11.0)]);
        let p = Paired::new(&point, &base);
        assert_eq!((p.higher, p.lower), (2, 1));
        assert!(!p.is_clear(), "{p:?}");
        let one = Paired::new(&samples(&[(1, 3.0)]), &base);
        assert_eq!((one.pairs, one.half_width), (1, None));
        assert!(!one.is_clear());
    }
}
