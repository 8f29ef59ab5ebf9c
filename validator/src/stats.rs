//! Percentiles exactly as the drills define them, and the summary statistics of trace replays.

/// Python's `statistics.quantiles(values, n=100)` (method `exclusive`), `p`-th cut point (1..=99).
/// A single value is its own percentile; no values give `None`. Integer arithmetic for the
/// interpolation weights, as Python does, so results agree to the last bit that matters.
pub fn percentile(values: &[f64], p: u32) -> Option<f64> {
    let mut data = values.to_vec();
    data.sort_by(f64::total_cmp);
    percentile_sorted(&data, p)
}

/// [`percentile`] on already sorted data.
pub fn percentile_sorted(data: &[f64], p: u32) -> Option<f64> {
    let n: i64 = 100;
    let ld = data.len() as i64;
    match ld {
        0 => return None,
        1 => return Some(data[0]),
        _ => {}
    }
    let i = i64::from(p.clamp(1, 99));
    let m = ld + 1;
    let j = (i * m / n).clamp(1, ld - 1);
    let delta = i * m - j * n;
    let lo = data[(j - 1) as usize];
    let hi = data[j as usize];
    Some((lo * (n - delta) as f64 + hi * delta as f64) / n as f64)
}

/// Median (mean of the middle two for an even count), as `statistics.median`.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut data = values.to_vec();
    data.sort_by(f64::total_cmp);
    let n = data.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(data[n / 2]),
        _ => Some((data[n / 2 - 1] + data[n / 2]) / 2.0),
    }
}

/// Linear-interpolation percentile (NumPy's default), as vLLM's `benchmark_serving` reports; `q` in 0..=100.
pub fn percentile_linear(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = (q / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with CPython 3.11:
    //   statistics.quantiles(data, n=100)[p - 1]
    #[test]
    fn matches_python_statistics_quantiles_exclusive() {
        let twelve = [
            0.047, 0.05, 0.046, 1.121, 0.048, 0.049, 0.047, 0.051, 0.046, 0.048, 0.05, 0.047,
        ];
        let thirteen = [
            0.112, 0.095, 0.301, 0.087, 0.15, 0.099, 0.093, 0.41, 0.101, 0.088, 0.12, 0.097, 0.105,
        ];
        let cases: &[(&[f64], u32, f64)] = &[
            (&twelve, 50, 0.048),
            // The exclusive method extrapolates past the largest sample at high percentiles.
            (&twelve, 95, 1.4955),
            (&twelve, 99, 2.0519),
            (&twelve, 5, 0.046),
            (&[1.0, 2.0], 50, 1.5),
            (&[1.0, 2.0], 95, 2.85),
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 95, 5.7),
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
            (&[1.0, 2.0, 3.0, 4.0, 5.0], 25, 1.5),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                90,
                9.9,
            ),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                10,
                1.1,
            ),
            (&[7.0], 95, 7.0),
            // Python 3.11.7, unsorted input and extrapolation below the smallest sample.
            (&thirteen, 50, 0.10100000000000002),
            (&thirteen, 95, 0.4427),
            (&thirteen, 99, 0.50374),
            (&thirteen, 1, 0.08614),
            (&[3.0, 1.0, 2.0], 50, 2.0),
            (&[3.0, 1.0, 2.0], 95, 3.8),
            (&[3.0, 1.0, 2.0], 99, 3.96),
            (&[3.0, 1.0, 2.0], 1, 0.04),
        ];
        for (data, p, want) in cases {
            let got = percentile(data, *p).expect("non-empty");
            assert!(
                (got - want).abs() < 1e-12,
                "p{p} of {data:?}: got {got}, want {want}"
            );
        }
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn median_and_linear() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(percentile_linear(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile_linear(&[1.0, 2.0, 3.0, 4.0], 100.0), Some(4.0));
        assert!(
            (percentile_linear(&[1.0, 2.0, 3.0, 4.0], 90.0).unwrap_or(0.0) - 3.7).abs() < 1e-12
        );
    }
}
