//! GTID sets (being written).
