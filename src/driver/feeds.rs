//! Lot-wide MQTT feeds: the occupancy topic (`[lot.occupancy_mqtt]`, e.g. a parking
//! guidance system's count) and the pay system's fee topic (`[lot.fee_mqtt]`). Like
//! every driver they report facts as [`RawEvent`]s (`Spaces`, `Payment`; no lane,
//! device [`OCCUPANCY_DEVICE`] / [`FEES_DEVICE`]), so the lane task journals them and
//! `replay` sees what the service saw.
//!
//! One MQTT connection to the `[mqtt]` broker, client id `{mqtt.client_id}-lot`,
//! subscribe only: the client handle never leaves this module and nothing here
//! publishes. The payload parsers are pure and tested without a broker.

use crate::config::SiteConfig;
use crate::config::lot::{FeeMqtt, OccupancyMqtt};
use crate::event::{EventKind, RawEvent};
use crate::time::Timestamp;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The device name of the occupancy topic's events.
pub const OCCUPANCY_DEVICE: &str = "lot-occupancy";
/// The device name of the fee topic's events.
pub const FEES_DEVICE: &str = "lot-fees";
/// Largest amount in fen a payment may carry (the platform's limit).
const MAX_FEN: i64 = crate::spec::MAX_INT8;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("[lot.occupancy_mqtt] / [lot.fee_mqtt] need the [mqtt] section")]
    NoBroker,
    #[error("mqtt: {0}")]
    Options(String),
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

/// Parses a fee message: `{"plate_no": "闽A12345", "price": 1500, "paid_fee": 1500,
/// "should_pay": 0}` (fen). `paid_fee` defaults to `price`, `should_pay` to
/// `price − paid_fee`. Figures outside `0..=price` are refused.
pub fn parse_payment(payload: &[u8]) -> Option<EventKind> {
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
    Some(EventKind::Payment {
        plate_no,
        price,
        should_pay,
        paid_fee,
    })
}

/// Starts the feeds the site configures, sending their facts to `events` until `stop`
/// turns true; nothing (and no connection) when neither is configured.
pub fn spawn(
    site: &SiteConfig,
    events: mpsc::Sender<RawEvent>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, FeedError> {
    let occupancy = site.lot.occupancy_mqtt.clone();
    let fees = site.lot.fee_mqtt.clone();
    if occupancy.is_none() && fees.is_none() {
        return Ok(None);
    }
    let mut broker = site.mqtt.clone().ok_or(FeedError::NoBroker)?;
    // Its own session next to the camera driver's: the broker would drop one of two
    // connections with the same id.
    broker.client_id = format!("{}-lot", broker.client_id);
    let opts = super::mqtt::options(&broker).map_err(|e| FeedError::Options(e.to_string()))?;
    let feed = Feed {
        occupancy,
        fees,
        events,
    };
    Ok(Some(tokio::spawn(async move {
        tokio::select! {
            _ = run(opts, feed) => {}
            // The sender is dropped with the task, so the lane task sees the end.
            _ = stop.wait_for(|s| *s) => {}
        }
    })))
}

struct Feed {
    occupancy: Option<OccupancyMqtt>,
    fees: Option<FeeMqtt>,
    events: mpsc::Sender<RawEvent>,
}

impl Feed {
    fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = Vec::new();
        t.extend(self.occupancy.as_ref().map(|c| c.topic.clone()));
        t.extend(self.fees.as_ref().map(|c| c.topic.clone()));
        t
    }

    async fn send(&self, device: &str, kind: EventKind) {
        // A closed channel means the lane task is gone: the service is stopping.
        // Lot-wide facts belong to no lane.
        super::emit(&self.events, "", device, Timestamp::now(), kind).await;
    }

    async fn on_message(&self, topic: &str, payload: &[u8]) {
        if let Some(cfg) = &self.occupancy
            && topic == cfg.topic
        {
            match parse_occupancy(payload, cfg.field.as_deref()) {
                Some(value) => {
                    tracing::debug!(topic, value, "occupancy message");
                    let kind = EventKind::Spaces {
                        counted: cfg.counts,
                        value,
                    };
                    self.send(OCCUPANCY_DEVICE, kind).await;
                }
                None => tracing::warn!(
                    topic,
                    bytes = payload.len(),
                    "occupancy message without a usable number; ignored"
                ),
            }
        }
        if let Some(cfg) = &self.fees
            && topic == cfg.topic
        {
            match parse_payment(payload) {
                Some(kind) => self.send(FEES_DEVICE, kind).await,
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

    fn fee(kind: Option<EventKind>) -> Option<(String, i64, i64, i64)> {
        match kind? {
            EventKind::Payment {
                plate_no,
                price,
                should_pay,
                paid_fee,
            } => Some((plate_no, price, should_pay, paid_fee)),
            _ => None,
        }
    }

    #[test]
    fn payment_defaults_and_refusals() {
        let p = fee(parse_payment(
            r#"{"plate_no":"闽a12345","price":1500}"#.as_bytes(),
        ));
        assert_eq!(p, Some(("闽A12345".into(), 1500, 0, 1500)));
        let p = fee(parse_payment(
            br#"{"plate_no":"A1","price":900,"paid_fee":400}"#,
        ));
        assert_eq!(p, Some(("A1".into(), 900, 500, 400)));
        assert!(parse_payment(br#"{"plate_no":"A1"}"#).is_none());
        assert!(parse_payment(br#"{"plate_no":"A1","price":-1}"#).is_none());
        assert!(parse_payment(br#"{"plate_no":"A1","price":100,"paid_fee":200}"#).is_none());
        assert!(parse_payment(br#"{"price":100}"#).is_none());
    }
}
