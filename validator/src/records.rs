//! A bench's output directory: per-request records as JSON Lines, appended as each request finishes
//! (so an interrupted run keeps every finished record), and the run's parameters, summary JSON, CSV
//! and table written by the bench when it ends.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use servesim_sim::RequestRecord;

use crate::drills::{Axis, DrillKind};

/// File names inside the output directory.
pub const RECORDS_FILE: &str = "requests.jsonl";
/// The run's parameters and tool version.
pub const PARAMS_FILE: &str = "params.json";
/// Rows, knee, operating point, token metrics and definitions.
pub const SUMMARY_FILE: &str = "summary.json";
/// The rows as CSV.
pub const CSV_FILE: &str = "summary.csv";
/// The seed-format table.
pub const TABLE_FILE: &str = "table.txt";

/// Why the output directory could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Which drill level records currently belong to.
#[derive(Debug, Clone, Serialize)]
struct LevelTag {
    drill: Option<DrillKind>,
    level: usize,
    axis: Option<Axis>,
}

/// One JSON line: the level it belongs to, the record, and its derived latencies.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    tag: &'a LevelTag,
    /// Seconds from sending to the first event.
    ttft: Option<f64>,
    /// Seconds from sending to the end.
    e2e: f64,
    #[serde(flatten)]
    record: &'a RequestRecord,
}

/// The JSON Lines file of per-request records, written one line per finished request.
#[derive(Debug)]
pub struct RecordLog {
    file: Mutex<File>,
    tag: Mutex<LevelTag>,
    path: PathBuf,
    failed: Mutex<Option<String>>,
}

impl RecordLog {
    /// Create (truncate) `path`.
    pub fn create(path: &Path) -> Result<RecordLog, OutputError> {
        let file = File::create(path).map_err(|source| OutputError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RecordLog {
            file: Mutex::new(file),
            tag: Mutex::new(LevelTag {
                drill: None,
                level: 0,
                axis: None,
            }),
            path: path.to_path_buf(),
            failed: Mutex::new(None),
        })
    }

    /// Records from now on belong to `drill`'s level number `level` (from 0), on `axis`.
    pub fn set_level(&self, drill: DrillKind, level: usize, axis: &Axis) {
        if let Ok(mut t) = self.tag.lock() {
            *t = LevelTag {
                drill: Some(drill),
                level,
                axis: Some(axis.clone()),
            };
        }
    }

    /// Append `record` as one line, written through at once. A failure is remembered (see
    /// [`RecordLog::failure`]) rather than stopping the run.
    pub fn write(&self, record: &RequestRecord) {
        let tag = self.tag.lock().map(|t| t.clone()).ok();
        let Some(tag) = tag else { return };
        let line = Line {
            tag: &tag,
            ttft: record.ttft(),
            e2e: record.e2e(),
            record,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let result = match self.file.lock() {
            Ok(mut f) => f.write_all(text.as_bytes()),
            Err(_) => Ok(()),
        };
        if let Err(e) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.get_or_insert_with(|| format!("{}: {e}", self.path.display()));
        }
    }

    /// The first write error, if any.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The `--out` directory.
#[derive(Debug, Clone)]
pub struct OutputDir {
    path: PathBuf,
}

impl OutputDir {
    /// Create `path` (and its parents) if needed.
    pub fn create(path: &Path) -> Result<OutputDir, OutputError> {
        fs::create_dir_all(path).map_err(|source| OutputError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(OutputDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh record log in the directory.
    pub fn record_log(&self) -> Result<RecordLog, OutputError> {
        RecordLog::create(&self.path.join(RECORDS_FILE))
    }

    /// Write `name` in the directory.
    pub fn write(&self, name: &str, contents: &str) -> Result<(), OutputError> {
        let path = self.path.join(name);
        fs::write(&path, contents).map_err(|source| OutputError { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use servesim_sim::{ErrorKind, Origin, RequestError};

    #[test]
    fn each_record_is_one_json_line_tagged_with_its_level() {
        let dir = std::env::temp_dir().join(format!("servesim-records-{}", std::process::id()));
        let out = OutputDir::create(&dir).expect("temp dir");
        let log = out.record_log().expect("log file");
        log.set_level(DrillKind::Baseline, 2, &Axis::Num(4));
        let mut ok = RequestRecord::new(Origin::Group(0), 3, 1.0, 1.0);
        ok.first_event = Some(1.25);
        ok.end = 2.0;
        ok.events = 5;
        log.write(&ok);
        let mut bad = RequestRecord::new(Origin::Group(0), 4, 2.0, 2.0);
        bad.error = Some(RequestError {
            kind: ErrorKind::Status { status: 500 },
            message: "HTTP 500: boom".into(),
        });
        log.write(&bad);
        let text = fs::read_to_string(log.path()).expect("written");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["drill"], "baseline");
        assert_eq!(lines[0]["level"], 2);
        assert_eq!(lines[0]["axis"], 4);
        assert_eq!(lines[0]["ttft"], 0.25);
        assert_eq!(lines[0]["e2e"], 1.0);
        assert_eq!(lines[0]["events"], 5);
        assert_eq!(lines[1]["error"]["kind"], "status");
        assert_eq!(lines[1]["error"]["status"], 500);
        assert!(log.failure().is_none());
        let _ = fs::remove_dir_all(&dir);
    }
}
