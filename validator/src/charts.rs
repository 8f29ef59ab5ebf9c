//! SVG charts of a validation run (plotters, with an embedded DejaVu Sans so text renders without
//! system fonts): lines of (x, y) series, optional vertical markers, optional log-scaled x axis.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

static FONT: Once = Once::new();

fn ensure_font() {
    FONT.call_once(|| {
        // The bytes are a valid TrueType font shipped in the repository; failure would only lose text.
        let _ = register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
    });
}

/// One named series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw as a line through the points (else points only).
    pub line: bool,
    pub color: RGBColor,
}

/// A labelled vertical line at `x`.
#[derive(Debug, Clone)]
pub struct Marker {
    pub label: String,
    pub x: f64,
    pub color: RGBColor,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub log_x: bool,
}

/// Colours used for the real run and the simulator throughout the report.
pub const REAL: RGBColor = RGBColor(200, 60, 40);
pub const SIM: RGBColor = RGBColor(40, 90, 200);
pub const THIRD: RGBColor = RGBColor(40, 150, 70);

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("chart '{title}': {message}")]
pub struct ChartError {
    pub title: String,
    pub message: String,
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    lo.is_finite().then_some((lo, hi))
}

impl Chart {
    /// Render to an SVG document.
    pub fn svg(&self) -> Result<String, ChartError> {
        ensure_font();
        let err = |e: &dyn std::fmt::Display| ChartError {
            title: self.title.clone(),
            message: e.to_string(),
        };
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = bounds(all().map(|p| p.0).chain(self.markers.iter().map(|m| m.x)))
            .ok_or_else(|| err(&"no data"))?;
        let (_, y1) = bounds(all().map(|p| p.1)).ok_or_else(|| err(&"no data"))?;
        let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (800, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let mut builder = ChartBuilder::on(&root);
            builder
                .caption(&self.title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(64);
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .x_desc(self.x_label.as_str())
                        .y_desc(self.y_label.as_str())
                        .label_style(("sans-serif", 14))
                        .draw()
                        .map_err(|e| err(&e))?;
                    for m in &self.markers {
                        chart
                            .draw_series(LineSeries::new(
                                vec![(m.x, 0.0), (m.x, y1)],
                                m.color.stroke_width(1),
                            ))
                            .map_err(|e| err(&e))?
                            .label(m.label.clone())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 18, y)], m.color)
                            });
                    }
                    for s in &self.series {
                        let color = s.color;
                        if s.line {
                            chart
                                .draw_series(LineSeries::new(
                                    s.points.clone(),
                                    color.stroke_width(2),
                                ))
                                .map_err(|e| err(&e))?
                                .label(s.name.clone())
                                .legend(move |(x, y)| {
                                    PathElement::new(
                                        vec![(x, y), (x + 18, y)],
                                        color.stroke_width(2),
                                    )
                                });
                        }
                        let points = chart
                            .draw_series(
                                s.points.iter().map(|&p| Circle::new(p, 3, color.filled())),
                            )
                            .map_err(|e| err(&e))?;
                        if !s.line {
                            points
                                .label(s.name.clone())
                                .legend(move |(x, y)| Circle::new((x + 9, y), 3, color.filled()));
                        }
                    }
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .label_font(("sans-serif", 13))
                        .draw()
                        .map_err(|e| err(&e))?;
                }};
            }
            if self.log_x && x0 > 0.0 {
                draw!(
                    builder
                        .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), 0.0..y1)
                        .map_err(|e| err(&e))?
                );
            } else {
                let pad = ((x1 - x0) * 0.05).max(1e-9);
                draw!(
                    builder
                        .build_cartesian_2d((x0 - pad)..(x1 + pad), 0.0..y1)
                        .map_err(|e| err(&e))?
                );
            }
            root.present().map_err(|e| err(&e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_svg_with_text() {
        let chart = Chart {
            title: "tok/s vs concurrency".into(),
            x_label: "concurrency".into(),
            y_label: "tok/s".into(),
            series: vec![
                Series {
                    name: "real".into(),
                    points: vec![(1.0, 40.0), (2.0, 80.0), (4.0, 150.0)],
                    line: true,
                    color: REAL,
                },
                Series {
                    name: "sim".into(),
                    points: vec![(1.0, 42.0), (2.0, 85.0), (4.0, 160.0)],
                    line: false,
                    color: SIM,
                },
            ],
            markers: vec![Marker {
                label: "knee".into(),
                x: 2.0,
                color: THIRD,
            }],
            log_x: true,
        };
        let svg = chart.svg().expect("renders");
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..60.min(svg.len())]
        );
        assert!(svg.contains("tok/s vs concurrency") && svg.contains("knee"));
        assert!(svg.trim_end().ends_with("</svg>"));
        let empty = Chart {
            series: vec![],
            markers: vec![],
            ..chart
        };
        assert!(empty.svg().is_err());
    }
}
