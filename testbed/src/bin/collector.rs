//! `collector [--listen 127.0.0.1:18082]`: the summary collector,
//! until killed. Its endpoints are listed in `testbed::collector`.

use std::net::SocketAddr;
use std::process::ExitCode;

use testbed::collector::Collector;

const USAGE: &str = "usage: collector [--listen ADDR]   (default 127.0.0.1:18082)";

fn main() -> ExitCode {
    let listen = match listen_addr(std::env::args().skip(1), "127.0.0.1:18082") {
        Ok(addr) => addr,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let collector = match Collector::start_on(listen) {
        Ok(collector) => collector,
        Err(err) => {
            eprintln!("collector: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("collector listening on {}", collector.addr);
    loop {
        std::thread::park();
    }
}

fn listen_addr(
    mut args: impl Iterator<Item = String>,
    default: &str,
) -> Result<SocketAddr, String> {
    let mut listen = default.to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            // An empty error asks for the usage text.
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    listen
        .parse()
        .map_err(|_| format!("--listen: {listen:?} is not an address like 127.0.0.1:18082"))
}
