//! `continuum sweep merge`: joins the results of parts of one sweep (from
//! `--shard K/N`, run anywhere) into one table, refusing parts of another
//! sweep.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::table::{MANIFEST_FILE, Manifest, RUNS_FILE, Rows, SERIES_FILE, read_rows, write_table};

/// `continuum sweep merge PART... --out DIR`.
pub fn merge_command(parts: &[PathBuf], out: &Path) -> ExitCode {
    match merge(parts, out) {
        Ok(summary) => {
            outln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => crate::invalid(&e),
    }
}

/// Joins `parts` into `out`; gives a line saying what was joined.
pub fn merge(parts: &[PathBuf], out: &Path) -> Result<String, String> {
    let mut first: Option<(&PathBuf, Manifest)> = None;
    let mut rows = Rows::new();
    let mut series: Vec<(u64, csv::StringRecord)> = Vec::new();
    let mut series_header: Option<csv::StringRecord> = None;
    for dir in parts {
        let manifest = Manifest::read(dir)?.ok_or_else(|| {
            format!(
                "{}: no sweep results here ({MANIFEST_FILE} is missing)",
                dir.display()
            )
        })?;
        if let Some((first_dir, expected)) = &first
            && (manifest.fingerprint != expected.fingerprint
                || manifest.columns != expected.columns
                || manifest.runs != expected.runs)
        {
            return Err(format!(
                "{} holds results of another sweep (`{}`, fingerprint {}) than {} (`{}`, \
                 fingerprint {}); parts must come from the same sweep file, scenario and \
                 engine",
                dir.display(),
                manifest.name,
                manifest.fingerprint,
                first_dir.display(),
                expected.name,
                expected.fingerprint
            ));
        }
        let table = dir.join(RUNS_FILE);
        if !table.exists() {
            return Err(format!(
                "{}: no table ({RUNS_FILE} is missing)",
                dir.display()
            ));
        }
        let (header, part_rows) = read_rows(&table)?;
        if let Some((&id, _)) = part_rows.range(manifest.runs..).next() {
            return Err(format!(
                "{}: run {id} is not a run of the sweep (it has {} runs)",
                table.display(),
                manifest.runs
            ));
        }
        if !part_rows.is_empty() && header != manifest.columns {
            return Err(format!(
                "{}: its columns are not those of its manifest",
                dir.join(RUNS_FILE).display()
            ));
        }
        let digest = manifest.columns.iter().position(|c| c == "state_digest");
        let mut new_ids = Vec::new();
        for (id, row) in part_rows {
            match rows.get(&id) {
                Some(kept) => {
                    if let Some(d) = digest
                        && kept[d] != row[d]
                    {
                        return Err(format!(
                            "run {id} ended in state {} in one part and {} in {}: the parts \
                             did not run the same simulation",
                            kept[d],
                            row[d],
                            dir.display()
                        ));
                    }
                }
                None => {
                    rows.insert(id, row);
                    new_ids.push(id);
                }
            }
        }
        if manifest.series {
            let path = dir.join(SERIES_FILE);
            let mut reader = csv::Reader::from_path(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let header = reader
                .headers()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .clone();
            match &series_header {
                Some(h) if *h != header => {
                    return Err(format!(
                        "{}: other columns than the first part's",
                        path.display()
                    ));
                }
                _ => series_header = Some(header),
            }
            for record in reader.records() {
                let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
                let id = record.get(0).and_then(|id| id.parse::<u64>().ok());
                if let Some(id) = id
                    && new_ids.binary_search(&id).is_ok()
                {
                    series.push((id, record));
                }
            }
        }
        if first.is_none() {
            first = Some((dir, manifest));
        }
    }
    let (_, manifest) = first.expect("clap requires at least one part");
    if Manifest::read(out)?.is_some() || out.join(RUNS_FILE).exists() {
        return Err(format!(
            "{} already holds sweep results; merge into a new folder",
            out.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let joined = Manifest {
        shard: None,
        ..manifest.clone()
    };
    write_table(&out.join(RUNS_FILE), &joined.columns, &rows)
        .map_err(|e| format!("cannot write {}: {e}", out.join(RUNS_FILE).display()))?;
    if let Some(header) = series_header {
        // Stable: each run's rows keep their order.
        series.sort_by_key(|(id, _)| *id);
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).map_err(|e| e.to_string())?;
        for (_, record) in &series {
            w.write_record(record).map_err(|e| e.to_string())?;
        }
        let bytes = w.into_inner().map_err(|e| e.to_string())?;
        continuum::atomic_file::write_bytes_atomically(&out.join(SERIES_FILE), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", out.join(SERIES_FILE).display()))?;
    }
    joined
        .write(out)
        .map_err(|e| format!("cannot write {}: {e}", out.join(MANIFEST_FILE).display()))?;
    let missing = joined.runs - rows.len() as u64;
    let mut summary = format!(
        "{} of {} runs of sweep `{}` from {} parts in {}",
        rows.len(),
        joined.runs,
        joined.name,
        parts.len(),
        out.join(RUNS_FILE).display()
    );
    if missing > 0 {
        let absent: Vec<String> = (0..joined.runs)
            .filter(|id| !rows.contains_key(id))
            .take(10)
            .map(|id| id.to_string())
            .collect();
        summary.push_str(&format!(
            "; {missing} runs are missing (runs {}{})",
            absent.join(", "),
            if missing > 10 { ", ..." } else { "" }
        ));
    }
    Ok(summary)
}
