//! A sweep's results folder: its manifest (`sweep.json`, which sweep and which
//! part of it) and its table (`runs.csv`, one row per finished run).
//!
//! Rows are appended and flushed as runs finish, so that an interrupted or
//! killed sweep keeps every finished run; a row cut short by a kill is dropped
//! when the table is read again. When a sweep (or a merge) ends, the table is
//! rewritten in run order under a temporary name and renamed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use continuum::atomic_file::write_bytes_atomically;

/// The table's file in a results folder.
pub const RUNS_FILE: &str = "runs.csv";
/// The manifest's file in a results folder.
pub const MANIFEST_FILE: &str = "sweep.json";
/// The joined time series in a results folder.
pub const SERIES_FILE: &str = "series.csv";

/// What a results folder holds: which sweep (by fingerprint), which part,
/// which columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The sweep's fingerprint (hex): parts of one sweep agree on it.
    pub fingerprint: String,
    /// Runs in the whole sweep.
    pub runs: u64,
    /// The part (`K/N`) this folder holds, if not the whole sweep.
    pub shard: Option<String>,
    /// Whether the runs keep a time series (`series.csv`).
    pub series: bool,
    pub columns: Vec<String>,
    /// The engine version that ran the sweep.
    pub engine: String,
}

impl Manifest {
    /// Reads `DIR/sweep.json`; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: not a sweep manifest: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes `DIR/sweep.json` (atomically).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a manifest serialises") + "\n";
        write_bytes_atomically(&dir.join(MANIFEST_FILE), json.as_bytes())
    }
}

/// Rows by run id (the first column).
pub type Rows = BTreeMap<u64, Vec<String>>;

/// Reads a table: its header and its rows. A last row cut short (a killed
/// sweep) is dropped; any other malformed row is an error.
pub fn read_rows(path: &Path) -> Result<(Vec<String>, Rows), String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Rows::new())),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // A row is written whole and ends with a newline: bytes after the last
    // newline are a row the sweep did not finish writing.
    let complete = text
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&text[..complete]);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Rows::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
        let id = record
            .get(0)
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| format!("{}: a row without a run id", path.display()))?;
        rows.insert(id, record.iter().map(str::to_owned).collect());
    }
    Ok((header, rows))
}

/// The table of a sweep under way: rows so far, and the file they are
/// appended to.
pub struct Table {
    dir: PathBuf,
    header: Vec<String>,
    rows: Rows,
    file: File,
}

impl Table {
    /// Opens the table in `dir` for `manifest`'s sweep. A new folder (or one
    /// without a manifest) starts an empty table; one holding a sweep
    /// continues it when `resume` is set, if it is the same sweep and part.
    pub fn open(dir: &Path, manifest: &Manifest, resume: bool) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(RUNS_FILE);
        let rows = match Manifest::read(dir)? {
            None if path.exists() => {
                return Err(format!(
                    "{} already holds a table without a sweep manifest ({MANIFEST_FILE}); \
                     choose another --out",
                    dir.display()
                ));
            }
            None => Rows::new(),
            Some(_) if !resume => {
                return Err(format!(
                    "{} already holds a sweep's results: --resume continues it, or choose \
                     another --out",
                    dir.display()
                ));
            }
            Some(found) => {
                if found.fingerprint != manifest.fingerprint || found.runs != manifest.runs {
                    return Err(format!(
                        "{} holds another sweep (`{}`, fingerprint {}), or this sweep's files \
                         changed since (fingerprint {} now); choose another --out",
                        dir.display(),
                        found.name,
                        found.fingerprint,
                        manifest.fingerprint
                    ));
                }
                if found.shard != manifest.shard {
                    return Err(format!(
                        "{} holds part {} of the sweep, not {}",
                        dir.display(),
                        found.shard.as_deref().unwrap_or("all"),
                        manifest.shard.as_deref().unwrap_or("all")
                    ));
                }
                let (header, rows) = read_rows(&path)?;
                if !rows.is_empty() && header != manifest.columns {
                    return Err(format!(
                        "{} has other columns than this sweep",
                        path.display()
                    ));
                }
                rows
            }
        };
        manifest
            .write(dir)
            .map_err(|e| format!("cannot write {}: {e}", dir.join(MANIFEST_FILE).display()))?;
        // The rows kept, without any cut-short one, then appended to.
        write_table(&path, &manifest.columns, &rows)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            header: manifest.columns.clone(),
            rows,
            file,
        })
    }

    /// Whether run `id` has its row.
    pub fn has(&self, id: u64) -> bool {
        self.rows.contains_key(&id)
    }

    /// How many rows the table holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows so far, by run id.
    pub fn rows(&self) -> &Rows {
        &self.rows
    }

    /// Appends a run's row (`row[0]` is its id) and flushes it to the file in
    /// one write.
    pub fn append(&mut self, row: Vec<String>) -> std::io::Result<()> {
        debug_assert_eq!(row.len(), self.header.len());
        let id = row[0].parse::<u64>().expect("a row starts with its run id");
        let mut line = csv::Writer::from_writer(Vec::new());
        line.write_record(&row)?;
        let bytes = line.into_inner().map_err(|e| e.into_error())?;
        self.file.write_all(&bytes)?;
        self.file.flush()?;
        self.rows.insert(id, row);
        Ok(())
    }

    /// Rewrites the table in run order (atomically).
    pub fn finish(self) -> std::io::Result<()> {
        write_table(&self.dir.join(RUNS_FILE), &self.header, &self.rows)
    }
}

/// Writes a whole table, rows in run order, under a temporary name renamed
/// into place.
pub fn write_table(path: &Path, header: &[String], rows: &Rows) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows.values() {
        w.write_record(row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    write_bytes_atomically(path, &bytes)
}

/// Joins the time series of the runs in `rows` (from each run's own file in
/// `series_dir`) into one table with `run` and `step` columns first, in run
/// order, written atomically to `path`.
pub fn join_series(series_dir: &Path, rows: &Rows, path: &Path) -> Result<(), String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header_written = false;
    for &id in rows.keys() {
        let file = series_dir.join(series_name(id));
        let mut reader = csv::Reader::from_path(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let header = reader
            .headers()
            .map_err(|e| format!("{}: {e}", file.display()))?
            .clone();
        let steps = header.iter().position(|h| h == "steps");
        let run = header.iter().position(|h| h == "run");
        let keep: Vec<usize> = (0..header.len())
            .filter(|&i| Some(i) != steps && Some(i) != run)
            .collect();
        if !header_written {
            let mut names = vec!["run".to_owned(), "step".to_owned()];
            names.extend(keep.iter().map(|&i| header[i].to_owned()));
            out.write_record(&names).map_err(|e| e.to_string())?;
            header_written = true;
        }
        for record in reader.records() {
            let record = record.map_err(|e| format!("{}: {e}", file.display()))?;
            let mut cells = vec![
                id.to_string(),
                steps.and_then(|i| record.get(i)).unwrap_or("").to_owned(),
            ];
            cells.extend(keep.iter().map(|&i| record.get(i).unwrap_or("").to_owned()));
            out.write_record(&cells).map_err(|e| e.to_string())?;
        }
    }
    let bytes = out.into_inner().map_err(|e| e.to_string())?;
    write_bytes_atomically(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The file name of run `id`'s time series.
pub fn series_name(id: u64) -> String {
    format!("run-{id:06}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("continuum-table-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn manifest(fingerprint: &str) -> Manifest {
        Manifest {
            name: "t".into(),
            fingerprint: fingerprint.into(),
            runs: 4,
            shard: None,
            series: false,
            columns: vec!["run".into(), "x".into()],
            engine: "0".into(),
        }
    }

    #[test]
    fn a_row_cut_short_is_dropped_and_the_others_kept_on_resume() {
        let dir = scratch("cut");
        let mut t = Table::open(&dir, &manifest("a"), false).unwrap();
        t.append(vec!["2".into(), "two".into()]).unwrap();
        t.append(vec!["0".into(), "zero, with a comma".into()])
            .unwrap();
        drop(t);
        // A kill in the middle of a row.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(RUNS_FILE))
            .unwrap();
        f.write_all(b"3,thr").unwrap();
        drop(f);
        let t = Table::open(&dir, &manifest("a"), true).unwrap();
        assert_eq!(t.rows().keys().copied().collect::<Vec<_>>(), [0, 2]);
        assert_eq!(t.rows()[&0][1], "zero, with a comma");
        t.finish().unwrap();
        let text = std::fs::read_to_string(dir.join(RUNS_FILE)).unwrap();
        assert_eq!(text, "run,x\n0,\"zero, with a comma\"\n2,two\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_sweep_or_no_resume_is_refused() {
        let dir = scratch("refuse");
        Table::open(&dir, &manifest("a"), false).unwrap();
        let e = Table::open(&dir, &manifest("a"), false).err().unwrap();
        assert!(e.contains("--resume"), "{e}");
        let e = Table::open(&dir, &manifest("b"), true).err().unwrap();
        assert!(e.contains("another sweep"), "{e}");
        let mut part = manifest("a");
        part.shard = Some("1/2".into());
        let e = Table::open(&dir, &part, true).err().unwrap();
        assert!(e.contains("part"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
