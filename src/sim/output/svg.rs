//! The report as an SVG chart a person can read at a glance.
//!
//! Four panels share one time axis: connections and registered users; whether the route to the
//! federated domain is up; failed connection attempts per sample interval (the main failure
//! signal); instant messages per interval. Renewals, restarts, fixes and rebinds are vertical
//! lines through every panel, labelled in a band above the first one, each label on the first
//! row where it overlaps no other. Legends sit in a column to the right, outside the data. Lines
//! that can coincide (TLS connections and registered users are often equal) are drawn as a wide
//! pale band under a thin dark line, so neither hides the other. Everything comes from the
//! report's series and timeline.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::sim::Report;
use crate::sim::report::MomentKind;

const WIDTH: u32 = 1200;
const PLOT_WIDTH: u32 = 930;
const HEIGHT: u32 = 960;
/// Row boundaries (pixels from the top): title, marker labels, the four panels.
const ROWS: [i32; 5] = [44, 104, 404, 474, 704];
const LABEL_ROW: i32 = 16;

/// Renders the time series as SVG.
pub fn render(r: &Report) -> Result<String, String> {
    let mut svg = String::new();
    draw(r, &mut svg).map_err(|e| e.to_string())?;
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Error = Box<dyn std::error::Error>;

/// One entry of a legend: colour, stroke width, label.
struct Entry(RGBAColor, u32, String);

/// Per-interval values from the cumulative series.
struct PerInterval {
    t: f64,
    failed: u64,
    delivered: u64,
    timed_out: u64,
    queue_depth: u64,
}

fn per_interval(r: &Report) -> Vec<PerInterval> {
    let mut prev = (0, 0, 0);
    r.series
        .iter()
        .map(|s| {
            let failed: u64 = s.connect_failures.values().sum();
            let p = PerInterval {
                t: s.t as f64 / 60.0,
                failed: failed.saturating_sub(prev.0),
                delivered: s.delivered.saturating_sub(prev.1),
                timed_out: s.timed_out.saturating_sub(prev.2),
                queue_depth: s.queue_depth,
            };
            prev = (failed, s.delivered, s.timed_out);
            p
        })
        .collect()
}

fn draw(r: &Report, out: &mut String) -> Result<(), Error> {
    let minutes = (r.duration as f64 / 60.0).max(1.0);
    let interval = r
        .series
        .get(1)
        .map_or(60, |s| s.t.saturating_sub(r.series[0].t).max(1));
    let per = per_interval(r);
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(PLOT_WIDTH);
    let rows = left.split_by_breakpoints([] as [i32; 0], ROWS);
    rows[0].titled(
        &format!(
            "lcs-sim reproduce {} (seed {}): {} users, {} virtual minutes",
            r.scenario,
            r.seed,
            r.users,
            r.duration / 60
        ),
        ("sans-serif", 20),
    )?;
    let markers: Vec<(f64, &'static str)> = r
        .timeline
        .iter()
        .filter_map(|m| Some((m.t as f64 / 60.0, marker(m.kind)?)))
        .collect();
    let every = format!("per {interval} s interval");
    let mut legends = Vec::new();
    let x_pixels = connections_panel(&rows[2], r, minutes, &markers, &mut legends)?;
    marker_labels(&root, &markers, &x_pixels, ROWS[0] + 4)?;
    route_panel(&rows[3], r, minutes, &markers, &mut legends)?;
    failures_panel(&rows[4], &per, minutes, &markers, &every, &mut legends)?;
    messages_panel(&rows[5], &per, minutes, &markers, &every, &mut legends)?;
    for (top, entries) in legends {
        legend(&right, top, &entries)?;
    }
    root.present()?;
    Ok(())
}

fn marker(kind: MomentKind) -> Option<&'static str> {
    match kind {
        MomentKind::Renewal => Some("renewal"),
        MomentKind::Restart => Some("restart"),
        MomentKind::Fix => Some("fix"),
        MomentKind::Rebind => Some("live rebind"),
        MomentKind::Start | MomentKind::Observation => None,
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A panel with the shared x axis (so every panel maps a minute to the same pixel column).
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    minutes: f64,
    y_max: f64,
    y_desc: &str,
    x_labels: bool,
) -> Result<Chart<'a, 'b>, Error> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(8)
        .margin_right(16)
        .margin_top(6)
        .x_label_area_size(if x_labels { 40 } else { 4 })
        .y_label_area_size(78)
        .build_cartesian_2d(0f64..minutes, 0f64..y_max)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(y_desc)
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE);
    if x_labels {
        mesh.x_desc("virtual time (minutes since the start)");
    } else {
        mesh.x_labels(0);
    }
    mesh.draw()?;
    Ok(chart)
}

fn vertical_markers(
    chart: &mut Chart<'_, '_>,
    markers: &[(f64, &str)],
    y_max: f64,
) -> Result<(), Error> {
    for (x, _) in markers {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*x, 0.0), (*x, y_max)],
            RGBColor(200, 0, 0).mix(0.5),
        )))?;
    }
    Ok(())
}

fn series_line(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
) -> Result<(), Error> {
    chart.draw_series(LineSeries::new(points, style))?;
    Ok(())
}

fn nice_max(v: u64) -> f64 {
    (v.max(1) as f64 * 1.1).ceil()
}

/// TLS connections over registered users; returns the pixel column of each marker.
fn connections_panel(
    area: &Area<'_>,
    r: &Report,
    minutes: f64,
    markers: &[(f64, &str)],
    legends: &mut Vec<(i32, Vec<Entry>)>,
) -> Result<Vec<i32>, Error> {
    let y_max = nice_max(
        r.series
            .iter()
            .map(|s| s.tls_connections.max(s.registered))
            .max()
            .unwrap_or(1)
            .max(r.users as u64),
    );
    let mut chart = panel(area, minutes, y_max, "connections, users (count)", false)?;
    vertical_markers(&mut chart, markers, y_max)?;
    let at = |f: fn(&crate::sim::runner::Sample) -> u64| -> Vec<(f64, f64)> {
        r.series
            .iter()
            .map(|s| (s.t as f64 / 60.0, f(s) as f64))
            .collect()
    };
    let band = RGBColor(60, 170, 60).mix(0.35);
    series_line(&mut chart, at(|s| s.registered), band.stroke_width(9))?;
    series_line(&mut chart, at(|s| s.tls_connections), BLUE.stroke_width(2))?;
    legends.push((
        ROWS[1] + 6,
        vec![
            Entry(BLUE.to_rgba(), 2, "TLS connections open".into()),
            Entry(band, 9, "registered users (server)".into()),
            Entry(
                RGBColor(200, 0, 0).mix(0.5),
                1,
                "renewal / restart / fix".into(),
            ),
        ],
    ));
    Ok(markers
        .iter()
        .map(|(x, _)| chart.backend_coord(&(*x, y_max)).0)
        .collect())
}

/// Labels for the markers in the band above the first panel, each on the first row where it
/// overlaps no label already placed, with a thin leader line down to the panel.
fn marker_labels(
    root: &Area<'_>,
    markers: &[(f64, &str)],
    xs: &[i32],
    top: i32,
) -> Result<(), Error> {
    let mut order: Vec<usize> = (0..markers.len()).collect();
    order.sort_by_key(|i| xs[*i]);
    let mut rows: Vec<i32> = Vec::new();
    let style = ("sans-serif", 13).into_font().color(&RGBColor(170, 0, 0));
    for i in order {
        let (x, label) = (xs[i], markers[i].1);
        let width = 7 * label.len() as i32 + 4;
        let row = rows
            .iter()
            .position(|right| *right + 6 < x)
            .unwrap_or_else(|| {
                rows.push(i32::MIN);
                rows.len() - 1
            });
        rows[row] = x + width;
        let y = top + LABEL_ROW * row as i32;
        root.draw(&Text::new(label.to_string(), (x + 3, y), style.clone()))?;
        root.draw(&PathElement::new(
            vec![(x, y), (x, ROWS[1] + 6)],
            RGBColor(200, 0, 0).mix(0.35),
        ))?;
    }
    Ok(())
}

/// The route to the federated domain: up (green) or down (red) per interval.
fn route_panel(
    area: &Area<'_>,
    r: &Report,
    minutes: f64,
    markers: &[(f64, &str)],
    legends: &mut Vec<(i32, Vec<Entry>)>,
) -> Result<(), Error> {
    let mut chart = ChartBuilder::on(area)
        .margin_left(8)
        .margin_right(16)
        .margin_top(10)
        .x_label_area_size(4)
        .y_label_area_size(78)
        .build_cartesian_2d(0f64..minutes, 0f64..1f64)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_labels(0)
        .y_desc("route")
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    let up = RGBColor(60, 170, 60).mix(0.8);
    let down = RGBColor(220, 60, 60).mix(0.8);
    chart.draw_series(r.series.windows(2).map(|w| {
        let color = if w[0].route_connections > 0 { up } else { down };
        Rectangle::new(
            [(w[0].t as f64 / 60.0, 0.15), (w[1].t as f64 / 60.0, 0.85)],
            color.filled(),
        )
    }))?;
    vertical_markers(&mut chart, markers, 1.0)?;
    legends.push((
        ROWS[2] + 10,
        vec![
            Entry(up, 8, "route to fabrikam.com up".into()),
            Entry(down, 8, "route down".into()),
        ],
    ));
    Ok(())
}

/// Failed connection attempts per interval, as bars.
fn failures_panel(
    area: &Area<'_>,
    per: &[PerInterval],
    minutes: f64,
    markers: &[(f64, &str)],
    every: &str,
    legends: &mut Vec<(i32, Vec<Entry>)>,
) -> Result<(), Error> {
    let y_max = nice_max(per.iter().map(|p| p.failed).max().unwrap_or(1));
    let mut chart = panel(area, minutes, y_max, &format!("attempts {every}"), false)?;
    let red = RGBColor(200, 30, 30);
    let width = per.get(1).map_or(1.0, |p| p.t - per[0].t);
    chart.draw_series(per.iter().filter(|p| p.failed > 0).map(|p| {
        Rectangle::new(
            [(p.t - width, 0.0), (p.t, p.failed as f64)],
            red.mix(0.7).filled(),
        )
    }))?;
    vertical_markers(&mut chart, markers, y_max)?;
    legends.push((
        ROWS[3] + 6,
        vec![Entry(
            red.mix(0.7),
            8,
            "failed TLS connection attempts".into(),
        )],
    ));
    Ok(())
}

/// Instant messages per interval: delivered and timed out, and the route's queue now.
fn messages_panel(
    area: &Area<'_>,
    per: &[PerInterval],
    minutes: f64,
    markers: &[(f64, &str)],
    every: &str,
    legends: &mut Vec<(i32, Vec<Entry>)>,
) -> Result<(), Error> {
    let y_max = nice_max(
        per.iter()
            .map(|p| p.delivered.max(p.timed_out).max(p.queue_depth))
            .max()
            .unwrap_or(1),
    );
    let mut chart = panel(area, minutes, y_max, &format!("messages {every}"), true)?;
    vertical_markers(&mut chart, markers, y_max)?;
    let width = per.get(1).map_or(1.0, |p| p.t - per[0].t);
    let orange = RGBColor(230, 120, 0);
    chart.draw_series(per.iter().filter(|p| p.timed_out > 0).map(|p| {
        Rectangle::new(
            [(p.t - width, 0.0), (p.t, p.timed_out as f64)],
            orange.mix(0.6).filled(),
        )
    }))?;
    let green = RGBColor(30, 140, 30);
    series_line(
        &mut chart,
        per.iter().map(|p| (p.t, p.delivered as f64)).collect(),
        green.stroke_width(2),
    )?;
    let purple = RGBColor(120, 40, 160);
    series_line(
        &mut chart,
        per.iter().map(|p| (p.t, p.queue_depth as f64)).collect(),
        purple.stroke_width(1),
    )?;
    legends.push((
        ROWS[4] + 6,
        vec![
            Entry(green.to_rgba(), 2, "delivered (SIP 200 OK)".into()),
            Entry(orange.mix(0.6), 8, "timed out (SIP 408)".into()),
            Entry(purple.to_rgba(), 1, "waiting for the route now".into()),
        ],
    ));
    Ok(())
}

fn legend(area: &Area<'_>, top: i32, entries: &[Entry]) -> Result<(), Error> {
    for (i, Entry(color, width, label)) in entries.iter().enumerate() {
        let y = top + 20 * i as i32 + 10;
        area.draw(&PathElement::new(
            vec![(8, y), (36, y)],
            color.stroke_width(*width),
        ))?;
        area.draw(&Text::new(
            label.clone(),
            (44, y - 7),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}
