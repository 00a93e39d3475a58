// #/ : running, waiting and finished jobs, refreshed every 1.5 s without reloading the page.

import { getJson } from "./api.js";
import {
  ACTIVE,
  TERMINAL,
  WAITING,
  fill,
  formatNumber,
  formatRelative,
  formatTime,
  h,
  jobLink,
  phaseBadge,
  sourceText,
  table,
} from "./dom.js";

const POLL_MS = 1500;

function finishedAt(job) {
  const last = job.history.length ? job.history[job.history.length - 1] : null;
  return last ? last.at : job.created_at;
}

function runningTable(jobs) {
  return table(
    ["Job", "Phase", "Robot", "Steps", "Owner", "Code"],
    jobs.map((job) => ({
      attrs: { "data-testid": `queue-row-${job.id}` },
      cells: [
        jobLink(job.id),
        phaseBadge(job.phase),
        job.robot || "—",
        job.steps ?? "—",
        job.owner,
        sourceText(job.source),
      ],
    })),
    "running-table",
  );
}

function waitingTable(jobs) {
  return table(
    ["Job", "Phase", "Position", "Estimated start", "Owner", "Code"],
    jobs.map((job) => ({
      attrs: { "data-testid": `queue-row-${job.id}` },
      cells: [
        jobLink(job.id),
        phaseBadge(job.phase),
        job.queue_position ?? "—",
        job.estimated_start ? `${formatTime(job.estimated_start)} (${formatRelative(job.estimated_start)})` : "—",
        job.owner,
        sourceText(job.source),
      ],
    })),
    "waiting-table",
  );
}

function finishedTable(jobs) {
  return table(
    ["Job", "Phase", "Finished", "Robot", "Reward", "Reason", "Owner"],
    jobs.map((job) => ({
      attrs: { "data-testid": `queue-row-${job.id}` },
      cells: [
        jobLink(job.id),
        phaseBadge(job.phase),
        formatTime(finishedAt(job)),
        job.robot || "—",
        formatNumber(job.summary ? job.summary.total_reward : null, 1),
        job.failure_class ? `${job.failure_class}: ${job.reason}` : job.reason || "—",
        job.owner,
      ],
    })),
    "finished-table",
  );
}

function section(title, jobs, build, testid, emptyText) {
  return h(
    "section",
    { className: "card", testid },
    h("h2", {}, `${title} `, h("span", { className: "muted" }, `(${jobs.length})`)),
    jobs.length ? build(jobs) : h("p", { className: "empty" }, emptyText),
  );
}

export function renderQueue(view) {
  const status = h("span", { className: "muted", testid: "queue-updated" }, "loading…");
  const problem = h("div", { className: "banner", hidden: true, role: "alert" });
  const body = h("div", {});
  fill(
    view,
    h(
      "div",
      { className: "row", style: "margin-bottom: .75rem" },
      h("h1", { style: "margin: 0" }, "Queue"),
      h("span", { className: "spacer" }),
      status,
      h("a", { href: "#/submit" }, h("button", { className: "primary", type: "button" }, "Submit a job")),
    ),
    problem,
    body,
  );

  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const list = await getJson("jobs?limit=50");
      if (stopped) return;
      const jobs = list.jobs;
      const sorted = (phases) => jobs.filter((job) => phases.has(job.phase));
      // Waiting jobs in queue order; the rest newest first as the server lists them.
      const waiting = sorted(WAITING).sort((a, b) => (a.queue_position ?? 1e9) - (b.queue_position ?? 1e9));
      fill(
        body,
        section("Running", sorted(ACTIVE), runningTable, "queue-running", "No job is running."),
        section("Waiting", waiting, waitingTable, "queue-waiting", "Nothing is waiting."),
        section("Finished", sorted(TERMINAL), finishedTable, "queue-finished", "No finished jobs yet."),
      );
      problem.hidden = true;
      status.textContent = `updated ${formatTime(new Date().toISOString())}`;
    } catch (error) {
      if (stopped || error.status === 401) return;
      problem.hidden = false;
      problem.textContent = `Cannot load the queue: ${error.message} Retrying…`;
    } finally {
      if (!stopped) timer = setTimeout(refresh, POLL_MS);
    }
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
