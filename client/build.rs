//! Build script: the `--version` text with the git commit when built from a checkout
//! (build_version.rs, shared with the server).

include!("build_version.rs");
