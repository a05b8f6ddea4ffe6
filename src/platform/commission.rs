//! The commissioning check (`parking-bridge platform-test`).
//! TODO(issue 2): in progress.
