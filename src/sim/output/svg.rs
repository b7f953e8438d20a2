//! The report as an SVG chart: connections on top; queued, delivered and timed-out messages
//! below; renewal, restarts and the fix marked on both.

use plotters::prelude::*;

use crate::sim::Report;
use crate::sim::report::MomentKind;

/// Renders the time series as SVG.
pub fn render(r: &Report) -> Result<String, String> {
    let mut svg = String::new();
    draw(r, &mut svg).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw(r: &Report, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let series = &r.series;
    let minutes = (r.duration as f64 / 60.0).max(1.0);
    let root = SVGBackend::with_string(out, (1100, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(380);
    let markers: Vec<(f64, String)> = r
        .timeline
        .iter()
        .filter_map(|m| Some((m.t as f64 / 60.0, marker(m.kind)?.to_string())))
        .collect();

    let max_conn = series
        .iter()
        .map(|s| s.tls_connections.max(s.registered).max(s.mtls_connections))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "lcs-sim reproduce {} (seed {}): connections",
                r.scenario, r.seed
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..minutes, 0f64..max_conn)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("connections")
        .draw()?;
    let line = |f: fn(&crate::sim::runner::Sample) -> u64| -> Vec<(f64, f64)> {
        series
            .iter()
            .map(|s| (s.t as f64 / 60.0, f(s) as f64))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(
            line(|s| s.tls_connections),
            BLUE.stroke_width(2),
        ))?
        .label("TLS connections")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            line(|s| s.registered),
            GREEN.stroke_width(2),
        ))?
        .label("registered users")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(line(|s| s.route_connections * 10), MAGENTA))?
        .label("route to fabrikam.com up (x10)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
    for (x, label) in &markers {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*x, 0.0), (*x, max_conn)],
            RED.mix(0.6),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*x, max_conn * 0.97),
            ("sans-serif", 13).into_font().color(&RED),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    // Per-interval message counts.
    let mut per = Vec::new();
    let mut prev = (0, 0);
    for s in series {
        per.push((
            s.t as f64 / 60.0,
            s.delivered - prev.0,
            s.timed_out - prev.1,
            s.queue_depth,
        ));
        prev = (s.delivered, s.timed_out);
    }
    let max_msg = per
        .iter()
        .map(|p| p.1.max(p.2).max(p.3))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("instant messages per sample interval", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..minutes, 0f64..max_msg)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("messages")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            per.iter().map(|p| (p.0, p.1 as f64)),
            GREEN.stroke_width(2),
        ))?
        .label("delivered (200)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart
        .draw_series(LineSeries::new(
            per.iter().map(|p| (p.0, p.2 as f64)),
            RED.stroke_width(2),
        ))?
        .label("timed out (408)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(
            per.iter().map(|p| (p.0, p.3 as f64)),
            BLACK,
        ))?
        .label("queued for the route now")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (x, _) in &markers {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*x, 0.0), (*x, max_msg)],
            RED.mix(0.6),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
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
