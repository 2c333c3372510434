#![forbid(unsafe_code)]

fn main() {
    std::process::exit(mcli_client::cli::main());
}
