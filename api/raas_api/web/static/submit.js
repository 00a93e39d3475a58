// #/submit : run code from a git repository (checked before submitting) or from an uploaded archive.

import { postJson, request } from "./api.js";
import { fill, h } from "./dom.js";

const CHECK_DELAY_MS = 700;

function field(label, input, hint) {
  return h("div", { className: input.dataset.wide ? "wide" : "" }, h("label", { for: input.id }, label), input, hint ? h("p", { className: "field-hint" }, hint) : null);
}

function textInput(id, attrs = {}) {
  return h("input", { id, name: id, type: "text", spellcheck: "false", autocapitalize: "off", ...attrs });
}

/** The robot and time-limit fields shared by both forms. */
function optionsFields(prefix) {
  const robot = textInput(`${prefix}-robot`, { placeholder: "any pendulum", testid: `${prefix}-robot` });
  const limit = h("input", {
    id: `${prefix}-time-limit`,
    type: "number",
    min: 1,
    step: 1,
    placeholder: "server default",
    testid: `${prefix}-time-limit`,
  });
  return { robot, limit, nodes: [field("Robot (optional)", robot), field("Time limit in seconds (optional)", limit)] };
}

function gitForm(navigate) {
  const url = textInput("git-url", { inputmode: "url", required: true, placeholder: "https://git.example.org/me/controller.git", testid: "git-url" });
  url.dataset.wide = "1";
  const ref = textInput("git-ref", { value: "HEAD", required: true, testid: "git-ref" });
  const entrypoint = textInput("git-entrypoint", { value: "run.py", required: true, testid: "git-entrypoint" });
  const options = optionsFields("git");
  const checkStatus = h("span", { className: "check-status", testid: "check-status", role: "status" });
  const error = h("p", { className: "error", hidden: true, role: "alert", testid: "submit-error" });
  const submit = h("button", { type: "submit", className: "primary", testid: "submit-git" }, "Check and submit");

  const sourceCheck = () => ({
    source: { kind: "git", url: url.value.trim(), ref: ref.value.trim() || "HEAD" },
    entrypoint: entrypoint.value.trim() || "run.py",
  });
  let lastKey = "";
  let lastResult = null;
  let timer = null;

  /** Ask the server whether the repository, ref and entrypoint exist; memoised per input. */
  async function check() {
    const body = sourceCheck();
    const key = JSON.stringify(body);
    if (key === lastKey && lastResult) return lastResult;
    checkStatus.className = "check-status muted";
    checkStatus.textContent = "Checking the repository…";
    let result;
    try {
      result = await postJson("jobs/check", body);
    } catch (failure) {
      result = { ok: false, message: failure.message };
    }
    if (JSON.stringify(sourceCheck()) !== key) return result; // the inputs changed meanwhile
    lastKey = key;
    lastResult = result;
    checkStatus.className = `check-status ${result.ok ? "ok" : "error"}`;
    checkStatus.textContent = result.ok ? `✓ ${result.message}` : `✗ ${result.message}`;
    return result;
  }

  function scheduleCheck() {
    clearTimeout(timer);
    checkStatus.textContent = "";
    if (url.value.trim() && url.checkValidity()) timer = setTimeout(check, CHECK_DELAY_MS);
  }
  for (const input of [url, ref, entrypoint]) input.addEventListener("input", scheduleCheck);

  const form = h(
    "form",
    {
      testid: "git-form",
      onsubmit: async (event) => {
        event.preventDefault();
        clearTimeout(timer);
        error.hidden = true;
        submit.disabled = true;
        try {
          const result = await check();
          if (!result.ok) return; // the reason is shown next to the button
          const body = sourceCheck();
          if (options.robot.value.trim()) body.robot = { name: options.robot.value.trim() };
          if (options.limit.value) body.time_limit_s = Number(options.limit.value);
          const job = await postJson("jobs", body);
          navigate(`#/jobs/${job.id}`);
        } catch (failure) {
          error.hidden = false;
          error.textContent = failure.message;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h(
      "div",
      { className: "fields" },
      field("Repository URL", url, "https, http, git or ssh URL of a git repository."),
      field("Branch, tag or commit", ref),
      field("Entrypoint", entrypoint, "The Python file to run."),
      ...options.nodes,
    ),
    error,
    h("div", { className: "form-actions" }, submit, checkStatus),
  );
  return { form, cleanup: () => clearTimeout(timer) };
}

function uploadForm(navigate) {
  const archive = h("input", {
    id: "upload-archive",
    name: "archive",
    type: "file",
    required: true,
    accept: ".zip,.tar.gz,.tgz,application/zip,application/gzip",
    testid: "upload-archive",
  });
  archive.dataset.wide = "1";
  const entrypoint = textInput("upload-entrypoint", { value: "run.py", required: true, testid: "upload-entrypoint" });
  const options = optionsFields("upload");
  const error = h("p", { className: "error", hidden: true, role: "alert", testid: "submit-error" });
  const progress = h("span", { className: "check-status muted", role: "status" });
  const submit = h("button", { type: "submit", className: "primary", testid: "submit-upload" }, "Upload and submit");
  const form = h(
    "form",
    {
      testid: "upload-form",
      onsubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        const file = archive.files[0];
        if (!file) return;
        const data = new FormData();
        data.append("archive", file, file.name);
        data.append("entrypoint", entrypoint.value.trim() || "run.py");
        if (options.robot.value.trim()) data.append("robot", options.robot.value.trim());
        if (options.limit.value) data.append("time_limit_s", options.limit.value);
        submit.disabled = true;
        progress.textContent = "Uploading…";
        try {
          const job = await (await request("jobs/upload", { method: "POST", body: data })).json();
          navigate(`#/jobs/${job.id}`);
        } catch (failure) {
          error.hidden = false;
          error.textContent = failure.message;
        } finally {
          submit.disabled = false;
          progress.textContent = "";
        }
      },
    },
    h(
      "div",
      { className: "fields" },
      field("Code archive", archive, "A .zip or .tar.gz of your controller's files, with the entrypoint at the top level."),
      field("Entrypoint", entrypoint, "The Python file to run, inside the archive."),
      h("div", {}),
      ...options.nodes,
    ),
    error,
    h("div", { className: "form-actions" }, submit, progress),
  );
  return { form };
}

export function renderSubmit(view, _params, navigate) {
  const git = gitForm(navigate);
  const upload = uploadForm(navigate);
  const tabs = [
    { name: "git", label: "From git", form: git.form },
    { name: "upload", label: "Upload a folder", form: upload.form },
  ];
  const buttons = tabs.map((tab) =>
    h("button", { type: "button", role: "tab", testid: `tab-${tab.name}`, onclick: () => choose(tab.name) }, tab.label),
  );
  function choose(name) {
    tabs.forEach((tab, index) => {
      tab.form.hidden = tab.name !== name;
      buttons[index].setAttribute("aria-selected", String(tab.name === name));
    });
  }
  fill(
    view,
    h(
      "section",
      { className: "card" },
      h("h1", {}, "Submit a job"),
      h("p", { className: "muted" }, "Your controller runs on a real pendulum; you get its trajectory, logs and a plot."),
      h("div", { className: "tabs", role: "tablist" }, buttons),
      git.form,
      upload.form,
    ),
  );
  choose("git");
  return git.cleanup;
}
