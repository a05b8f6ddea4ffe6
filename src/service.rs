//! `parking-bridge run`: assembles the pipeline (drivers → lanes → store → uploader,
//! heartbeat, HTTP endpoint) and runs it until a signal.
