//! Outbox → platform delivery loop and the heartbeat task. TODO(issue 3).
