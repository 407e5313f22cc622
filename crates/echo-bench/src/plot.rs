//! SVG charts for bench-all's report: lines (a measure against connections,
//! one series per model) and grouped bars (one group per scenario, one bar
//! per model).
//!
//! Rests on no syscall beyond writing one file; drawing is `plotters` with
//! only its SVG backend, so that no font, bitmap or image crate is built.
//!
//! Trade-offs:
//!
//! - Text is laid out without font metrics (plotters' estimate, about 0.6 em
//!   per character), because the SVG viewer draws the text, not us: long
//!   labels may look a little tighter or looser than planned. Loading a
//!   font would need `font-kit` and the system's fonts, for pixels the SVG
//!   never contains.
//! - A model keeps one look in every chart: its look comes from its name
//!   (a fixed table of the fourteen models), not from its position in the
//!   series, so `--models` subsets and scenarios a model cannot run do not
//!   repaint the others. A Python peer (a label that names Python and one of
//!   the seeds' designs) takes the colour and marker of the Rust model it is
//!   the twin of, drawn dashed and hollow, so a reader finds the pair at a
//!   glance. Any other label gets a look from a hash of its name: stable,
//!   but it may share a colour with a model (its marker or dash then
//!   usually differs).
//! - Fourteen colours are more than an eye tells apart reliably, so each
//!   also has one of five markers, assigned so that colours that are close
//!   carry different markers. The legend sits outside the plot area, to the
//!   right, so no curve hides under it.
//! - Log axes are our own coordinate ([`Axis`]) rather than plotters'
//!   `log_scale()`, whose ticks fall on 1-2-5 steps: ours are whole decades,
//!   labelled 10, 100, 1k, with light lines at 2..9 when there is room.
//!   Nothing at or below zero can sit on a log axis: such points (and any
//!   non-finite value on any axis) are left out, and the caption says how
//!   many and from which series rather than failing the chart.
//! - An empty chart (no series, or nothing left after dropping) is still a
//!   chart: frame, title and a "no data" note, so a report never embeds a
//!   missing file.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, LightPoints, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

// A model's index in `run::MODELS` (the order of the chapters) is its
// colour and marker: one list of the models, kept where the harness keeps it.
use crate::run::MODELS;

/// One line: a label and its points, in any order (drawn sorted by x).
///
/// The label picks the look: a model's name (`epoll` or `echo-epoll`), or
/// for a Python peer any label that says Python (`python`, `py-`, `.py`)
/// and names the design (`forking`, `threading`, `select`, `selectors`,
/// `asyncio`), such as `python ThreadingTCPServer` or `selectors_echo.py`.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: one line per series, with a legend and a caption.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    pub series: &'a [Series],
    /// Printed under the chart (the command, the machine); `\n` breaks lines.
    pub caption: &'a str,
}

/// One group of bars (a scenario): a bar per model, as (model, value).
pub struct BarGroup {
    pub label: String,
    pub bars: Vec<(String, f64)>,
}

/// A grouped bar chart: groups along x, one colour per model.
pub struct BarChart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub log_y: bool,
    pub groups: &'a [BarGroup],
    /// Printed under the chart (the command, the machine); `\n` breaks lines.
    pub caption: &'a str,
}

const WIDTH: u32 = 1000;
const PLOT_HEIGHT: u32 = 560;
const LEGEND_WIDTH: u32 = 250;
const CAPTION_LINE: u32 = 16;
const CAPTION_FONT: f64 = 13.0;
/// Characters per caption line at CAPTION_FONT across WIDTH (estimated).
const CAPTION_CHARS: usize = 160;
const FONT: &str = "sans-serif";

/// The seeds' Python designs and the Rust model each is the twin of.
/// "selectors" comes before "select", which it contains.
const PEERS: [(&str, &str); 5] = [
    ("forking", "fork-per-client"),
    ("threading", "thread-per-client"),
    ("selectors", "mio"),
    ("select", "select"),
    ("asyncio", "tokio"),
];

/// Tableau's ten, then four darker ones, each of which carries a different
/// marker from the lighter colour of its hue family. No black or near-grey
/// among the last four: a peer's bar is its twin's colour made pale, and a
/// pale black would pass for the grey.
const PALETTE: [RGBColor; 14] = [
    RGBColor(0x4e, 0x79, 0xa7), // blue
    RGBColor(0xf2, 0x8e, 0x2b), // orange
    RGBColor(0xe1, 0x57, 0x59), // red
    RGBColor(0x76, 0xb7, 0xb2), // teal
    RGBColor(0x59, 0xa1, 0x4f), // green
    RGBColor(0xed, 0xc9, 0x48), // yellow
    RGBColor(0xb0, 0x7a, 0xa1), // purple
    RGBColor(0xff, 0x9d, 0xa7), // pink
    RGBColor(0x9c, 0x75, 0x5f), // brown
    RGBColor(0x79, 0x70, 0x6e), // grey
    RGBColor(0x1b, 0x2f, 0x6b), // navy
    RGBColor(0x00, 0x6d, 0x6f), // dark teal
    RGBColor(0x8b, 0x1a, 0x6b), // plum
    RGBColor(0x6b, 0x6b, 0x00), // olive
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Cross,
];

/// How one label is drawn, the same in every chart.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Look {
    colour: RGBColor,
    marker: Marker,
    /// Python peers: dashed lines, hollow markers, pale bars.
    peer: bool,
}

fn look(label: &str) -> Look {
    let lower = label.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("echo-").unwrap_or(&lower);
    let model = |i: usize, peer| Look {
        colour: PALETTE[i % PALETTE.len()],
        marker: MARKERS[i % MARKERS.len()],
        peer,
    };
    if let Some(i) = MODELS.iter().position(|m| *m == name) {
        return model(i, false);
    }
    if is_python(name) {
        for (keyword, twin) in PEERS {
            if name.contains(keyword) {
                let i = MODELS.iter().position(|m| *m == twin).unwrap_or(0);
                return model(i, true);
            }
        }
    }
    let h = fnv1a(name.as_bytes()) as usize;
    Look {
        colour: PALETTE[h % PALETTE.len()],
        marker: MARKERS[(h / PALETTE.len()) % MARKERS.len()],
        peer: (h / (PALETTE.len() * MARKERS.len())) % 2 == 1,
    }
}

fn is_python(name: &str) -> bool {
    name.contains("python")
        || name.starts_with("py")
        || name.contains(".py")
        || name.contains("py-")
        || name.contains("-py")
}

/// A hash that does not change between runs or Rust versions (std's
/// `DefaultHasher` promises neither).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One chart axis. Linear ranges delegate to plotters; log ranges span
/// whole decades `10^lo..10^hi`; `Groups(n)` is `0..n` with a key point at
/// the centre of each group, for bar charts.
#[derive(Clone)]
enum Axis {
    Linear(RangedCoordf64),
    Log { lo: i32, hi: i32 },
    Groups(usize),
}

impl Axis {
    /// An axis that holds `values` (all finite, all > 0 when `log`);
    /// `from_zero` for measures read from a baseline (y axes, bars): a
    /// linear axis then includes 0, a log axis starts a decade lower than
    /// its least value when that value is a whole decade.
    fn fit(values: impl Iterator<Item = f64>, log: bool, from_zero: bool) -> Axis {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if log {
            if !min.is_finite() {
                return Axis::Log { lo: 0, hi: 1 };
            }
            // Bars need room below their lowest value, or a bar at an exact
            // decade has no height; for x, a point on the frame is fine.
            let lo = if from_zero {
                min.log10().ceil() as i32 - 1
            } else {
                min.log10().floor() as i32
            };
            let hi = (max.log10().ceil() as i32).max(lo + 1);
            return Axis::Log { lo, hi };
        }
        if !min.is_finite() {
            return Axis::Linear((0.0..1.0).into());
        }
        let lo = if from_zero { min.min(0.0) } else { min };
        let hi = if from_zero { max.max(0.0) } else { max };
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        let pad = span * 0.05;
        let lo = if from_zero && lo == 0.0 {
            0.0
        } else {
            lo - pad
        };
        let hi = if from_zero && hi == 0.0 && lo < 0.0 {
            0.0
        } else {
            hi + pad
        };
        Axis::Linear((lo..hi).into())
    }

    fn is_log(&self) -> bool {
        matches!(self, Axis::Log { .. })
    }

    /// The value at the axis' low end (where bars start on a log axis).
    fn low(&self) -> f64 {
        self.range().start
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = match self {
            Axis::Linear(r) => return r.map(value, limit),
            Axis::Log { lo, hi } => (value.log10() - f64::from(*lo)) / f64::from(hi - lo),
            Axis::Groups(n) => value / (*n).max(1) as f64,
        };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let max = hint.max_num_points().max(1);
        match self {
            // plotters' default of ten light lines per step crowds a
            // linear axis; one between bold lines is enough to read a bar.
            Axis::Linear(r) if hint.weight().allow_light_points() => {
                r.key_points(LightPoints::new(hint.bold_points(), hint.bold_points() * 2))
            }
            Axis::Linear(r) => r.key_points(hint),
            Axis::Groups(n) => (0..*n).map(|i| i as f64 + 0.5).take(max).collect(),
            Axis::Log { lo, hi } => {
                let decades = (hi - lo) as usize;
                if hint.weight().allow_light_points() {
                    // 2..9 within each decade, when they fit.
                    if decades * 8 > max {
                        return Vec::new();
                    }
                    return (*lo..*hi)
                        .flat_map(|e| (2..10).map(move |m| f64::from(m) * 10f64.powi(e)))
                        .collect();
                }
                let step = decades.div_ceil(max).max(1);
                (*lo..=*hi).step_by(step).map(|e| 10f64.powi(e)).collect()
            }
        }
    }

    fn range(&self) -> Range<f64> {
        match self {
            Axis::Linear(r) => r.range(),
            Axis::Log { lo, hi } => 10f64.powi(*lo)..10f64.powi(*hi),
            Axis::Groups(n) => 0.0..(*n).max(1) as f64,
        }
    }
}

/// A tick label: three significant figures at most, with k/M/G for large
/// values, so decades read 1, 10, 100, 1k, 10k and rates 1.5M.
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if a < 1e-3 {
        return format!("{v:.0e}");
    }
    let decimals = if scaled.abs() >= 100.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else if a >= 1e-2 {
        2
    } else {
        3
    };
    let text = format!("{scaled:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{suffix}")
}

/// Points that cannot be drawn, counted per series for the caption.
#[derive(Default)]
struct Dropped {
    count: usize,
    from: Vec<String>,
}

impl Dropped {
    fn note(&self, why: &str) -> Option<String> {
        (self.count > 0).then(|| {
            format!(
                "{} {} {why}, left out: {}.",
                self.count,
                if self.count == 1 { "value" } else { "values" },
                self.from.join(", ")
            )
        })
    }
}

/// Why a dropped value could not be drawn, for the caption.
fn drop_reason(log_x: bool, log_y: bool) -> &'static str {
    if log_x || log_y {
        "at or below zero on a log axis, or not finite"
    } else {
        "not finite"
    }
}

fn drawable(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn err(path: &Path) -> impl Fn(String) -> String + '_ {
    move |e| format!("cannot draw {}: {e}", path.display())
}

/// Splits the caption into lines that fit the width.
fn caption_lines(caption: &str, notes: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in caption.lines().chain(notes.iter().map(String::as_str)) {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > CAPTION_CHARS {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// The canvas: the plot on the left, the legend on the right, the caption
/// under both. Returns (root, plot, legend, caption) areas.
fn canvas<'a>(path: &'a Path, caption: &[String]) -> Result<[Area<'a>; 4], String> {
    let height = PLOT_HEIGHT + 12 + CAPTION_LINE * caption.len() as u32 + 8;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path)(e.to_string()))?;
    let (upper, lower) = root.split_vertically(PLOT_HEIGHT);
    let (plot, legend) = upper.split_horizontally(WIDTH - LEGEND_WIDTH);
    Ok([root, plot, legend, lower])
}

fn draw_caption(area: &Area, lines: &[String]) -> Result<(), String> {
    let style =
        TextStyle::from((FONT, CAPTION_FONT).into_font()).color(&RGBColor(0x44, 0x44, 0x44));
    for (i, line) in lines.iter().enumerate() {
        let y = 6 + (i as u32 * CAPTION_LINE) as i32;
        area.draw_text(line, &style, (12, y))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn draw_marker(area: &Area, marker: Marker, at: (i32, i32), look: Look) -> Result<(), String> {
    let style = if look.peer {
        ShapeStyle::from(&look.colour).stroke_width(2)
    } else {
        look.colour.filled()
    };
    let (x, y) = at;
    let r = 4;
    let result = match marker {
        Marker::Circle => area.draw(&Circle::new(at, r, style)),
        Marker::Square => area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style)),
        Marker::Triangle => area.draw(&TriangleMarker::new(at, r + 1, style)),
        Marker::Diamond => {
            let corners = vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ];
            if look.peer {
                let mut closed = corners.clone();
                closed.push(corners[0]);
                area.draw(&PathElement::new(closed, style))
            } else {
                area.draw(&Polygon::new(corners, style))
            }
        }
        Marker::Cross => area.draw(&Cross::new(
            at,
            r,
            ShapeStyle::from(&look.colour).stroke_width(2),
        )),
    };
    result.map_err(|e| e.to_string())
}

/// A polyline in pixels: solid for a model, dashed for a Python peer.
fn draw_path(area: &Area, points: Vec<(i32, i32)>, look: Look) -> Result<(), String> {
    let style = ShapeStyle::from(&look.colour).stroke_width(2);
    let result = if look.peer {
        area.draw(&DashedPathElement::new(points, 7, 4, style))
    } else {
        area.draw(&PathElement::new(points, style))
    };
    result.map_err(|e| e.to_string())
}

/// The legend: one row per label, in the order given, each with the
/// label's line and marker (`bars`: a filled square instead).
fn draw_legend(area: &Area, labels: &[&str], bars: bool) -> Result<(), String> {
    if labels.is_empty() {
        return Ok(());
    }
    let (_, height) = area.dim_in_pixel();
    let row = ((height as i32 - 60) / labels.len() as i32).clamp(8, 22);
    let font = (FONT, if row >= 16 { 13.0 } else { 10.0 }).into_font();
    let text = TextStyle::from(font).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, label) in labels.iter().enumerate() {
        let y = 40 + i as i32 * row;
        let look = look(label);
        if bars {
            bar_rect(area, [(8, y - 6), (36, y + 6)], look)?;
        } else {
            draw_path(area, vec![(6, y), (40, y)], look)?;
            draw_marker(area, look.marker, (23, y), look)?;
        }
        let shown: String = if label.chars().count() > 30 {
            label.chars().take(29).chain(['…']).collect()
        } else {
            label.to_string()
        };
        area.draw_text(&shown, &text, (48, y))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A bar's fill: the model's colour; for a peer, its twin's colour made
/// pale, with the full colour as outline (paired with the model, yet not
/// mistaken for it). The pale tone is mixed with white here rather than
/// drawn translucent, so grid lines do not show through the bar.
fn bar_fill(look: Look) -> RGBColor {
    if !look.peer {
        return look.colour;
    }
    let pale = |c: u8| c + (f64::from(255 - c) * 0.6) as u8;
    let RGBColor(r, g, b) = look.colour;
    RGBColor(pale(r), pale(g), pale(b))
}

fn bar_rect(area: &Area, corners: [(i32, i32); 2], look: Look) -> Result<(), String> {
    let fill = bar_fill(look).filled();
    area.draw(&Rectangle::new(corners, fill))
        .map_err(|e| e.to_string())?;
    if look.peer {
        area.draw(&Rectangle::new(
            corners,
            ShapeStyle::from(&look.colour).stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn no_data(area: &Area) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, 24.0).into_font())
        .color(&RGBColor(0x88, 0x88, 0x88))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2))
        .map_err(|e| e.to_string())
}

/// Draws `chart` into the SVG file at `path` (created or replaced).
pub fn line_chart(path: &Path, chart: &LineChart) -> Result<(), String> {
    let mut dropped = Dropped::default();
    let mut lines: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for s in chart.series {
        let mut points: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| drawable(x, chart.log_x) && drawable(y, chart.log_y))
            .collect();
        let lost = s.points.len() - points.len();
        if lost > 0 {
            dropped.count += lost;
            dropped.from.push(s.label.clone());
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push((&s.label, points));
    }
    let notes: Vec<String> = dropped
        .note(drop_reason(chart.log_x, chart.log_y))
        .into_iter()
        .collect();
    let caption = caption_lines(chart.caption, &notes);
    let [root, plot, legend, lower] = canvas(path, &caption)?;
    let e = err(path);

    let all = || lines.iter().flat_map(|(_, p)| p.iter());
    let x_axis = Axis::fit(all().map(|p| p.0), chart.log_x, false);
    let y_axis = Axis::fit(all().map(|p| p.1), chart.log_y, true);
    let mut ctx = ChartBuilder::on(&plot)
        .caption(chart.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|x| e(x.to_string()))?;
    let fmt = |v: &f64| tick(*v);
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(|x| e(x.to_string()))?;

    if lines.iter().all(|(_, p)| p.is_empty()) {
        no_data(&ctx.plotting_area().strip_coord_spec()).map_err(&e)?;
    }
    for (label, points) in &lines {
        let look = look(label);
        let pixels: Vec<(i32, i32)> = points.iter().map(|p| ctx.backend_coord(p)).collect();
        if pixels.len() > 1 {
            draw_path(&root, pixels.clone(), look).map_err(&e)?;
        }
        for at in pixels {
            draw_marker(&root, look.marker, at, look).map_err(&e)?;
        }
    }
    let labels: Vec<&str> = lines.iter().map(|(l, _)| *l).collect();
    draw_legend(&legend, &labels, false).map_err(&e)?;
    draw_caption(&lower, &caption).map_err(&e)?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Draws `chart` into the SVG file at `path` (created or replaced).
pub fn bar_chart(path: &Path, chart: &BarChart) -> Result<(), String> {
    let mut dropped = Dropped::default();
    let mut groups: Vec<(&str, Vec<(&str, f64)>)> = Vec::new();
    // Every model that has a bar anywhere, in order of first appearance,
    // for the legend.
    let mut models: Vec<&str> = Vec::new();
    for g in chart.groups {
        let mut bars = Vec::new();
        for (model, v) in &g.bars {
            if drawable(*v, chart.log_y) {
                bars.push((model.as_str(), *v));
                if !models.contains(&model.as_str()) {
                    models.push(model);
                }
            } else {
                dropped.count += 1;
                dropped.from.push(format!("{model} in {}", g.label));
            }
        }
        groups.push((&g.label, bars));
    }

    // Group names go under the axis; when they would overlap, they are
    // numbered there and spelt out in the caption.
    let slot = (WIDTH - LEGEND_WIDTH - 100) as usize / groups.len().max(1);
    let longest = groups
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let numbered = longest * 7 > slot;
    let mut notes: Vec<String> = Vec::new();
    if numbered {
        let key: Vec<String> = groups
            .iter()
            .enumerate()
            .map(|(i, (l, _))| format!("{}: {l}", i + 1))
            .collect();
        notes.push(format!("Groups: {}.", key.join("; ")));
    }
    notes.extend(dropped.note(drop_reason(false, chart.log_y)));
    let caption = caption_lines(chart.caption, &notes);
    let [root, plot, legend, lower] = canvas(path, &caption)?;
    let e = err(path);

    let values = groups.iter().flat_map(|(_, b)| b.iter().map(|(_, v)| *v));
    let y_axis = Axis::fit(values, chart.log_y, true);
    let base = if y_axis.is_log() { y_axis.low() } else { 0.0 };
    let mut ctx = ChartBuilder::on(&plot)
        .caption(chart.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(Axis::Groups(groups.len()), y_axis)
        .map_err(|x| e(x.to_string()))?;
    let group_name = |v: &f64| {
        let i = v.floor() as usize;
        match groups.get(i) {
            Some(_) if numbered => (i + 1).to_string(),
            Some((label, _)) => label.to_string(),
            None => String::new(),
        }
    };
    let fmt = |v: &f64| tick(*v);
    ctx.configure_mesh()
        .disable_x_mesh()
        .y_desc(chart.y_label)
        .x_label_formatter(&group_name)
        .y_label_formatter(&fmt)
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xcc, 0xcc, 0xcc))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(|x| e(x.to_string()))?;

    if groups.iter().all(|(_, b)| b.is_empty()) {
        no_data(&ctx.plotting_area().strip_coord_spec()).map_err(&e)?;
    }
    for (g, (_, bars)) in groups.iter().enumerate() {
        // The group's own bars side by side over 80% of its width: a model
        // missing from a scenario leaves no hole, its colour says who is who.
        let width = 0.8 / bars.len().max(1) as f64;
        for (j, (model, v)) in bars.iter().enumerate() {
            let x0 = g as f64 + 0.1 + j as f64 * width;
            let top_left = ctx.backend_coord(&(x0, *v));
            let bottom_right = ctx.backend_coord(&(x0 + width * 0.9, base));
            let right = bottom_right.0.max(top_left.0 + 1);
            bar_rect(&root, [top_left, (right, bottom_right.1)], look(model)).map_err(&e)?;
        }
    }
    draw_legend(&legend, &models, true).map_err(&e)?;
    draw_caption(&lower, &caption).map_err(&e)?;
    root.present().map_err(|x| e(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh file path under the system's temp dir, unique per test and
    /// process, so parallel tests and reruns do not read each other's output.
    fn out(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("echo-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.svg"));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// Well-formedness as far as these files need it: every tag closes in
    /// order, attributes are quoted, text has no raw `<` or stray `&`.
    /// Returns the root element's opening tag and every `<text>` content.
    fn parse(svg: &str) -> (String, Vec<String>) {
        let body = svg.trim_start();
        let body = match body.strip_prefix("<?xml") {
            Some(rest) => &rest[rest.find("?>").expect("unterminated declaration") + 2..],
            None => body,
        };
        let mut stack: Vec<String> = Vec::new();
        let mut texts = Vec::new();
        let mut root = None;
        let mut rest = body;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            assert!(!text.contains('>'), "stray '>' in text {text:?}");
            for (i, _) in text.match_indices('&') {
                let entity = &text[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "unescaped '&' in {text:?}"
                );
            }
            if stack.last().is_some_and(|t| t == "text") && !text.trim().is_empty() {
                texts.push(text.trim().to_string());
            }
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in <{tag}>"
            );
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.trim()),
                    "mismatched </{name}>"
                );
            } else if !tag.starts_with('!') {
                let name = tag
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('/');
                assert!(!name.is_empty(), "empty tag");
                if root.is_none() {
                    root = Some(tag.to_string());
                }
                if !tag.ends_with('/') {
                    stack.push(name.to_string());
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed elements {stack:?}");
        assert!(rest.trim().is_empty(), "content after the root element");
        (root.expect("no element"), texts)
    }

    fn render_lines(name: &str, chart: &LineChart) -> (String, String, Vec<String>) {
        let path = out(name);
        line_chart(&path, chart).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let (root, texts) = parse(&svg);
        (svg, root, texts)
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.to_string(),
            points: points.to_vec(),
        }
    }

    const PYTHON: [&str; 5] = [
        "python-forking",
        "python-threading",
        "python-select",
        "python-selectors",
        "python-asyncio",
    ];

    fn colour_hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn nineteen_series_on_log_axes_each_labelled_and_drawn() {
        let conns: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
        let all: Vec<Series> = MODELS
            .iter()
            .chain(PYTHON.iter())
            .enumerate()
            .map(|(i, m)| {
                let pts: Vec<(f64, f64)> = conns
                    .iter()
                    .map(|&c| (c, 1e4 * (i + 1) as f64 * c.sqrt()))
                    .collect();
                series(m, &pts)
            })
            .collect();
        let (svg, root, texts) = render_lines(
            "nineteen",
            &LineChart {
                title: "throughput against connections",
                x_label: "connections",
                y_label: "echoes per second",
                log_x: true,
                log_y: true,
                series: &all,
                caption: "echo-bench all --full & more\non a 2-core machine",
            },
        );
        assert!(root.starts_with("svg "), "root is <{root}>");
        assert!(root.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(root.contains("viewBox="));
        for s in &all {
            assert!(
                texts.iter().any(|t| t == &s.label),
                "no legend entry for {}",
                s.label
            );
        }
        // One solid line per model (plus the legend's), dashed ones for the
        // peers drawn as many short polylines.
        assert!(svg.matches("<polyline").count() >= 2 * MODELS.len());
        // Whole decades on both axes, spelt with suffixes.
        for t in ["1", "10", "100", "1k", "10k"] {
            assert!(texts.iter().any(|x| x == t), "no tick {t} in {texts:?}");
        }
        assert!(
            texts
                .iter()
                .any(|t| t.contains("echo-bench all --full &amp; more"))
        );
        assert!(texts.iter().any(|t| t == "on a 2-core machine"));
        assert!(texts.iter().any(|t| t == "connections"));
        assert!(!texts.iter().any(|t| t.contains("left out")));
        for m in MODELS {
            assert!(
                svg.contains(&colour_hex(look(m).colour)),
                "{m}'s colour is not drawn"
            );
        }
    }

    #[test]
    fn values_a_log_axis_cannot_hold_are_dropped_and_named_in_the_caption() {
        let s = [
            series("epoll", &[(1.0, 5.0), (10.0, 0.0), (100.0, 7.0)]),
            series("poll", &[(-1.0, 3.0), (10.0, f64::NAN), (100.0, 2.0)]),
            series("select", &[(1.0, 1.0), (10.0, 2.0)]),
        ];
        let (_, _, texts) = render_lines(
            "dropped",
            &LineChart {
                title: "p99",
                x_label: "connections",
                y_label: "ms",
                log_x: true,
                log_y: true,
                series: &s,
                caption: "cmd",
            },
        );
        let note = texts
            .iter()
            .find(|t| t.contains("left out"))
            .expect("no note");
        assert!(note.starts_with("3 values"), "{note}");
        assert!(note.contains("epoll, poll"), "{note}");
        assert!(!note.contains("select"), "{note}");
    }

    #[test]
    fn zero_is_fine_on_a_linear_axis() {
        let s = [series("epoll", &[(1.0, 0.0), (2.0, 4.0)])];
        let (_, _, texts) = render_lines(
            "linear",
            &LineChart {
                title: "t",
                x_label: "x",
                y_label: "y",
                log_x: false,
                log_y: false,
                series: &s,
                caption: "",
            },
        );
        assert!(
            !texts
                .iter()
                .any(|t| t.contains("left out") || t == "no data")
        );
        assert!(texts.iter().any(|t| t == "0"));
    }

    #[test]
    fn empty_input_draws_a_chart_that_says_no_data() {
        for (name, s) in [
            ("empty", vec![]),
            (
                "all-dropped",
                vec![series("tokio", &[(0.0, 1.0), (1.0, -2.0)])],
            ),
        ] {
            let (_, root, texts) = render_lines(
                name,
                &LineChart {
                    title: "memory",
                    x_label: "connections",
                    y_label: "bytes",
                    log_x: true,
                    log_y: true,
                    series: &s,
                    caption: "cmd",
                },
            );
            assert!(root.starts_with("svg "));
            assert!(texts.iter().any(|t| t == "no data"), "{name}: {texts:?}");
            assert!(texts.iter().any(|t| t == "memory"));
        }
        let path = out("empty-bars");
        bar_chart(
            &path,
            &BarChart {
                title: "cpu",
                y_label: "µs",
                log_y: false,
                groups: &[],
                caption: "",
            },
        )
        .unwrap();
        let (_, texts) = parse(&std::fs::read_to_string(&path).unwrap());
        assert!(texts.iter().any(|t| t == "no data"));
    }

    fn group(label: &str, bars: &[(&str, f64)]) -> BarGroup {
        BarGroup {
            label: label.to_string(),
            bars: bars.iter().map(|(m, v)| (m.to_string(), *v)).collect(),
        }
    }

    fn attr<'s>(tag: &'s str, name: &str) -> Option<&'s str> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[at..at + tag[at..].find('"')?])
    }

    /// The fill and height of every `<rect>` drawn, in order.
    fn rects(svg: &str) -> Vec<(String, f64)> {
        svg.match_indices("<rect")
            .filter_map(|(i, _)| {
                let tag = &svg[i..i + svg[i..].find('>').unwrap()];
                let height = attr(tag, "height")?.parse().ok()?;
                Some((attr(tag, "fill")?.to_string(), height))
            })
            .collect()
    }

    fn rect_fills(svg: &str) -> Vec<String> {
        rects(svg).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn bars_keep_one_colour_per_model_across_charts() {
        let a = [
            group(
                "1 conn",
                &[("iterative", 3.0), ("epoll", 2.0), ("python-asyncio", 9.0)],
            ),
            group("100 conns", &[("epoll", 4.0), ("python-asyncio", 20.0)]),
        ];
        // Another chart, another order, a subset: the same colours.
        let b = [group("idle", &[("python-asyncio", 1.0), ("epoll", 0.5)])];
        let mut fills = Vec::new();
        for (name, groups) in [("bars-a", &a[..]), ("bars-b", &b[..])] {
            let path = out(name);
            bar_chart(
                &path,
                &BarChart {
                    title: "cpu per echo",
                    y_label: "µs",
                    log_y: false,
                    groups,
                    caption: "c",
                },
            )
            .unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let (_, texts) = parse(&svg);
            for l in ["epoll", "python-asyncio", "cpu per echo"] {
                assert!(texts.iter().any(|t| t == l), "{name}: no {l}");
            }
            fills.push(rect_fills(&svg));
        }
        let epoll = colour_hex(look("epoll").colour);
        let tokio = colour_hex(bar_fill(look("python-asyncio")));
        assert_ne!(
            tokio,
            colour_hex(look("tokio").colour),
            "a peer's bar is pale"
        );
        // Chart a: three bars + two + three legend swatches (the peer's
        // swatch and bars add an outline rect with fill="none").
        for f in &fills {
            assert!(f.contains(&epoll) && f.contains(&tokio), "{f:?}");
        }
        assert_eq!(fills[0].iter().filter(|f| **f == epoll).count(), 3);
        assert_eq!(fills[1].iter().filter(|f| **f == epoll).count(), 2);
        assert!(fills[0].contains(&colour_hex(look("iterative").colour)));
        assert!(!fills[1].contains(&colour_hex(look("iterative").colour)));
    }

    #[test]
    fn bar_values_a_log_axis_cannot_hold_are_named_and_long_groups_numbered() {
        let groups: Vec<BarGroup> = (0..6)
            .map(|i| {
                group(
                    &format!("scenario {i}: 1000 connections, 64 KiB, open loop"),
                    &[("epoll", if i == 2 { 0.0 } else { 10.0 }), ("mio", 100.0)],
                )
            })
            .collect();
        let path = out("bars-log");
        bar_chart(
            &path,
            &BarChart {
                title: "t",
                y_label: "y",
                log_y: true,
                groups: &groups,
                caption: "c",
            },
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let (_, texts) = parse(&svg);
        // Five epoll bars at exactly 10 (a whole decade) and six mio bars,
        // plus a legend swatch each: all with a height, none flat.
        let epoll = colour_hex(look("epoll").colour);
        let bars: Vec<f64> = rects(&svg)
            .into_iter()
            .filter(|(f, _)| *f == epoll)
            .map(|(_, h)| h)
            .collect();
        assert_eq!(bars.len(), 5 + 1, "{bars:?}");
        assert!(bars.iter().all(|h| *h >= 10.0), "{bars:?}");
        let joined = texts.join(" ");
        assert!(joined.contains("1 value at or below zero"), "{joined}");
        assert!(joined.contains("epoll in scenario 2"), "{joined}");
        assert!(joined.contains("Groups: 1: scenario 0"), "{joined}");
        for t in ["1", "6", "10", "100"] {
            assert!(texts.iter().any(|x| x == t), "no tick {t}");
        }
    }

    #[test]
    fn a_path_that_cannot_be_written_is_a_one_line_error() {
        let path = out("missing").join("no-such-dir").join("x.svg");
        let e = line_chart(
            &path,
            &LineChart {
                title: "t",
                x_label: "x",
                y_label: "y",
                log_x: false,
                log_y: false,
                series: &[series("epoll", &[(1.0, 1.0)])],
                caption: "",
            },
        )
        .unwrap_err();
        assert!(
            e.starts_with("cannot draw ") && e.contains("no-such-dir"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn every_model_has_its_own_look_and_each_peer_its_twins() {
        let looks: Vec<Look> = MODELS.iter().map(|m| look(m)).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(!a.peer);
            for b in &looks[i + 1..] {
                assert_ne!(a.colour, b.colour);
            }
        }
        assert_eq!(look("echo-thread-pool"), look("thread-pool"));
        for (peer, twin) in PYTHON.iter().zip([
            "fork-per-client",
            "thread-per-client",
            "select",
            "mio",
            "tokio",
        ]) {
            let (p, t) = (look(peer), look(twin));
            assert!(p.peer, "{peer}");
            assert_eq!((p.colour, p.marker), (t.colour, t.marker), "{peer}");
        }
        for (label, twin) in [
            ("python ThreadingTCPServer", "thread-per-client"),
            ("twins/selectors_echo.py", "mio"),
            ("socketserver_echo.py --mode forking", "fork-per-client"),
            ("py-asyncio", "tokio"),
        ] {
            let (p, t) = (look(label), look(twin));
            assert!(p.peer && p.colour == t.colour, "{label}");
        }
        assert_eq!(look("something else"), look("something else"));
    }

    #[test]
    fn ticks_read_as_people_write_them() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (10.0, "10"),
            (1000.0, "1k"),
            (15000.0, "15k"),
            (2.5e6, "2.5M"),
            (3e9, "3G"),
            (0.25, "0.25"),
            (0.001, "0.001"),
            (1e-5, "1e-5"),
            (-2000.0, "-2k"),
        ];
        for (v, want) in cases {
            assert_eq!(tick(v), want, "{v}");
        }
    }
}
