// The RaaS web page: sign-in, hash routes (#/, #/submit, #/jobs/<id>, #/robots) and the pages.

import { adoptTokenFromUrl, getJson, getToken, setToken, setUnauthorizedHandler } from "./api.js";
import { fill, h } from "./dom.js";
import { renderJob } from "./job.js";
import { renderQueue } from "./queue.js";
import { renderRobots } from "./robots.js";
import { renderSubmit } from "./submit.js";

const ROUTES = [
  { pattern: /^#?\/?$/, name: "queue", render: renderQueue },
  { pattern: /^#\/submit\/?$/, name: "submit", render: renderSubmit },
  { pattern: /^#\/robots\/?$/, name: "robots", render: renderRobots },
  { pattern: /^#\/jobs\/([^/]+)\/?$/, name: "job", render: renderJob, params: (match) => ({ id: decodeURIComponent(match[1]) }) },
];

const view = document.getElementById("view");
const signIn = document.getElementById("sign-in");
const signInForm = document.getElementById("sign-in-form");
const tokenInput = document.getElementById("token-input");
const signInError = document.getElementById("sign-in-error");
const whoName = document.getElementById("who-name");
const signOut = document.getElementById("sign-out");

let cleanup = null;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function stopPage() {
  if (cleanup) cleanup();
  cleanup = null;
}

function route() {
  stopPage();
  if (!getToken()) {
    showSignIn();
    return;
  }
  const hash = location.hash || "#/";
  for (const entry of ROUTES) {
    const match = hash.match(entry.pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll(".nav a")) {
      link.classList.toggle("active", link.dataset.route === entry.name || (entry.name === "job" && link.dataset.route === "queue"));
    }
    cleanup = entry.render(view, entry.params ? entry.params(match) : {}, navigate) || null;
    return;
  }
  fill(view, h("section", { className: "card" }, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "#/" }, "Back to the queue."))));
}

function showSignIn(message = "") {
  stopPage();
  view.replaceChildren();
  whoName.textContent = "";
  signOut.hidden = true;
  signIn.hidden = false;
  signInError.hidden = !message;
  signInError.textContent = message;
  tokenInput.value = "";
  tokenInput.focus();
}

/** Ask the server who the token belongs to; false (and the sign-in box) if it is not accepted. */
async function identify() {
  try {
    const identity = await getJson("whoami");
    whoName.textContent = `${identity.owner}${identity.role === "admin" ? " (admin)" : ""}`;
    signOut.hidden = false;
    return true;
  } catch (error) {
    if (error.status !== 401) {
      // The server is unreachable or broken: keep the token and show the page's own errors.
      whoName.textContent = "";
      return true;
    }
    return false;
  }
}

setUnauthorizedHandler(() => {
  if (!signIn.hidden) return;
  setToken("");
  showSignIn("The server did not accept your token: sign in again.");
});

signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  setToken(token);
  signInError.hidden = true;
  signIn.hidden = true;
  if (await identify()) route();
  else showSignIn("That token was not accepted. Check it and try again.");
});

signOut.addEventListener("click", () => {
  setToken("");
  showSignIn();
});

window.addEventListener("hashchange", () => {
  if (adoptTokenFromUrl()) start();
  else if (getToken() && signIn.hidden) route();
});

async function start() {
  adoptTokenFromUrl();
  if (!getToken()) {
    showSignIn();
    return;
  }
  signIn.hidden = true;
  if (await identify()) route();
  else showSignIn("The server did not accept your token: sign in again.");
}

start();
