//! `loss.png`: the training loss (raw and smoothed) and the evaluations against the step,
//! drawn with plotters' bitmap backend and an embedded font (no system library).

use super::record::MetricsRecord;
use super::smooth::{ema, LOSS_SMOOTHING};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::ops::Range;
use std::sync::Once;

/// Width and height of `loss.png` in pixels.
pub const LOSS_PLOT_SIZE: (u32, u32) = (960, 720);

/// Raw loss: a thin light line of this blue (matplotlib's `tab:blue`) at 35% opacity.
const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// Evaluation colors, in the order of the metrics (matplotlib's tab10 after blue).
const EVAL_COLORS: [RGBColor; 4] = [
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];
const FONT: &str = "sans-serif";

/// plotters' `ab_glyph` text needs its fonts registered once: DejaVu Sans, compiled in.
fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        ok = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .is_ok();
    });
    ok.then_some(())
        .ok_or_else(|| "the embedded DejaVu Sans font cannot be read".to_string())
}

/// Draws `records` (as [`MetricsLog`](crate::MetricsLog) holds them, or as read back from a
/// `metrics.jsonl` with [`MetricsRecord::from_json_line`]) and returns the PNG file's bytes
/// (8-bit RGB, `size` = (width, height) pixels, white background).
///
/// Top panel, loss against step: each step's training `loss` as a thin light line (35%
/// opacity) and its TensorBoard smoothing ([`ema`] with weight [`LOSS_SMOOTHING`]) as a bold
/// line, both blue `#1f77b4`; evaluations' `eval_loss`, when any, as orange points joined by
/// a line. Bottom panel, when an evaluation has any other metric (`eval_accuracy`,
/// `eval_perplexity`, ...): each of them against step, in matplotlib's tab10 colors after blue.
/// Axis labels (the bottom panel's y axis named after its metric when it has one) and a
/// legend on each panel, in the corner its curves cross least. Skipped steps (non-finite loss) are left out.
///
/// # Errors
/// The drawing or PNG encoding failed (a message saying which).
pub fn plot_metrics(records: &[MetricsRecord], size: (u32, u32)) -> Result<Vec<u8>, String> {
    register_font()?;
    let (w, h) = size;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    draw(records, &mut rgb, size).map_err(|e| format!("drawing the metrics failed: {e}"))?;
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| format!("encoding the PNG failed: {e}"))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| format!("encoding the PNG failed: {e}"))?;
    }
    Ok(png_bytes)
}

/// The curves of the figure, read from the records.
struct Curves {
    steps: Vec<f64>,
    loss: Vec<f64>,
    smoothed: Vec<f64>,
    /// Evaluation metrics by name, in order of first appearance: (step, value) points.
    evals: Vec<(String, Vec<(f64, f64)>)>,
}

fn curves(records: &[MetricsRecord]) -> Curves {
    let (mut steps, mut loss) = (Vec::new(), Vec::new());
    let mut evals: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in records {
        match r {
            MetricsRecord::Train(t) => {
                steps.push(t.step as f64);
                loss.push(t.loss);
            }
            MetricsRecord::Eval(e) => {
                for (name, v) in &e.metrics {
                    if !v.is_finite() {
                        continue;
                    }
                    let point = (e.step as f64, *v);
                    match evals.iter_mut().find(|(n, _)| n == name) {
                        Some((_, pts)) => pts.push(point),
                        None => evals.push((name.clone(), vec![point])),
                    }
                }
            }
        }
    }
    let smoothed = ema(&loss, LOSS_SMOOTHING);
    Curves {
        steps,
        loss,
        smoothed,
        evals,
    }
}

/// `lo..hi` around the values, 5% padding; `0..1` when there are none.
fn span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad)..(hi + pad)
}

fn finite(xs: &[f64], ys: &[f64]) -> Vec<(f64, f64)> {
    xs.iter()
        .zip(ys)
        .filter(|(_, y)| y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect()
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(records: &[MetricsRecord], rgb: &mut [u8], size: (u32, u32)) -> DrawResult {
    let c = curves(records);
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (eval_loss, others): (Vec<_>, Vec<_>) =
        c.evals.iter().partition(|(name, _)| name == "eval_loss");
    let all_steps = c
        .steps
        .iter()
        .copied()
        .chain(c.evals.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let x = span(all_steps.chain([0.0]));
    let (top, bottom) = if others.is_empty() {
        (root.clone(), None)
    } else {
        let (t, b) = root.split_vertically(size.1 * 3 / 5);
        (t, Some(b))
    };

    let loss_y = span(
        c.loss
            .iter()
            .copied()
            .chain(eval_loss.iter().flat_map(|(_, p)| p.iter().map(|q| q.1))),
    );
    let mut chart = ChartBuilder::on(&top)
        .caption("loss", (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.clone(), loss_y)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("loss")
        .label_style((FONT, 14))
        .draw()?;
    let raw = ShapeStyle::from(BLUE.mix(0.35)).stroke_width(1);
    chart
        .draw_series(LineSeries::new(finite(&c.steps, &c.loss), raw))?
        .label("loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw));
    let bold = ShapeStyle::from(BLUE).stroke_width(3);
    chart
        .draw_series(LineSeries::new(finite(&c.steps, &c.smoothed), bold))?
        .label(format!("loss, smoothed (EMA {LOSS_SMOOTHING})"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], bold));
    for (name, pts) in &eval_loss {
        eval_series(&mut chart, name, pts, EVAL_COLORS[0])?;
    }
    let loss_points: Vec<(f64, f64)> = finite(&c.steps, &c.loss)
        .into_iter()
        .chain(eval_loss.iter().flat_map(|(_, p)| p.iter().copied()))
        .collect();
    draw_legend(&mut chart, &loss_points)?;

    if let Some(bottom) = bottom {
        let y = span(others.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
        // One metric: its own name on the axis; several: the legend names them.
        let y_desc = match others.as_slice() {
            [(name, _)] => name.clone(),
            _ => "value".to_string(),
        };
        let mut chart = ChartBuilder::on(&bottom)
            .caption("evaluation", (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .draw()?;
        for (i, (name, pts)) in others.iter().enumerate() {
            eval_series(
                &mut chart,
                name,
                pts,
                EVAL_COLORS[(i + 1) % EVAL_COLORS.len()],
            )?;
        }
        let points: Vec<(f64, f64)> = others.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        draw_legend(&mut chart, &points)?;
    }
    root.present()?;
    Ok(())
}

type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One evaluation metric: a line through its points, marked, with a legend entry.
fn eval_series(chart: &mut Chart, name: &str, pts: &[(f64, f64)], color: RGBColor) -> DrawResult {
    let s = ShapeStyle::from(color).stroke_width(2);
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), s).point_size(4))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], s));
    Ok(())
}

/// The legend in the corner of the plot that the curves cross least, so it hides no data.
fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, points: &[(f64, f64)]) -> DrawResult {
    let position = emptiest_corner(chart.x_range(), chart.y_range(), points);
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    Ok(())
}

/// Of the four corner boxes (the outer 40% of each axis), the one holding the fewest points;
/// ties go to upper right, then upper left, lower right, lower left.
fn emptiest_corner(x: Range<f64>, y: Range<f64>, points: &[(f64, f64)]) -> SeriesLabelPosition {
    let frac = |v: f64, r: &Range<f64>| (v - r.start) / (r.end - r.start).max(f64::MIN_POSITIVE);
    let count = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|(px, py)| {
                let (fx, fy) = (frac(*px, &x), frac(*py, &y));
                (if right { fx >= 0.6 } else { fx <= 0.4 })
                    && (if upper { fy >= 0.6 } else { fy <= 0.4 })
            })
            .count()
    };
    [
        (SeriesLabelPosition::UpperRight, count(true, true)),
        (SeriesLabelPosition::UpperLeft, count(false, true)),
        (SeriesLabelPosition::LowerRight, count(true, false)),
        (SeriesLabelPosition::LowerLeft, count(false, false)),
    ]
    .into_iter()
    .min_by_key(|(_, n)| *n)
    .map(|(p, _)| p)
    .unwrap_or(SeriesLabelPosition::UpperRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A falling loss runs from the upper left to the lower right: the upper right is free.
    /// A rising accuracy runs from the lower left to the upper right: the upper left is free.
    #[test]
    fn legend_goes_where_the_curve_is_not() {
        let falling: Vec<_> = (0..10).map(|i| (i as f64, 10.0 - i as f64)).collect();
        let rising: Vec<_> = (0..10).map(|i| (i as f64, i as f64)).collect();
        let pos = |pts: &[(f64, f64)]| emptiest_corner(0.0..9.0, 0.0..10.0, pts);
        assert!(matches!(pos(&falling), SeriesLabelPosition::UpperRight));
        assert!(matches!(pos(&rising), SeriesLabelPosition::UpperLeft));
        // A curve crowding the upper corners leaves the lower right (first lower one) free.
        let high: Vec<_> = (0..10).map(|i| (i as f64, 9.5)).collect();
        assert!(matches!(pos(&high), SeriesLabelPosition::LowerRight));
    }
}
