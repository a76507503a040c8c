//! Exits with code 3 after saying so on stderr.

fn main() {
    eprintln!("exit3: giving up with code 3");
    std::process::exit(3);
}
