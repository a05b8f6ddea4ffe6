//! Metrics in the prometheus default registry, which `/metrics` gathers next to the
//! operations module's own registry. One place builds and registers them; modules
//! only name theirs (in a `LazyLock`, so each is registered once).
//!
//! Names, help texts and labels are constants of this crate: construction fails only
//! for a malformed name, which the tests that gather `/metrics` would show at once.
//! Registration fails only when the name is taken; the metric still counts then.

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts};

fn registered<C: Collector + Clone + 'static>(metric: C) -> C {
    let _ = prometheus::register(Box::new(metric.clone()));
    metric
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    registered(IntCounter::new(name, help).expect("constant metric definition"))
}

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        IntCounterVec::new(Opts::new(name, help), labels).expect("constant metric definition"),
    )
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    registered(IntGauge::new(name, help).expect("constant metric definition"))
}

pub fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(GaugeVec::new(Opts::new(name, help), labels).expect("constant metric definition"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_land_in_the_default_registry_once() {
        let c = super::counter_vec("parking_bridge_test_total", "test", &["k"]);
        c.with_label_values(&["a"]).inc();
        // A second definition under the same name is not registered but still works.
        let again = super::counter_vec("parking_bridge_test_total", "test", &["k"]);
        again.with_label_values(&["a"]).inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&prometheus::gather())
            .unwrap();
        assert!(
            text.contains(r#"parking_bridge_test_total{k="a"} 1"#),
            "{text}"
        );
    }
}
