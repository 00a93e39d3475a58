// The finished run: a four-panel plot and a pendulum animation sharing one time cursor.

import { TrajectoryPlot, drawPendulum, nearestIndex } from "./charts.js";
import { formatNumber, h } from "./dom.js";

export /** Plot and animation of the recorded run sharing one cursor: moving either moves the other. */
function replayView(trajectory) {
  const count = trajectory.time_s.length;
  const plotCanvas = h("canvas", { className: "plot-canvas", testid: "plot-canvas", "aria-label": "Trajectory plot" });
  const animationCanvas = h("canvas", { className: "animation-canvas", testid: "animation-canvas", "aria-label": "Pendulum replay" });
  const play = h("button", { type: "button", className: "primary", testid: "play-button" }, "▶ Play");
  const slider = h("input", { type: "range", min: 0, max: Math.max(0, count - 1), step: 1, value: 0, testid: "time-slider", "aria-label": "Time" });
  const readout = h("div", { className: "player-readout", testid: "player-readout" });
  const simulated = trajectory.simulated_theta_rad;
  const legend = h(
    "div",
    { className: "legend" },
    h("span", {}, h("i", { style: "background: var(--plot-1)" }), "recorded θ"),
    simulated ? h("span", {}, h("i", { style: "background: var(--plot-3)" }), "simulated θ (dashed; ghost rod)") : null,
  );
  const card = h(
    "section",
    { className: "card", testid: "replay" },
    h("h2", {}, "Trajectory"),
    h(
      "div",
      { className: "replay" },
      h("div", { style: "min-width: 0" }, plotCanvas, legend),
      h("div", { className: "player" }, animationCanvas, h("div", { className: "player-controls" }, play, slider), readout),
    ),
  );

  let plot = null;
  let index = 0;
  let playing = false;
  let frame = 0;
  let playTime = 0;
  let lastTick = 0;

  function show(row) {
    index = Math.max(0, Math.min(count - 1, row));
    if (plot) plot.setCursor(index);
    slider.value = String(index);
    const time = trajectory.time_s[index] ?? 0;
    drawPendulum(animationCanvas, {
      theta: trajectory.theta_rad[index],
      command: trajectory.command[index],
      ghostTheta: simulated ? simulated[index] : null,
      caption: `t = ${time.toFixed(2)} s`,
    });
    readout.textContent =
      `t ${time.toFixed(2)} s · θ ${formatNumber(trajectory.theta_rad[index])} · ` +
      `dθ/dt ${formatNumber(trajectory.theta_dot_rad_per_s[index])} · u ${formatNumber(trajectory.command[index])}`;
  }

  function pause() {
    playing = false;
    cancelAnimationFrame(frame);
    play.textContent = "▶ Play";
  }

  function tick(now) {
    if (!playing) return;
    playTime += (now - lastTick) / 1000;
    lastTick = now;
    const times = trajectory.time_s;
    // The latest recorded row at this instant, as the GIF does.
    let row = nearestIndex(times, playTime);
    if (times[row] > playTime && row > 0) row -= 1;
    show(row);
    if (row >= count - 1) pause();
    else frame = requestAnimationFrame(tick);
  }

  function start() {
    if (count < 2) return;
    if (index >= count - 1) index = 0;
    playing = true;
    playTime = trajectory.time_s[index];
    lastTick = performance.now();
    play.textContent = "❚❚ Pause";
    frame = requestAnimationFrame(tick);
  }

  play.addEventListener("click", () => (playing ? pause() : start()));
  slider.addEventListener("input", () => {
    pause();
    show(Number(slider.value));
  });
  let dragging = false;
  const seek = (event) => {
    const box = plotCanvas.getBoundingClientRect();
    show(plot.indexAtX(event.clientX - box.left));
  };
  plotCanvas.addEventListener("pointerdown", (event) => {
    if (!plot) return;
    dragging = true;
    plotCanvas.setPointerCapture(event.pointerId);
    pause();
    seek(event);
  });
  plotCanvas.addEventListener("pointermove", (event) => dragging && seek(event));
  plotCanvas.addEventListener("pointerup", () => (dragging = false));
  plotCanvas.addEventListener("pointercancel", () => (dragging = false));

  const resize = new ResizeObserver(() => {
    if (plot) plot.render();
    show(index);
  });
  return {
    card,
    /** Draw once the card is in the document (the canvases need their laid-out size). */
    attach() {
      plot = new TrajectoryPlot(plotCanvas, trajectory);
      show(0);
      resize.observe(plotCanvas);
      resize.observe(animationCanvas);
    },
    destroy() {
      pause();
      resize.disconnect();
    },
  };
}
