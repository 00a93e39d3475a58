// #/robots : every robot's state, health, current job and calibration download.

import { API, downloadWithToken, getJson } from "./api.js";
import { fill, formatNumber, formatTime, h, jobLink, table } from "./dom.js";

const POLL_MS = 3000;

function lastReset(reset) {
  if (!reset) return "—";
  const parts = [reset.ok ? "ok" : "failed"];
  if (reset.duration_s !== null && reset.duration_s !== undefined) parts.push(`in ${formatNumber(reset.duration_s, 1)} s`);
  if (reset.at) parts.push(formatTime(reset.at));
  return h("span", { className: reset.ok ? "" : "error" }, parts.join(" "));
}

function calibrationLink(robot) {
  const url = `${API}/robots/${encodeURIComponent(robot.name)}/calibration`;
  const filename = `${robot.name}-calibration.json`;
  return h(
    "a",
    {
      href: url,
      download: filename,
      testid: `calibration-${robot.name}`,
      onclick: (event) => {
        event.preventDefault();
        downloadWithToken(url, filename).catch((error) => alert(`Download failed: ${error.message}`));
      },
    },
    "calibration.json",
  );
}

function robotsTable(robots) {
  return table(
    ["Robot", "State", "Ready", "Reasons", "Current job", "Temperature", "Last reset", "Calibration"],
    robots.map((robot) => ({
      attrs: { "data-testid": `robot-row-${robot.name}` },
      cells: [
        h("strong", {}, robot.name, " ", h("span", { className: "muted" }, robot.type)),
        h("span", { testid: `robot-state-${robot.name}` }, robot.state),
        h("span", {}, h("span", { className: `dot ${robot.ready ? "dot-ok" : "dot-bad"}` }), robot.ready ? "yes" : "no"),
        robot.reasons.length ? robot.reasons.join("; ") : "—",
        robot.current_job ? jobLink(robot.current_job) : "—",
        robot.temperature_celsius === null ? "—" : `${formatNumber(robot.temperature_celsius, 1)} °C`,
        lastReset(robot.last_reset),
        calibrationLink(robot),
      ],
    })),
    "robots-table",
  );
}

export function renderRobots(view) {
  const status = h("span", { className: "muted" }, "loading…");
  const problem = h("div", { className: "banner", hidden: true, role: "alert" });
  const body = h("section", { className: "card", testid: "robots" });
  fill(
    view,
    h("div", { className: "row", style: "margin-bottom: .75rem" }, h("h1", { style: "margin: 0" }, "Robots"), h("span", { className: "spacer" }), status),
    problem,
    body,
  );
  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const robots = await getJson("robots");
      if (stopped) return;
      fill(body, robots.length ? robotsTable(robots) : h("p", { className: "empty" }, "This platform has no robots."));
      problem.hidden = true;
      const ready = robots.filter((robot) => robot.ready).length;
      status.textContent = `${ready} of ${robots.length} ready · updated ${formatTime(new Date().toISOString())}`;
    } catch (error) {
      if (stopped || error.status === 401) return;
      problem.hidden = false;
      problem.textContent = `Cannot load the robots: ${error.message} Retrying…`;
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
