//! Operations: logging, the local HTTP endpoint (status page, metrics, health),
//! `doctor`, systemd notify. TODO(issue 7).
