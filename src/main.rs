//! `servesim`: simulated vLLM serving on a GPU, and the tools to check it against the real thing.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
