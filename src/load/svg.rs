//! The run as an SVG chart: successes and failures per second on top, p99 latency below, the
//! faults marked on both (where they were applied).

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
        .map(|s| s.ok.max(s.failed))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "lcs-sim load {} {}: operations per second",
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
        .label("ok")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            r.per_second.iter().map(|s| (at(s.t), s.failed as f64)),
            RED.stroke_width(2),
        ))?
        .label("failed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
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
