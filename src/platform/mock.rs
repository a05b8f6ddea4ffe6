//! TODO(issue 2): mock
