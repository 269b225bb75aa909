//! `streamtap-probe URL [...]`: see `probe::args::USAGE` and the README's
//! "Where is it buffered" section.

use std::process::ExitCode;

use probe::args::{self, Command};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(message) => {
            eprintln!("streamtap-probe: {message} (--help for usage)");
            return ExitCode::from(2);
        }
    };
    match probe::run(&args, probe::COLLECTOR_WAIT) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("streamtap-probe: {message}");
            ExitCode::FAILURE
        }
    }
}
