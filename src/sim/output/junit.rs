//! The report as JUnit XML: one test case per expectation, for CI dashboards.

use quick_junit::{NonSuccessKind, Property, Report as Junit, TestCase, TestCaseStatus, TestSuite};

use crate::sim::Report;

/// Renders the report's checks as JUnit XML (no timestamps, so the same seed gives the same
/// bytes).
pub fn render(r: &Report) -> String {
    let mut suite = TestSuite::new(format!("lcs-sim reproduce {}", r.scenario));
    suite.add_property(Property::new("seed", r.seed.to_string()));
    suite.add_property(Property::new("verdict", r.verdict.clone()));
    for c in &r.checks {
        let status = if c.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("expected {}, got {}", c.expected, c.actual));
            s.set_type("expectation");
            s
        };
        let mut case = TestCase::new(c.name.clone(), status);
        case.set_classname(format!("lcs-sim.{}", r.scenario));
        suite.add_test_case(case);
    }
    let mut report = Junit::new("lcs-sim");
    report.add_test_suite(suite);
    report.to_string().expect("JUnit serialises")
}
