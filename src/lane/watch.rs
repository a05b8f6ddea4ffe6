//! "No silent lanes": a lane whose camera keeps reading plates that never become
//! passages (loops or gate not wired, or bound to another lane), or whose loops keep
//! seeing vehicles the camera never reads (camera aimed at or bound to another lane),
//! says so. Pure counting beside the lane machine: the lane task feeds it the lane's
//! events and passages, and `doctor` replays the last hour of the journal through it.

use super::machine::{LaneMachine, Passage};
use crate::config::SiteConfig;
use crate::config::lanes::Senses;
use crate::event::{EventKind, GatePosition, RawEvent};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// What a lane's devices keep saying that its machine cannot make a passage of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mismatch {
    /// Plate reads, none followed by a passage.
    ReadsWithoutPassages,
    /// Vehicles that passed (loops or gate), none read, on a lane with a camera.
    VehiclesWithoutReads,
}

impl Mismatch {
    pub const ALL: [Mismatch; 2] = [
        Mismatch::ReadsWithoutPassages,
        Mismatch::VehiclesWithoutReads,
    ];

    /// Metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Mismatch::ReadsWithoutPassages => "reads_without_passages",
            Mismatch::VehiclesWithoutReads => "vehicles_without_reads",
        }
    }

    /// What the operator sees: how many, and the likely cause.
    pub fn text(self, count: u32) -> String {
        match self {
            Mismatch::ReadsWithoutPassages => format!(
                "{count} plate reads without a passage: loops not wired or bound to this lane (check each device's `lane` and roles), or the lane's layout waits for inputs that never come"
            ),
            Mismatch::VehiclesWithoutReads => format!(
                "{count} vehicles without a plate read: camera aimed at the wrong lane or bound to another lane (check the camera's `lane`), or its results do not arrive"
            ),
        }
    }
}

/// A warning raised or cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub mismatch: Mismatch,
    /// `Some(count)` when raised, `None` when cleared.
    pub raised: Option<u32>,
}

/// The counters of one lane.
#[derive(Debug, Clone)]
pub struct LaneWatch {
    /// Raise at this count; 0 never raises.
    threshold: u32,
    /// A camera is bound to the lane: vehicles are expected to be read.
    expects_reads: bool,
    /// Distinct plate texts read since the last passage or loop/gate activity (a
    /// waiting car read again and again is one car).
    texts: BTreeSet<String>,
    /// "No plate" reads since the last passage.
    plateless: u32,
    /// A read (any) arrived since the last passage.
    read_since_passage: bool,
    /// Passages in a row without any read.
    unread_vehicles: u32,
    raised: BTreeSet<Mismatch>,
}

impl LaneWatch {
    pub fn new(threshold: u32, expects_reads: bool) -> Self {
        LaneWatch {
            threshold,
            expects_reads,
            texts: BTreeSet::new(),
            plateless: 0,
            read_since_passage: false,
            unread_vehicles: 0,
            raised: BTreeSet::new(),
        }
    }

    /// Reads counted since the last passage.
    pub fn reads_without_passage(&self) -> u32 {
        u32::try_from(self.texts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(self.plateless)
    }

    /// Vehicles in a row that passed without a read (0 on a lane without a camera).
    pub fn vehicles_without_read(&self) -> u32 {
        self.unread_vehicles
    }

    /// The warnings up now, with their counts.
    pub fn warnings(&self) -> Vec<(Mismatch, u32)> {
        self.raised.iter().map(|m| (*m, self.count(*m))).collect()
    }

    fn count(&self, m: Mismatch) -> u32 {
        match m {
            Mismatch::ReadsWithoutPassages => self.reads_without_passage(),
            Mismatch::VehiclesWithoutReads => self.vehicles_without_read(),
        }
    }

    /// One of the lane's events. Quick results are left out: their full result follows.
    pub fn on_event(&mut self, kind: &EventKind) -> Vec<Change> {
        let read = match kind {
            EventKind::Plate(read) => read,
            // A vehicle on the lane's loop, or its gate opening: the lane's inputs are
            // wired and bound here, even if the read car turns away (a full lot).
            EventKind::Loop { occupied: true, .. }
            | EventKind::Gate {
                position: GatePosition::Open,
            } => {
                self.texts.clear();
                self.plateless = 0;
                return self.settle();
            }
            _ => return Vec::new(),
        };
        if read.quick {
            return Vec::new();
        }
        match &read.text {
            Some(text) => {
                self.texts.insert(text.clone());
            }
            None => self.plateless = self.plateless.saturating_add(1),
        }
        self.read_since_passage = true;
        self.unread_vehicles = 0;
        self.settle()
    }

    /// A passage the lane machine decided.
    pub fn on_passage(&mut self, passage: &Passage) -> Vec<Change> {
        if self.expects_reads && passage.plate.is_none() && !self.read_since_passage {
            self.unread_vehicles = self.unread_vehicles.saturating_add(1);
        } else {
            self.unread_vehicles = 0;
        }
        self.texts.clear();
        self.plateless = 0;
        self.read_since_passage = false;
        self.settle()
    }

    /// Raises what reached the threshold, clears what went back to zero.
    fn settle(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        for m in Mismatch::ALL {
            let count = self.count(m);
            let up = self.raised.contains(&m);
            if !up && self.threshold > 0 && count >= self.threshold {
                self.raised.insert(m);
                out.push(Change {
                    mismatch: m,
                    raised: Some(count),
                });
            } else if up && count == 0 {
                self.raised.remove(&m);
                out.push(Change {
                    mismatch: m,
                    raised: None,
                });
            }
        }
        out
    }
}

/// What [`audit`] found on one lane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Full plate reads (quick results left out).
    pub reads: u32,
    pub passages: u32,
    /// Warnings standing at the end of the events, with their counts.
    pub warnings: Vec<(Mismatch, u32)>,
}

/// Runs the site's lane machines and watches over `events` (in order, as the lane
/// task would: due timers first, then the event, then its passages; every timer
/// left at the end). `doctor` feeds it the last hour of the journal. Pure.
pub fn audit(
    config: &SiteConfig,
    events: impl IntoIterator<Item = RawEvent>,
) -> BTreeMap<String, Audit> {
    let mut lanes: BTreeMap<String, (LaneMachine, LaneWatch, Audit)> = config
        .lanes
        .iter()
        .map(|l| {
            let camera = Senses::of(&l.id, &config.devices).camera;
            (
                l.id.clone(),
                (
                    LaneMachine::new(l),
                    LaneWatch::new(l.mismatch_alarm_after, camera),
                    Audit::default(),
                ),
            )
        })
        .collect();
    let run_timers = |lanes: &mut BTreeMap<String, (LaneMachine, LaneWatch, Audit)>,
                      until: Timestamp| {
        for (machine, watch, audit) in lanes.values_mut() {
            while let Some(t) = machine.poll_at().filter(|t| *t <= until) {
                for p in machine.on_timer(t) {
                    audit.passages += 1;
                    watch.on_passage(&p);
                }
            }
        }
    };
    for event in events {
        run_timers(&mut lanes, event.at);
        let Some((machine, watch, audit)) = lanes.get_mut(&event.lane) else {
            continue;
        };
        let passages = machine.handle(&event, event.at);
        if matches!(&event.kind, EventKind::Plate(r) if !r.quick) {
            audit.reads += 1;
        }
        watch.on_event(&event.kind);
        for p in passages {
            audit.passages += 1;
            watch.on_passage(&p);
        }
    }
    run_timers(&mut lanes, Timestamp(i64::MAX));
    lanes
        .into_iter()
        .map(|(id, (_, watch, mut audit))| {
            audit.warnings = watch.warnings();
            (id, audit)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lanes::Direction;
    use crate::event::PlateRead;
    use crate::plate::PlateColor;
    use crate::time::Timestamp;

    fn read(text: Option<&str>) -> EventKind {
        let mut r = PlateRead::text("x", PlateColor::Blue);
        r.text = text.map(str::to_string);
        EventKind::Plate(r)
    }

    fn passage(plate: Option<&str>) -> Passage {
        Passage::sample(Direction::Entry, plate, Timestamp(0))
    }

    #[test]
    fn five_distinct_reads_without_a_passage_raise_once_and_a_passage_clears() {
        let mut w = LaneWatch::new(5, true);
        for (i, plate) in ["浙A1", "浙A2", "浙A2", "浙A3", "浙A4"].iter().enumerate() {
            assert!(w.on_event(&read(Some(plate))).is_empty(), "read {i}");
        }
        // The repeated 浙A2 was one car: the fifth car raises.
        let raised = w.on_event(&read(None));
        assert_eq!(
            raised,
            [Change {
                mismatch: Mismatch::ReadsWithoutPassages,
                raised: Some(5)
            }]
        );
        assert!(w.on_event(&read(Some("浙A9"))).is_empty(), "raised once");
        assert_eq!(w.warnings(), [(Mismatch::ReadsWithoutPassages, 6)]);
        let cleared = w.on_passage(&passage(Some("浙A9")));
        assert_eq!(
            cleared,
            [Change {
                mismatch: Mismatch::ReadsWithoutPassages,
                raised: None
            }]
        );
        assert!(w.warnings().is_empty());
    }

    #[test]
    fn loop_or_gate_activity_shows_the_inputs_work_so_turned_away_cars_do_not_raise() {
        use crate::event::LoopId;
        let mut w = LaneWatch::new(2, true);
        w.on_event(&read(Some("浙A1")));
        // The car reaches loop A and turns away (a full lot): no passage, but the loop
        // is plainly wired to this lane.
        w.on_event(&EventKind::Loop {
            which: LoopId::A,
            occupied: true,
        });
        assert!(w.on_event(&read(Some("浙A2"))).is_empty());
        // A loop going free or the gate closing is not evidence of a vehicle.
        w.on_event(&EventKind::Loop {
            which: LoopId::A,
            occupied: false,
        });
        w.on_event(&EventKind::Gate {
            position: GatePosition::Closed,
        });
        assert_eq!(w.on_event(&read(Some("浙A3")))[0].raised, Some(2));
        // The gate opening clears the warning.
        let cleared = w.on_event(&EventKind::Gate {
            position: GatePosition::Open,
        });
        assert_eq!(cleared[0].raised, None);
    }

    #[test]
    fn quick_results_are_not_counted() {
        let mut w = LaneWatch::new(1, true);
        let EventKind::Plate(mut r) = read(Some("浙A1")) else {
            unreachable!()
        };
        r.quick = true;
        assert!(w.on_event(&EventKind::Plate(r)).is_empty());
        assert_eq!(w.reads_without_passage(), 0);
    }

    #[test]
    fn vehicles_without_reads_raise_only_where_a_camera_is_bound_and_a_read_clears() {
        let mut w = LaneWatch::new(3, true);
        assert!(w.on_passage(&passage(None)).is_empty());
        assert!(w.on_passage(&passage(None)).is_empty());
        assert_eq!(
            w.on_passage(&passage(None)),
            [Change {
                mismatch: Mismatch::VehiclesWithoutReads,
                raised: Some(3)
            }]
        );
        let cleared = w.on_event(&read(Some("浙A1")));
        assert_eq!(cleared[0].raised, None);
        // A camera "no plate" read followed by its unrecognised passage is a read.
        w.on_event(&read(None));
        assert!(w.on_passage(&passage(None)).is_empty());
        assert_eq!(w.vehicles_without_read(), 0);
        // Without a camera, unread vehicles are expected.
        let mut w = LaneWatch::new(1, false);
        assert!(w.on_passage(&passage(None)).is_empty());
    }

    #[test]
    fn threshold_zero_never_raises() {
        let mut w = LaneWatch::new(0, true);
        for i in 0..50 {
            assert!(w.on_event(&read(Some(&format!("浙A{i}")))).is_empty());
        }
    }

    #[test]
    fn audit_of_a_journal_finds_reads_on_a_lane_whose_loops_report_elsewhere() {
        let text = "[platform]\nbase_url = \"https://x\"\napp_id = \"a\"\n[lot]\nparking_lot_no = \"L\"\ntotal_spaces = 9\n\
            [storage]\ndir = \"/tmp\"\n[mqtt]\nhost = \"h\"\n\
            [[lanes]]\nid = \"in\"\ndirection = \"entry\"\nport_no = \"P1\"\nlayout = \"loops_only\"\n\
            [[lanes]]\nid = \"cam\"\ndirection = \"entry\"\nport_no = \"P2\"\n\
            [[devices]]\nname = \"c\"\nprofile = \"vzenith-mqtt\"\nlane = \"in\"\ncamera_id = \"1\"\n\
            [[devices]]\nname = \"io\"\nprofile = \"generic-modbus-tcp-di-gateway\"\nlane = \"in\"\ntcp = \"h:502\"\n\
            roles = { loop_a = \"di1\", loop_b = \"di2\" }\n\
            [[devices]]\nname = \"c2\"\nprofile = \"vzenith-mqtt\"\nlane = \"cam\"\ncamera_id = \"2\"\n";
        let config = SiteConfig::from_toml(text, std::path::Path::new("s.toml")).unwrap();
        let ev = |lane: &str, at: i64, kind: EventKind| RawEvent {
            lane: lane.into(),
            device: "d".into(),
            at: Timestamp(at),
            kind,
        };
        let mut events = Vec::new();
        for i in 0..5 {
            let t = i64::from(i) * 60_000;
            events.push(ev("in", t, read(Some(&format!("浙A1000{i}")))));
            // The camera-only lane: every read is a passage.
            events.push(ev("cam", t, read(Some(&format!("浙B1000{i}")))));
        }
        let found = audit(&config, events);
        assert_eq!(
            found["in"],
            Audit {
                reads: 5,
                passages: 0,
                warnings: vec![(Mismatch::ReadsWithoutPassages, 5)]
            }
        );
        assert_eq!(
            found["cam"],
            Audit {
                reads: 5,
                passages: 5,
                warnings: vec![]
            }
        );
    }

    #[test]
    fn texts_name_the_likely_cause() {
        assert!(
            Mismatch::ReadsWithoutPassages
                .text(5)
                .contains("loops not wired or bound")
        );
        assert!(
            Mismatch::VehiclesWithoutReads
                .text(5)
                .contains("camera aimed at the wrong lane")
        );
    }
}
