// "Show me where": draws the API's floor map (GET …/offers/{offer_id}/where) as an SVG: the
// store's shelves as grey marks, the product's shelf, the shopper, the way between them and a
// scale bar in the store's units (metres, or feet in the US). Shared by the phone and the kiosk.
"use strict";

const FloorMap = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A "nice" scale-bar length (1, 2, 5 x 10^n) about a fifth of the map's width.
  function niceLength(width) {
    const target = Math.max(width / 5, 1e-6);
    const pow = 10 ** Math.floor(Math.log10(target));
    return [1, 2, 5, 10].map((m) => m * pow).filter((v) => v <= target).pop() || pow;
  }

  function fmtDistance(value, units) {
    if (value === null || value === undefined) return "";
    return `${Math.round(value)} ${units === "ft" ? "ft" : "m"}`;
  }

  // draw(container, map, {label}) -> the <svg> (replaces the container's content)
  function draw(container, map) {
    container.innerHTML = "";
    const w = Math.max(map.width, 1);
    const h = Math.max(map.height, 1);
    const unit = Math.max(w, h) / 50; // marks scale with the map, whatever its size
    const svg = el("svg", {
      viewBox: `0 0 ${w} ${h + 4 * unit}`, class: "floor-map", role: "img",
      "aria-label": `floor map: ${map.product.name}`,
    });
    const y = (v) => h - v; // north up
    svg.appendChild(el("rect", { x: 0, y: 0, width: w, height: h, class: "floor" }));
    for (const [sx, sy] of map.shelves) {
      svg.appendChild(el("rect", { x: sx - unit / 2, y: y(sy) - unit / 2, width: unit,
        height: unit, class: "shelf" }));
    }
    if (map.route && map.route.length > 1) {
      const pts = map.route.map((p) => `${p.x},${y(p.y)}`).join(" ");
      svg.appendChild(el("polyline", { points: pts, class: "route",
        "stroke-width": unit / 2, "stroke-dasharray": `${unit} ${unit / 1.5}` }));
    }
    if (map.you) {
      svg.appendChild(el("circle", { cx: map.you.x, cy: y(map.you.y), r: unit * 1.3,
        class: "you" }));
      svg.appendChild(el("text", { x: map.you.x + unit * 2, y: y(map.you.y) + unit,
        "font-size": unit * 3, class: "you-label" }, "you"));
    }
    const p = map.product;  // drawn last: on top even where the shopper stands at the shelf
    svg.appendChild(el("circle", { cx: p.x, cy: y(p.y), r: unit * 1.6, class: "target" }));
    // scale bar under the floor
    const len = niceLength(w);
    const by = h + 2.5 * unit;
    svg.appendChild(el("line", { x1: unit, y1: by, x2: unit + len, y2: by, class: "scale",
      "stroke-width": unit / 2 }));
    svg.appendChild(el("text", { x: unit * 2 + len, y: by + unit, "font-size": unit * 2.6,
      class: "scale-label" }, fmtDistance(len, map.units)));
    container.appendChild(svg);
    const caption = document.createElement("p");
    caption.className = "map-caption";
    caption.dataset.testid = "map-caption";
    caption.textContent = map.distance === null || map.distance === undefined
      ? `${map.product.name}: the red mark (we do not know where you are yet).`
      : `${map.product.name}: ${fmtDistance(map.distance, map.units)} from you, the red mark.`;
    container.appendChild(caption);
    return svg;
  }

  return { draw, fmtDistance };
})();
