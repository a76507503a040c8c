// The Kiln console. It speaks the /v1 API with the session cookie that
// POST /console/session sets; everything it shows is set as text
// (textContent), never as HTML, so names and logs cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error((data && data.error && data.error.message) || response.statusText);
  }
  return data;
}

function show(view) {
  for (const id of ["sign-in-view", "functions-view"]) {
    $(id).hidden = id !== view;
  }
  $("sign-out").hidden = view === "sign-in-view";
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function loadFunctions(tenant) {
  const functions = await api("GET", "/v1/functions");
  const body = $("functions");
  body.replaceChildren();
  for (const f of functions) {
    const row = document.createElement("tr");
    cell(row, f.name);
    cell(row, String(f.current.number));
    cell(row, `${f.current.size} bytes`);
    cell(row, `${location.origin}/fn/${tenant}/${f.name}`);
    body.appendChild(row);
  }
  $("no-functions").hidden = functions.length > 0;
}

async function start() {
  try {
    const who = await api("GET", "/v1/whoami");
    $("who").textContent = who.admin ? "operator" : `tenant ${who.tenant}`;
    show("functions-view");
    if (!who.admin) {
      await loadFunctions(who.tenant);
    }
  } catch (e) {
    $("who").textContent = "";
    show("sign-in-view");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      await api("POST", "/console/session", { token: $("token").value });
      $("token").value = "";
      await start();
    } catch (e) {
      $("sign-in-error").textContent = e.message;
    }
  });
  $("sign-out").addEventListener("click", async () => {
    await api("DELETE", "/console/session");
    await start();
  });
  start();
});
