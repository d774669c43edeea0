// Shared by the phone and kiosk pages: read /config.json, get a token for one channel from
// the API (an Ably TokenRequest), and receive that channel's messages. Two transports, one
// interface: the local push hub's Server-Sent Events stream ("hub" mode) or ably-js against
// Ably itself ("ably" mode). Vanilla JS, no build step.
"use strict";

const InstorePush = (() => {
  let configPromise = null;

  function loadConfig() {
    if (!configPromise) {
      configPromise = fetch("/config.json", { cache: "no-store" }).then((r) => {
        if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
        return r.json();
      });
    }
    return configPromise;
  }

  async function api(path, { method = "GET", body, headers = {} } = {}) {
    const cfg = await loadConfig();
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const resp = await fetch(cfg.api_url + path, init);
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_e) { data = text; }
    if (!resp.ok) {
      const detail = data && data.detail ? JSON.stringify(data.detail) : text;
      const err = new Error(`${method} ${path}: HTTP ${resp.status} ${detail}`);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function decodeData(msg) {
    if (msg.encoding === "json" && typeof msg.data === "string") return JSON.parse(msg.data);
    return msg.data;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(s);
    });
  }

  // subscribe(channel, getTokenRequest, onMessage(id, name, data), onState(text)) -> {close()}
  async function subscribe(channel, getTokenRequest, onMessage, onState) {
    const cfg = await loadConfig();
    const seen = new Set(); // offer_id is the idempotency key all the way to the screen
    const deliver = (id, name, data) => {
      if (id && seen.has(id)) return;
      if (id) seen.add(id);
      onMessage(id, name, data);
    };
    if (cfg.mode === "ably") return subscribeAbly(cfg, channel, getTokenRequest, deliver, onState);
    return subscribeHub(cfg, channel, getTokenRequest, deliver, onState);
  }

  function subscribeHub(cfg, channel, getTokenRequest, deliver, onState) {
    const base = cfg.hub_url || "";
    let source = null;
    let closed = false;
    let retryMs = 500;

    async function connect() {
      if (closed) return;
      try {
        onState("connecting");
        const tr = await getTokenRequest();
        const resp = await fetch(`${base}/keys/${encodeURIComponent(tr.keyName)}/requestToken`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(tr),
        });
        if (!resp.ok) throw new Error(`token request refused: HTTP ${resp.status}`);
        const details = await resp.json();
        const url = `${base}/channels/${encodeURIComponent(channel)}/stream` +
          `?accessToken=${encodeURIComponent(details.token)}&rewind=${cfg.rewind || 20}`;
        source = new EventSource(url);
        source.addEventListener("attached", () => { retryMs = 500; onState("live"); });
        source.onmessage = (ev) => {
          const msg = JSON.parse(ev.data);
          deliver(msg.id, msg.name, decodeData(msg));
        };
        source.addEventListener("error", (ev) => {
          // A server "error" event (token expired, too slow) or a dropped connection: get a
          // fresh token and reconnect. Offers missed meanwhile come back with rewind.
          if (ev && ev.data) onState("renewing token");
          else onState("reconnecting");
          source.close();
          setTimeout(connect, retryMs);
          retryMs = Math.min(retryMs * 2, 10000);
        });
      } catch (e) {
        onState(`offline (${e.message})`);
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 10000);
      }
    }

    connect();
    return { close() { closed = true; if (source) source.close(); } };
  }

  async function subscribeAbly(cfg, channel, getTokenRequest, deliver, onState) {
    if (typeof Ably === "undefined") await loadScript("/static/vendor/ably.min.js");
    const opts = {
      authCallback: (_params, cb) => {
        getTokenRequest().then((tr) => cb(null, tr), (e) => cb(e.message, null));
      },
    };
    if (cfg.rest_host) opts.endpoint = cfg.rest_host;
    const client = new Ably.Realtime(opts);
    client.connection.on((change) => onState(change.current));
    const ch = client.channels.get(channel, { params: { rewind: String(cfg.rewind || 20) } });
    await ch.subscribe((msg) => deliver(msg.id, msg.name, msg.data));
    return { close() { client.close(); } };
  }

  function fmtExpiry(expiresAt) {
    const s = Math.round((expiresAt - Date.now()) / 1000);
    if (s <= 0) return "expired";
    if (s < 120) return `${s} s left`;
    return `${Math.round(s / 60)} min left`;
  }

  return { loadConfig, api, subscribe, fmtExpiry };
})();
