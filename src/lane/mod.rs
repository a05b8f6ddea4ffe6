//! Lane logic: the pure per-lane state machine that turns raw events into passages,
//! and the stays/occupancy/fees built from them. TODO(issue 5).
