//! The stardump analysis engine.
