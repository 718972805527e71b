//! Sensor observations (placeholder, being written).
