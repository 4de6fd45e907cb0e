//! In-memory simulator (being written).
