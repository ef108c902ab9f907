//! `berth-agent`: see [`berth_agent::cli`].
fn main() -> std::process::ExitCode {
    berth_agent::cli::main()
}
