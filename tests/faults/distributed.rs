//! `kill -9` of the distributed processes: see the module list in `main.rs`.
