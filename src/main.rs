fn main() -> std::process::ExitCode {
    punch::cli::main()
}
