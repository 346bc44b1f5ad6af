"""Settings and sync specs, loaded once and passed explicitly."""
