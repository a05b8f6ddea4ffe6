//! Operator commands: `stay enter|exit|list`, `outbox`, `occupancy`.
