//! SVG charts for the report: a stand-in with the interface of the plotting
//! module (line charts and grouped bars), drawing plain SVG by hand. No
//! syscalls beyond writing the file.
//!
//! It draws what the report needs to be read (axes, one polyline or bar
//! per value, the labels) and nothing more: the module built on a plotting
//! crate replaces it with the same functions.

use std::fmt::Write as _;
use std::path::Path;

/// One line of a line chart.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
pub struct LineChart<'a> {
    /// Title.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The lines.
    pub series: &'a [Series],
    /// A sentence under the chart.
    pub caption: &'a str,
}

/// One group of bars.
pub struct BarGroup {
    /// Group label.
    pub label: String,
    /// (bar label, value).
    pub bars: Vec<(String, f64)>,
}

/// A grouped bar chart.
pub struct BarChart<'a> {
    /// Title.
    pub title: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The groups.
    pub groups: &'a [BarGroup],
    /// A sentence under the chart.
    pub caption: &'a str,
}

const W: f64 = 800.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const TOP: f64 = 50.0;
const PLOT_W: f64 = 520.0;
const PLOT_H: f64 = 360.0;
const COLOURS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn axis(v: f64, log: bool) -> f64 {
    if log { v.max(1e-12).log10() } else { v }
}

fn range(vals: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(axis(v, log));
        hi = hi.max(axis(v, log));
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if !log {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    (lo, hi)
}

fn frame(title: &str, x_label: &str, y_label: &str, caption: &str) -> String {
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"25\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n\
         <line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"20\" y=\"{}\" transform=\"rotate(-90 20 {})\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"{LEFT}\" y=\"{}\" font-size=\"11\">{}</text>\n",
        W / 2.0,
        esc(title),
        TOP + PLOT_H,
        LEFT + PLOT_W,
        TOP + PLOT_H,
        TOP + PLOT_H,
        LEFT + PLOT_W / 2.0,
        TOP + PLOT_H + 35.0,
        esc(x_label),
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        esc(y_label),
        H - 10.0,
        esc(caption),
    );
    s.push('\n');
    s
}

fn ticks(s: &mut String, (lo, hi): (f64, f64), log: bool, vertical: bool) {
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let v = lo + f * (hi - lo);
        let shown = if log { 10f64.powf(v) } else { v };
        let label = if shown.abs() >= 100.0 || shown == 0.0 || (log && shown >= 1.0) {
            format!("{shown:.0}")
        } else {
            format!("{shown:.3}")
        };
        if vertical {
            let y = TOP + PLOT_H - f * PLOT_H;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{label}</text>",
                LEFT - 5.0
            );
        } else {
            let x = LEFT + f * PLOT_W;
            let _ = writeln!(
                s,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                TOP + PLOT_H + 15.0
            );
        }
    }
}

fn write(path: &Path, svg: String) -> Result<(), String> {
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Draws `chart` into an SVG file at `path`.
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<(), String> {
    let all = || chart.series.iter().flat_map(|s| s.points.iter());
    let xr = range(all().map(|p| p.0), chart.log_x);
    let yr = range(all().map(|p| p.1), chart.log_y);
    let mut s = frame(chart.title, chart.x_label, chart.y_label, chart.caption);
    ticks(&mut s, xr, chart.log_x, false);
    ticks(&mut s, yr, chart.log_y, true);
    for (i, series) in chart.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = series
            .points
            .iter()
            .filter(|p| (!chart.log_x || p.0 > 0.0) && (!chart.log_y || p.1 > 0.0))
            .map(|&(x, y)| {
                let px = LEFT + (axis(x, chart.log_x) - xr.0) / (xr.1 - xr.0) * PLOT_W;
                let py = TOP + PLOT_H - (axis(y, chart.log_y) - yr.0) / (yr.1 - yr.0) * PLOT_H;
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
            LEFT + PLOT_W + 15.0,
            TOP + 15.0 * i as f64,
            esc(&series.label)
        );
    }
    s.push_str("</svg>\n");
    write(path, s)
}

/// Draws `chart` into an SVG file at `path`.
pub fn bar_chart(path: &Path, chart: &BarChart) -> Result<(), String> {
    let yr = range(
        chart.groups.iter().flat_map(|g| g.bars.iter().map(|b| b.1)),
        chart.log_y,
    );
    let mut s = frame(chart.title, "", chart.y_label, chart.caption);
    ticks(&mut s, yr, chart.log_y, true);
    let mut labels: Vec<&str> = Vec::new();
    for g in chart.groups {
        for (l, _) in &g.bars {
            if !labels.contains(&l.as_str()) {
                labels.push(l);
            }
        }
    }
    let group_w = PLOT_W / chart.groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / labels.len().max(1) as f64;
    for (gi, g) in chart.groups.iter().enumerate() {
        let x0 = LEFT + gi as f64 * group_w + group_w * 0.1;
        for (l, v) in &g.bars {
            let bi = labels.iter().position(|x| x == l).unwrap_or(0);
            let base = if chart.log_y { yr.0 } else { 0.0 };
            let h = ((axis(*v, chart.log_y) - base) / (yr.1 - yr.0) * PLOT_H).max(0.0);
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {v}</title></rect>",
                x0 + bi as f64 * bar_w,
                TOP + PLOT_H - h,
                COLOURS[bi % COLOURS.len()],
                esc(l)
            );
        }
        // Slanted, so that the labels of narrow groups do not overlap.
        let (lx, ly) = (x0 + group_w * 0.4, TOP + PLOT_H + 12.0);
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{ly}\" text-anchor=\"end\" transform=\"rotate(-30 {lx:.1} {ly})\">{}</text>",
            esc(&g.label)
        );
    }
    for (i, l) in labels.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            LEFT + PLOT_W + 15.0,
            TOP + 15.0 * i as f64,
            COLOURS[i % COLOURS.len()],
            esc(l)
        );
    }
    s.push_str("</svg>\n");
    write(path, s)
}
