//! (to be written: see main.rs)
