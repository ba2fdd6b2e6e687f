//! Small charts drawn on the server as inline SVG: no script, nothing to load.

use std::fmt::Write;

/// One hour of finished deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub succeeded: i64,
    pub total: i64,
}

/// A bar per hour, oldest first: height and colour by success rate; an hour with nothing finished
/// is a grey tick. The SVG holds only numbers and fixed text, so it is safe to embed unescaped.
pub fn success_rate(buckets: &[Bucket]) -> String {
    const BAR: usize = 4;
    const GAP: usize = 1;
    const HEIGHT: i64 = 20;
    let width = buckets.len() * (BAR + GAP);
    let (succeeded, total) = buckets
        .iter()
        .fold((0, 0), |(s, t), b| (s + b.succeeded, t + b.total));
    let label = if total == 0 {
        "No deliveries finished in the last 24 hours".to_owned()
    } else {
        format!(
            "{}% of {total} deliveries succeeded in the last 24 hours",
            succeeded * 100 / total
        )
    };
    let mut svg = format!(
        "<svg class=\"sparkline\" role=\"img\" aria-label=\"{label}\" width=\"{width}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {width} {HEIGHT}\"><title>{label}</title>"
    );
    for (index, bucket) in buckets.iter().enumerate() {
        let x = index * (BAR + GAP);
        if bucket.total == 0 {
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"{BAR}\" height=\"2\" fill=\"#d0d5dd\"/>",
                HEIGHT - 2
            );
            continue;
        }
        let rate = bucket.succeeded * 100 / bucket.total;
        let height = (HEIGHT * rate / 100).max(3);
        let colour = match rate {
            95.. => "#12b76a",
            75..=94 => "#f79009",
            _ => "#f04438",
        };
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"{BAR}\" height=\"{height}\" fill=\"{colour}\"/>",
            HEIGHT - height
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_follow_the_success_rate() {
        let mut buckets = vec![Bucket::default(); 24];
        buckets[22] = Bucket {
            succeeded: 1,
            total: 4,
        };
        buckets[23] = Bucket {
            succeeded: 3,
            total: 3,
        };
        let svg = success_rate(&buckets);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("57% of 7 deliveries"));
        assert_eq!(svg.matches("<rect").count(), 24);
        assert!(svg.contains("#f04438") && svg.contains("#12b76a"));
        assert!(success_rate(&vec![Bucket::default(); 24]).contains("No deliveries"));
    }
}
