//! The chart of `make bench`, `latest.png` (plotters, text in DejaVu Sans
//! loaded at run time: no system font libraries).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::analysis::Spread;
use crate::cost_model::report::CostModel;
use crate::measurement::machine::Machine;
use crate::settings::*;
use crate::variants::Variant;

fn load_font() -> Result<(), String> {
    let bytes = fs::read(FONT_PATH).map_err(|e| format!("read {FONT_PATH}: {e}"))?;
    // plotters keeps fonts for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{FONT_PATH} is not a usable font"))
}

/// Up to `max` points of the empirical CDF of sorted values: (value, share ≤ it).
fn cdf_points(sorted: &[u64], max: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(max.max(1)).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i].max(1) as f64, (i + 1) as f64 / n as f64))
        .collect();
    pts.push((sorted[n - 1].max(1) as f64, 1.0));
    pts
}

/// Two panels: one slow call's tokens as they arrived (per variant), and
/// the CDF of the per-event delay at moderate load; below them, with a
/// cost model, each set-up's per-call and per-event cost above plain Envoy.
pub fn draw_chart(
    path: &Path,
    timelines: &BTreeMap<Variant, Vec<u64>>,
    delays: &BTreeMap<Variant, Vec<u64>>,
    cost: Option<&CostModel>,
    machine: &Machine,
) -> Result<(), String> {
    load_font()?;
    let height = if cost.is_some() { 1240 } else { 720 };
    let root = BitMapBackend::new(path, (1600, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "streamtap bench — Envoy {} (1 worker), {} × {}, {}",
        machine.envoy_release(),
        machine.nproc,
        machine.cpu_model,
        machine.date_utc,
    );
    let root = root.titled(&title, ("sans-serif", 26)).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(680);
    let (left, right) = top.split_horizontally(800);

    timeline_panel(&left, timelines)?;
    delay_panel(&right, delays)?;
    if let Some(model) = cost {
        let (left, right) = bottom.split_horizontally(800);
        let rows = |pick: fn(&crate::cost_model::report::CostSpreads) -> Option<&Spread>| {
            model
                .variants
                .iter()
                .filter_map(|v| {
                    let variant = Variant::from_key(v.key)?;
                    Some((variant, pick(v.above_plain.as_ref()?)?.clone()))
                })
                .collect::<Vec<_>>()
        };
        cost_panel(
            &left,
            "Cost model: Envoy CPU per call above plain Envoy (µs; median, min–max of the rounds)",
            &rows(|c| c.per_call_us.as_ref()),
        )?;
        cost_panel(
            &right,
            "Cost model: Envoy CPU per event above plain Envoy (µs; median, min–max)",
            &rows(|c| c.per_event_us.as_ref()),
        )?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn e(err: &dyn std::fmt::Display) -> String {
    format!("chart: {err}")
}

/// The series' labels, boxed, at `position`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|x| e(&x))
}

/// Panel 1: token arrival timelines of one slow call.
fn timeline_panel(left: &Area, timelines: &BTreeMap<Variant, Vec<u64>>) -> Result<(), String> {
    let max_ms = timelines
        .values()
        .flat_map(|t| t.iter())
        .map(|&us| us as f64 / 1000.0)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.05;
    let mut chart = ChartBuilder::on(left)
        .caption(
            format!(
                "One call, {TIMELINE_TOKENS} tokens {TIMELINE_INTERVAL_MS} ms apart: when each token arrived (lines coincide)"
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_ms, 0f64..(TIMELINE_TOKENS as f64 + 1.0))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("time since the request was sent (ms)")
        .y_desc("token index")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|x| e(&x))?;
    // Wide lines under narrow ones: where the lines coincide, every colour shows.
    for (v, width) in [
        (Variant::Buffering, 2),
        (Variant::Streamtap, 7),
        (Variant::Plain, 4),
        (Variant::Direct, 1),
    ] {
        let Some(tl) = timelines.get(&v) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = tl
            .iter()
            .enumerate()
            .map(|(i, &us)| (us as f64 / 1000.0, (i + 1) as f64))
            .collect();
        let color = v.color();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))
            .map_err(|x| e(&x))?
            .label(v.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width.max(2)))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 2 + width / 2, color.filled())),
            )
            .map_err(|x| e(&x))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;

    Ok(())
}

/// Panel 2: CDF of per-event delivery delay at moderate load.
fn delay_panel(right: &Area, delays: &BTreeMap<Variant, Vec<u64>>) -> Result<(), String> {
    let mut sorted: BTreeMap<Variant, Vec<u64>> = BTreeMap::new();
    for (v, d) in delays {
        let mut d = d.clone();
        d.sort_unstable();
        sorted.insert(*v, d);
    }
    let lo = 10f64;
    let hi = sorted
        .values()
        .filter_map(|d| d.last())
        .map(|&x| x as f64)
        .fold(1000.0, f64::max)
        * 1.5;
    let mut chart = ChartBuilder::on(right)
        .caption(
            format!(
                "Per-event delivery delay, {MODERATE_CONNECTIONS} streams × {EVENTS_PER_CALL} events {MODERATE_INTERVAL_MS} ms apart (CDF)"
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("delay: arrival at the client − the mock's write (µs, log scale)")
        .y_desc("share of events")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&|x| {
            if *x >= 1000.0 {
                format!("{:.0}k", x / 1000.0)
            } else {
                format!("{x:.0}")
            }
        })
        .draw()
        .map_err(|x| e(&x))?;
    for (v, d) in &sorted {
        let pts: Vec<(f64, f64)> = cdf_points(d, 1500)
            .into_iter()
            .map(|(x, y)| (x.max(lo), y))
            .collect();
        let color = v.color();
        let width = if *v == Variant::Streamtap { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))
            .map_err(|x| e(&x))?
            .label(v.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

/// A cost model panel: one bar per set-up (the median over the rounds)
/// with its min–max as a whisker.
fn cost_panel(area: &Area, caption: &str, rows: &[(Variant, Spread)]) -> Result<(), String> {
    let lo = rows.iter().map(|(_, s)| s.min).fold(0.0, f64::min) * 1.1;
    let hi = rows.iter().map(|(_, s)| s.max).fold(0.0, f64::max).max(1.0) * 1.1;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(270)
        .build_cartesian_2d(lo..hi, (0..n).into_segmented())
        .map_err(|x| e(&x))?;
    let label = |i: usize| rows.get(i).map_or("", |(v, _)| v.label());
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => label(*i).to_string(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (variant, spread)) in rows.iter().enumerate() {
        let color = variant.color();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (spread.median, SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.7).filled(),
            )))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (spread.min, SegmentValue::CenterOf(i)),
                    (spread.max, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            )))
            .map_err(|x| e(&x))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_points_end_at_one_and_are_bounded() {
        let v: Vec<u64> = (1..=10_000).collect();
        let pts = cdf_points(&v, 100);
        assert!(pts.len() <= 102);
        assert_eq!(pts.last(), Some(&(10_000.0, 1.0)));
        assert!(pts.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 <= w[1].0));
        assert!(cdf_points(&[], 10).is_empty());
        assert_eq!(cdf_points(&[0], 10), vec![(1.0, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn draws_both_panels_when_the_font_is_there() {
        if !Path::new(FONT_PATH).is_file() {
            return; // `make bench` installs it; elsewhere there is no chart to draw
        }
        let machine = Machine {
            nproc: 2,
            cpu_model: "cpu".into(),
            kernel: "k".into(),
            mem_total_bytes: 1 << 30,
            envoy_version: "sha/1.40.0/Clean".into(),
            date_utc: "today".into(),
            clk_tck: 100,
            busy_cores_before_start: 0.0,
        };
        let series = |v: Variant, us: u64| (v, (1..=30).map(|i| i * us).collect::<Vec<u64>>());
        let timelines = [
            series(Variant::Plain, 50_000),
            series(Variant::Streamtap, 50_100),
        ]
        .into_iter()
        .collect();
        let delays = [series(Variant::Plain, 10), series(Variant::Streamtap, 12)]
            .into_iter()
            .collect();
        let path = std::env::temp_dir().join(format!("bench-chart-{}.png", std::process::id()));
        draw_chart(&path, &timelines, &delays, None, &machine).unwrap();
        let png = fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        // With a cost model: two more panels, below.
        let model = crate::cost_model::report::analyse(&synthetic_runs());
        assert!(model.variants.iter().any(|v| v.above_plain.is_some()));
        draw_chart(&path, &timelines, &delays, Some(&model), &machine).unwrap();
        let taller = fs::read(&path).unwrap();
        let _ = fs::remove_file(&path);
        assert!(taller.starts_with(b"\x89PNG"), "not a PNG");
        // The PNG header's height (bytes 20..24): the cost panels add rows.
        let height = |png: &[u8]| u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
        assert!(height(&taller) > height(&png));
    }

    /// Plain Envoy and streamtap over two rounds of the four shapes, CPU
    /// from known costs (streamtap: +50 µs per call, +1 per event).
    fn synthetic_runs() -> crate::cost_model::report::Runs {
        use crate::measurement::cost::{ShapeRun, SHAPES};
        let runs = |call: f64, event: f64| -> Vec<Vec<ShapeRun>> {
            (0..2)
                .map(|round| {
                    SHAPES
                        .iter()
                        .map(|shape| {
                            let calls = (shape.calls_per_connection * 100) as u64;
                            let events = calls * shape.events as u64;
                            let chunks = calls * shape.chunks_per_call() as u64;
                            ShapeRun {
                                shape: shape.name,
                                calls,
                                events,
                                chunks,
                                seconds: 2.0,
                                cpu_us: calls as f64 * (call + round as f64)
                                    + events as f64 * event
                                    + chunks as f64 * 25.0,
                                worker_busy: 0.5,
                                envoy_events_per_chunk: None,
                            }
                        })
                        .collect()
                })
                .collect()
        };
        [
            (Variant::Plain, runs(70.0, 2.5)),
            (Variant::Streamtap, runs(120.0, 3.5)),
        ]
        .into_iter()
        .collect()
    }
}
