//! Report formats: text for incident tickets, JSON, JUnit for CI dashboards, an SVG chart.

pub mod junit;
pub mod svg;
pub mod text;
