//! Live capture backends for stardump.
