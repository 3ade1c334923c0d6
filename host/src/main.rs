use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = llma_sentiment::cli::Cli::parse();
    let config = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    llma_sentiment::logging::init(&config.log);
    match llma_sentiment::cli::run(cli, config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
