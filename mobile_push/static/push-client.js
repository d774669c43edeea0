// Shared by the phone and kiosk pages: read /config.json, get a token for one channel from
// the API (an Ably TokenRequest), and receive that channel's messages with ably-js (Realtime,
// WebSocket) in both modes: against the local push hub, which speaks Ably's realtime protocol
// ("hub" mode: endpoint = this page's host, no TLS unless the page has it, no fallback hosts),
// or against Ably itself ("ably" mode). When ably-js cannot be loaded (not installed by
// scripts/install-ably-js.sh) the hub mode falls back to the hub's Server-Sent Events stream;
// `?transport=sse` forces that. Vanilla JS, no build step.
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
  // The transport in use is left in document.body.dataset.transport ("ably-js" or "sse").
  async function subscribe(channel, getTokenRequest, onMessage, onState) {
    const cfg = await loadConfig();
    const seen = new Set(); // offer_id is the idempotency key all the way to the screen
    const deliver = (id, name, data) => {
      if (id && seen.has(id)) return;
      if (id) seen.add(id);
      onMessage(id, name, data);
    };
    const wanted = new URLSearchParams(location.search).get("transport") || cfg.transport;
    const useSse = () => {
      document.body.dataset.transport = "sse";
      return subscribeHub(cfg, channel, getTokenRequest, deliver, onState);
    };
    if (cfg.mode === "ably" || wanted !== "sse") {
      try {
        await loadAbly();
      } catch (e) {
        if (cfg.mode === "ably") throw e; // real Ably has no SSE stream of ours
        console.warn(`ably-js unavailable, using the hub's SSE stream: ${e.message}`);
        return useSse();
      }
      document.body.dataset.transport = "ably-js";
      // Against the hub: a WebSocket that never gets through (a proxy that blocks it) falls
      // back to the SSE stream; the handle's close() closes whichever is in use.
      const handle = { current: null, close() { if (this.current) this.current.close(); } };
      const noWebSocket = cfg.mode === "hub" ? () => {
        console.warn("no realtime connection to the hub, using its SSE stream");
        handle.current.close();
        handle.current = useSse();
      } : null;
      handle.current = subscribeAbly(cfg, channel, getTokenRequest, deliver, onState, noWebSocket);
      return handle;
    }
    return useSse();
  }

  async function loadAbly() {
    if (typeof Ably === "undefined") await loadScript("/static/vendor/ably.min.js");
    if (typeof Ably === "undefined") throw new Error("ably-js did not define Ably");
  }

  // ably-js client options for the configured mode.
  function ablyOptions(cfg, getTokenRequest) {
    const opts = {
      // The API signs a TokenRequest for this channel only; ably-js exchanges it for a token
      // at requestToken (Ably, or the hub), again whenever the token expires or is refused.
      authCallback: (_params, cb) => {
        getTokenRequest().then((tr) => cb(null, tr), (e) => cb(
          { message: e.message || String(e), statusCode: e.status || 500, code: 40170 }, null));
      },
      useBinaryProtocol: false,
    };
    if (cfg.mode === "hub") {
      const tls = location.protocol === "https:";
      const port = Number(location.port) || (tls ? 443 : 80);
      opts.endpoint = cfg.realtime_host || location.hostname;
      opts.tls = tls;
      if (tls) opts.tlsPort = cfg.realtime_port || port; else opts.port = cfg.realtime_port || port;
      opts.fallbackHosts = [];
      opts.transports = ["web_socket"];
    } else if (cfg.rest_host) {
      opts.endpoint = cfg.rest_host;
    }
    return opts;
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

  function subscribeAbly(cfg, channel, getTokenRequest, deliver, onState, neverConnected) {
    const client = new Ably.Realtime(ablyOptions(cfg, getTokenRequest));
    let everConnected = false;
    client.connection.on((change) => {
      if (change.current === "connected") everConnected = true;
      else if (!everConnected && neverConnected &&
               ["disconnected", "suspended", "failed"].includes(change.current)) {
        const fallback = neverConnected;
        neverConnected = null;
        fallback();
      }
    });
    const ch = client.channels.get(channel, { params: { rewind: String(cfg.rewind || 20) } });
    const show = () => {
      const conn = client.connection.state;
      if (conn === "connected" && ch.state === "attached") onState("live");
      else if (conn === "connected") onState(ch.state);
      else onState(conn);
    };
    client.connection.on(show);
    ch.on((change) => {
      if (change.reason && change.current === "failed") {
        onState(`failed (${change.reason.code}: ${change.reason.message})`);
      } else show();
    });
    ch.subscribe((msg) => deliver(msg.id, msg.name, msg.data)).catch((e) => {
      onState(`failed (${e.code}: ${e.message})`);
    });
    return { close() { client.close(); }, client, channel: ch };
  }

  function fmtExpiry(expiresAt) {
    const s = Math.round((expiresAt - Date.now()) / 1000);
    if (s <= 0) return "expired";
    if (s < 120) return `${s} s left`;
    return `${Math.round(s / 60)} min left`;
  }

  return { loadConfig, api, subscribe, loadAbly, ablyOptions, fmtExpiry };
})();
