//! Prints its arguments and environment, one per line: what a function sees of its
//! invocation (`ARG n=...`, then `ENV K=V` in the order given).

fn main() {
    for (i, arg) in std::env::args().enumerate() {
        println!("ARG {i}={arg}");
    }
    for (key, value) in std::env::vars() {
        println!("ENV {key}={value}");
    }
}
