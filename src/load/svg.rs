//! The run as an SVG chart: successes and failures per second on top, p99 latency below, the
//! faults marked on both (where they were applied). The legend carries the run's account
//! (`scheduled | started = ok + failed + unfinished + not started`), and operations left
//! unfinished or never started are drawn by the second they were due, so a generator that fell
//! behind is visible where it fell behind.

use plotters::prelude::*;

use super::report::Report;

/// Renders the report's seconds as SVG.
pub fn render(r: &Report) -> Result<String, String> {
    let mut svg = String::new();
    draw(r, &mut svg).map_err(|e| e.to_string())?;
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw(r: &Report, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let secs = (r.per_second.len() as f64).max(r.duration_s).max(1.0);
    let root = SVGBackend::with_string(out, (1100, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(380);
    let max_rate = r
        .per_second
        .iter()
        .map(|s| s.ok.max(s.failed).max(s.unfinished).max(s.not_started))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let total = match r.scheduled {
        Some(n) => format!("scheduled {n}"),
        None => format!("started {}", r.total()),
    };
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "lcs-sim load {} {}: {total} = ok + failed + unfinished + not started",
                r.mode, r.target
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..secs, 0f64..max_rate)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()?;
    // A second's count is drawn at its middle.
    let at = |t: u64| t as f64 + 0.5;
    chart
        .draw_series(LineSeries::new(
            r.per_second.iter().map(|s| (at(s.t), s.ok as f64)),
            GREEN.stroke_width(2),
        ))?
        .label(format!("ok {}", r.ok))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            r.per_second.iter().map(|s| (at(s.t), s.failed as f64)),
            RED.stroke_width(2),
        ))?
        .label(format!("failed {}", r.failed))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    let unfinished = RGBColor(230, 140, 0);
    chart
        .draw_series(LineSeries::new(
            r.per_second.iter().map(|s| (at(s.t), s.unfinished as f64)),
            unfinished.stroke_width(2),
        ))?
        .label(format!("unfinished {} (by second due)", r.unfinished))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], unfinished));
    chart
        .draw_series(LineSeries::new(
            r.per_second.iter().map(|s| (at(s.t), s.not_started as f64)),
            BLACK.mix(0.6).stroke_width(2),
        ))?
        .label(format!("not started {} (by second due)", r.not_started))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
    marks(r, &mut chart, max_rate)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let max_ms = r
        .per_second
        .iter()
        .map(|s| s.p99_us)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        / 1000.0
        * 1.15;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("p99 latency of each second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..secs, 0f64..max_ms)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("ms")
        .draw()?;
    chart.draw_series(LineSeries::new(
        r.per_second
            .iter()
            .filter(|s| s.ok > 0)
            .map(|s| (at(s.t), s.p99_us as f64 / 1000.0)),
        BLUE.stroke_width(2),
    ))?;
    marks(r, &mut chart, max_ms)?;
    root.present()?;
    Ok(())
}

fn marks(
    r: &Report,
    chart: &mut Chart<'_, '_>,
    top: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    for f in &r.faults {
        let x = f.applied_s.unwrap_or(f.at_s);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, top)],
            MAGENTA.mix(0.7),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            f.action.clone(),
            (x, top * 0.95),
            ("sans-serif", 13).into_font().color(&MAGENTA),
        )))?;
    }
    Ok(())
}
