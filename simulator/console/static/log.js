// The live log: what the centre sees on the broker (status, events, state, results, the
// commands sent), the technician's actions and the link, filterable by device and type.

import { clock, compact, h, L } from "./dom.js";

const MAX = 500;

export class LogPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.entries = [];
    this.devices = new Set();
    this.types = new Set();
    this.paused = false;
    const i18n = ctx.i18n;
    this.device = h("select", { id: "log-device", onchange: () => this.refilter() },
      h("option", { value: "", dataset: { i18n: "all_devices" } }, i18n.t("all_devices")));
    this.type = h("select", { id: "log-type", onchange: () => this.refilter() },
      h("option", { value: "", dataset: { i18n: "all_types" } }, i18n.t("all_types")));
    this.pause = h("button", { id: "log-pause", onclick: () => this.togglePause() }, L(i18n, "pause"));
    const clear = h("button", { id: "log-clear", onclick: () => this.clear() }, L(i18n, "clear_log"));
    this.list = h("ol", { id: "log-list", class: "log-list" });
    root.append(h("section", { class: "panel log" },
      h("h2", {}, L(i18n, "log")),
      h("div", { class: "log-filters" }, this.device, this.type, this.pause, clear),
      this.list));
  }

  // One log line from an event of the stream.
  describe(kind, d) {
    if (kind === "mqtt") {
      const p = d.payload ?? {};
      let summary = p;
      let type = d.kind;
      let detail = "";
      if (d.kind === "event") {
        type = `event:${d.name}`;
        summary = p.data ?? p;
        detail = `#${p.seq ?? "?"}`;
      } else if (d.kind === "state") {
        summary = Object.fromEntries(Object.entries(p).filter(([k]) => k !== "device" && k !== "ts"));
      } else if (d.kind === "result") {
        detail = d.command ? `${d.command.name}${d.command.locker != null ? ` #${d.command.locker}` : ""}` : "";
        summary = p.ok ? { ok: true, data: p.data } : { ok: false, error: p.error };
      } else if (d.kind === "command") {
        detail = `${p.name ?? d.name} (${p.key_id ?? "?"})`;
        summary = p.args ?? {};
      } else if (d.kind === "status") {
        detail = p.state ?? "";
      }
      return {
        at: p.ts ?? d.at, kind: d.kind, type, device: d.device ?? "",
        name: d.kind === "event" ? d.name : d.kind === "state" ? "state" : d.kind,
        detail, summary, full: p, retained: d.retained,
      };
    }
    if (kind === "action") {
      const ok = d.status < 400;
      const dev = devOf(d.path);
      return {
        at: d.at, kind: "action", type: "action", device: dev, name: `POST ${d.path}`,
        detail: ok ? "" : `→ ${d.status}`, summary: ok ? d.body : d.response, full: d, error: !ok,
      };
    }
    if (kind === "link") {
      return {
        at: new Date().toISOString(), kind: "link", type: "link", device: "site", name: "link",
        detail: d.cut ? `cut until ${clock(d.until)}` : "restored", summary: d, full: d, error: d.cut,
      };
    }
    return { at: new Date().toISOString(), kind, type: kind, device: "", name: kind, detail: "", summary: d, full: d };
  }

  add(kind, data) {
    const e = this.describe(kind, data);
    this.entries.push(e);
    if (this.entries.length > MAX) {
      const gone = this.entries.shift();
      gone.el?.remove();
    }
    if (e.device && !this.devices.has(e.device)) {
      this.devices.add(e.device);
      insertSorted(this.device, e.device);
    }
    if (!this.types.has(e.type)) {
      this.types.add(e.type);
      insertSorted(this.type, e.type);
    }
    e.el = this.line(e);
    e.el.hidden = !this.matches(e);
    if (!this.paused) this.list.prepend(e.el);
    else e.pending = true;
  }

  notice(text) {
    this.list.prepend(h("li", { class: "entry notice" }, `${clock()} ${text}`));
  }

  line(e) {
    const body = h("span", { class: "summary" }, compact(e.summary));
    const el = h("li", {
      class: `entry kind-${e.kind}${e.error || e.summary?.ok === false ? " error" : ""}`,
      dataset: { kind: e.kind, type: e.type, device: e.device, name: e.name },
      title: "click: whole message",
      onclick: () => {
        el.classList.toggle("open");
        body.textContent = el.classList.contains("open") ? JSON.stringify(e.full, null, 2) : compact(e.summary);
      },
    },
    h("time", {}, clock(e.at)),
    h("span", { class: "kind" }, e.retained ? `${e.kind}*` : e.kind),
    h("span", { class: "device" }, e.device),
    h("span", { class: "name" }, e.name),
    e.detail ? h("span", { class: "detail" }, e.detail) : null,
    body);
    return el;
  }

  matches(e) {
    const dev = this.device.value;
    const type = this.type.value;
    if (dev && e.device !== dev) return false;
    if (type && e.type !== type && e.kind !== type) return false;
    return true;
  }

  refilter() {
    for (const e of this.entries) if (e.el) e.el.hidden = !this.matches(e);
  }

  togglePause() {
    this.paused = !this.paused;
    this.pause.replaceChildren(L(this.ctx.i18n, this.paused ? "resume" : "pause"));
    if (!this.paused) {
      for (const e of this.entries) {
        if (e.pending) {
          e.pending = false;
          this.list.prepend(e.el);
        }
      }
    }
  }

  clear() {
    this.entries = [];
    this.list.replaceChildren();
  }

  update() {}
}

function devOf(path) {
  let m = path.match(/^\/inputs\/([^/]+)/);
  if (m) return decodeURIComponent(m[1]);
  m = path.match(/^\/lockers\/(\d+)/);
  if (m) return `locker-${m[1]}`;
  m = path.match(/^\/boards\/([^/]+)\/(\d+)/);
  if (m) return `board-${decodeURIComponent(m[1])}-${m[2]}`;
  if (path.startsWith("/code-reader")) return "code-reader";
  if (path.startsWith("/modem")) return "modem";
  if (path.startsWith("/link")) return "site";
  return "";
}

function insertSorted(select, value) {
  const option = h("option", { value }, value);
  const after = [...select.options].slice(1).find((o) => o.value > value);
  select.insertBefore(option, after ?? null);
}
