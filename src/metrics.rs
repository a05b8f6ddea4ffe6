//! Metrics in the prometheus default registry, which `/metrics` gathers next to the
//! operations module's own registry. One place builds and registers them; modules
//! only declare theirs with [`statics!`] (each a `LazyLock`, so registered once, on
//! first use).
//!
//! Names, help texts and labels are constants of this crate: construction fails only
//! for a malformed name, which the tests that gather `/metrics` would show at once.
//! Registration fails only when the name is taken; the metric still counts then.

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

/// A kind of metric this crate uses, built from its name, help text and labels.
pub trait Metric: Collector + Clone + Sized + 'static {
    /// Fails for a malformed name or label, and for labels given to a metric without.
    fn build(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self>;
}

macro_rules! metric_kinds {
    (scalar: $($scalar:ty),*; vec: $($vec:ty),*) => {
        $(impl Metric for $scalar {
            fn build(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
                if !labels.is_empty() {
                    return Err(prometheus::Error::Msg(format!("{name} takes no labels")));
                }
                <$scalar>::with_opts(Opts::new(name, help))
            }
        })*
        $(impl Metric for $vec {
            fn build(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<Self> {
                <$vec>::new(Opts::new(name, help), labels)
            }
        })*
    };
}

metric_kinds!(scalar: IntCounter, IntGauge, Gauge; vec: IntCounterVec, IntGaugeVec, GaugeVec);

/// Builds a metric and registers it in the default registry (see the module doc for
/// why neither step fails in practice). [`statics!`] calls this.
pub fn registered<M: Metric>(name: &str, help: &str, labels: &[&str]) -> M {
    let metric = M::build(name, help, labels).expect("constant metric definition");
    let _ = prometheus::register(Box::new(metric.clone()));
    metric
}

/// Declares metrics of the default registry, one line each:
///
/// ```ignore
/// crate::metrics::statics! {
///     pub POLLS: IntCounterVec = ("parking_bridge_modbus_polls_total", "Modbus poll cycles per device", ["device"]);
///     OVERSIZE: IntCounter = ("parking_bridge_mqtt_oversize_total", "MQTT messages refused");
/// }
/// ```
///
/// Each becomes a `static NAME: LazyLock<Type>` built and registered by [`registered`]
/// on first use; the type is named in scope (`use prometheus::IntCounterVec`).
macro_rules! statics {
    ($($(#[$attr:meta])* $vis:vis $name:ident : $ty:ty =
        ($metric:expr, $help:expr $(, [$($label:expr),* $(,)?])? $(,)?);)*) => {
        $($(#[$attr])*
        $vis static $name: std::sync::LazyLock<$ty> = std::sync::LazyLock::new(|| {
            $crate::metrics::registered::<$ty>($metric, $help, &[$($($label),*)?])
        });)*
    };
}
pub(crate) use statics;

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, IntCounterVec};

    statics! {
        TEST_TOTAL: IntCounterVec = ("parking_bridge_test_total", "test", ["k"]);
        TEST_PLAIN: IntCounter = ("parking_bridge_test_plain_total", "test");
    }

    #[test]
    fn metrics_land_in_the_default_registry_once() {
        TEST_TOTAL.with_label_values(&["a"]).inc();
        TEST_PLAIN.inc();
        // A second definition under the same name is not registered but still works.
        let again: IntCounterVec = super::registered("parking_bridge_test_total", "test", &["k"]);
        again.with_label_values(&["a"]).inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&prometheus::gather())
            .unwrap();
        assert!(
            text.contains(r#"parking_bridge_test_total{k="a"} 1"#),
            "{text}"
        );
        assert!(text.contains("parking_bridge_test_plain_total 1"), "{text}");
    }

    #[test]
    fn a_metric_without_labels_refuses_some() {
        use super::Metric;
        assert!(IntCounter::build("parking_bridge_x_total", "x", &["k"]).is_err());
        assert!(IntCounterVec::build("parking_bridge_x_total", "x", &["k"]).is_ok());
    }
}
