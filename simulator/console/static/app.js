// The technician's console: draws the site from the simulator's event stream (GET /events)
// and drives it through the control API. Docs: docs/simulator-api.md#the-console.

import { I18n } from "./i18n.js";
import { clock, h, post, setData, setText } from "./dom.js";
import { ShelterPanel } from "./shelter.js";
import { LockerPanel } from "./lockers.js";
import { ReaderPanel } from "./reader.js";
import { ModemPanel } from "./modem.js";
import { CentrePanel } from "./centre.js";
import { LogPanel } from "./log.js";
import { ScenarioPanel } from "./scenarios.js";

const i18n = new I18n();
const $ = (id) => document.getElementById(id);

const ctx = {
  i18n,
  site: null,
  state: {},
  panels: [],
  log: null,
  centre: null,
  // POST to the control API; an error answer is shown as a toast. Resolves the answer.
  async act(path, body) {
    try {
      const answer = await post(path, body);
      if (answer.status >= 400) toast(`${path}: ${answer.body?.error ?? answer.status}`);
      return answer;
    } catch (err) {
      toast(`${path}: ${err}`);
      return { status: 0, body: null };
    }
  },
  render: () => scheduleRender(),
};
globalThis.ansimConsole = ctx; // for the curious, in the browser's devtools

let siteKey = null;
let instance = null;
let lastId = 0;
let source = null;
let renderQueued = false;

function toast(text) {
  const box = $("toasts") ?? document.body.appendChild(h("div", { id: "toasts" }));
  const item = h("div", { class: "toast" }, text);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

function build(hello) {
  const { stream, ...site } = hello;
  const key = JSON.stringify(site);
  if (stream?.instance !== instance) {
    instance = stream?.instance ?? null;
    lastId = 0; // a new simulator: its event ids start again
  }
  if (key === siteKey) return;
  siteKey = key;
  ctx.site = site;
  ctx.state = {};
  setText($("site-id"), site.site);
  setText($("site-name"), [site.name, site.address].filter(Boolean).join(" · "));
  document.title = `${site.site} · ansim-edge`;
  const mounts = [
    ["shelter", ShelterPanel],
    ["lockers", LockerPanel],
    ["reader", ReaderPanel],
    ["modem", ModemPanel],
    ["centre", CentrePanel],
    ["scenarios", ScenarioPanel],
    ["log", LogPanel],
  ];
  ctx.panels = [];
  for (const [id, Panel] of mounts) {
    const root = $(id);
    root.replaceChildren();
    const panel = new Panel(root, ctx);
    ctx.panels.push(panel);
    if (id === "log") ctx.log = panel;
    if (id === "centre") ctx.centre = panel;
  }
  i18n.apply(document);
}

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const run = () => {
    renderQueued = false;
    renderHeader();
    for (const panel of ctx.panels) panel.update(ctx.state);
  };
  if (document.hidden) setTimeout(run, 250);
  else requestAnimationFrame(run);
}

function renderHeader() {
  const site = ctx.state.site;
  const link = $("broker-link");
  if (site) {
    setData(link, "online", site.online);
    setText(link, `${i18n.t("broker_link")}: ${i18n.t(site.online ? "online" : "offline")}`);
    setText($("outbox-pending"), site.outbox_pending);
    setText($("last-seq"), site.last_seq);
    const failures = $("uplink-failures");
    const up = site.uplink;
    failures.hidden = !(up && up.failures_in_a_row > 0);
    if (up && up.failures_in_a_row > 0) {
      setText(failures, `${i18n.t("failures")} ${up.failures_in_a_row}: ${up.last_failure ?? ""}`);
    }
  }
  const lk = ctx.state.link;
  const stateEl = $("link-state");
  if (lk) {
    $("cut-link").disabled = !lk.available;
    $("restore-link").disabled = !lk.cut;
    setData(stateEl, "cut", lk.cut);
    if (!lk.available) setText(stateEl, i18n.t("link_unavailable"));
    else if (lk.cut) setText(stateEl, `${i18n.t("link_cut_until")} ${clock(lk.until)}`);
    else setText(stateEl, i18n.t("link_ok"));
  }
}

function streamState(open) {
  const el = $("stream");
  setData(el, "state", open ? "open" : "closed");
  setText($("stream-text"), i18n.t(open ? "stream_open" : "stream_closed"));
}

function fresh(e) {
  // Replayed history and a reconnect can repeat events: take each id once.
  const id = Number(e.lastEventId);
  if (!id) return true;
  if (id <= lastId) return false;
  lastId = id;
  return true;
}

function connect() {
  source = new EventSource("/events");
  source.addEventListener("open", () => streamState(true));
  source.addEventListener("error", () => streamState(false));
  source.addEventListener("hello", (e) => {
    streamState(true);
    build(JSON.parse(e.data));
  });
  source.addEventListener("state", (e) => {
    Object.assign(ctx.state, JSON.parse(e.data));
    scheduleRender();
  });
  for (const kind of ["mqtt", "action", "link"]) {
    source.addEventListener(kind, (e) => {
      if (!fresh(e)) return;
      const data = JSON.parse(e.data);
      ctx.log?.add(kind, data);
      for (const panel of ctx.panels) panel.onEvent?.(kind, data);
    });
  }
  source.addEventListener("scenario", (e) => {
    const data = JSON.parse(e.data);
    for (const panel of ctx.panels) panel.onEvent?.("scenario", data);
  });
  source.addEventListener("dropped", (e) => {
    const data = JSON.parse(e.data);
    ctx.log?.notice(`${i18n.t("missed")}: ${data.dropped}`);
    source.close();
    connect(); // start again from a whole state
  });
}

function cutLink() {
  const seconds = Number($("link-seconds").value);
  ctx.act("/link", { seconds });
}

document.addEventListener("DOMContentLoaded", () => {
  i18n.apply(document);
  $("lang").addEventListener("click", () => {
    i18n.toggle();
    scheduleRender();
  });
  $("cut-link").addEventListener("click", cutLink);
  $("restore-link").addEventListener("click", () => ctx.act("/link", { seconds: 0 }));
  i18n.listeners.push(() => {
    for (const panel of ctx.panels) panel.relabel?.();
  });
  streamState(false);
  connect();
});
