//! `mock-upstream [--listen 127.0.0.1:18081]`: the mock OpenAI upstream,
//! until killed. Request headers that steer it are listed in
//! `testbed::upstream`.

use std::net::SocketAddr;
use std::process::ExitCode;

use testbed::upstream::MockUpstream;

const USAGE: &str = "usage: mock-upstream [--listen ADDR]   (default 127.0.0.1:18081)";

fn main() -> ExitCode {
    let listen = match listen_addr(std::env::args().skip(1), "127.0.0.1:18081") {
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
    let upstream = match MockUpstream::start_on(listen) {
        Ok(upstream) => upstream,
        Err(err) => {
            eprintln!("mock-upstream: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock-upstream listening on {}", upstream.addr);
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
        .map_err(|_| format!("--listen: {listen:?} is not an address like 127.0.0.1:18081"))
}
