//! The state database (SQLite, WAL, `synchronous=FULL`): stays, outbox, occupancy,
//! the `out_order_no` sequence. TODO(issue 3).
