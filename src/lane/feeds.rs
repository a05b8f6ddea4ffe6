//! Lot-wide MQTT feeds: the occupancy topic (`[lot.occupancy_mqtt]`, e.g. a parking
//! guidance system's count) and the pay system's fee topic (`[lot.fee_mqtt]`).
//!
//! One MQTT connection to the `[mqtt]` broker, client id `{mqtt.client_id}-lot`,
//! subscribe only: the client handle never leaves this module and nothing here
//! publishes. The payload parsers are pure and tested without a broker.

use super::fees::{Fee, FeeSource, MAX_FEN};
use crate::config::SiteConfig;
use crate::config::lot::{FeeMqtt, OccupancyMqtt};
use crate::plate::CarType;
use crate::time::Timestamp;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("[lot.occupancy_mqtt] / [lot.fee_mqtt] need the [mqtt] section")]
    NoBroker,
    #[error("mqtt: {0}")]
    Options(String),
}

/// What the service hands to the lane task.
#[derive(Default)]
pub struct LotFeeds {
    /// Occupied counts from the occupancy topic (for `LaneRuntime::run`).
    pub occupancy: Option<mpsc::Receiver<i64>>,
    /// The pay system's fees (for `LaneRuntime::with_fee_source`).
    pub fees: Option<Arc<MqttFees>>,
    /// The MQTT task; abort it to stop.
    pub task: Option<JoinHandle<()>>,
}

/// Reads the occupancy number out of a payload: a plain integer, or the number at a
/// dotted `field` path in JSON (array elements by index; a numeric string is accepted).
pub fn parse_occupancy(payload: &[u8], field: Option<&str>) -> Option<i64> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let Some(path) = field else {
        return text.parse().ok();
    };
    let root: Value = serde_json::from_str(text).ok()?;
    let mut v = &root;
    for key in path.split('.') {
        v = match v {
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            Value::Object(map) => map.get(key)?,
            _ => return None,
        };
    }
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One payment as the pay system published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub plate_no: String,
    pub fee: Fee,
}

/// Parses a fee message: `{"plate_no": "闽A12345", "price": 1500, "paid_fee": 1500,
/// "should_pay": 0}` (fen). `paid_fee` defaults to `price`, `should_pay` to
/// `price − paid_fee`. Figures outside `0..=price` are refused.
pub fn parse_payment(payload: &[u8]) -> Option<Payment> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let plate_no = v.get("plate_no")?.as_str()?.trim().to_uppercase();
    if plate_no.is_empty() {
        return None;
    }
    let fen = |k: &str| {
        v.get(k)
            .map(|x| x.as_i64().filter(|n| (0..=MAX_FEN).contains(n)))
    };
    let price = fen("price")??;
    let paid_fee = fen("paid_fee").unwrap_or(Some(price))?;
    let should_pay = fen("should_pay").unwrap_or(Some(price.saturating_sub(paid_fee)))?;
    if paid_fee > price || should_pay > price {
        return None;
    }
    Some(Payment {
        plate_no,
        fee: Fee {
            price,
            should_pay,
            paid_fee,
        },
    })
}

/// The pay system's latest payment per plate, used at that plate's exit when it was
/// received during the stay and at most `max_age` before the exit.
pub struct MqttFees {
    max_age_ms: i64,
    latest: Mutex<HashMap<String, (Timestamp, Fee)>>,
}

impl MqttFees {
    pub fn new(cfg: &FeeMqtt) -> Self {
        MqttFees {
            max_age_ms: i64::try_from(cfg.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            latest: Mutex::new(HashMap::new()),
        }
    }

    /// Records a payment received at `now`; forgets payments too old to be used.
    pub fn record(&self, payment: Payment, now: Timestamp) {
        let Ok(mut latest) = self.latest.lock() else {
            return;
        };
        let max_age = self.max_age_ms;
        latest.retain(|_, (at, _)| now.0.saturating_sub(at.0) <= max_age);
        latest.insert(payment.plate_no, (now, payment.fee));
    }
}

impl FeeSource for MqttFees {
    fn fee(
        &self,
        plate_no: &str,
        _car_type: CarType,
        entered: Timestamp,
        exited: Timestamp,
    ) -> Option<Fee> {
        let latest = self.latest.lock().ok()?;
        let (at, fee) = latest.get(&plate_no.to_uppercase())?;
        super::fees::seen_during_stay(*at, entered, exited, self.max_age_ms).then_some(*fee)
    }
}

/// Starts the feeds the site configures; nothing (and no connection) when neither is.
pub fn spawn(site: &SiteConfig) -> Result<LotFeeds, FeedError> {
    let occupancy_cfg = site.lot.occupancy_mqtt.clone();
    let fee_cfg = site.lot.fee_mqtt.clone();
    if occupancy_cfg.is_none() && fee_cfg.is_none() {
        return Ok(LotFeeds::default());
    }
    let mut broker = site.mqtt.clone().ok_or(FeedError::NoBroker)?;
    // Its own session next to the camera driver's: the broker would drop one of two
    // connections with the same id.
    broker.client_id = format!("{}-lot", broker.client_id);
    let opts =
        crate::driver::mqtt::options(&broker).map_err(|e| FeedError::Options(e.to_string()))?;
    let (occ_tx, occ_rx) = match occupancy_cfg {
        Some(_) => {
            let (tx, rx) = mpsc::channel(16);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let fees = fee_cfg.as_ref().map(|f| Arc::new(MqttFees::new(f)));
    let feed = Feed {
        occupancy: occupancy_cfg.zip(occ_tx),
        fees: fee_cfg.zip(fees.clone()),
        total: site.lot.total_spaces,
    };
    let task = tokio::spawn(run(opts, feed));
    Ok(LotFeeds {
        occupancy: occ_rx,
        fees,
        task: Some(task),
    })
}

struct Feed {
    occupancy: Option<(OccupancyMqtt, mpsc::Sender<i64>)>,
    fees: Option<(FeeMqtt, Arc<MqttFees>)>,
    total: i64,
}

impl Feed {
    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = Vec::new();
        t.extend(self.occupancy.as_ref().map(|(c, _)| c.topic.clone()));
        t.extend(self.fees.as_ref().map(|(c, _)| c.topic.clone()));
        t
    }

    async fn on_message(&self, topic: &str, payload: &[u8]) {
        if let Some((cfg, tx)) = &self.occupancy
            && topic == cfg.topic
        {
            match parse_occupancy(payload, cfg.field.as_deref()) {
                Some(n) => {
                    let occupied = cfg.counts.occupied(n, self.total);
                    tracing::debug!(topic, value = n, occupied, "occupancy message");
                    let _ = tx.send(occupied).await;
                }
                None => tracing::warn!(
                    topic,
                    bytes = payload.len(),
                    "occupancy message without a usable number; ignored"
                ),
            }
        }
        if let Some((cfg, fees)) = &self.fees
            && topic == cfg.topic
        {
            match parse_payment(payload) {
                Some(p) => {
                    tracing::info!(
                        plate = %crate::plate::mask(&p.plate_no),
                        price = p.fee.price,
                        paid_fee = p.fee.paid_fee,
                        "payment from the pay system"
                    );
                    fees.record(p, Timestamp::now());
                }
                None => tracing::warn!(
                    topic,
                    bytes = payload.len(),
                    "fee message not understood (plate_no and price in fen needed); ignored"
                ),
            }
        }
    }
}

async fn run(opts: rumqttc::MqttOptions, feed: Feed) {
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if !connected {
                    tracing::info!("lot feeds connected to the MQTT broker");
                }
                connected = true;
                // Subscribed again on every connection: a clean broker forgets them.
                for topic in feed.topics() {
                    if let Err(e) = client.subscribe(&topic, QoS::AtLeastOnce).await {
                        tracing::warn!(topic, error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                feed.on_message(&p.topic, &p.payload).await;
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    tracing::warn!(error = %e, "lot feeds lost the MQTT broker; reconnecting");
                }
                connected = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_payloads_plain_or_json_path() {
        assert_eq!(parse_occupancy(b" 42\n", None), Some(42));
        assert_eq!(parse_occupancy(b"forty", None), None);
        let json = br#"{"data":{"occupied":17,"lots":[{"free":"5"}]}}"#;
        assert_eq!(parse_occupancy(json, Some("data.occupied")), Some(17));
        assert_eq!(parse_occupancy(json, Some("data.lots.0.free")), Some(5));
        assert_eq!(parse_occupancy(json, Some("data.missing")), None);
        assert_eq!(parse_occupancy(json, Some("data")), None);
        assert_eq!(parse_occupancy(b"17", Some("data.occupied")), None);
        assert_eq!(crate::event::Counted::Free.occupied(30, 100), 70);
        assert_eq!(crate::event::Counted::Occupied.occupied(30, 100), 30);
    }

    #[test]
    fn payment_defaults_and_refusals() {
        let p = parse_payment(r#"{"plate_no":"闽a12345","price":1500}"#.as_bytes()).unwrap();
        assert_eq!(p.plate_no, "闽A12345");
        assert_eq!(p.fee, Fee::settled(1500));
        let p = parse_payment(br#"{"plate_no":"A1","price":900,"paid_fee":400}"#).unwrap();
        assert_eq!((p.fee.should_pay, p.fee.paid_fee), (500, 400));
        assert!(parse_payment(br#"{"plate_no":"A1"}"#).is_none());
        assert!(parse_payment(br#"{"plate_no":"A1","price":-1}"#).is_none());
        assert!(parse_payment(br#"{"plate_no":"A1","price":100,"paid_fee":200}"#).is_none());
        assert!(parse_payment(br#"{"price":100}"#).is_none());
    }

    #[test]
    fn a_payment_counts_only_for_the_stay_it_was_made_in() {
        let fees = MqttFees::new(&FeeMqtt {
            topic: "pay".into(),
            max_age_secs: 600,
        });
        let paid = Timestamp(1_000_000);
        fees.record(
            parse_payment(br#"{"plate_no":"A1","price":700}"#).unwrap(),
            paid,
        );
        let fee = |entered: i64, exited: i64| {
            fees.fee("a1", CarType::Normal, Timestamp(entered), Timestamp(exited))
        };
        assert_eq!(fee(0, 1_060_000), Some(Fee::settled(700)));
        // The stay began after the payment: an earlier stay's.
        assert_eq!(fee(1_000_001, 1_060_000), None);
        // The exit is too long after the payment.
        assert_eq!(fee(0, 1_000_000 + 600_001), None);
        assert_eq!(
            fees.fee("B2", CarType::Normal, Timestamp(0), Timestamp(1_060_000)),
            None
        );
    }
}
