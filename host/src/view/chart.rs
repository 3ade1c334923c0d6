//! The trend's charts, drawn by `plotters` into SVG text (its SVG backend
//! only: no fonts, no bitmaps): one of the counts per day by label, one of
//! the mean scores per day. The page inlines the SVG, so it needs no asset.

use plotters::prelude::*;

use crate::browse::TrendDay;

const SIZE: (u32, u32) = (860, 300);
/// The pages' colours for the three labels (the CSS uses the same).
const NEGATIVE: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const NEUTRAL: RGBColor = RGBColor(0x75, 0x75, 0x75);
const POSITIVE: RGBColor = RGBColor(0x2e, 0x7d, 0x32);

#[derive(Debug, thiserror::Error)]
#[error("drawing the {what} chart: {reason}")]
pub struct ChartError {
    what: &'static str,
    reason: String,
}

/// One line of a chart: its name, colour and a value per day (`None`: no point).
struct Line {
    name: &'static str,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

/// Generations per day by label.
pub fn counts_svg(days: &[TrendDay]) -> Result<String, ChartError> {
    let lines = [
        Line { name: "negative", color: NEGATIVE, values: days.iter().map(|d| Some(d.negative as f64)).collect() },
        Line { name: "neutral", color: NEUTRAL, values: days.iter().map(|d| Some(d.neutral as f64)).collect() },
        Line { name: "positive", color: POSITIVE, values: days.iter().map(|d| Some(d.positive as f64)).collect() },
    ];
    let top = lines.iter().flat_map(|l| l.values.iter().flatten()).fold(0.0_f64, |a, &b| a.max(b));
    draw("counts", "Generations per day", days, &lines, top.max(1.0) * 1.1)
}

/// Mean scores per day (days without generations have no point).
pub fn means_svg(days: &[TrendDay]) -> Result<String, ChartError> {
    let lines = [
        Line { name: "negative", color: NEGATIVE, values: days.iter().map(|d| d.mean_negative).collect() },
        Line { name: "neutral", color: NEUTRAL, values: days.iter().map(|d| d.mean_neutral).collect() },
        Line { name: "positive", color: POSITIVE, values: days.iter().map(|d| d.mean_positive).collect() },
    ];
    draw("means", "Mean scores per day", days, &lines, 1.0)
}

fn draw(what: &'static str, caption: &str, days: &[TrendDay], lines: &[Line], top: f64) -> Result<String, ChartError> {
    let fail = |e: &dyn std::fmt::Display| ChartError { what, reason: e.to_string() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let last = days.len().saturating_sub(1).max(1) as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(0..last, 0.0..top)
            .map_err(|e| fail(&e))?;
        let day_label = |i: &i32| days.get(*i as usize).map(|d| d.day.format("%m-%d").to_string()).unwrap_or_default();
        chart.configure_mesh().x_labels(10).x_label_formatter(&day_label).y_labels(6).draw().map_err(|e| fail(&e))?;
        for line in lines {
            let points = line.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as i32, v)));
            let color = line.color;
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(3))
                .map_err(|e| fail(&e))?
                .label(line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_chart_is_svg_with_a_line_per_label() {
        let day = |d: u32, negative| TrendDay {
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            negative,
            neutral: 1,
            positive: 2,
            mean_negative: Some(0.4),
            mean_neutral: None,
            mean_positive: Some(0.5),
        };
        let svg = counts_svg(&[day(1, 3), day(2, 0), day(3, 5)]).unwrap();
        assert!(svg.trim_start().starts_with("<svg") && svg.contains("</svg>"), "{svg}");
        for name in ["negative", "neutral", "positive", "12-01", "Generations per day"] {
            assert!(svg.contains(name), "{name} missing");
        }
        assert!(svg.contains("polyline"), "no line drawn");
        assert!(means_svg(&[day(1, 3)]).unwrap().contains("Mean scores per day"));
    }
}
