//! The CLI's HTTP client for the control API: resolves server and token, sends
//! requests, and turns error answers into one clear line.

use crate::credentials::{self, DEFAULT_URL};
use anyhow::{Context, bail};
use kiln_api::{ErrorBody, WhoAmI};
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::Response;
use ureq::{Agent, Body};

/// Server and token flags, shared by every client subcommand.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServerArgs {
    /// Server URL [env: KILN_URL; default: from the credentials file, else http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API token [env: KILN_TOKEN; default: from the credentials file]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Certificate authorities (PEM) to trust for an https:// server, instead
    /// of the web's (a private CA, a self-signed certificate)
    #[arg(long, global = true, env = "KILN_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

pub(crate) struct Client {
    agent: Agent,
    pub url: String,
    token: Option<String>,
    /// The tenant named in the credentials file, if the token came from it.
    pub tenant: Option<String>,
}

/// Which token a command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Tenant,
    Admin,
}

impl Client {
    pub(crate) fn new(args: &ServerArgs, role: Role) -> anyhow::Result<Client> {
        let saved = credentials::load()?;
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let url = args
            .url
            .clone()
            .or_else(|| env("KILN_URL"))
            .or_else(|| saved.as_ref().map(|c| c.url.clone()))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let explicit = args.token.clone().or_else(|| env("KILN_TOKEN"));
        let (token, tenant) = match (explicit, &saved) {
            (Some(token), _) => (Some(token), None),
            (None, Some(c)) if role == Role::Admin => (Some(c.admin_token.clone()), None),
            (None, Some(c)) => (Some(c.token.clone()), Some(c.tenant.clone())),
            (None, None) => (None, None),
        };
        let mut config = Agent::config_builder().http_status_as_error(false);
        if let Some(path) = &args.ca_cert {
            config = config.tls_config(private_roots(path)?);
        }
        let agent = config.build().into();
        Ok(Client {
            agent,
            url: url.trim_end_matches('/').to_owned(),
            token,
            tenant,
        })
    }

    /// Adds the bearer token, when there is one.
    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => req.header("Authorization", format!("Bearer {token}")),
            None => req,
        }
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = self.authorized(self.agent.get(format!("{}{path}", self.url)));
        json(self.check(req.call())?)
    }

    /// [`Client::get`], with `None` for a 404.
    pub(crate) fn get_if_found<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let req = self.authorized(self.agent.get(format!("{}{path}", self.url)));
        let response = req.call().map_err(|e| self.unreachable(e))?;
        if response.status() == 404 {
            return Ok(None);
        }
        json(self.check(Ok(response))?).map(Some)
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<()> {
        let req = self.authorized(self.agent.delete(format!("{}{path}", self.url)));
        self.check(req.call()).map(drop)
    }

    pub(crate) fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let req = self.authorized(self.agent.post(format!("{}{path}", self.url)));
        json(self.check(req.send_json(body))?)
    }

    pub(crate) fn put_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let req = self.authorized(self.agent.put(format!("{}{path}", self.url)));
        json(self.check(req.send_json(body))?)
    }

    /// POSTs a streamed body (a module upload).
    pub(crate) fn post_reader<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl std::io::Read + 'static,
        len: u64,
    ) -> anyhow::Result<T> {
        let req = self.authorized(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Content-Type", "application/wasm")
                .header("Content-Length", len.to_string()),
        );
        json(self.check(req.send(ureq::SendBody::from_owned_reader(body)))?)
    }

    /// PUTs a streamed body (a bundle upload).
    pub(crate) fn put_reader<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: impl std::io::Read + 'static,
    ) -> anyhow::Result<T> {
        let req = self.authorized(
            self.agent
                .put(format!("{}{path}", self.url))
                .header("Content-Type", content_type),
        );
        json(self.check(req.send(ureq::SendBody::from_owned_reader(body)))?)
    }

    /// The raw body at `path`, or `None` for a 404 (a key-value value).
    pub(crate) fn get_bytes(&self, path: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let req = self.authorized(self.agent.get(format!("{}{path}", self.url)));
        let response = req.call().map_err(|e| self.unreachable(e))?;
        if response.status() == 404 {
            return Ok(None);
        }
        let mut response = self.check(Ok(response))?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .context("cannot read the server's answer")?;
        Ok(Some(bytes))
    }

    /// PUTs raw bytes (a key-value value); the answer has no body.
    pub(crate) fn put_bytes(&self, path: &str, body: &[u8]) -> anyhow::Result<()> {
        let req = self.authorized(
            self.agent
                .put(format!("{}{path}", self.url))
                .header("Content-Type", "application/octet-stream"),
        );
        self.check(req.send(body)).map(drop)
    }

    /// POSTs `body` to an arbitrary path and returns the raw response (for invoke).
    pub(crate) fn post_raw(&self, path: &str, body: &[u8]) -> anyhow::Result<Response<Body>> {
        let req = self.authorized(self.agent.post(format!("{}{path}", self.url)));
        req.send(body).map_err(|e| self.unreachable(e))
    }

    /// The tenant this client acts for: from the credentials file or the server.
    pub(crate) fn tenant(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.tenant {
            return Ok(t.clone());
        }
        let me: WhoAmI = self.get("/v1/whoami")?;
        me.tenant
            .context("this token is the admin token; use a tenant token for this command")
    }

    fn check(&self, result: Result<Response<Body>, ureq::Error>) -> anyhow::Result<Response<Body>> {
        let mut response = result.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|body| body.error)
            .unwrap_or_else(|_| text.trim().to_owned());
        if self.token.is_none() && status == 401 {
            bail!(
                "{message} (no token: run `kiln up` on this machine, or set KILN_TOKEN or --token)"
            );
        }
        bail!("{message} ({})", status.as_u16())
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach the Kiln server at {}: {e} (is `kiln up` running?)",
            self.url
        )
    }
}

fn json<T: DeserializeOwned>(mut response: Response<Body>) -> anyhow::Result<T> {
    let text = response
        .body_mut()
        .read_to_string()
        .context("cannot read the server's answer")?;
    serde_json::from_str(if text.is_empty() { "null" } else { &text })
        .with_context(|| format!("unexpected answer from the server: {text}"))
}

/// TLS that trusts only the certificates in the PEM file at `path`.
fn private_roots(path: &std::path::Path) -> anyhow::Result<ureq::tls::TlsConfig> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, parse_pem};
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
    let mut roots = Vec::new();
    for item in parse_pem(&pem) {
        if let PemItem::Certificate(cert) =
            item.with_context(|| format!("{} is not PEM", path.display()))?
        {
            roots.push(cert);
        }
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in {}", path.display());
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}
