// Canvas drawings: the pendulum (live view and replay) and the four-panel trajectory plot.
// Colours come from the CSS variables in style.css, so both themes draw correctly.

const MAX_COMMAND = 2.0; // the motor command that fills the command arc (the action bound)

export function cssColour(name, fallback = "#888") {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

/** Size the canvas' backing store to its CSS box at the screen's pixel ratio; returns the CSS size. */
export function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth));
  const height = Math.max(1, Math.round(canvas.clientHeight));
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { context, width, height };
}

/**
 * The pendulum at angle `theta` from upright (counter-clockwise positive, as gym_raas draws it),
 * with the motor command as an arc around the pivot and an optional faint "ghost" rod (the
 * simulator's angle at the same instant).
 */
export function drawPendulum(canvas, { theta, command = 0, ghostTheta = null, caption = "" }) {
  const { context: ctx, width, height } = fitCanvas(canvas);
  const size = Math.min(width, height);
  const cx = width / 2;
  const cy = height / 2;
  const length = size * 0.36;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = cssColour("--surface", "#fff");
  ctx.fillRect(0, 0, width, height);

  ctx.strokeStyle = cssColour("--grid", "#ddd");
  ctx.lineWidth = 1;
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.arc(cx, cy, length, 0, 2 * Math.PI);
  ctx.moveTo(cx, cy - length - 8);
  ctx.lineTo(cx, cy - length + 8);
  ctx.stroke();
  ctx.setLineDash([]);

  if (Number.isFinite(command) && command !== 0) {
    // Same convention as gym_raas.rendering: from the top, |fraction|·270° in the command's sense.
    const fraction = Math.max(-1, Math.min(1, command / MAX_COMMAND));
    const start = -Math.PI / 2;
    ctx.strokeStyle = cssColour("--command", "#36c");
    ctx.lineWidth = Math.max(3, size * 0.025);
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.arc(cx, cy, size * 0.12, start, start - fraction * 1.5 * Math.PI, fraction > 0);
    ctx.stroke();
  }

  const tip = (angle) => [cx - length * Math.sin(angle), cy - length * Math.cos(angle)];
  if (ghostTheta !== null && Number.isFinite(ghostTheta)) {
    const [gx, gy] = tip(ghostTheta);
    ctx.globalAlpha = 0.45;
    ctx.strokeStyle = cssColour("--ghost", "#36c");
    ctx.lineWidth = Math.max(2, size * 0.02);
    ctx.setLineDash([6, 5]);
    ctx.beginPath();
    ctx.moveTo(cx, cy);
    ctx.lineTo(gx, gy);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
  }
  if (Number.isFinite(theta)) {
    const [tx, ty] = tip(theta);
    ctx.strokeStyle = cssColour("--rod", "#c44");
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = Math.max(4, size * 0.04);
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(cx, cy);
    ctx.lineTo(tx, ty);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(tx, ty, size * 0.045, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.fillStyle = cssColour("--text", "#222");
  ctx.beginPath();
  ctx.arc(cx, cy, Math.max(3, size * 0.018), 0, 2 * Math.PI);
  ctx.fill();

  if (caption) {
    ctx.font = `${Math.max(11, Math.round(size * 0.045))}px ui-monospace, monospace`;
    ctx.fillStyle = cssColour("--muted", "#777");
    ctx.textBaseline = "bottom";
    ctx.fillText(caption, 8, height - 6);
  }
}

/** About four round tick values covering [low, high]. */
function niceTicks(low, high) {
  const span = high - low || 1;
  const rough = span / 3;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => span / s <= 4) || 10 * power;
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    ticks.push(Math.abs(value) < step * 1e-9 ? 0 : value);
  }
  return ticks;
}

function formatTick(value) {
  const size = Math.abs(value);
  if (size === 0) return "0";
  if (size >= 1000 || size < 0.01) return value.toExponential(0);
  return String(Number(value.toPrecision(3)));
}

function extent(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const value of values) {
    if (!Number.isFinite(value)) continue;
    if (value < low) low = value;
    if (value > high) high = value;
  }
  if (low === Infinity) return [-1, 1];
  if (low === high) return [low - 1, high + 1];
  const pad = (high - low) * 0.08;
  return [low - pad, high + pad];
}

const ANGLE_TICKS = [
  [-Math.PI, "−π"],
  [-Math.PI / 2, "−π/2"],
  [0, "0"],
  [Math.PI / 2, "π/2"],
  [Math.PI, "π"],
];

/**
 * The recorded run as four stacked panels sharing the time axis, with a movable cursor.
 * `setCursor(index)` redraws only the cursor over a cached picture of the curves.
 */
export class TrajectoryPlot {
  constructor(canvas, trajectory) {
    this.canvas = canvas;
    this.data = trajectory;
    this.cursor = 0;
    this.base = document.createElement("canvas");
    const angle = [...trajectory.theta_rad, ...(trajectory.simulated_theta_rad || [])];
    const angleWithinTurn = angle.every((value) => !Number.isFinite(value) || Math.abs(value) <= Math.PI + 1e-6);
    this.panels = [
      {
        title: "angle θ (rad)",
        series: [
          { values: trajectory.theta_rad, colour: "--plot-1", wraps: true },
          trajectory.simulated_theta_rad
            ? { values: trajectory.simulated_theta_rad, colour: "--plot-3", wraps: true, dashed: true }
            : null,
        ].filter(Boolean),
        range: angleWithinTurn ? [-Math.PI * 1.08, Math.PI * 1.08] : extent(angle),
        ticks: angleWithinTurn ? ANGLE_TICKS : null,
      },
      { title: "velocity θ̇ (rad/s)", series: [{ values: trajectory.theta_dot_rad_per_s, colour: "--plot-2" }] },
      { title: "command", series: [{ values: trajectory.command, colour: "--plot-3" }] },
      { title: "reward", series: [{ values: trajectory.reward, colour: "--plot-4" }] },
    ];
    for (const panel of this.panels) {
      panel.range = panel.range || extent(panel.series.flatMap((series) => series.values));
      panel.ticks = panel.ticks || niceTicks(...panel.range).map((value) => [value, formatTick(value)]);
    }
    const times = trajectory.time_s;
    this.t0 = times.length ? times[0] : 0;
    this.t1 = times.length > 1 ? times[times.length - 1] : this.t0 + 1;
    this.render();
  }

  layout(width, height) {
    const left = 48;
    const right = 10;
    const top = 10;
    const bottom = 24;
    const gap = 10;
    const panelHeight = (height - top - bottom - gap * 3) / 4;
    return {
      left,
      right: width - right,
      bottom: height - bottom,
      panelTop: (index) => top + index * (panelHeight + gap),
      panelHeight,
    };
  }

  xOf(time) {
    const { left, right } = this.frame;
    return left + ((time - this.t0) / (this.t1 - this.t0 || 1)) * (right - left);
  }

  /** The row nearest to a horizontal position in CSS pixels. */
  indexAtX(x) {
    const { left, right } = this.frame;
    const time = this.t0 + ((x - left) / (right - left || 1)) * (this.t1 - this.t0);
    return nearestIndex(this.data.time_s, time);
  }

  /** Redraw the curves (after a resize) and the cursor. */
  render() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.canvas.clientWidth));
    const height = Math.max(1, Math.round(this.canvas.clientHeight));
    this.size = { width, height };
    this.frame = this.layout(width, height);
    this.base.width = Math.round(width * ratio);
    this.base.height = Math.round(height * ratio);
    const ctx = this.base.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.drawCurves(ctx, width, height);
    this.setCursor(this.cursor);
  }

  drawCurves(ctx, width, height) {
    const { left, right, bottom, panelTop, panelHeight } = this.frame;
    const times = this.data.time_s;
    ctx.fillStyle = cssColour("--surface", "#fff");
    ctx.fillRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    this.panels.forEach((panel, index) => {
      const top = panelTop(index);
      const [low, high] = panel.range;
      const yOf = (value) => top + panelHeight - ((value - low) / (high - low)) * panelHeight;
      panel.yOf = yOf;
      panel.top = top;
      ctx.strokeStyle = cssColour("--grid", "#e5e5e5");
      ctx.lineWidth = 1;
      ctx.strokeRect(left + 0.5, top + 0.5, right - left, panelHeight);
      ctx.fillStyle = cssColour("--muted", "#777");
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const [value, label] of panel.ticks) {
        const y = Math.round(yOf(value)) + 0.5;
        if (y < top || y > top + panelHeight) continue;
        ctx.beginPath();
        ctx.moveTo(left, y);
        ctx.lineTo(right, y);
        ctx.stroke();
        ctx.fillText(label, left - 5, y);
      }
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, right - left, panelHeight);
      ctx.clip();
      for (const series of panel.series) {
        ctx.strokeStyle = cssColour(series.colour, "#c44");
        ctx.lineWidth = 1.5;
        ctx.setLineDash(series.dashed ? [5, 4] : []);
        ctx.beginPath();
        let drawing = false;
        let previous = null;
        for (let row = 0; row < times.length; row += 1) {
          const value = series.values[row];
          if (!Number.isFinite(value)) {
            drawing = false;
            continue;
          }
          // An angle wrapping past ±π is a jump of ~2π: lift the pen instead of drawing it.
          const wrapped = series.wraps && previous !== null && Math.abs(value - previous) > Math.PI;
          const x = this.xOf(times[row]);
          const y = yOf(value);
          if (drawing && !wrapped) ctx.lineTo(x, y);
          else ctx.moveTo(x, y);
          drawing = true;
          previous = value;
        }
        ctx.stroke();
      }
      ctx.restore();
      ctx.setLineDash([]);
      ctx.fillStyle = cssColour("--text", "#222");
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      ctx.fillText(panel.title, left + 6, top + 4);
    });
    ctx.fillStyle = cssColour("--muted", "#777");
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const value of niceTicks(this.t0, this.t1)) {
      if (value < this.t0 || value > this.t1) continue;
      ctx.fillText(formatTick(value), this.xOf(value), bottom + 5);
    }
    ctx.textAlign = "right";
    ctx.fillText("time (s)", right, bottom + 5);
  }

  setCursor(index) {
    const count = this.data.time_s.length;
    this.cursor = Math.max(0, Math.min(count - 1, index));
    const { context: ctx, width, height } = fitCanvas(this.canvas);
    ctx.clearRect(0, 0, width, height);
    ctx.drawImage(this.base, 0, 0, width, height);
    if (!count) return;
    const x = Math.round(this.xOf(this.data.time_s[this.cursor])) + 0.5;
    const { panelHeight } = this.frame;
    ctx.strokeStyle = cssColour("--cursor", "#222");
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, this.frame.panelTop(0));
    ctx.lineTo(x, this.frame.bottom);
    ctx.stroke();
    ctx.font = "11px ui-monospace, monospace";
    ctx.textBaseline = "top";
    for (const panel of this.panels) {
      const [first] = panel.series;
      const value = first.values[this.cursor];
      if (!Number.isFinite(value)) continue;
      ctx.fillStyle = cssColour(first.colour, "#c44");
      ctx.beginPath();
      ctx.arc(x, panel.yOf(value), 3.5, 0, 2 * Math.PI);
      ctx.fill();
      const label = value.toFixed(2);
      const toLeft = x > this.frame.right - 60;
      ctx.textAlign = toLeft ? "right" : "left";
      ctx.fillText(label, x + (toLeft ? -6 : 6), panel.top + panelHeight - 16);
    }
  }
}

/** Index of the value in ascending `times` nearest to `time`. */
export function nearestIndex(times, time) {
  if (!times.length) return 0;
  let low = 0;
  let high = times.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (times[middle] < time) low = middle + 1;
    else high = middle;
  }
  if (low > 0 && Math.abs(times[low - 1] - time) <= Math.abs(times[low] - time)) return low - 1;
  return low;
}
