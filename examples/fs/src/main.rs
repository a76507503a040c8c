//! A filesystem probe: runs one command per line of stdin and prints
//! `COMMAND -> RESULT` for each, where a failure is `error: KIND`. What it can
//! reach is what Kiln mounted: the tests use it to read bundles, write scratch
//! files, and try every way out.
//!
//! Commands: `cat P`, `ls P`, `write P TEXT`, `append P TEXT`, `mkdir P`,
//! `rm P`, `rmdir P`, `rename A B`, `stat P`, `readlink P`,
//! `fill P BYTES`, `many DIR N`, `sleep MS`.

use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let result = run(line).unwrap_or_else(|e| format!("error: {:?}", e.kind()));
        println!("{line} -> {result}");
    }
}

fn run(line: &str) -> std::io::Result<String> {
    let mut words = line.splitn(3, ' ');
    let command = words.next().unwrap_or("");
    let a = words.next().unwrap_or("");
    let b = words.next().unwrap_or("");
    Ok(match command {
        "cat" => std::fs::read_to_string(a)?,
        "ls" => {
            let mut names: Vec<String> = std::fs::read_dir(a)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            names.join(",")
        }
        "write" => {
            std::fs::write(a, b)?;
            "ok".into()
        }
        "append" => {
            let mut file = std::fs::OpenOptions::new().append(true).open(a)?;
            file.write_all(b.as_bytes())?;
            "ok".into()
        }
        "mkdir" => std::fs::create_dir(a).map(|()| "ok".into())?,
        "rm" => std::fs::remove_file(a).map(|()| "ok".into())?,
        "rmdir" => std::fs::remove_dir(a).map(|()| "ok".into())?,
        "rename" => std::fs::rename(a, b).map(|()| "ok".into())?,
        "stat" => {
            let meta = std::fs::metadata(a)?;
            let modified = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let kind = if meta.is_dir() { "dir" } else { "file" };
            format!("{kind} {} bytes, modified {modified}", meta.len())
        }
        "readlink" => std::fs::read_link(a)?.display().to_string(),
        "fill" => {
            let total: u64 = b.parse().unwrap_or(0);
            let mut file = std::fs::File::create(a)?;
            let chunk = vec![7u8; 64 << 10];
            let mut written = 0u64;
            while written < total {
                let n = chunk.len().min((total - written) as usize);
                file.write_all(&chunk[..n])?;
                written += n as u64;
            }
            file.sync_all()?;
            format!("wrote {written}")
        }
        "many" => {
            let n: u64 = b.parse().unwrap_or(0);
            for i in 0..n {
                std::fs::write(format!("{a}/f{i}"), "x")?;
            }
            format!("made {n}")
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(a.parse().unwrap_or(0)));
            "slept".into()
        }
        other => format!("unknown command {other:?}"),
    })
}
