fn main() {
    std::process::exit(mcli_client::cli::main());
}
