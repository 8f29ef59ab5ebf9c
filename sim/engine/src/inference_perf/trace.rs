//! Azure public dataset traces as inference-perf reads them (`AzurePublicDatasetReader` in
//! `inference_perf/utils/trace_reader.py`, 0.7.0): CSV lines `TIMESTAMP,ContextTokens,
//! GeneratedTokens` after an optional header, timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (a `T`, a `Z`
//! and more than six fraction digits tolerated), each taken relative to the first line's. A line
//! that does not parse is skipped, as inference-perf skips it (with a warning there).

/// One trace line: seconds after the first line, prompt tokens, generated tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEntry {
    pub at: f64,
    pub input: u32,
    pub output: u32,
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `parse_timestamp`: seconds since the epoch (UTC), microsecond resolution.
pub fn parse_timestamp(raw: &str) -> Option<f64> {
    let ts = raw.trim().trim_matches('"').replace('T', " ");
    let ts = ts.trim_end_matches('Z').trim();
    let (date, time) = ts.split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(6)
        .collect();
    let micros = format!("{digits:0<6}").parse::<i64>().ok()?;
    let secs = days_from_civil(y, mo, day) * 86_400 + h * 3_600 + mi * 60 + s;
    Some(secs as f64 + micros as f64 / 1e6)
}

/// Parse a trace file's text. A first line whose timestamp does not parse is a header.
pub fn parse(text: &str) -> Vec<TraceEntry> {
    let mut first: Option<f64> = None;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split(',');
        let (Some(ts), Some(input), Some(output)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (Some(ts), Ok(input), Ok(output)) = (
            parse_timestamp(ts),
            input.trim().parse::<u32>(),
            output.trim().parse::<u32>(),
        ) else {
            continue;
        };
        let origin = *first.get_or_insert(ts);
        out.push(TraceEntry {
            at: ts - origin,
            input,
            output,
        });
    }
    out
}
