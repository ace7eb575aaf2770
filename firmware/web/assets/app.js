// The cbox status page: log in with the admin PIN, then follow the box's
// status (server-sent events) and act on it. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null;
let stream = null;

function bars(dbm) {
  const n = dbm == null ? 0 : dbm >= -55 ? 4 : dbm >= -65 ? 3 : dbm >= -75 ? 2 : dbm >= -85 ? 1 : 0;
  const span = document.createElement("span");
  span.className = "bars";
  span.title = dbm == null ? "no signal reading" : dbm + " dBm";
  for (let i = 0; i < 4; i++) {
    const b = document.createElement("i");
    if (i < n) b.className = "on";
    span.appendChild(b);
  }
  return span;
}

function text(tag, content, cls) {
  const e = document.createElement(tag);
  e.textContent = content;
  if (cls) e.className = cls;
  return e;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let j = {};
  try { j = await r.json(); } catch (e) { /* empty body */ }
  if (r.status === 401) { showLogin(); }
  $("message").textContent = j.ok ? "done" : (j.error || ("failed: " + r.status));
  return j;
}

function render(s) {
  current = s;
  $("box-id").textContent = s.box_id;
  const site = (s.sites || [])[0];
  const connected = (s.sites || []).length > 0 && s.sites.every((x) => x.state === "Established");
  $("conn").textContent = connected ? "connected" : "not connected";
  $("conn").className = "badge " + (connected ? "ok" : "bad");
  $("mode").textContent = s.mode;
  $("toggle-mode").textContent = s.mode === "manual" ? "Switch automatically" : "Ask me first (manual)";

  const sg = s.suggestion;
  $("suggestion").hidden = !sg;
  if (sg) $("suggestion-text").textContent = "The box suggests " + sg.uplink + (sg.reason ? " — " + sg.reason : "");

  const cards = $("uplinks");
  cards.replaceChildren();
  for (const u of s.uplinks) {
    const c = document.createElement("div");
    c.className = "card " + u.health + (u.active ? " active" : "");
    c.dataset.uplink = u.name;
    const top = document.createElement("div");
    top.className = "top";
    top.appendChild(text("span", u.name, "name"));
    top.appendChild(bars(u.signal_dbm));
    c.appendChild(top);
    const radio = u.wifi && u.wifi.ssid ? " · " + u.wifi.ssid : u.modem && u.modem.operator ? " · " + u.modem.operator : "";
    c.appendChild(text("div", u.kind + radio + " · " + (u.active ? "in use" : u.link ? "standby" : "no link"), "detail"));
    const rtt = u.rtt_ms == null ? "–" : u.rtt_ms.toFixed(0) + " ms";
    c.appendChild(text("div", u.health + " · rtt " + rtt + " · loss " + Math.round(u.loss * 100) + " %", "detail"));
    // What the radio's driver reports as wrong (a refused passphrase, a
    // SIM asking for its PIN): the technician can act on it.
    const problem = (u.wifi && u.wifi.problem) || (u.modem && u.modem.problem);
    if (problem) c.appendChild(text("div", problem, "detail problem"));
    if (!u.active) {
      const b = text("button", "Use " + u.name, "secondary");
      b.disabled = !u.link;
      b.addEventListener("click", () => post("/api/switch", { uplink: u.name }));
      c.appendChild(b);
    }
    cards.appendChild(c);
  }

  const sites = $("sites");
  sites.replaceChildren();
  for (const x of s.sites || []) {
    sites.appendChild(text("div", x.snapt + ": " + x.state + " over " + (x.uplink || "–") + " · " + x.streams + " streams", "detail"));
  }

  const body = $("handovers").querySelector("tbody");
  body.replaceChildren();
  const hs = (s.handovers || []).slice().reverse().slice(0, 10);
  for (const h of hs) {
    const tr = document.createElement("tr");
    const failed = h.outcome && h.outcome.result === "failed";
    tr.appendChild(text("td", String(h.seq)));
    tr.appendChild(text("td", h.kind));
    tr.appendChild(text("td", (h.from_uplink || "none") + " → " + h.to_uplink));
    tr.appendChild(text("td", h.stall_ms.toFixed(0) + " ms"));
    tr.appendChild(text("td", h.bytes_replayed + " B"));
    tr.appendChild(text("td", failed ? "failed: " + h.outcome.why : "ok, 0 bytes lost", failed ? "failed" : ""));
    body.appendChild(tr);
  }
  $("handovers").hidden = hs.length === 0;
  $("no-handovers").hidden = hs.length > 0;
  renderPan(s);
}

function renderPan(s) {
  const bt = s.bluetooth;
  const p = bt ? bt.pairing : null;
  $("passkey").hidden = !(p && p.passkey);
  if (p && p.passkey) {
    $("passkey-digits").textContent = p.passkey;
    $("passkey-device").textContent = p.device || "";
  }
  let line = "Bluetooth: not configured";
  if (bt) {
    const state = bt.nap_registered ? "\u201c" + bt.alias + "\u201d ready" : "down" + (bt.problem ? " (" + bt.problem + ")" : "");
    const win = p.open ? "pairing open, " + p.seconds_left + " s left" : "pairing closed";
    line = "Bluetooth " + state + " · " + win + " · " + bt.trusted.length + " trusted";
  }
  $("bluetooth").textContent = line;
  const ap = s.wifi_ap;
  $("wifi-ap").hidden = !ap;
  let open = p ? p.open : false;
  if (ap) {
    open = open || ap.pairing_open;
    const state = ap.problem ? "down (" + ap.problem + ")" : "\u201c" + ap.ssid + "\u201d " + (ap.visible ? "visible" : "hidden");
    $("wifi-ap").textContent = "Wi-Fi " + state + " · " + ap.security + " · " + ap.stations.length + " joined";
  }
  // The join code while pairing is open (fetched once per opening).
  const showQr = !!(ap && open && !ap.problem);
  if (showQr && $("wifi-join").hidden) { $("wifi-qr").src = "/api/wifi-qr.svg?t=" + Date.now(); }
  $("wifi-join").hidden = !showQr;
  $("pair").textContent = open ? "Close pairing" : "Open pairing";
  $("pair").disabled = !bt && !ap;
  const list = $("pan-clients");
  list.replaceChildren();
  for (const c of s.pan_clients || []) {
    list.appendChild(text("div", c.address + " on " + c.interface + (c.ip ? " · " + c.ip : ""), "detail client"));
  }
}

function showLogin() {
  if (stream) { stream.close(); stream = null; }
  $("app").hidden = true;
  $("login").hidden = false;
  $("pin").focus();
}

async function start() {
  const r = await fetch("/api/status");
  if (r.status === 401) { showLogin(); return; }
  const j = await r.json();
  $("login").hidden = true;
  $("app").hidden = false;
  if (j.data) render(j.data);
  stream = new EventSource("/api/stream");
  stream.addEventListener("status", (e) => render(JSON.parse(e.data)));
  stream.onerror = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "badge"; };
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pin: $("pin").value }),
    });
    const j = await r.json();
    $("pin").value = "";
    if (j.ok) { $("login-error").textContent = ""; start(); } else { $("login-error").textContent = j.error; }
  });
  $("approve").addEventListener("click", () => post("/api/approve"));
  $("decline").addEventListener("click", () => post("/api/decline"));
  $("toggle-mode").addEventListener("click", () =>
    post("/api/mode", { mode: current && current.mode === "manual" ? "automatic" : "manual" }));
  $("pair").addEventListener("click", () => {
    const open = current && ((current.bluetooth && current.bluetooth.pairing.open) || (current.wifi_ap && current.wifi_ap.pairing_open));
    post(open ? "/api/pair/close" : "/api/pair");
  });
  $("passkey-yes").addEventListener("click", () => post("/api/pair/confirm", { yes: true }));
  $("passkey-no").addEventListener("click", () => post("/api/pair/confirm", { yes: false }));
  $("logout").addEventListener("click", async () => { await post("/api/logout"); showLogin(); });
  start();
});
