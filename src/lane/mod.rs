//! Lane logic: the pure per-lane state machine that turns raw events into passages
//! ([`machine`]), the stay planner that turns passages into stay actions ([`stays`]),
//! plate formats, exit matching and fees, the raw-event journal and replay. Nothing
//! here imports the store or anything above it: the lane task that ties this logic to
//! the drivers and the state database is [`crate::lane_task`], a layer up.
//! The cases and rules are documented in `docs/lane-logic.md`.

pub mod core;
pub mod fees;
pub mod journal;
pub mod machine;
pub mod matching;
pub mod model;
pub mod plate_format;
pub mod replay;
pub mod resume;
pub mod stays;
#[cfg(test)]
pub(crate) mod testkit;
pub mod watch;

pub use core::{LaneCore, Step};
pub use fees::{Fee, exit_fee};
pub use machine::{LaneMachine, Passage, PassageCase};
pub use stays::{StayAction, decide};
