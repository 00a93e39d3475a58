// Small DOM and formatting helpers shared by the pages.

/** `h("a", {href: "#/"}, "text", child)`: an element; `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "className") element.className = value;
    else if (key === "testid") element.dataset.testid = value;
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const TERMINAL = new Set(["Succeeded", "Failed", "Cancelled", "TimedOut"]);
export const ACTIVE = new Set(["Starting", "Running", "Uploading"]);
export const WAITING = new Set(["Pending", "Fetching", "Queued"]);

export function phaseBadge(phase, testid) {
  return h("span", { className: `phase phase-${phase}`, testid }, phase);
}

export function jobLink(id) {
  return h("a", { href: `#/jobs/${encodeURIComponent(id)}`, className: "mono" }, id);
}

/** "14:03:22" today, else "12 Mar 14:03". */
export function formatTime(iso) {
  if (!iso) return "—";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const today = new Date().toDateString() === when.toDateString();
  return today
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : when.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** "in 40 s", "3 min ago". */
export function formatRelative(iso) {
  if (!iso) return "—";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  if (!Number.isFinite(seconds)) return "—";
  const size = Math.abs(seconds);
  const text = size < 90 ? `${size} s` : size < 5400 ? `${Math.round(size / 60)} min` : `${(size / 3600).toFixed(1)} h`;
  if (size < 2) return "now";
  return seconds > 0 ? `in ${text}` : `${text} ago`;
}

export function formatBytes(size) {
  if (size === null || size === undefined) return "";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatNumber(value, digits = 2) {
  return value === null || value === undefined || !Number.isFinite(value) ? "—" : value.toFixed(digits);
}

export function sourceText(source) {
  if (!source) return "—";
  if (source.kind === "git") return `${source.url} @ ${source.ref || "HEAD"}`;
  if (source.path) return source.path.split(/[\\/]/).pop();
  return source.kind || "—";
}

/** A table that turns into labelled cards on a phone (labels come from the headings). */
export function table(headings, rows, testid) {
  return h(
    "div",
    { className: "table-wrap" },
    h(
      "table",
      { className: "stack", testid },
      h("thead", {}, h("tr", {}, headings.map((heading) => h("th", {}, heading)))),
      h(
        "tbody",
        {},
        rows.map(({ cells, attrs }) =>
          h("tr", attrs || {}, cells.map((cell, index) => h("td", { "data-label": headings[index] }, cell))),
        ),
      ),
    ),
  );
}
