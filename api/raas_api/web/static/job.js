// #/jobs/<id> : status and history; a live view while it runs; plot, replay, logs and files after.

import { downloadWithToken, getJson, getText, isSameOrigin, postJson, readEventStream } from "./api.js";
import { drawPendulum } from "./charts.js";
import {
  TERMINAL,
  fill,
  formatBytes,
  formatNumber,
  formatRelative,
  formatTime,
  h,
  phaseBadge,
  sourceText,
  table,
} from "./dom.js";
import { replayView } from "./replay.js";

const POLL_MS = 2000;
const RECONNECT_MS = 2000;

function detailsList(job) {
  const rows = [
    ["Owner", job.owner],
    ["Code", sourceText(job.source)],
    ["Entrypoint", h("code", {}, job.entrypoint)],
    ["Commit", job.commit ? h("code", { title: job.commit }, job.commit.slice(0, 12)) : "—"],
    ["Robot", h("span", { testid: "job-robot" }, job.robot || (TERMINAL.has(job.phase) ? "—" : "not yet assigned"))],
    ["Attempts", job.attempts],
    ["Submitted", formatTime(job.created_at)],
    ["Time limit", `${job.time_limit_s} s`],
  ];
  if (job.queue_position) rows.push(["Queue position", h("span", { testid: "job-queue-position" }, job.queue_position)]);
  if (job.estimated_start && !TERMINAL.has(job.phase)) {
    rows.push(["Estimated start", `${formatTime(job.estimated_start)} (${formatRelative(job.estimated_start)})`]);
  }
  if (job.failure_class) rows.push(["Failure class", h("span", { testid: "job-failure-class" }, job.failure_class)]);
  const summary = job.summary;
  if (summary) {
    rows.push(["Steps", summary.steps]);
    rows.push(["Total reward", formatNumber(summary.total_reward, 1)]);
    if (summary.swing_up_time_s !== null) rows.push(["Swing-up time", `${formatNumber(summary.swing_up_time_s)} s`]);
    rows.push(["Deadline misses", summary.deadline_misses]);
    if (summary.sim_to_real_rmse_rad !== null) {
      rows.push(["Sim-to-real RMSE", `${formatNumber(summary.sim_to_real_rmse_rad, 3)} rad`]);
    }
  }
  if (job.results_pending) rows.push(["Results waiting", `${job.results_pending} file(s) not uploaded yet`]);
  return h("dl", { className: "details", testid: "job-details" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function historyTable(job) {
  return table(
    ["Phase", "At", "Reason", "Message"],
    job.history.map((change) => ({
      cells: [phaseBadge(change.phase), formatTime(change.at), change.reason || "—", change.message || null],
    })),
    "job-history",
  );
}

/** The status card: id, phase, reason and message, Cancel while the job can still be stopped. */
function statusCard(job, onCancel) {
  const failed = ["Failed", "TimedOut"].includes(job.phase);
  const cancel = TERMINAL.has(job.phase)
    ? null
    : h("button", { className: "danger", type: "button", testid: "cancel-button", onclick: onCancel }, "Cancel");
  return [
    h(
      "div",
      { className: "job-head" },
      h("h1", { testid: "job-id" }, job.id),
      phaseBadge(job.phase, "job-phase"),
      h("span", { className: "spacer" }),
      cancel,
    ),
    job.reason || job.message
      ? h(
          "div",
          { className: `message-box ${failed ? "bad" : job.phase === "Succeeded" ? "good" : ""}`, testid: "job-message" },
          h("strong", { testid: "job-reason" }, job.reason || ""),
          job.reason && job.message ? " — " : "",
          job.message || "",
        )
      : null,
    detailsList(job),
  ];
}

/** The pendulum as the live stream reports it, with the step count. */
function liveView() {
  const canvas = h("canvas", { className: "live-canvas", testid: "live-canvas", width: 320, height: 320 });
  const steps = h("span", { className: "big", testid: "live-steps" }, "—");
  const time = h("span", { testid: "live-time" }, "—");
  const angle = h("span", {}, "—");
  const command = h("span", {}, "—");
  const note = h("p", { className: "muted", testid: "live-note" }, "Waiting for the robot…");
  const card = h(
    "section",
    { className: "card", testid: "live-view" },
    h("h2", {}, "Live"),
    h(
      "div",
      { className: "live" },
      canvas,
      h(
        "div",
        {},
        h(
          "div",
          { className: "live-figures" },
          h("span", { className: "muted" }, "steps"),
          steps,
          h("span", { className: "muted" }, "time"),
          time,
          h("span", { className: "muted" }, "angle θ"),
          angle,
          h("span", { className: "muted" }, "command"),
          command,
        ),
        note,
      ),
    ),
  );
  drawPendulum(canvas, { theta: Math.PI });
  return {
    card,
    update(state) {
      if (state.steps !== null && state.steps !== undefined) steps.textContent = String(state.steps);
      if (state.time_s !== null) time.textContent = `${formatNumber(state.time_s)} s`;
      if (state.theta_rad !== null) angle.textContent = `${formatNumber(state.theta_rad)} rad`;
      if (state.command !== null) command.textContent = formatNumber(state.command);
      note.textContent =
        state.phase === "Running"
          ? "Running on the robot."
          : state.queue_position
            ? `Queued, position ${state.queue_position}.`
            : `${state.phase}…`;
      if (state.theta_rad !== null) {
        drawPendulum(canvas, { theta: state.theta_rad, command: state.command ?? 0, caption: `t = ${formatNumber(state.time_s)} s` });
      }
    },
  };
}

function logsCard() {
  const stdout = h("pre", { className: "log", testid: "log-stdout" }, "…");
  const stderr = h("pre", { className: "log", testid: "log-stderr" }, "…");
  const card = h(
    "section",
    { className: "grid-2 section-gap", testid: "logs" },
    h("div", { className: "card" }, h("h2", {}, "stdout"), stdout),
    h("div", { className: "card" }, h("h2", {}, "stderr"), stderr),
  );
  async function load(jobId) {
    const [out, err] = await Promise.all(
      ["stdout", "stderr"].map((stream) => getText(`jobs/${jobId}/logs?stream=${stream}`).catch((error) => `(${error.message})`)),
    );
    for (const [element, text] of [[stdout, out], [stderr, err]]) {
      const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
      element.textContent = text || "(empty)";
      if (atBottom) element.scrollTop = element.scrollHeight;
    }
  }
  return { card, load };
}

function fileLink(file) {
  const testid = `download-${file.name}`;
  if (!isSameOrigin(file.url)) {
    // A presigned S3 link carries its own authorisation.
    return h("a", { href: file.url, download: file.name, target: "_blank", rel: "noopener", testid }, file.name);
  }
  return h(
    "a",
    {
      href: file.url,
      download: file.name,
      testid,
      onclick: (event) => {
        event.preventDefault();
        downloadWithToken(file.url, file.name).catch((error) => alert(`Download failed: ${error.message}`));
      },
    },
    file.name,
  );
}

function resultsCard() {
  const list = h("ul", { className: "files", testid: "result-files" });
  const note = h("p", { className: "muted" });
  const card = h("section", { className: "card section-gap", testid: "results" }, h("h2", {}, "Result files"), note, list);
  /** Show the job's files; returns the manifest. */
  async function load(jobId) {
    const manifest = await getJson(`jobs/${jobId}/results`);
    fill(
      list,
      manifest.files.map((file) =>
        h("li", {}, fileLink(file), h("span", { className: "muted" }, file.content_type), h("span", { className: "size" }, formatBytes(file.size))),
      ),
    );
    note.textContent = manifest.results_pending
      ? `${manifest.results_pending} file(s) are waiting to be uploaded; this list updates by itself.`
      : manifest.files.length
        ? ""
        : "This job left no result files.";
    return manifest;
  }
  return { card, load };
}

export function renderJob(view, params) {
  const jobId = params.id;
  const statusEl = h("section", { className: "card", testid: "job-status" }, h("p", { className: "muted" }, "Loading…"));
  const liveEl = h("div", {});
  const replayEl = h("div", {});
  const logs = logsCard();
  const results = resultsCard();
  const historyEl = h("section", { className: "card section-gap" }, h("h2", {}, "Phase history"));
  const historyBody = h("div", {});
  historyEl.append(historyBody);
  logs.card.hidden = true;
  results.card.hidden = true;
  fill(view, statusEl, liveEl, replayEl, logs.card, results.card, historyEl);

  let stopped = false;
  let job = null;
  let live = null;
  let replay = null;
  let finishedShown = false;
  let replayRequested = false;
  const streamAbort = new AbortController();
  const timers = new Set();
  const later = (fn, ms) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) fn();
    }, ms);
    timers.add(timer);
  };

  async function cancelJob(event) {
    event.target.disabled = true;
    try {
      showJob(await postJson(`jobs/${jobId}/cancel`, {}));
    } catch (error) {
      event.target.disabled = false;
      alert(`Could not cancel: ${error.message}`);
    }
  }

  function showJob(next) {
    job = next;
    fill(statusEl, statusCard(job, cancelJob));
    fill(historyBody, historyTable(job));
    if (TERMINAL.has(job.phase)) showFinished();
    else if (!live) {
      live = liveView();
      fill(liveEl, live.card);
      followLive();
    }
  }

  async function refreshJob() {
    try {
      const next = await getJson(`jobs/${jobId}`);
      if (stopped) return;
      showJob(next);
    } catch (error) {
      if (stopped) return;
      if (error.status === 404) {
        fill(statusEl, h("h1", {}, "No such job"), h("p", { className: "error" }, error.message));
        stopped = true;
        return;
      }
      if (error.status === 401) return;
    }
    if (job && !TERMINAL.has(job.phase)) {
      if (job.phase === "Running" || job.phase === "Uploading") logs.card.hidden = false;
      if (!logs.card.hidden) logs.load(jobId);
      later(refreshJob, POLL_MS);
    }
  }

  // A phase change seen on the stream refreshes the status at once (not waiting for the poll).
  let inFlight = null;
  function refreshNow() {
    if (!inFlight) {
      inFlight = getJson(`jobs/${jobId}`)
        .then((next) => !stopped && showJob(next))
        .catch(() => {})
        .finally(() => (inFlight = null));
    }
    return inFlight;
  }

  /** Follow the live stream; reconnect if it drops before the job ends. */
  async function followLive() {
    while (!stopped && job && !TERMINAL.has(job.phase)) {
      let ended = false;
      try {
        await readEventStream(
          `jobs/${jobId}/live`,
          (name, data) => {
            const state = JSON.parse(data);
            if (name === "state") {
              live.update(state);
              if (job && state.phase !== job.phase) refreshNow();
            } else if (name === "end") {
              ended = true;
            }
          },
          streamAbort.signal,
        );
      } catch (error) {
        if (stopped || error.name === "AbortError" || error.status === 401 || error.status === 404) return;
      }
      if (ended) {
        await refreshNow();
        return;
      }
      await new Promise((resolve) => later(resolve, RECONNECT_MS));
    }
  }

  function showFinished() {
    if (finishedShown) return;
    finishedShown = true;
    streamAbort.abort();
    liveEl.replaceChildren();
    logs.card.hidden = false;
    results.card.hidden = false;
    fill(replayEl, h("section", { className: "card muted", testid: "replay-loading" }, "Loading the trajectory…"));
    logs.load(jobId);
    loadResults();
  }

  /** Plot and replay, once the result files include the recording (asking earlier only gets 404s). */
  async function loadTrajectory() {
    replayRequested = true;
    try {
      const trajectory = await getJson(`jobs/${jobId}/trajectory`);
      if (stopped) return;
      if (!trajectory.time_s.length) {
        fill(replayEl, h("section", { className: "card muted", testid: "no-trajectory" }, "The run recorded no steps."));
        return;
      }
      replay = replayView(trajectory);
      fill(replayEl, replay.card);
      replay.attach();
    } catch (error) {
      if (stopped) return;
      fill(replayEl, h("section", { className: "card muted", testid: "no-trajectory" }, `No trajectory to show: ${error.message}`));
    }
  }

  async function loadResults() {
    try {
      const manifest = await results.load(jobId);
      const names = new Set(manifest.files.map((file) => file.name));
      if (!replayRequested && names.has("trajectory.parquet") && names.has("metadata.json")) loadTrajectory();
      if (manifest.results_pending) later(loadResults, POLL_MS * 2);
      else if (!replayRequested) {
        fill(replayEl, h("section", { className: "card muted", testid: "no-trajectory" }, "This job recorded no trajectory."));
      }
    } catch (error) {
      if (!stopped && error.status !== 401 && error.status !== 404) later(loadResults, POLL_MS * 2);
    }
  }

  refreshJob();
  return () => {
    stopped = true;
    streamAbort.abort();
    for (const timer of timers) clearTimeout(timer);
    if (replay) replay.destroy();
  };
}
