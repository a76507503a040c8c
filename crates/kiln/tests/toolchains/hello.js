// A wasi:http/proxy component built by componentize-js (StarlingMonkey), in
// its fetch-event idiom; the test checks Kiln serves it as is.
addEventListener("fetch", (event) =>
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      return new Response(`Hello from componentize-js at ${url.pathname}\n`);
    })(),
  ),
);
