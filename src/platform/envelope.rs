//! TODO(issue 2): envelope
