// Talking to /api/v1: the token, JSON calls, file downloads and the live event stream.

const TOKEN_KEY = "raas.token";
export const API = "/api/v1";

/** Raised for any non-2xx answer; `status` is the HTTP status, the message is the server's detail. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

let onUnauthorized = () => {};

/** Called with no arguments whenever the server answers 401 (the page shows the sign-in box). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Take `#token=<token>` out of the address once (a server prints such links), keeping the rest. */
export function adoptTokenFromUrl() {
  const match = location.hash.match(/^#token=([^&]+)(?:&(.*))?$/);
  if (!match) return false;
  setToken(decodeURIComponent(match[1]));
  const rest = match[2] ? `#${match[2]}` : "#/";
  history.replaceState(null, "", location.pathname + location.search + rest);
  return true;
}

function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

/** The readable sentence of an error body: FastAPI's `detail` string, or its validation list. */
function detailOf(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return `The server answered ${status}.`;
}

/** The response if it is a success, else an ApiError; a 401 for the current token signs out. */
async function raiseFor(response, token) {
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  // A late answer to a request made with an older token must not sign out the new one.
  if (response.status === 401 && token === getToken()) onUnauthorized();
  throw new ApiError(response.status, detailOf(body, response.status));
}

/** A raw authorised request to the API (path relative to /api/v1, or absolute on this server). */
export async function request(path, { method = "GET", body, headers = {}, signal } = {}) {
  const url = path.startsWith("/") ? path : `${API}/${path}`;
  let payload = body;
  const token = getToken();
  const sent = authHeaders(headers);
  if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
    payload = JSON.stringify(body);
    sent["Content-Type"] = "application/json";
  }
  const response = await fetch(url, { method, body: payload, headers: sent, signal });
  return raiseFor(response, token);
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export async function postJson(path, body, options = {}) {
  return (await request(path, { ...options, method: "POST", body })).json();
}

export async function getText(path, options) {
  return (await request(path, options)).text();
}

/** True when `url` points at this server (so it needs the token); presigned S3 links do not. */
export function isSameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

/** Fetch a file with the token and hand it to the browser as a download named `filename`. */
export async function downloadWithToken(url, filename) {
  const token = getToken();
  const response = await fetch(url, { headers: authHeaders() });
  await raiseFor(response, token);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken the blob once the click is handled; free it a little later.
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

/**
 * Read a Server-Sent Events stream with the token (EventSource cannot send headers).
 * Calls `onEvent(name, data)` per event; resolves when the server closes the stream.
 */
export async function readEventStream(path, onEvent, signal) {
  const response = await request(path, { headers: { Accept: "text/event-stream" }, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  const dispatch = () => {
    if (data.length) onEvent(name, data.join("\n"));
    name = "message";
    data = [];
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") dispatch();
      else if (line.startsWith(":")) continue; // a comment: keep-alive
      else {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
    }
  }
  dispatch();
}
