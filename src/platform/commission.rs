//! TODO(issue 2): commission
