// TrustForge dashboard: learning curves drawn with the vendored uPlot (static/vendor/).
// Data comes from <script type="application/json" id="curves-data"> ({"charts": [{id, metric, x,
// series: [{label, values}]}]}); each chart goes into the element with data-chart="ID". The page
// already holds every number in a table under each chart, so a reader without canvas or script
// loses nothing; the canvas itself is hidden from screen readers (the figure has a caption).
"use strict";
(function () {
  // Colour-blind-safe palette (Okabe–Ito) and a dash per run, so lines differ by more than colour.
  const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"];
  const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [1, 2]];

  function width(box) {
    return Math.max(280, box.clientWidth || 600); // the card's full width
  }

  function draw(chart, box) {
    const data = [chart.x].concat(chart.series.map((s) => s.values));
    const series = [{ label: "epoch" }].concat(
      chart.series.map((s, i) => ({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        dash: DASHES[i % DASHES.length],
        width: 2,
        spanGaps: true,
        points: { show: chart.x.length <= 30 },
      }))
    );
    const plot = new window.uPlot(
      {
        width: width(box),
        height: 260,
        series: series,
        scales: { x: { time: false } },
        axes: [{ label: "epoch" }, { label: chart.metric.replace(/_/g, " ") }],
        legend: { live: false }, // names and styles only: no "epoch: --" before a hover
        cursor: { drag: { x: false, y: false } },
      },
      data,
      box
    );
    for (const canvas of box.querySelectorAll("canvas")) canvas.setAttribute("aria-hidden", "true");
    return plot;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const source = document.getElementById("curves-data");
    if (!source || typeof window.uPlot !== "function") return;
    let spec;
    try {
      spec = JSON.parse(source.textContent);
    } catch (e) {
      return;
    }
    const plots = [];
    for (const chart of spec.charts || []) {
      const box = document.querySelector('[data-chart="' + chart.id + '"]');
      if (box) plots.push([draw(chart, box), box]);
    }
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => {
        for (const [plot, box] of plots) plot.setSize({ width: width(box), height: 260 });
      }, 150);
    });
  });
})();
