// Kiln's JavaScript prelude: the parts of the web platform a `fetch` handler
// uses (Headers, Request, Response, URL, URLSearchParams, TextEncoder,
// TextDecoder, console, crypto), written on QuickJS and the host functions in
// `globalThis.__kiln` (write, stdin, env, utf8Encode, utf8Decode, random). Evaluated once, at
// deploy, before the user's code; it is part of every function's snapshot.
"use strict";

const host = globalThis.__kiln;
delete globalThis.__kiln;

class TextEncoder {
  get encoding() {
    return "utf-8";
  }
  encode(text = "") {
    return new Uint8Array(host.utf8Encode(String(text)));
  }
}

class TextDecoder {
  constructor(label = "utf-8") {
    const name = String(label).toLowerCase();
    if (name !== "utf-8" && name !== "utf8") {
      throw new RangeError(`TextDecoder: only utf-8 is supported, not ${label}`);
    }
  }
  get encoding() {
    return "utf-8";
  }
  decode(input) {
    if (input === undefined) return "";
    return host.utf8Decode(toBytes(input).slice().buffer);
  }
}

/** The bytes of a body or buffer-like value, as a Uint8Array. */
function toBytes(value) {
  if (value == null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return new TextEncoder().encode(String(value));
}

class Headers {
  #map = new Map();

  constructor(init) {
    if (init == null) return;
    const pairs =
      init instanceof Headers || Array.isArray(init) || typeof init[Symbol.iterator] === "function"
        ? init
        : Object.entries(init);
    for (const pair of pairs) {
      if (pair.length !== 2) throw new TypeError("Headers: each header must be a [name, value] pair");
      this.append(pair[0], pair[1]);
    }
  }
  append(name, value) {
    const key = headerName(name);
    const old = this.#map.get(key);
    this.#map.set(key, old === undefined ? String(value) : `${old}, ${value}`);
  }
  set(name, value) {
    this.#map.set(headerName(name), String(value));
  }
  get(name) {
    return this.#map.get(headerName(name)) ?? null;
  }
  has(name) {
    return this.#map.has(headerName(name));
  }
  delete(name) {
    this.#map.delete(headerName(name));
  }
  forEach(callback, thisArg) {
    for (const [name, value] of this) callback.call(thisArg, value, name, this);
  }
  *entries() {
    yield* [...this.#map.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  *keys() {
    for (const [name] of this.entries()) yield name;
  }
  *values() {
    for (const [, value] of this.entries()) yield value;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

function headerName(name) {
  const text = String(name).toLowerCase();
  if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(text)) {
    throw new TypeError(`invalid header name: ${JSON.stringify(String(name))}`);
  }
  return text;
}

/** What Request and Response share: a body read once. */
class Body {
  #bytes;
  #used = false;

  constructor(body) {
    this.#bytes = body == null ? null : toBytes(body);
  }
  get bodyUsed() {
    return this.#used;
  }
  #take() {
    if (this.#used) throw new TypeError("body already used");
    this.#used = true;
    return this.#bytes ?? new Uint8Array(0);
  }
  async arrayBuffer() {
    return this.#take().slice().buffer;
  }
  async bytes() {
    return this.#take().slice();
  }
  async text() {
    return new TextDecoder().decode(this.#take());
  }
  async json() {
    return JSON.parse(await this.text());
  }
  async formData() {
    throw new TypeError("formData() is not supported; use text() and URLSearchParams");
  }
}

class Request extends Body {
  constructor(input, init = {}) {
    const from = input instanceof Request ? input : null;
    super(init.body ?? null);
    this.url = from ? from.url : new URL(String(input)).href;
    this.method = String(init.method ?? from?.method ?? "GET").toUpperCase();
    this.headers = new Headers(init.headers ?? from?.headers);
  }
}

const STATUS_TEXT = {
  200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
  304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
  404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 500: "Internal Server Error",
};

class Response extends Body {
  constructor(body = null, init = {}) {
    super(body);
    const status = init.status ?? 200;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`Response status must be an integer from 200 to 599, not ${status}`);
    }
    this.status = status;
    this.statusText = init.statusText ?? STATUS_TEXT[status] ?? "";
    this.headers = new Headers(init.headers);
    if (typeof body === "string" && !this.headers.has("content-type")) {
      this.headers.set("content-type", "text/plain;charset=UTF-8");
    }
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }
  static redirect(url, status = 302) {
    return new Response(null, { status, headers: { location: String(url) } });
  }
}

class URLSearchParams {
  #pairs = [];
  #onChange;

  constructor(init = "", onChange) {
    this.#onChange = onChange;
    if (typeof init === "string") {
      for (const part of init.replace(/^\?/, "").split("&")) {
        if (part === "") continue;
        const at = part.indexOf("=");
        const [name, value] = at < 0 ? [part, ""] : [part.slice(0, at), part.slice(at + 1)];
        this.#pairs.push([formDecode(name), formDecode(value)]);
      }
    } else if (init != null) {
      const pairs = typeof init[Symbol.iterator] === "function" ? init : Object.entries(init);
      for (const [name, value] of pairs) this.#pairs.push([String(name), String(value)]);
    }
  }
  #changed() {
    this.#onChange?.(this.toString());
  }
  get size() {
    return this.#pairs.length;
  }
  append(name, value) {
    this.#pairs.push([String(name), String(value)]);
    this.#changed();
  }
  delete(name) {
    this.#pairs = this.#pairs.filter(([n]) => n !== String(name));
    this.#changed();
  }
  get(name) {
    return this.#pairs.find(([n]) => n === String(name))?.[1] ?? null;
  }
  getAll(name) {
    return this.#pairs.filter(([n]) => n === String(name)).map(([, v]) => v);
  }
  has(name) {
    return this.#pairs.some(([n]) => n === String(name));
  }
  set(name, value) {
    const at = this.#pairs.findIndex(([n]) => n === String(name));
    if (at < 0) {
      this.#pairs.push([String(name), String(value)]);
    } else {
      this.#pairs[at][1] = String(value);
      this.#pairs = this.#pairs.filter(([n], i) => i <= at || n !== String(name));
    }
    this.#changed();
  }
  forEach(callback, thisArg) {
    for (const [name, value] of this.#pairs) callback.call(thisArg, value, name, this);
  }
  *entries() {
    yield* this.#pairs.map(([n, v]) => [n, v]);
  }
  *keys() {
    for (const [name] of this.#pairs) yield name;
  }
  *values() {
    for (const [, value] of this.#pairs) yield value;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  toString() {
    return this.#pairs.map(([n, v]) => `${formEncode(n)}=${formEncode(v)}`).join("&");
  }
}

function formDecode(text) {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}

function formEncode(text) {
  return encodeURIComponent(text).replace(/%20/g, "+");
}

const URL_PARTS = /^([a-zA-Z][a-zA-Z0-9+.-]*:)\/\/(?:[^@\/?#]*@)?([^\/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/;

class URL {
  #protocol;
  #host;
  #pathname;
  #search;
  #hash;
  #searchParams;

  constructor(url, base) {
    let text = String(url);
    if (!URL_PARTS.test(text)) {
      if (base === undefined) throw new TypeError(`invalid URL: ${JSON.stringify(text)}`);
      text = resolve(new URL(base), text);
    }
    const [, protocol, host, pathname, search, hash] = URL_PARTS.exec(text);
    this.#protocol = protocol.toLowerCase();
    this.#host = host.toLowerCase();
    this.#pathname = pathname || "/";
    this.#search = search && search !== "?" ? search : "";
    this.#hash = hash && hash !== "#" ? hash : "";
    this.#searchParams = new URLSearchParams(this.#search, (query) => {
      this.#search = query ? `?${query}` : "";
    });
  }
  get protocol() {
    return this.#protocol;
  }
  get host() {
    return this.#host;
  }
  get hostname() {
    return this.#host.replace(/:\d+$/, "");
  }
  get port() {
    return /:(\d+)$/.exec(this.#host)?.[1] ?? "";
  }
  get origin() {
    return `${this.#protocol}//${this.#host}`;
  }
  get pathname() {
    return this.#pathname;
  }
  get search() {
    return this.#search;
  }
  set search(value) {
    const query = String(value).replace(/^\?/, "");
    this.#search = query ? `?${query}` : "";
    this.#searchParams = new URLSearchParams(query, (q) => {
      this.#search = q ? `?${q}` : "";
    });
  }
  get searchParams() {
    return this.#searchParams;
  }
  get hash() {
    return this.#hash;
  }
  get href() {
    return `${this.origin}${this.#pathname}${this.#search}${this.#hash}`;
  }
  toString() {
    return this.href;
  }
  toJSON() {
    return this.href;
  }
}

/** `relative` resolved against `base` (paths, queries and fragments; no dot segments). */
function resolve(base, relative) {
  if (relative.startsWith("//")) return `${base.protocol}${relative}`;
  if (relative.startsWith("/")) return `${base.origin}${relative}`;
  if (relative.startsWith("?")) return `${base.origin}${base.pathname}${relative}`;
  if (relative.startsWith("#")) return `${base.origin}${base.pathname}${base.search}${relative}`;
  const dir = base.pathname.slice(0, base.pathname.lastIndexOf("/") + 1);
  return `${base.origin}${dir}${relative}`;
}

/** One console line: strings as they are, everything else as JSON where it can be. */
function format(args) {
  return args
    .map((arg) => {
      if (typeof arg === "string") return arg;
      if (arg instanceof Error) return arg.stack ? `${arg}\n${arg.stack}` : String(arg);
      try {
        return JSON.stringify(arg) ?? String(arg);
      } catch {
        return String(arg);
      }
    })
    .join(" ");
}

// In a script (the CGI style) console.log writes the response; in a handler
// module it writes to the function's log, as on Workers. `logTo` is set at deploy.
let logTo = 1;
const console = {
  log: (...args) => host.write(logTo, `${format(args)}\n`),
  info: (...args) => host.write(logTo, `${format(args)}\n`),
  debug: (...args) => host.write(logTo, `${format(args)}\n`),
  warn: (...args) => host.write(2, `${format(args)}\n`),
  error: (...args) => host.write(2, `${format(args)}\n`),
};

/** The script-style API: the request body, and raw writes to stdout. */
const Kiln = {
  /** The request body as text. */
  readInput: () => host.utf8Decode(host.stdin()),
  /** The request body as bytes. */
  readInputBytes: () => new Uint8Array(host.stdin()),
  /** Writes text or bytes to stdout (the response) with no newline added. */
  write: (data) => host.write(1, typeof data === "string" ? data : toBytes(data).slice().buffer),
  /** The function's environment: its `--env` variables and the CGI variables. */
  get env() {
    return host.env();
  },
};

/** Request headers from the CGI meta-variables (`HTTP_*`, `CONTENT_TYPE`, `CONTENT_LENGTH`). */
function requestHeaders(env) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith("HTTP_")) headers.append(name.slice(5).replace(/_/g, "-"), value);
  }
  if (env.CONTENT_TYPE) headers.set("content-type", env.CONTENT_TYPE);
  if (env.CONTENT_LENGTH) headers.set("content-length", env.CONTENT_LENGTH);
  return headers;
}

/**
 * Serves one request with a handler module's default export: builds the
 * Request from the CGI variables and stdin, awaits `fetch(request, env, ctx)`,
 * and answers [status, [[name, value]...], ArrayBuffer] for the host to write.
 */
async function serve(handler) {
  const env = host.env();
  const scheme = env.HTTPS === "on" ? "https" : "http";
  const authority = env.HTTP_HOST || `${env.SERVER_NAME || "localhost"}:${env.SERVER_PORT || "80"}`;
  const query = env.QUERY_STRING ? `?${env.QUERY_STRING}` : "";
  const path = `${env.SCRIPT_NAME || ""}${env.PATH_INFO || ""}` || "/";
  const method = env.REQUEST_METHOD || "GET";
  const body = method === "GET" || method === "HEAD" ? null : host.stdin();
  const request = new Request(`${scheme}://${authority}${path}${query}`, {
    method,
    headers: requestHeaders(env),
    body,
  });
  const waits = [];
  const ctx = { waitUntil: (promise) => waits.push(promise), passThroughOnException() {} };
  const response = await handler.fetch(request, env, ctx);
  if (!(response instanceof Response)) {
    throw new TypeError(`fetch() must return a Response, not ${format([response])}`);
  }
  const bytes = await response.arrayBuffer();
  await Promise.all(waits);
  return [response.status, [...response.headers], bytes];
}

/** Fresh randomness per call: a snapshot's PRNG state would repeat in every request. */
Math.random = () => {
  const words = new Uint32Array(host.random(8));
  return (words[0] * 2 ** 21 + (words[1] >>> 11)) / 2 ** 53;
};

const crypto = {
  getRandomValues(array) {
    if (!ArrayBuffer.isView(array)) throw new TypeError("getRandomValues needs a typed array");
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(
      new Uint8Array(host.random(array.byteLength)),
    );
    return array;
  },
  randomUUID() {
    const b = new Uint8Array(host.random(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  },
};

Object.assign(globalThis, {
  crypto,
  TextEncoder,
  TextDecoder,
  Headers,
  Request,
  Response,
  URL,
  URLSearchParams,
  console,
  Kiln,
});

// The host's entry points (see main.rs), out of the way of user code.
Object.defineProperty(globalThis, "__kilnRuntime", {
  value: {
    serve,
    handlerMode() {
      logTo = 2;
    },
  },
  enumerable: false,
});
