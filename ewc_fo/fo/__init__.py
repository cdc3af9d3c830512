"""FiftyOne layer: datasets, views and runs around the host-agnostic engine."""
