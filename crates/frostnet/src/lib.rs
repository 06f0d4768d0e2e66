//! frostnet
