// The escalation modem: registration, signal, what the callee does, every SMS and call.

import { h, L, setText } from "./dom.js";

const CALLEES = ["answer", "busy", "no_answer", "no_carrier", "no_carrier_ringing", "no_dialtone"];

export class ModemPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    if (!ctx.site.modem) return;
    const i18n = ctx.i18n;
    const set = (body) => ctx.act("/modem", body);
    this.registered = h("input", { type: "checkbox", dataset: { action: "modem-registered" }, onchange: (e) => set({ registered: e.target.checked }) });
    this.signal = h("input", { type: "range", min: 0, max: 31, dataset: { action: "modem-signal" }, onchange: (e) => set({ signal: Number(e.target.value) }) });
    this.signalText = h("span", { class: "value" });
    this.callee = h("select", { dataset: { action: "modem-callee" }, onchange: (e) => set({ callee: e.target.value }) },
      CALLEES.map((c) => h("option", { value: c, dataset: { i18n: `callee_${c}` } }, i18n.t(`callee_${c}`))));
    this.smsFail = h("input", { type: "checkbox", dataset: { action: "modem-sms-fail" }, onchange: (e) => set({ sms_fail: e.target.checked }) });
    this.silent = h("input", { type: "checkbox", dataset: { action: "modem-silent" }, onchange: (e) => set({ silent: e.target.checked }) });
    this.siteView = h("span", { class: "value" });
    this.smsList = h("ol", { class: "sms-list", id: "sms-list" });
    this.callList = h("ol", { class: "call-list", id: "call-list" });
    root.append(h("section", { class: "panel modem" }, h("h2", {}, L(i18n, "modem")),
      h("div", { class: "modem-controls" },
        h("label", {}, this.registered, " ", L(i18n, "registered")),
        h("label", {}, L(i18n, "signal"), " ", this.signal, " ", this.signalText),
        h("label", {}, L(i18n, "callee"), " ", this.callee),
        h("label", {}, this.smsFail, " ", L(i18n, "sms_fail")),
        h("label", {}, this.silent, " ", L(i18n, "silent_modem"))),
      h("div", { class: "facts" }, L(i18n, "modem_site"), ": ", this.siteView),
      h("div", { class: "modem-lists" },
        h("div", {}, h("h3", {}, L(i18n, "sms")), this.smsList),
        h("div", {}, h("h3", {}, L(i18n, "calls")), this.callList))));
  }

  update(state) {
    if (!this.smsList) return;
    const m = state.modem;
    const i18n = this.ctx.i18n;
    if (m) {
      const idle = (el) => document.activeElement !== el;
      if (idle(this.registered)) this.registered.checked = m.registered;
      if (idle(this.signal)) this.signal.value = m.rssi === 99 ? 0 : m.rssi;
      setText(this.signalText, m.rssi === 99 ? "99 (?)" : `${m.rssi}/31`);
      if (idle(this.callee) && m.callee) this.callee.value = m.callee;
      if (idle(this.smsFail)) this.smsFail.checked = Boolean(m.sms_fail);
      if (idle(this.silent)) this.silent.checked = m.silent;
      const key = JSON.stringify([m.sms, m.calls, i18n.lang]);
      if (key !== this.listKey) {
        this.listKey = key;
        this.smsList.replaceChildren(...(m.sms.length ? m.sms.map((s) =>
          h("li", { class: s.ok ? "ok" : "warn", dataset: { number: s.number } },
            h("b", {}, s.number), ` ${i18n.t(s.ok ? "ok" : "failed")} `, h("div", { class: "sms-text" }, s.text)))
          : [h("li", { class: "empty" }, i18n.t("none_yet"))]));
        this.callList.replaceChildren(...(m.calls.length ? m.calls.map((c) =>
          h("li", { dataset: { outcome: c.outcome ?? "in_progress" } },
            h("b", {}, c.number), ` ${c.outcome ?? i18n.t("in_progress")}`,
            h("small", {}, ` (${i18n.t(`callee_${c.behaviour}`)}${c.ended_t && c.answered_t ? `, ${(c.ended_t - c.answered_t).toFixed(1)} s` : ""})`)))
          : [h("li", { class: "empty" }, i18n.t("none_yet"))]));
      }
    }
    const s = state.site?.states?.modem;
    setText(this.siteView, s
      ? `ok=${s.ok} · ${i18n.t("registered")}=${s.registered} · ${s.signal_dbm ?? "?"} dBm${s.last_error ? ` · ${s.last_error}` : ""}`
      : "–");
  }

  relabel() {
    this.listKey = null;
    this.update(this.ctx.state);
  }
}
