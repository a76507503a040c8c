//! A CGI function (deploy with `--cgi`): prints response headers, a blank line, then
//! the body. What it answers depends on the query string:
//!
//! - `redirect`: `302` to `/elsewhere`;
//! - `cookies`: two `Set-Cookie` headers;
//! - anything else: `201 Created`, `Content-Type: application/json`.

fn main() {
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    match query.as_str() {
        "redirect" => {
            println!("Location: /elsewhere");
            println!();
        }
        "cookies" => {
            println!("Content-Type: text/plain");
            println!("Set-Cookie: session=abc; HttpOnly");
            println!("Set-Cookie: theme=dark");
            println!();
            println!("two cookies");
        }
        _ => {
            println!("Status: 201 Created");
            println!("Content-Type: application/json");
            println!();
            println!("{{\"created\":true}}");
        }
    }
}
