//! The cost-vs-goodput frontier as an SVG: every fleet that serves the peak (goodput at the SLOs
//! against dollars per hour, one colour per GPU), the non-dominated ones joined as the frontier,
//! the winner and the required goodput marked, and the capacity arithmetic written underneath.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::PlanError;
use crate::plan::{Plan, Row};

static FONT: Once = Once::new();

/// Embed DejaVu Sans (the validator's vendored copy, permissively licensed): plotters' SVG text
/// needs a registered font and the machine may have none.
fn ensure_font() {
    FONT.call_once(|| {
        // The bytes are a valid TrueType font shipped in the repository; failure would only lose text.
        let _ = register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../../validator/assets/DejaVuSans.ttf"),
        );
    });
}

const COLOURS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// The rows no other row beats on both goodput (higher) and cost (lower), by goodput.
pub fn pareto(rows: &[Row]) -> Vec<&Row> {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        a.usd_per_hour
            .total_cmp(&b.usd_per_hour)
            .then(b.fleet_capacity_rps.total_cmp(&a.fleet_capacity_rps))
            .then(a.candidate.cmp(&b.candidate))
    });
    let mut out: Vec<&Row> = Vec::new();
    for r in sorted {
        if out
            .last()
            .is_none_or(|l| r.fleet_capacity_rps > l.fleet_capacity_rps)
        {
            out.push(r);
        }
    }
    out
}

/// The plan's frontier chart as an SVG document.
pub fn svg(plan: &Plan) -> Result<String, PlanError> {
    ensure_font();
    let err = |e: &dyn std::fmt::Display| PlanError::Chart(e.to_string());
    let rows = &plan.rows;
    if rows.is_empty() {
        return Err(err(&"no fleet serves the peak: nothing to draw"));
    }
    let i = &plan.inputs;
    let need = i.headroom * i.peak_rate;
    let x1 = rows
        .iter()
        .map(|r| r.fleet_capacity_rps)
        .fold(need, f64::max)
        * 1.1;
    let y1 = rows.iter().map(|r| r.usd_per_hour).fold(0.0, f64::max) * 1.1;
    let mut gpus: Vec<&str> = rows.iter().map(|r| r.gpu.as_str()).collect();
    gpus.sort_unstable();
    gpus.dedup();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, bottom) = root.split_vertically(500);
        let mut chart = ChartBuilder::on(&top)
            .caption(
                format!(
                    "{}: fleets serving {:.2} req/s of {} within {}",
                    i.model, i.peak_rate, i.traffic.name, i.slo
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x1, 0.0..y1.max(1e-9))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("goodput at the SLOs: replicas × capacity per replica, req/s")
            .y_desc("$ per hour")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                vec![(need, 0.0), (need, y1)],
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("needed: {} × peak = {need:.2} req/s", i.headroom))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
        for (k, gpu) in gpus.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            chart
                .draw_series(rows.iter().filter(|r| r.gpu == *gpu).map(|r| {
                    Circle::new((r.fleet_capacity_rps, r.usd_per_hour), 4, colour.filled())
                }))
                .map_err(|e| err(&e))?
                .label((*gpu).to_string())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
        }
        let front: Vec<(f64, f64)> = pareto(rows)
            .iter()
            .map(|r| (r.fleet_capacity_rps, r.usd_per_hour))
            .collect();
        chart
            .draw_series(LineSeries::new(front, BLACK.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label("frontier (no fleet both cheaper and faster)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
        let best = &rows[0];
        chart
            .draw_series(std::iter::once(Cross::new(
                (best.fleet_capacity_rps, best.usd_per_hour),
                9,
                BLACK.stroke_width(2),
            )))
            .map_err(|e| err(&e))?
            .label(format!("rank 1 ({} view)", plan.view.as_str()))
            .legend(|(x, y)| Cross::new((x + 9, y), 5, BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
        let lines = [
            format!(
                "rank 1: {} replicas of {} × TP{} = {} GPUs at ${:.2}/h (${:.0}/month, {})",
                best.replicas,
                best.gpu,
                best.tensor_parallel_size,
                best.total_gpus,
                best.usd_per_hour,
                best.usd_per_month,
                best.calibration
            ),
            format!(
                "replicas = ceil(headroom {} × peak {:.3} req/s ÷ {:.3} req/s per replica at the SLOs) = {}",
                i.headroom, i.peak_rate, best.capacity_per_replica_rps, best.replicas
            ),
            format!(
                "Little's law per replica: L = λ × W = {:.3} req/s × {:.2} s = {:.1} requests in flight",
                i.peak_rate / f64::from(best.replicas),
                best.e2e.mean,
                best.in_flight_per_replica
            ),
            format!(
                "$ per 1M output tokens = ${:.2}/h ÷ ({:.3} req/s × {:.0} tokens × 3600 s) × 1e6 = ${:.3}",
                best.usd_per_hour,
                i.peak_rate,
                i.traffic.mean_output_tokens,
                best.usd_per_million_output_tokens
            ),
        ];
        for (k, line) in lines.iter().enumerate() {
            bottom
                .draw(&Text::new(
                    line.as_str(),
                    (16, 14 + 24 * k as i32),
                    ("sans-serif", 14),
                ))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}
