// The marketer dashboard: floor map, promotion form, promotions with their funnel, offers feed,
// top products. Every data call carries the marketer's X-API-Key (kept in localStorage).
"use strict";

const FT_PER_M = 3.2808399;
const M_PER_DEG_LAT = 111320;
const state = { key: "", store: "", timers: [], products: [] };

async function api(path, options = {}) {
  const headers = Object.assign({ "X-API-Key": state.key }, options.headers || {});
  if (options.body && !(options.body instanceof FormData)) headers["Content-Type"] = "application/json";
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}));
    throw new Error(`${res.status}: ${body.detail || "not allowed"}`);
  }
  return res;
}

async function getJson(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function describeError(body) {
  if (!body || body.detail === undefined) return "request failed";
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((d) => {
    const where = (d.loc || []).filter((p) => p !== "body").join(".");
    return where ? `${where}: ${d.msg}` : d.msg;
  }).join("; ");
}

// ---- totals -------------------------------------------------------------------------------
async function refreshTotals() {
  const t = await getJson("/funnel/totals");
  const strip = $("#totals");
  strip.replaceChildren();
  const c = t.counters;
  for (const [label, value] of [["positions", c.positions || 0], ["nearby", c.nearby || 0],
    ["offers", c.offers || 0], ["delivered", c.delivered || 0], ["opened", c.opened || 0],
    ["redeemed", c.redeemed || 0], ["dead letters", c.dead_letters || 0]]) {
    const box = el("div");
    box.append(el("b", {}, String(value)), el("span", {}, label));
    strip.append(box);
  }
}

// ---- stores and the floor map --------------------------------------------------------------
async function refreshStores() {
  const stores = await getJson("/stores");
  const select = $("#store-select");
  const ids = stores.map((s) => s.store_id);
  if (ids.join() !== Array.from(select.options).map((o) => o.value).join()) {
    select.replaceChildren(...stores.map((s) =>
      el("option", { value: s.store_id }, s.name ? `${s.name} (${s.store_id})` : s.store_id)));
  }
  if (!state.store || !ids.includes(state.store)) state.store = ids[0] || "";
  select.value = state.store;
}

function projector(points, anchor) {
  const lats = points.map((p) => p.latitude);
  const lons = points.map((p) => p.longitude);
  if (anchor && anchor.latitude != null) { lats.push(anchor.latitude); lons.push(anchor.longitude); }
  const lat0 = lats.reduce((a, b) => a + b, 0) / Math.max(1, lats.length);
  const kx = Math.cos((lat0 * Math.PI) / 180);
  const minX = Math.min(...lons) * kx, maxX = Math.max(...lons) * kx;
  const minY = Math.min(...lats), maxY = Math.max(...lats);
  const span = Math.max(maxX - minX, (maxY - minY) * (1000 / 600), 1e-6) * 1.25;
  const scale = 1000 / span;
  const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
  return {
    xy: (lat, lon) => [500 + (lon * kx - cx) * scale, 300 - (lat - cy) * scale],
    metres: (m) => (m / M_PER_DEG_LAT) * scale,
  };
}

async function refreshFloor() {
  const svg = $("#floor");
  if (!state.store) { svg.replaceChildren(); $("#floor-info").textContent = "no stores yet"; return; }
  const floor = await getJson(`/stores/${encodeURIComponent(state.store)}/floor`);
  state.products = floor.products;
  const points = floor.products.concat(floor.shoppers);
  svg.replaceChildren();
  if (!points.length) { $("#floor-info").textContent = "no products in this store"; return; }
  const proj = projector(points, floor.store);
  const promos = new Map(lastPromotions.map((p) => [p.pid, p]));
  for (const p of floor.products) {
    const [x, y] = proj.xy(p.latitude, p.longitude);
    if (p.promoted_by.length) {
      const radiusFt = Math.max(...p.promoted_by.map((pid) => (promos.get(pid) || {}).radius_ft || 0));
      if (radiusFt) {
        svg.append(el("svg:circle", { cx: x, cy: y, r: proj.metres(radiusFt / FT_PER_M),
          fill: "rgba(232,89,12,0.08)", stroke: "rgba(232,89,12,0.5)", "stroke-dasharray": "4 3" }));
      }
      const mark = el("svg:rect", { x: x - 6, y: y - 6, width: 12, height: 12, fill: "#e8590c",
        transform: `rotate(45 ${x} ${y})`, class: "promoted-product", "data-sku": p.sku });
      mark.append(el("svg:title", {}, `${p.name} (SKU ${p.sku}) · ${p.promoted_by.join(", ")}`));
      svg.append(mark);
    } else {
      const mark = el("svg:rect", { x: x - 2.5, y: y - 2.5, width: 5, height: 5, fill: "#adb5bd",
        class: "product" });
      mark.append(el("svg:title", {}, `${p.name} (SKU ${p.sku})`));
      svg.append(mark);
    }
  }
  for (const s of floor.shoppers) {
    const [x, y] = proj.xy(s.latitude, s.longitude);
    const opacity = Math.max(0.25, 1 - s.age_ms / 60000);
    svg.append(el("svg:circle", { cx: x, cy: y, r: 6, fill: "#1c7ed6", "fill-opacity": opacity,
      stroke: "#fff", "stroke-width": 1.5, class: "shopper-dot" }));
  }
  const promoted = floor.products.filter((p) => p.promoted_by.length).length;
  $("#floor-info").textContent = `${floor.products.length} products · ${promoted} promoted · `
    + `${floor.shoppers.length} shoppers on the floor`;
  const skus = $("#sku-list");
  if (skus.children.length !== floor.products.length) {
    skus.replaceChildren(...floor.products.slice(0, 500).map((p) =>
      el("option", { value: p.sku }, `${p.name} (${p.segment})`)));
  }
}

// ---- promotions ----------------------------------------------------------------------------
let lastPromotions = [];

function pct(v) { return v == null ? "–" : `${(v * 100).toFixed(1)} %`; }

async function refreshPromotions() {
  lastPromotions = await getJson("/promotions");
  const body = $("#promotions tbody");
  body.replaceChildren(...lastPromotions.map((p) => {
    const tr = el("tr", { "data-pid": p.pid });
    const target = p.sku != null ? `SKU ${p.sku}` : `segment ${p.segment}`;
    const status = el("span", { class: `status ${p.status}` }, p.status);
    const cells = [p.pid, p.title, target, `${p.discount_pct} %`, `${p.radius_ft} ft`, status,
      p.stats.nearby, p.stats.sent, p.stats.delivered, p.stats.opened, p.stats.redeemed,
      pct(p.stats.conversion)];
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.append(c); else td.textContent = String(c);
      tr.append(td);
    }
    const withdraw = el("button", { class: "link", type: "button" }, "withdraw");
    withdraw.addEventListener("click", async () => {
      if (!confirm(`Withdraw ${p.pid}?`)) return;
      await api(`/promotions/${encodeURIComponent(p.pid)}`, { method: "DELETE" });
      refreshPromotions();
    });
    const td = el("td");
    td.append(withdraw);
    tr.append(td);
    return tr;
  }));
}

function epochMs(localValue) {
  return localValue ? new Date(localValue).getTime() : null;
}

async function submitPromotion(event) {
  event.preventDefault();
  const form = event.target;
  const out = $("#promo-result");
  const data = Object.fromEntries(new FormData(form).entries());
  const body = {
    title: data.title,
    discount_pct: Number(data.discount_pct),
    radius_ft: Number(data.radius_ft),
  };
  if (data.target === "sku") body.sku = data.sku === "" ? null : Number(data.sku);
  else body.segment = data.segment || null;
  const start = epochMs(data.starts_at), end = epochMs(data.ends_at);
  if (start != null) body.starts_at = start;
  if (end != null) body.ends_at = end;
  out.className = "";
  out.textContent = "creating…";
  try {
    const res = await api("/promotions", { method: "POST", body: JSON.stringify(body) });
    const answer = await res.json();
    if (!res.ok) {
      out.className = "bad";
      out.textContent = describeError(answer);
      return;
    }
    out.className = "ok";
    out.textContent = `created ${answer.pid} (${answer.status})`;
    form.reset();
    await refreshPromotions();
    await refreshFloor();
  } catch (err) {
    out.className = "bad";
    out.textContent = err.message;
  }
}

// ---- offers feed and top products ----------------------------------------------------------
async function refreshFeed() {
  const feed = await getJson("/offers/feed?limit=25");
  $("#feed").replaceChildren(...feed.map((o) => {
    const when = new Date(o.ts).toLocaleTimeString();
    return el("li", { "data-pid": o.pid },
      `${when} · ${o.title} (−${o.discount_pct} %) → a shopper in ${o.store_id}`
      + ` at ${Math.round(o.distance_ft)} ft`);
  }));
}

async function refreshTop() {
  for (const metric of ["dwell", "redemptions"]) {
    const top = await getJson(`/analytics/top-products?by=${metric}`);
    const list = $(`#top-${metric}`);
    list.replaceChildren(...top.top.map((t) => el("li", {},
      `${t.name || "SKU " + t.sku} (${t.store_id}) · ${metric === "dwell" ? Math.round(t.value) + " s" : t.value}`)));
    if (!top.top.length) list.replaceChildren(el("li", { class: "muted" }, "nothing yet"));
  }
  const together = await getJson("/analytics/bought-together?window_minutes=60&limit=5");
  const label = (p) => p.name || `SKU ${p.sku}`;
  $("#bought-together").replaceChildren(...together.pairs.map((pair) => el("li", {},
    `${label(pair.products[0])} + ${label(pair.products[1])} (${pair.store_id}) · `
    + `${pair.count} shopper${pair.count === 1 ? "" : "s"}`)));
  if (!together.pairs.length) {
    $("#bought-together").replaceChildren(el("li", { class: "muted" }, "nothing yet"));
  }
}

// ---- wiring --------------------------------------------------------------------------------
async function tick(fn) {
  try { await fn(); showError(""); } catch (err) { showError(err.message); }
}

function schedule(fn, ms) {
  tick(fn);
  state.timers.push(setInterval(() => tick(fn), ms));
}

async function connect(key) {
  state.key = key;
  localStorage.setItem("instore.marketerKey", key);
  state.timers.forEach(clearInterval);
  state.timers = [];
  await tick(async () => { await refreshStores(); await refreshPromotions(); });
  $("#who").textContent = "connected";
  schedule(refreshTotals, 3000);
  schedule(async () => { await refreshStores(); await refreshFloor(); }, 2000);
  schedule(refreshPromotions, 3000);
  schedule(refreshFeed, 2000);
  schedule(refreshTop, 4000);
  tick(async () => {
    const segments = await getJson("/products/segments");
    $("#segment-list").replaceChildren(...segments.map((s) => el("option", { value: s })));
  });
}

function init() {
  // never from the URL: keys in URLs end up in histories and logs
  const key = localStorage.getItem("instore.marketerKey") || "";
  $("#api-key").value = key;
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); connect($("#api-key").value.trim()); });
  $("#promo-form").addEventListener("submit", submitPromotion);
  $("#promo-form").elements.target.addEventListener("change", (e) => {
    $("#sku-field").hidden = e.target.value !== "sku";
    $("#segment-field").hidden = e.target.value !== "segment";
  });
  $("#store-select").addEventListener("change", (e) => { state.store = e.target.value; tick(refreshFloor); });
  if (key) connect(key);
}

init();
