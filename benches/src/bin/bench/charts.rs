//! The SVG charts beside the ping-pong tables (docs/bench-*-rate.svg and
//! -cpu.svg), drawn by hand: one line per server against connection count.
//! The report links them by `report::slug` of the group.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use super::report::{fmt_rate, slug};
use super::scenarios::{median_of, Sample, Scenario};
use super::servers::ServerSpec;

/// Line charts (SVG, by hand): messages per second and user CPU per
/// message against connection count, one line per server, per ping-pong
/// group.
pub fn write_charts(
    root: &Path,
    specs: &[ServerSpec],
    scenarios: &[Scenario],
    results: &BTreeMap<String, BTreeMap<&'static str, Vec<Sample>>>,
    conn_counts: &[usize],
) {
    let colours = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
    ];
    let groups: Vec<&str> = {
        let mut g: Vec<&str> = scenarios
            .iter()
            .filter(|s| s.group.starts_with("ping-pong"))
            .map(|s| s.group)
            .collect();
        g.dedup();
        g
    };
    for group in groups {
        for (what, label, pick) in [
            (
                "rate",
                "messages per second",
                (|x: &Sample| x.rate) as fn(&Sample) -> f64,
            ),
            ("cpu", "server CPU per message (µs)", |x: &Sample| x.cpu_us),
        ] {
            let mut lines: Vec<(&str, Vec<(usize, f64)>)> = Vec::new();
            for spec in specs {
                let mut pts = Vec::new();
                for sc in scenarios.iter().filter(|s| s.group == group) {
                    if let Some(v) = results.get(&sc.key).and_then(|m| m.get(spec.name)) {
                        pts.push((sc.conns, median_of(v, pick)));
                    }
                }
                lines.push((spec.name, pts));
            }
            let max = lines
                .iter()
                .flat_map(|l| l.1.iter().map(|p| p.1))
                .fold(0.0f64, f64::max)
                .max(1e-9)
                * 1.1;
            let (w, h, left, bottom, top, right) = (560.0, 320.0, 70.0, 40.0, 30.0, 120.0);
            let x_of = |c: usize| {
                let i = conn_counts.iter().position(|&k| k == c).unwrap_or(0) as f64;
                let n = (conn_counts.len().max(2) - 1) as f64;
                left + i / n * (w - left - right)
            };
            let y_of = |v: f64| h - bottom - v / max * (h - bottom - top);
            let mut svg = format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
                 <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
                 <text x=\"{left}\" y=\"18\" font-size=\"14\">{group}: {label}</text>\n\
                 <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
                 <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n",
                h - bottom,
                w - right,
                h - bottom,
                h - bottom
            );
            for &c in conn_counts {
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{c} conn</text>",
                    x_of(c),
                    h - bottom + 16.0
                );
            }
            for k in 0..=4 {
                let v = max * k as f64 / 4.0;
                let label = if what == "rate" {
                    fmt_rate(v)
                } else {
                    format!("{v:.2}")
                };
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                    left - 6.0,
                    y_of(v) + 4.0
                );
            }
            for (i, (name, pts)) in lines.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let path: Vec<String> = pts
                    .iter()
                    .map(|&(c, v)| format!("{:.1},{:.1}", x_of(c), y_of(v)))
                    .collect();
                let _ = writeln!(
                    svg,
                    "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                    path.join(" ")
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
                    w - right + 10.0,
                    top + 16.0 * i as f64 + 10.0
                );
            }
            svg.push_str("</svg>\n");
            let file = root.join(format!("docs/bench-{}-{what}.svg", slug(group)));
            let _ = std::fs::File::create(file).and_then(|mut f| f.write_all(svg.as_bytes()));
        }
    }
}
