// strait status page. Polls this instance's /status and /status/history every 2 s and
// renders them; charts are plain SVG drawn here. Read-only: it only ever sends GETs.
// Every value from the server goes into the page as text (textContent), never as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const WINDOW_MS = 15 * 60 * 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const LAGGING_SECONDS = 60;

  // Per flow: the partition table's sort, kept across refreshes.
  const sorts = new Map();
  // Per flow: its section's elements.
  const sections = new Map();

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, String(value));
    }
    for (const child of children || []) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function badge(text, kind) {
    return el("span", { class: "badge " + kind }, [text]);
  }

  // ---------------------------------------------------------------- formatting
  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function fmtInt(n) {
    return n === null || n === undefined ? "—" : integer.format(n);
  }

  function fmtRate(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
    return n >= 100 ? n.toFixed(0) : n.toFixed(1);
  }

  function fmtMB(bytesPerSecond) {
    const mb = bytesPerSecond / 1e6;
    return mb >= 100 ? mb.toFixed(0) : mb >= 1 ? mb.toFixed(2) : mb.toFixed(3);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " m " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
  }

  function stateKind(state) {
    return ["running", "paused", "starting", "stopped"].includes(state) ? state : "other";
  }

  function reach(flow, ok) {
    if (flow.state === "starting") return badge("…", "starting");
    return ok ? badge("up", "up") : badge("down", "down");
  }

  function worstLag(flow) {
    return flow.partitions.reduce((m, p) => Math.max(m, p.lag_seconds), 0);
  }

  function lagRecords(flow) {
    return flow.partitions.reduce((sum, p) => sum + p.lag_records, 0);
  }

  // ---------------------------------------------------------------- overview
  function renderOverview(flows) {
    const body = document.querySelector("#flows tbody");
    const rows = flows.map((f) =>
      el("tr", { class: "flow-row", "data-flow": f.flow, "data-state": f.state }, [
        el("td", {}, [el("a", { href: "#flow-" + flows.indexOf(f) }, [f.flow])]),
        el("td", {}, [badge(f.state, stateKind(f.state))]),
        el("td", {}, [reach(f, f.source_reachable)]),
        el("td", {}, [reach(f, f.target_reachable)]),
        el("td", { class: "num" }, [fmtRate(f.records_per_second)]),
        el("td", { class: "num" }, [fmtMB(f.bytes_per_second || 0)]),
        el("td", { class: "num" }, [fmtSeconds(worstLag(f))]),
        el("td", { class: "num" }, [fmtInt(lagRecords(f))]),
        el("td", { class: "num" }, [fmtSeconds(f.checkpoint_age_seconds)]),
        el("td", { class: "num" }, [fmtSeconds(f.heartbeat_age_seconds)]),
        el("td", { class: "error" }, [f.last_error || ""]),
      ])
    );
    if (rows.length === 0) {
      rows.push(el("tr", {}, [el("td", { colspan: 11, class: "muted" }, ["No flows configured."])]));
    }
    body.replaceChildren(...rows);
  }

  // ---------------------------------------------------------------- charts
  // A round upper bound for an axis: 1, 2 or 5 times a power of ten.
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  // "−2 min", "−45 s", "now": how long before the newest sample `ms` is.
  function fmtAgo(ms) {
    if (ms <= 0) return "now";
    return ms >= 120000 ? "−" + Number((ms / 60000).toFixed(1)) + " min" : "−" + Math.round(ms / 1000) + " s";
  }

  // An axis label: at most three significant digits, no trailing zeros.
  function fmtAxis(v) {
    return v === 0 ? "0" : String(Number(v.toPrecision(3)));
  }

  // Draws `series` (each {key, axis: "left"|"right", scale, format}) of `samples` into
  // the SVG element `plot`. The time axis spans the samples kept (at most 15 minutes,
  // at least one); a gap of more than three sample intervals breaks the line.
  function drawChart(plot, samples, series, intervalMs) {
    const W = 640, H = 200, left = 58, right = 58, top = 10, bottom = 22;
    const iw = W - left - right, ih = H - top - bottom;
    plot.replaceChildren();
    plot.setAttribute("viewBox", "0 0 " + W + " " + H);
    plot.setAttribute("data-points", String(samples.length));
    const end = samples.length ? samples[samples.length - 1].at_ms : 0;
    const span = samples.length ? Math.min(WINDOW_MS, Math.max(60000, end - samples[0].at_ms)) : WINDOW_MS;
    const start = end - span;
    const x = (t) => left + ((t - start) / span) * iw;
    const maxima = {};
    for (const s of series) {
      const peak = samples.reduce((m, p) => Math.max(m, p[s.key] * s.scale), 0);
      maxima[s.axis] = Math.max(maxima[s.axis] || 0, peak);
    }
    for (const axis of Object.keys(maxima)) maxima[axis] = niceMax(maxima[axis]);
    const labelled = ["left", "right"].map((axis) => series.find((s) => s.axis === axis)).filter(Boolean);
    for (let i = 0; i <= 4; i++) {
      const yy = top + ih - (i / 4) * ih;
      plot.append(svg("line", { class: "grid", x1: left, x2: left + iw, y1: yy, y2: yy }));
      for (const s of labelled) {
        const label = svg("text", {
          class: "axis-label",
          x: s.axis === "left" ? left - 6 : left + iw + 6,
          y: yy + 3,
          "text-anchor": s.axis === "left" ? "end" : "start",
        });
        label.textContent = s.format((maxima[s.axis] * i) / 4);
        plot.append(label);
      }
    }
    for (let i = 0; i <= 3; i++) {
      const label = svg("text", { class: "axis-label", x: left + (i / 3) * iw, y: H - 6, "text-anchor": "middle" });
      label.textContent = fmtAgo(span - (i / 3) * span);
      plot.append(label);
    }
    if (samples.length < 2) {
      const note = svg("text", { class: "empty", x: left + iw / 2, y: top + ih / 2, "text-anchor": "middle" });
      note.textContent = "collecting samples…";
      plot.append(note);
    }
    for (const s of series) {
      const y = (v) => top + ih - Math.min(1, (v * s.scale) / maxima[s.axis]) * ih;
      let d = "";
      let previous = null;
      for (const p of samples) {
        const command = previous === null || p.at_ms - previous > 3 * intervalMs ? "M" : "L";
        d += command + x(p.at_ms).toFixed(1) + " " + y(p[s.key]).toFixed(1) + " ";
        previous = p.at_ms;
      }
      plot.append(svg("path", { class: "series series-" + s.key, d: d.trim(), "data-points": samples.length }));
    }
  }

  // ---------------------------------------------------------------- partitions
  const PARTITION_COLUMNS = [
    { key: "topic", label: "topic", num: false },
    { key: "partition", label: "partition", num: true },
    { key: "lag_records", label: "lag records", num: true },
    { key: "lag_seconds", label: "lag seconds", num: true },
    { key: "mirrored_position", label: "mirrored position", num: true },
    { key: "source_end_offset", label: "source end offset", num: true },
  ];

  function compareBy(key, descending) {
    const sign = descending ? -1 : 1;
    return (a, b) => {
      const primary = typeof a[key] === "string" ? a[key].localeCompare(b[key]) : a[key] - b[key];
      if (primary !== 0) return sign * primary;
      // Ties: the worse partition first, then by name.
      return b.lag_seconds - a.lag_seconds || b.lag_records - a.lag_records ||
        a.topic.localeCompare(b.topic) || a.partition - b.partition;
    };
  }

  function partitionHead(flowName) {
    const sort = sorts.get(flowName);
    return el("thead", {}, [
      el("tr", {}, PARTITION_COLUMNS.map((c) => {
        const button = el("button", { type: "button", "data-key": c.key }, [c.label]);
        button.addEventListener("click", () => {
          const current = sorts.get(flowName);
          // A new column starts descending for numbers (worst first), ascending for names.
          const descending = current.key === c.key ? !current.descending : c.num;
          sorts.set(flowName, { key: c.key, descending });
          const section = sections.get(flowName);
          renderPartitions(section, flowName, section.lastPartitions);
        });
        const attrs = { class: c.num ? "num" : "", "data-key": c.key };
        if (sort.key === c.key) attrs["aria-sort"] = sort.descending ? "descending" : "ascending";
        return el("th", attrs, [button]);
      })),
    ]);
  }

  function renderPartitions(section, flowName, partitions) {
    section.lastPartitions = partitions;
    const sort = sorts.get(flowName);
    const sorted = partitions.slice().sort(compareBy(sort.key, sort.descending));
    const rows = sorted.map((p) =>
      el("tr", {
        class: "partition-row" + (p.lag_seconds > LAGGING_SECONDS ? " lagging" : ""),
        "data-topic": p.topic,
        "data-partition": p.partition,
        "data-lag-records": p.lag_records,
        "data-lag-seconds": p.lag_seconds,
        "data-mirrored": p.mirrored_position,
        "data-end": p.source_end_offset,
      }, [
        el("td", {}, [p.topic]),
        el("td", { class: "num" }, [p.partition]),
        el("td", { class: "num" }, [fmtInt(p.lag_records)]),
        el("td", { class: "num" }, [p.lag_seconds.toFixed(1)]),
        el("td", { class: "num" }, [fmtInt(p.mirrored_position)]),
        el("td", { class: "num" }, [fmtInt(p.source_end_offset)]),
      ])
    );
    if (rows.length === 0) {
      rows.push(el("tr", {}, [el("td", { colspan: 6, class: "muted" }, ["This instance mirrors no partition of this flow right now."])]));
    }
    section.partitions.replaceChildren(partitionHead(flowName), el("tbody", {}, rows));
  }

  // ---------------------------------------------------------------- groups
  function renderGroups(section, groups) {
    if (!groups || groups.length === 0) {
      section.groups.replaceChildren(el("p", { class: "empty" }, [
        "No source consumer group has committed offsets in the partitions this instance mirrors " +
        "(as of the last checkpoint round).",
      ]));
      return;
    }
    const column = (label, title, num) => el("th", { class: num ? "num" : "", title }, [label]);
    const head = el("thead", {}, [el("tr", {}, [
      column("group", "a consumer group on the source cluster"),
      column("source partition", "topic [partition] on the source"),
      column("source offset", "the group's committed offset on the source", true),
      column("target partition", "topic [partition] on the target"),
      column("translated", "where the group continues on the target after strait failover", true),
      column("target offset", "the same group's committed offset on the target (— when none)", true),
      column("re-read", "records the group would read again if it switched to the target without strait failover", true),
      column("translation", "how exact the translated position is"),
    ])]);
    const rows = groups.map((g) =>
      el("tr", { class: "group-row", "data-group": g.group, "data-translated": g.translated }, [
        el("td", {}, [g.group]),
        el("td", {}, [g.source_topic + " [" + g.partition + "]"]),
        el("td", { class: "num" }, [fmtInt(g.source_committed)]),
        el("td", {}, [g.target_topic + " [" + g.partition + "]"]),
        el("td", { class: "num" }, [fmtInt(g.translated)]),
        el("td", { class: "num" }, [fmtInt(g.target_committed)]),
        el("td", { class: "num" }, [fmtInt(g.would_reread)]),
        el("td", {}, [g.note]),
      ])
    );
    section.groups.replaceChildren(el("div", { class: "scroll" }, [el("table", { class: "groups" }, [head, el("tbody", {}, rows)])]));
  }

  // ---------------------------------------------------------------- one flow
  function figure(kind, plot) {
    const caption = el("figcaption", {}, []);
    return { node: el("figure", { class: "chart chart-" + kind }, [caption, plot]), caption };
  }

  function flowSection(flowName, index) {
    if (sections.has(flowName)) return sections.get(flowName);
    const title = el("h2", {}, [flowName]);
    const throughputPlot = svg("svg", { class: "plot", role: "img", "aria-label": "throughput, last 15 minutes" });
    const lagPlot = svg("svg", { class: "plot", role: "img", "aria-label": "worst time lag, last 15 minutes" });
    const throughput = figure("throughput", throughputPlot);
    const lag = figure("lag", lagPlot);
    const partitions = el("table", { class: "partitions" }, []);
    const groups = el("div", {}, []);
    const node = el("section", { class: "flow", id: "flow-" + index, "data-flow": flowName }, [
      title,
      el("div", { class: "charts" }, [throughput.node, lag.node]),
      el("h3", {}, ["Partitions"]),
      el("div", { class: "scroll" }, [partitions]),
      el("h3", {}, ["Consumer groups"]),
      groups,
    ]);
    const section = { node, title, throughputPlot, lagPlot, throughput, lag, partitions, groups, lastPartitions: [] };
    sections.set(flowName, section);
    sorts.set(flowName, { key: "lag_seconds", descending: true });
    return section;
  }

  function caption(target, parts) {
    target.replaceChildren(...parts.map(([kind, text, value]) =>
      el("span", {}, [el("span", { class: "key " + kind }, []), text + " ", el("b", {}, [value])])));
  }

  function renderFlow(flow, index, samples, intervalMs) {
    const section = flowSection(flow.flow, index);
    section.node.id = "flow-" + index;
    section.title.replaceChildren(flow.flow + " ", badge(flow.state, stateKind(flow.state)));
    drawChart(section.throughputPlot, samples, [
      { key: "records_per_second", axis: "left", scale: 1, format: (v) => (v >= 1e4 ? fmtRate(v) : fmtAxis(v)) },
      { key: "bytes_per_second", axis: "right", scale: 1e-6, format: fmtAxis },
    ], intervalMs);
    caption(section.throughput.caption, [
      ["records", "records/s", fmtRate(flow.records_per_second)],
      ["bytes", "MB/s (right axis)", fmtMB(flow.bytes_per_second || 0)],
    ]);
    drawChart(section.lagPlot, samples, [
      { key: "lag_seconds", axis: "left", scale: 1, format: (v) => (v < 60 ? fmtAxis(v) + " s" : fmtSeconds(v)) },
    ], intervalMs);
    caption(section.lag.caption, [["lag", "worst time lag", fmtSeconds(worstLag(flow))]]);
    renderPartitions(section, flow.flow, flow.partitions);
    renderGroups(section, flow.groups);
    return section.node;
  }

  function render(status, history) {
    const flows = status.flows || [];
    renderOverview(flows);
    const intervalMs = (history.interval_seconds || 2) * 1000;
    const samplesOf = new Map((history.flows || []).map((h) => [h.flow, h.samples]));
    const nodes = flows.map((f, i) => renderFlow(f, i, samplesOf.get(f.flow) || [], intervalMs));
    for (const name of Array.from(sections.keys())) {
      if (!flows.some((f) => f.flow === name)) {
        sections.delete(name);
        sorts.delete(name);
      }
    }
    document.getElementById("details").replaceChildren(...nodes);
  }

  // ---------------------------------------------------------------- polling
  // A GET that gives up after 10 s, so that a hung connection cannot stop the polling.
  async function getJSON(path) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 10000);
    try {
      const response = await fetch(path, { cache: "no-store", signal: abort.signal });
      if (!response.ok) throw new Error(path + " answered HTTP " + response.status);
      return await response.json();
    } finally {
      clearTimeout(timer);
    }
  }

  async function refresh() {
    const banner = document.getElementById("banner");
    try {
      const [status, history] = await Promise.all([getJSON("status"), getJSON("status/history")]);
      render(status, history);
      banner.hidden = true;
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      banner.textContent = "Cannot read this instance's status (" + e.message + "); retrying every 2 s.";
      banner.hidden = false;
    } finally {
      setTimeout(refresh, POLL_MS);
    }
  }

  refresh();
})();
