//! Functions written in a language Kiln provides a runtime for (`kiln deploy
//! app.py`, `kiln deploy app.js`): the user uploads only their code, as a bundle
//! mounted at [`APP_DIR`], and names the entry file; the server runs the
//! language's runtime on it once, at deploy, and serves the snapshot.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a script function's code is mounted, at deploy and in every request.
pub const APP_DIR: &str = "/app";

/// A language Kiln runs on a runtime of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// CPython (componentize-py's build: the real interpreter, its standard library).
    Python,
    /// JavaScript on QuickJS-NG.
    Js,
}

impl Language {
    /// Every language, in the order documentation lists them.
    pub const ALL: [Language; 2] = [Language::Python, Language::Js];

    /// Its name in deploy options and file names (`python`, `js`).
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Js => "js",
        }
    }

    /// The language of a source file, by its extension (`.py`; `.js`, `.mjs`).
    ///
    /// ```
    /// use kiln_api::Language;
    /// assert_eq!(Language::of_file("app.py"), Some(Language::Python));
    /// assert_eq!(Language::of_file("src/index.mjs"), Some(Language::Js));
    /// assert_eq!(Language::of_file("app.wasm"), None);
    /// ```
    pub fn of_file(path: &str) -> Option<Language> {
        let extension = path.rsplit_once('.')?.1;
        match extension {
            "py" => Some(Language::Python),
            "js" | "mjs" => Some(Language::Js),
            _ => None,
        }
    }

    /// The entry files looked for in a deployed directory, in order.
    pub fn default_entries(self) -> &'static [&'static str] {
        match self {
            Language::Python => &["app.py", "main.py"],
            Language::Js => &["index.js", "app.js", "index.mjs", "main.js"],
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A script function: its language and its entry file, relative to [`APP_DIR`].
/// The deploy option `script=LANGUAGE:ENTRY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// The runtime it runs on.
    pub language: Language,
    /// The entry file inside the code's bundle (`app.py`, `src/index.js`).
    pub entry: String,
}

impl Script {
    /// Reads `LANGUAGE:ENTRY`.
    ///
    /// ```
    /// use kiln_api::{Language, Script};
    /// let script = Script::parse("python:app.py").unwrap();
    /// assert_eq!(script.language, Language::Python);
    /// assert_eq!(script.to_string(), "python:app.py");
    /// assert!(Script::parse("ruby:app.rb").is_err());
    /// assert!(Script::parse("js:../x.js").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Script, String> {
        let (language, entry) = text
            .split_once(':')
            .ok_or_else(|| format!("expected LANGUAGE:ENTRY (e.g. python:app.py), got {text:?}"))?;
        let language = Language::ALL
            .into_iter()
            .find(|l| l.name() == language)
            .ok_or_else(|| format!("unknown language {language:?} (known: python, js)"))?;
        let clean = !entry.is_empty()
            && !entry.starts_with('/')
            && entry
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !entry.contains(['\\', '\0']);
        if !clean {
            return Err(format!(
                "the entry must be a relative path inside the code's directory, got {entry:?}"
            ));
        }
        Ok(Script {
            language,
            entry: entry.to_owned(),
        })
    }

    /// The entry's path in the guest (`/app/app.py`).
    pub fn guest_entry(&self) -> String {
        format!("{APP_DIR}/{}", self.entry)
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.language, self.entry)
    }
}
