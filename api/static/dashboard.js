// The marketer dashboard: offers over time (Chart.js, served from /static/vendor), the store
// floor (shelves, promoted products with their reach, where shoppers lingered, shoppers now,
// a scale bar), promotions with their funnel (create, edit, withdraw), the latest offers, top
// products and a catalog upload. Plain words only: titles, product and store names, no topics
// or ids. Every data call carries the marketer's X-API-Key (kept in localStorage).
"use strict";

const FT_PER_M = 3.2808399;
const M_PER_DEG_LAT = 111320;
const SHELF_GAP_M = 1.0; // products this close across a shelf line belong to one shelf
const state = {
  key: "", store: "", timers: [], stores: new Map(), productNames: new Map(),
  promotions: [], editing: null, charts: {}, chartTimer: null,
};

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
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(describeError(body) || `${path}: ${res.status}`);
  }
  return res.json();
}

function describeError(body) {
  if (!body || body.detail === undefined) return "request failed";
  if (typeof body.detail === "string") return body.detail;
  return body.detail.map((d) => {
    const where = (d.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
    return where ? `${where}: ${d.msg}` : d.msg;
  }).join("; ");
}

// ---- words a marketer uses ----------------------------------------------------------------
function storeName(id) {
  const s = state.stores.get(id);
  return (s && s.name) || "a store";
}

function usesFeet(storeId) {
  const s = state.stores.get(storeId);
  return !!(s && s.country === "US");
}

function distance(metres, storeId) {
  return usesFeet(storeId) ? `${Math.round(metres * FT_PER_M)} ft` : `${Math.round(metres)} m`;
}

function productName(sku) {
  return state.productNames.get(sku) || `product no. ${sku}`;
}

function targetOf(p) {
  return p.sku != null ? productName(p.sku) : `all ${p.segment}`;
}

function pct(v) { return v == null ? "–" : `${(v * 100).toFixed(1)} %`; }

// ---- totals -------------------------------------------------------------------------------
async function refreshTotals() {
  const t = await getJson("/funnel/totals");
  const f = t.funnel;
  const inStore = Array.from(state.stores.values()).reduce((n, s) => n + (s.live_shoppers || 0), 0);
  const strip = $("#totals");
  strip.replaceChildren();
  for (const [label, value] of [["shoppers in the stores now", inStore], ["offers sent", f.sent],
    ["delivered", f.delivered], ["opened", f.opened], ["redeemed", f.redeemed],
    ["conversion", pct(f.conversion)]]) {
    const box = el("div", { "data-figure": label });
    box.append(el("b", {}, String(value)), el("span", {}, label));
    strip.append(box);
  }
}

// ---- stores and product names --------------------------------------------------------------
async function refreshStores() {
  const stores = await getJson("/stores");
  state.stores = new Map(stores.map((s) => [s.store_id, s]));
  const select = $("#store-select");
  const ids = stores.map((s) => s.store_id);
  if (ids.join() !== Array.from(select.options).map((o) => o.value).join()) {
    select.replaceChildren(...stores.map((s) =>
      el("option", { value: s.store_id }, s.name || `unnamed store ${ids.indexOf(s.store_id) + 1}`)));
  }
  if (!state.store || !ids.includes(state.store)) state.store = ids[0] || "";
  select.value = state.store;
}

async function refreshProductNames() {
  const products = await getJson("/products?limit=10000");
  for (const p of products) if (!state.productNames.has(p.sku)) state.productNames.set(p.sku, p.name);
  $("#sku-list").replaceChildren(...products.slice(0, 1000).map((p) =>
    el("option", { value: p.sku }, `${p.name} (${storeName(p.store_id)})`)));
}

// ---- the floor -----------------------------------------------------------------------------
// Floor metres (x east, y north) around a reference point; then a fit into the 1000 x 600 view.
function localFrame(lat0, lon0) {
  const kx = M_PER_DEG_LAT * Math.cos((lat0 * Math.PI) / 180);
  return (lat, lon) => [(lon - lon0) * kx, (lat - lat0) * M_PER_DEG_LAT];
}

function fit(points, padM) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const minX = Math.min(...xs) - padM, maxX = Math.max(...xs) + padM;
  const minY = Math.min(...ys) - padM, maxY = Math.max(...ys) + padM;
  const scale = Math.min(960 / Math.max(maxX - minX, 1), 540 / Math.max(maxY - minY, 1));
  const cx = (minX + maxX) / 2, cy = (minY + maxY) / 2;
  return { scale, xy: ([x, y]) => [500 + (x - cx) * scale, 290 - (y - cy) * scale] };
}

// Shelves from the products' positions: products of a shelf share one coordinate (within a
// metre: both faces of a double-sided shelf) and spread along the other. The axis whose groups
// hold most products in lines of three or more is the shelves' direction.
function shelvesOf(points) {
  let best = null;
  for (const axis of [0, 1]) {
    const sorted = points.slice().sort((a, b) => a[axis] - b[axis]);
    const groups = [];
    for (const p of sorted) {
      const g = groups[groups.length - 1];
      if (g && p[axis] - g[g.length - 1][axis] <= SHELF_GAP_M) g.push(p); else groups.push([p]);
    }
    const lines = groups.filter((g) => g.length >= 3);
    const covered = lines.reduce((n, g) => n + g.length, 0);
    if (covered >= 0.7 * points.length && (!best || lines.length < best.lines.length)) {
      best = { axis, lines };
    }
  }
  if (!best) return [];
  const along = 1 - best.axis;
  return best.lines.map((g) => {
    const at = g.reduce((s, p) => s + p[best.axis], 0) / g.length;
    const lo = Math.min(...g.map((p) => p[along])) - 0.6, hi = Math.max(...g.map((p) => p[along])) + 0.6;
    return best.axis === 0 ? { x0: at - 0.6, x1: at + 0.6, y0: lo, y1: hi }
      : { x0: lo, x1: hi, y0: at - 0.6, y1: at + 0.6 };
  });
}

function niceLength(maxUnits) {
  for (const n of [500, 200, 100, 50, 20, 10, 5, 2, 1]) if (n <= maxUnits) return n;
  return 1;
}

async function refreshFloor() {
  const svg = $("#floor");
  if (!state.store) { svg.replaceChildren(); $("#floor-info").textContent = "no stores yet"; return; }
  const storeId = state.store;
  const [floor, dwell] = await Promise.all([
    getJson(`/stores/${encodeURIComponent(storeId)}/floor`),
    getJson(`/analytics/top-products?by=dwell&share=1&window_s=3600&store_id=${encodeURIComponent(storeId)}`),
  ]);
  svg.replaceChildren();
  if (!floor.products.length && !floor.shoppers.length) {
    $("#floor-info").textContent = "no products in this store yet";
    return;
  }
  const anchor = floor.store.latitude != null ? floor.store
    : (floor.products[0] || floor.shoppers[0]);
  const toM = localFrame(anchor.latitude, anchor.longitude);
  const productsM = floor.products.map((p) => toM(p.latitude, p.longitude));
  const view = fit(productsM.length ? productsM : floor.shoppers.map((s) => toM(s.latitude, s.longitude)), 3);
  const px = (m) => m * view.scale;

  for (const s of shelvesOf(productsM)) {
    const [x0, y1] = view.xy([s.x0, s.y1]);
    svg.append(el("svg:rect", { x: x0, y: y1, width: px(s.x1 - s.x0), height: px(s.y1 - s.y0),
      fill: "#dee2e6", class: "shelf" }));
  }
  // where shoppers lingered: a soft disc per product, its strength the product's dwell seconds
  const dwellOf = new Map(dwell.top.map((t) => [t.sku, t.value]));
  const most = Math.max(1, ...dwellOf.values());
  floor.products.forEach((p, i) => {
    const seconds = dwellOf.get(p.sku);
    if (!seconds) return;
    const [x, y] = view.xy(productsM[i]);
    const heat = el("svg:circle", { cx: x, cy: y, r: Math.max(8, px(2.5)), fill: "#f03e3e",
      "fill-opacity": (0.15 + 0.55 * (seconds / most)).toFixed(2), class: "heat" });
    heat.append(el("svg:title", {}, `${p.name}: shoppers lingered ${Math.round(seconds)} s in the last hour`));
    svg.append(heat);
  });
  const reach = new Map(state.promotions.map((p) => [p.pid, p]));
  floor.products.forEach((p, i) => {
    const [x, y] = view.xy(productsM[i]);
    if (p.promoted_by.length) {
      const promos = p.promoted_by.map((pid) => reach.get(pid)).filter(Boolean);
      const radiusFt = Math.max(0, ...promos.map((q) => q.radius_ft || 0));
      if (radiusFt) {
        svg.append(el("svg:circle", { cx: x, cy: y, r: px(radiusFt / FT_PER_M), class: "reach",
          fill: "rgba(232,89,12,0.06)", stroke: "rgba(232,89,12,0.6)", "stroke-dasharray": "4 3" }));
      }
      const mark = el("svg:rect", { x: x - 6, y: y - 6, width: 12, height: 12, fill: "#e8590c",
        transform: `rotate(45 ${x} ${y})`, class: "promoted-product", "data-sku": p.sku });
      mark.append(el("svg:title", {}, `${p.name} · ${promos.map((q) => q.title).join(", ")}`));
      svg.append(mark);
    } else {
      const mark = el("svg:rect", { x: x - 2.5, y: y - 2.5, width: 5, height: 5, fill: "#868e96",
        class: "product" });
      mark.append(el("svg:title", {}, p.name));
      svg.append(mark);
    }
  });
  for (const s of floor.shoppers) {
    const [x, y] = view.xy(toM(s.latitude, s.longitude));
    const opacity = Math.max(0.25, 1 - s.age_ms / 60000);
    svg.append(el("svg:circle", { cx: x, cy: y, r: 6, fill: "#1c7ed6", "fill-opacity": opacity,
      stroke: "#fff", "stroke-width": 1.5, class: "shopper-dot" }));
  }
  // scale bar (feet in US stores)
  const feet = usesFeet(storeId);
  const unitM = feet ? 1 / FT_PER_M : 1;
  const n = niceLength(200 / px(unitM));
  const len = px(n * unitM);
  const bar = el("svg:g", { class: "scale-bar" });
  bar.append(el("svg:rect", { x: 20, y: 572, width: len, height: 6, fill: "#1d2430" }),
    el("svg:text", { x: 20 + len + 8, y: 580, "font-size": 14, fill: "#1d2430" }, `${n} ${feet ? "ft" : "m"}`));
  svg.append(bar);

  const promoted = floor.products.filter((p) => p.promoted_by.length).length;
  $("#floor-info").textContent = `${floor.products.length} products · ${promoted} promoted · `
    + `${floor.shoppers.length} shoppers on the floor now`;
}

// ---- promotions ----------------------------------------------------------------------------
async function refreshPromotions() {
  state.promotions = await getJson("/promotions");
  const body = $("#promotions tbody");
  body.replaceChildren(...state.promotions.map((p) => {
    const tr = el("tr", { "data-pid": p.pid });
    const status = el("span", { class: `status ${p.status}` }, p.status);
    const reach = `${p.radius_ft} ft (${Math.round(p.radius_ft / FT_PER_M)} m)`;
    const cells = [p.title, targetOf(p), `${p.discount_pct} %`, reach, status,
      p.stats.sent, p.stats.delivered, p.stats.opened, p.stats.redeemed, pct(p.stats.conversion)];
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.append(c); else td.textContent = String(c);
      tr.append(td);
    }
    const edit = el("button", { class: "link edit", type: "button" }, "edit");
    edit.addEventListener("click", () => startEdit(p));
    const withdraw = el("button", { class: "link withdraw", type: "button" }, "withdraw");
    withdraw.addEventListener("click", async () => {
      if (!confirm(`Withdraw “${p.title}”? Shoppers stop getting its offers.`)) return;
      const res = await api(`/promotions/${encodeURIComponent(p.pid)}`, { method: "DELETE" });
      if (!res.ok) showError(describeError(await res.json().catch(() => ({}))));
      if (state.editing === p.pid) stopEdit();
      refreshPromotions();
    });
    const td = el("td", { class: "actions" });
    td.append(edit, withdraw);
    tr.append(td);
    return tr;
  }));
}

function epochMs(localValue) {
  return localValue ? new Date(localValue).getTime() : null;
}

function localValue(ms) {
  if (ms == null) return "";
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function startEdit(p) {
  const form = $("#promo-form");
  state.editing = p.pid;
  form.elements.pid.value = p.pid;
  form.elements.title.value = p.title;
  form.elements.target.value = p.sku != null ? "sku" : "segment";
  form.elements.target.dispatchEvent(new Event("change"));
  form.elements.sku.value = p.sku != null ? p.sku : "";
  form.elements.segment.value = p.segment || "";
  form.elements.discount_pct.value = p.discount_pct;
  form.elements.radius_ft.value = p.radius_ft;
  form.elements.starts_at.value = localValue(p.starts_at);
  form.elements.ends_at.value = localValue(p.ends_at);
  $("#promo-heading").textContent = `Edit “${p.title}”`;
  $("#promo-submit").textContent = "Save changes";
  $("#promo-cancel").hidden = false;
  $("#promo-result").textContent = "";
  form.scrollIntoView({ block: "nearest" });
}

function stopEdit() {
  state.editing = null;
  const form = $("#promo-form");
  form.reset();
  form.elements.pid.value = "";
  form.elements.target.dispatchEvent(new Event("change"));
  $("#promo-heading").textContent = "New promotion";
  $("#promo-submit").textContent = "Create promotion";
  $("#promo-cancel").hidden = true;
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
  if (data.target === "sku") {
    body.sku = data.sku === "" ? null : Number(data.sku);
    if (state.editing) body.segment = null;
  } else {
    body.segment = data.segment || null;
    if (state.editing) body.sku = null;
  }
  const start = epochMs(data.starts_at), end = epochMs(data.ends_at);
  if (start != null || state.editing) body.starts_at = start;
  if (end != null || state.editing) body.ends_at = end;
  const editing = state.editing;
  out.className = "";
  out.textContent = editing ? "saving…" : "creating…";
  try {
    const res = editing
      ? await api(`/promotions/${encodeURIComponent(editing)}`, { method: "PATCH", body: JSON.stringify(body) })
      : await api("/promotions", { method: "POST", body: JSON.stringify(body) });
    const answer = await res.json();
    if (!res.ok) {
      out.className = "bad";
      out.textContent = describeError(answer);
      return;
    }
    out.className = "ok";
    out.textContent = `${editing ? "saved" : "created"} “${answer.title}” (${answer.status})`;
    stopEdit();
    await refreshPromotions();
    await refreshFloor();
  } catch (err) {
    out.className = "bad";
    out.textContent = err.message;
  }
}

// ---- charts over time ----------------------------------------------------------------------
const PALETTE = ["#e8590c", "#1c7ed6", "#2b8a3e", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c",
  "#5c940d", "#3b5bdb", "#868e96"];

function chartQuery(metric) {
  const f = $("#chart-form").elements;
  const to = epochMs(f.to.value) || Date.now();
  const span = f.bucket.value === "hour" ? 24 * 3600e3 : 3600e3;
  const from = epochMs(f.from.value) || to - span;
  const q = new URLSearchParams({ metric, bucket: f.bucket.value, by: f.by.value, from, to });
  return `/analytics/timeseries?${q}`;
}

function timeLabel(ms, bucket, spansDays) {
  const d = new Date(ms);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return spansDays || bucket === "hour" ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${hm}` : hm;
}

async function refreshChart(metric) {
  const note = $(`#note-${metric}`);
  const answer = await getJson(chartQuery(metric));
  const total = answer.series.reduce((n, s) => n + s.total, 0);
  note.textContent = answer.series.length ? `${total} in this range` : "none in this range";
  const delay = answer.archive_delay_s;
  const every = delay >= 60 ? `${Math.round(delay / 60)} min` : `${Math.round(delay)} s`;
  $("#chart-delay").textContent = `From the archive, written every ${every}: `
    + `the most recent ${every} of each chart fills in that much later.`;
  const canvas = $(`#chart-${metric}`);
  canvas.dataset.total = String(total);
  if (typeof window.Chart === "undefined") {
    note.textContent = "The charting library (Chart.js) is missing: run `make setup` "
      + "(scripts/install-chartjs.sh). " + note.textContent;
    note.classList.add("bad");
    return;
  }
  const spansDays = answer.buckets * answer.bucket_ms > 24 * 3600e3;
  const labels = Array.from({ length: answer.buckets }, (_, i) =>
    timeLabel(answer.start + i * answer.bucket_ms, answer.bucket, spansDays));
  const datasets = answer.series.map((s, i) => ({
    label: s.label, data: s.counts, borderColor: PALETTE[i % PALETTE.length],
    backgroundColor: PALETTE[i % PALETTE.length], stepped: false, tension: 0.2, pointRadius: 0,
    borderWidth: 2,
  }));
  const old = state.charts[metric];
  if (old) {
    old.data.labels = labels;
    old.data.datasets = datasets;
    old.update("none");
    return;
  }
  state.charts[metric] = new window.Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12 } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    },
  });
}

async function refreshCharts() {
  await Promise.all([refreshChart("offers"), refreshChart("redemptions")]);
}

// ---- offers feed and top products ----------------------------------------------------------
async function refreshFeed() {
  const feed = await getJson("/offers/feed?limit=25");
  $("#feed").replaceChildren(...feed.map((o) => {
    const when = new Date(o.ts).toLocaleTimeString();
    return el("li", { "data-pid": o.pid },
      `${when} · ${o.title} (−${o.discount_pct} %) → a shopper in ${storeName(o.store_id)}, `
      + `${distance(o.distance_ft / FT_PER_M, o.store_id)} from ${productName(o.sku)}`);
  }));
}

async function refreshTop() {
  for (const metric of ["dwell", "redemptions"]) {
    const top = await getJson(`/analytics/top-products?by=${metric}`);
    const list = $(`#top-${metric}`);
    list.replaceChildren(...top.top.map((t) => el("li", {},
      `${t.name || productName(t.sku)} (${storeName(t.store_id)}) · `
      + `${metric === "dwell" ? Math.round(t.value) + " s" : t.value + " redeemed"}`)));
    if (!top.top.length) list.replaceChildren(el("li", { class: "muted" }, "nothing yet"));
  }
  const together = await getJson("/analytics/bought-together?window_minutes=60&limit=5");
  const label = (p) => p.name || productName(p.sku);
  $("#bought-together").replaceChildren(...together.pairs.map((pair) => el("li", {},
    `${label(pair.products[0])} + ${label(pair.products[1])} (${storeName(pair.store_id)}) · `
    + `${pair.count} shopper${pair.count === 1 ? "" : "s"}`)));
  if (!together.pairs.length) {
    $("#bought-together").replaceChildren(el("li", { class: "muted" }, "nothing yet"));
  }
}

// ---- catalog upload ------------------------------------------------------------------------
async function uploadCatalog(event) {
  event.preventDefault();
  const out = $("#catalog-report");
  const file = event.target.elements.file.files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file);
  out.className = "";
  out.replaceChildren(el("p", {}, `uploading ${file.name}…`));
  try {
    const res = await api("/products/bulk", { method: "POST", body });
    const report = await res.json().catch(() => ({}));
    if (!res.ok) {
      out.replaceChildren(el("p", { class: "bad" }, `${file.name} was not read: ${describeError(report)}`));
      return;
    }
    const summary = el("p", { class: report.rejected ? "bad" : "ok", id: "catalog-summary" },
      `${file.name}: ${report.rows} rows, ${report.accepted} saved, ${report.rejected} rejected`);
    out.replaceChildren(summary);
    if (report.errors.length) {
      const table = el("table", { id: "catalog-errors" });
      const head = el("tr");
      head.append(el("th", {}, "line"), el("th", {}, "why it was rejected"));
      table.append(head);
      for (const e of report.errors) {
        const tr = el("tr", { "data-row": e.row });
        tr.append(el("td", {}, String(e.row)), el("td", {}, e.error));
        table.append(tr);
      }
      out.append(table);
      if (report.errors.length < report.rejected) {
        out.append(el("p", { class: "muted" }, `the first ${report.errors.length} rejected rows are listed`));
      }
    }
    tick(refreshProductNames);
    tick(refreshFloor);
  } catch (err) {
    out.replaceChildren(el("p", { class: "bad" }, err.message));
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
  await tick(async () => { await refreshStores(); await refreshPromotions(); await refreshProductNames(); });
  $("#who").textContent = "connected";
  schedule(async () => { await refreshStores(); await refreshTotals(); }, 3000);
  schedule(refreshFloor, 2000);
  schedule(refreshPromotions, 3000);
  schedule(refreshFeed, 2000);
  schedule(refreshTop, 4000);
  schedule(refreshProductNames, 60000);
  schedule(async () => { if (!$("#chart-form").elements.to.value) await refreshCharts(); }, 10000);
  tick(refreshCharts);
  tick(async () => {
    const segments = await getJson("/products/segments");
    $("#segment-list").replaceChildren(...segments.map((s) => el("option", { value: s })));
  });
}

function init() {
  // never from the URL: keys in URLs end up in histories and logs
  const key = localStorage.getItem("instore.marketerKey") || "";
  $("#api-key").value = key;
  // the ops view is for whoever holds the ops key (the ops page keeps it for this tab)
  $("#ops-link").hidden = !sessionStorage.getItem("instore-ops-key");
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); connect($("#api-key").value.trim()); });
  $("#promo-form").addEventListener("submit", submitPromotion);
  $("#promo-cancel").addEventListener("click", stopEdit);
  $("#promo-form").elements.target.addEventListener("change", (e) => {
    $("#sku-field").hidden = e.target.value !== "sku";
    $("#segment-field").hidden = e.target.value !== "segment";
  });
  $("#chart-form").addEventListener("submit", (e) => { e.preventDefault(); tick(refreshCharts); });
  $("#catalog-form").addEventListener("submit", uploadCatalog);
  $("#store-select").addEventListener("change", (e) => { state.store = e.target.value; tick(refreshFloor); });
  if (key) connect(key);
}

init();
