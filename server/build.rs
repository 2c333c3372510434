//! Build script: the `--version` text with the git commit when built from a checkout
//! (the client's build_version.rs, shared).

include!("../client/build_version.rs");
