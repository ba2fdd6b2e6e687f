//! Bar charts drawn on the server as inline SVG (no chart library in the browser): stacked bars
//! with a title, a y axis with its label, x labels, a legend, and a text alternative that says
//! what the chart shows. The SVG scales with its box and stays readable at 360 px.

use std::fmt::Write;

/// One stacked layer of every bar, drawn in its own colour and named in the legend.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub colour: &'static str,
}

/// One bar: its x label, a value per series (in series order), and whether to mark it with a
/// cross above it (a failure, say: marked by shape, not only by colour).
#[derive(Debug, Clone, Default)]
pub struct Bar {
    pub label: String,
    pub values: Vec<f64>,
    pub marked: bool,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct BarChart<'a> {
    /// Unique on the page: the SVG's title and description are named after it.
    pub id: &'a str,
    pub title: &'a str,
    /// What the bars measure, e.g. `commits` or `latency (ms)`.
    pub y_label: &'a str,
    pub series: &'a [Series],
    pub bars: &'a [Bar],
    /// The text alternative: what a person reading the chart would take from it.
    pub summary: String,
}

const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 6.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 24.0;

/// Escapes text for SVG (labels may come from data).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round upper bound for the y axis: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|bound| *bound >= max)
        .unwrap_or(10.0 * magnitude)
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The chart as an SVG element, safe to embed as it is (every text is escaped).
pub fn stacked_bars(chart: &BarChart<'_>) -> String {
    let total = |bar: &Bar| bar.values.iter().sum::<f64>();
    let max = nice_max(chart.bars.iter().map(total).fold(0.0, f64::max));
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / chart.bars.len().max(1) as f64;
    let bar_width = (slot * 0.72).max(1.0);
    let id = escape(chart.id);
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" preserveAspectRatio=\"xMidYMid meet\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(chart.title),
        escape(&chart.summary)
    );
    // Grid lines and the y axis's labels: 0, half, max.
    for step in 0..=2 {
        let value = max * f64::from(step) / 2.0;
        let y = TOP + plot_height - plot_height * f64::from(step) / 2.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 3.0,
            number(value)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"9\" class=\"axis\">{}</text>",
        escape(chart.y_label)
    );
    // At most about eight x labels, evenly spread.
    let every = chart.bars.len().div_ceil(8).max(1);
    for (index, bar) in chart.bars.iter().enumerate() {
        let x = LEFT + slot * index as f64 + (slot - bar_width) / 2.0;
        let mut base = TOP + plot_height;
        for (value, series) in bar.values.iter().zip(chart.series) {
            if *value <= 0.0 {
                continue;
            }
            let height = plot_height * value / max;
            base -= height;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{base:.1}\" width=\"{bar_width:.1}\" height=\"{height:.1}\" \
                 fill=\"{}\"><title>{}: {} {}</title></rect>",
                series.colour,
                escape(&bar.label),
                number(*value),
                escape(series.name)
            );
        }
        if bar.marked {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"mark\" text-anchor=\"middle\">×</text>",
                x + bar_width / 2.0,
                (base - 2.0).max(TOP - 2.0)
            );
        }
        if index % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
                x + bar_width / 2.0,
                HEIGHT - 8.0,
                escape(&bar.label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The legend of a chart's series, as HTML (each name beside a swatch of its colour).
pub fn legend(series: &[Series]) -> String {
    let mut html = String::from("<ul class=\"legend\">");
    for entry in series {
        let _ = write!(
            html,
            "<li><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" \
             height=\"10\" fill=\"{}\"/></svg> {}</li>",
            entry.colour,
            escape(entry.name)
        );
    }
    html.push_str("</ul>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: [Series; 2] = [
        Series {
            name: "low",
            colour: "#12b76a",
        },
        Series {
            name: "high",
            colour: "#f04438",
        },
    ];

    #[test]
    fn bars_stack_their_series_under_a_round_maximum() {
        let bars = vec![
            Bar {
                label: "Mon".into(),
                values: vec![2.0, 1.0],
                marked: false,
            },
            Bar {
                label: "<Tue>".into(),
                values: vec![0.0, 4.0],
                marked: true,
            },
        ];
        let svg = stacked_bars(&BarChart {
            id: "risk",
            title: "Commits by risk",
            y_label: "commits",
            series: &SERIES,
            bars: &bars,
            summary: "7 commits, 5 high".into(),
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3, "empty layers draw nothing");
        assert!(svg.contains("&lt;Tue&gt;") && !svg.contains("<Tue>"));
        assert!(svg.contains(">5</text>"), "the axis tops out at 5: {svg}");
        assert_eq!(svg.matches("class=\"mark\"").count(), 1);
        assert!(svg.contains("<desc id=\"risk-desc\">7 commits, 5 high</desc>"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(1_000.0), 1_000.0);
    }
}
