//! lcs-sim: an emulation and test harness for Microsoft KB836410.
//!
//! (Module map filled in as the modules land.)
