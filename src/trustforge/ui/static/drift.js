// TrustForge dashboard, drift page: one uPlot chart per feature of the recorded windows.
// Data come from <script type="application/json" id="drift-data"> (the CSP forbids inline script).
"use strict";
(function () {
  const FLOOR = 1e-16; // p-values below this (0 in floating point) are drawn at the floor of the log scale

  function label(test, measure) {
    const names = { ks: "KS", chi2: "chi-square", psi: "PSI", wasserstein: "Wasserstein", missing: "all-missing" };
    const t = names[test] || test || "test";
    return measure === "p_value" ? t + " p-value" : t + " statistic";
  }

  function tick(v) {
    if (v === null || v === undefined) return "";
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a < 0.001 || a >= 1e5 ? v.toExponential(0) : String(+v.toPrecision(3));
  }

  function summary(name, f) {
    const n = f.drift.length;
    const drifted = f.drift.reduce((a, b) => a + b, 0);
    return name + ": drift in " + drifted + " of " + n + " windows (" + label(f.test, f.measure) + ")";
  }

  function chart(box, name, f, data) {
    const measure = f.measure;
    const values = f[measure].map((v) => (v === null ? null : measure === "p_value" ? Math.max(v, FLOOR) : v));
    const threshold = f.threshold.map((v) => (v === null ? null : measure === "p_value" ? Math.max(v, FLOOR) : v));
    const flagged = values.map((v, i) => (f.drift[i] ? v : null));
    const fig = document.createElement("figure");
    fig.className = "drift-chart";
    const caption = document.createElement("figcaption");
    caption.textContent = summary(name, f);
    fig.appendChild(caption);
    const plot = document.createElement("div");
    plot.setAttribute("role", "img");
    plot.setAttribute("aria-label", summary(name, f));
    fig.appendChild(plot);
    box.appendChild(fig);
    // The figure is a grid cell now: the chart takes its width (less its padding).
    const width = Math.max(240, fig.clientWidth - 24);
    const opts = {
      width: width,
      height: 190,
      legend: { show: false }, // the key is above the charts; the table below gives every figure
      scales: { x: { time: false }, y: measure === "p_value" ? { distr: 3 } : {} },
      axes: [
        { label: "window", values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : "")) },
        { label: label(f.test, measure), size: 64, values: (u, ticks) => ticks.map(tick) },
      ],
      series: [
        { label: "window", value: (u, v) => (v === null ? "-" : "#" + v + " " + (data.times[v - 1] || "")) },
        { label: measure === "p_value" ? "p-value" : "statistic", stroke: "#1f5fbf", width: 2, points: { show: values.length < 60 } },
        { label: "threshold", stroke: "#a4161a", width: 1, dash: [6, 4], points: { show: false } },
        { label: "drift", stroke: "#a4161a", fill: "#a4161a", paths: () => null, points: { show: true, size: 8, fill: "#a4161a" } },
      ],
    };
    // uPlot is the vendored static file (MIT; see static/vendor/LICENSE).
    new window.uPlot(opts, [data.x, values, threshold, flagged], plot);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const source = document.getElementById("drift-data");
    const box = document.getElementById("drift-charts");
    if (!source || !box || typeof window.uPlot !== "function") return;
    const data = JSON.parse(source.textContent);
    const names = Object.keys(data.features);
    // Features that drifted most often come first: what a reader looks for.
    names.sort((a, b) => data.features[b].drift.reduce((s, x) => s + x, 0) - data.features[a].drift.reduce((s, x) => s + x, 0) || a.localeCompare(b));
    for (const name of names) chart(box, name, data.features[name], data);
  });
})();
