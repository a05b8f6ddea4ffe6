//! The strict stand-in for City Brain (`parking-bridge mock-platform`).
//! TODO(issue 2): in progress.
