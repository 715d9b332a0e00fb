// Panic buttons, their lamps and buzzer, the reset key and the alarm they raise.

import { clock, h, L, setData, setText, toggleClass, wait } from "./dom.js";

export class ShelterPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.root = root;
    this.alarmEl = document.getElementById("alarm");
    const site = ctx.site;
    this.enabled = site.panic_buttons.length > 0 || site.reset_key || site.outputs.length > 0;
    this.alarmEl.hidden = site.panic_buttons.length === 0;
    this.alarmEl.replaceChildren();
    this.cut = new Set(); // buttons whose wire this page cut
    this.held = new Set();
    if (!this.enabled) return;
    const i18n = ctx.i18n;
    this.cards = new Map();
    const buttons = site.panic_buttons.map((b) => this.buttonCard(b));
    this.lamps = new Map();
    const lamps = site.outputs.map((name) => {
      const lamp = h("div", { class: `lamp lamp-${name}`, dataset: { output: name } },
        h("span", { class: "bulb" }), L(i18n, name));
      this.lamps.set(name, lamp);
      return lamp;
    });
    root.append(
      h("section", { class: "panel" },
        h("h2", {}, L(i18n, "panic_buttons")),
        h("div", { class: "lamps", id: "lamps" }, lamps),
        h("div", { class: "cards" }, buttons, site.reset_key ? this.keyCard(site.reset_key) : null),
      ),
    );
  }

  buttonCard(b) {
    const i18n = this.ctx.i18n;
    const name = b.name;
    const hold = h("button", { dataset: { action: "hold", input: name }, onclick: () => this.toggleHold(b) },
      L(i18n, "hold"));
    const press = h("button", { class: "primary", dataset: { action: "press", input: name },
      onclick: () => this.press(b) }, L(i18n, "press"));
    const cut = h("button", { dataset: { action: "cut-wire", input: name }, onclick: () => this.toggleCut(b) },
      L(i18n, "cut_wire"));
    const chatter = h("button", { dataset: { action: "chatter", input: name }, onclick: () => this.chatter(b) },
      L(i18n, "chatter"));
    const raw = h("span", { class: "value" });
    const seen = h("span", { class: "value" });
    const wiring = h("span", { class: "chips" });
    const card = h("div", { class: "card button-card", dataset: { button: name } },
      h("h3", {}, h("span", { class: "big-button" }), name,
        h("small", {}, ` ${b.contact} · ${b.mode}${b.supervision ? " · supervised" : ""}`)),
      h("div", { class: "facts" },
        h("span", {}, L(i18n, "raw_input"), ": ", raw),
        h("span", {}, L(i18n, "site_sees"), ": ", seen),
        wiring),
      h("div", { class: "actions" }, press, hold, cut, chatter),
    );
    this.cards.set(name, { card, raw, seen, wiring, press, hold, cut, chatter });
    return card;
  }

  keyCard(cfg) {
    const i18n = this.ctx.i18n;
    const raw = h("span", { class: "value" });
    const turn = h("button", { class: "primary", dataset: { action: "turn-key" }, onclick: () => this.turnKey(cfg) },
      L(i18n, "turn_key"));
    const hold = h("button", { dataset: { action: "hold-key" }, onclick: () => this.holdKey() }, L(i18n, "hold_key"));
    this.key = { raw, turn, hold };
    return h("div", { class: "card key-card", dataset: { input: "reset_key" } },
      h("h3", {}, h("span", { class: "key-icon" }), L(i18n, "reset_key")),
      h("div", { class: "facts" }, h("span", {}, L(i18n, "raw_input"), ": ", raw)),
      h("div", { class: "actions" }, turn, hold));
  }

  input(name, active) {
    return this.ctx.act(`/inputs/${encodeURIComponent(name)}`, { active });
  }

  // A press long enough to pass the debounce and hold time, then the release.
  async press(b) {
    const ms = b.debounce_ms + b.hold_ms + 150;
    const card = this.cards.get(b.name);
    card.press.disabled = true;
    try {
      if (!(b.contact === "no" && this.cut.has(b.name))) {
        await this.input(b.name, true);
        await wait(ms);
        if (!this.held.has(b.name) && !(b.contact === "nc" && this.cut.has(b.name))) {
          await this.input(b.name, false);
        }
      }
    } finally {
      card.press.disabled = false;
    }
  }

  async toggleHold(b) {
    const on = !this.held.has(b.name);
    if (on) this.held.add(b.name);
    else this.held.delete(b.name);
    if (b.contact === "no" && this.cut.has(b.name)) return this.update(this.ctx.state);
    if (!on && b.contact === "nc" && this.cut.has(b.name)) return this.update(this.ctx.state);
    await this.input(b.name, on);
  }

  // A cut wire: a normally-closed loop opens (the same as a press, for the site); a
  // normally-open one can no longer close (presses are lost). A supervision input sees both.
  async toggleCut(b) {
    const cut = !this.cut.has(b.name);
    if (cut) this.cut.add(b.name);
    else this.cut.delete(b.name);
    if (b.contact === "nc") await this.input(b.name, cut || this.held.has(b.name));
    else if (cut) await this.input(b.name, false);
    else if (this.held.has(b.name)) await this.input(b.name, true);
    if (b.supervision) await this.input(b.supervision, cut);
    this.update(this.ctx.state);
  }

  // Flapping contact: more changes than chatter_max within the window, each one long
  // enough to pass the debounce, ending released.
  async chatter(b) {
    const card = this.cards.get(b.name);
    card.chatter.disabled = true;
    try {
      const gap = b.debounce_ms + 40;
      for (let i = 0; i < b.chatter_max + 2; i += 1) {
        await this.input(b.name, i % 2 === 0);
        await wait(gap);
      }
      await this.input(b.name, this.held.has(b.name));
    } finally {
      card.chatter.disabled = false;
    }
  }

  async turnKey(cfg) {
    this.key.turn.disabled = true;
    try {
      await this.input("reset_key", true);
      await wait(cfg.debounce_ms + 150);
      if (!this.keyHeld) await this.input("reset_key", false);
    } finally {
      this.key.turn.disabled = false;
    }
  }

  async holdKey() {
    this.keyHeld = !this.keyHeld;
    await this.input("reset_key", this.keyHeld);
  }

  update(state) {
    if (!this.enabled) return;
    const i18n = this.ctx.i18n;
    const inputs = state.inputs ?? {};
    const states = state.site?.states ?? {};
    for (const [name, c] of this.cards) {
      const raw = inputs[name]?.active;
      setText(c.raw, raw === undefined ? "–" : i18n.t(raw ? "pressed" : "released"));
      const s = states[name];
      setText(c.seen, s ? i18n.t(s.active ? "active" : "inactive") : "–");
      toggleClass(c.card, "active", s?.active);
      toggleClass(c.card, "faulty", s?.fault || s?.wiring);
      const chips = [...(s?.wiring ?? []).map((w) => `${i18n.t("wiring")}: ${w}`)];
      if (s?.fault) chips.push(`${i18n.t("fault")}: ${s.fault}`);
      const text = chips.join(" · ");
      setText(c.wiring, text);
      toggleClass(c.wiring, "warn", text !== "");
      c.hold.setAttribute("aria-pressed", String(this.held.has(name)));
      c.cut.setAttribute("aria-pressed", String(this.cut.has(name)));
      setData(c.cut, "i18n", this.cut.has(name) ? "repair_wire" : "cut_wire");
      setText(c.cut, i18n.t(this.cut.has(name) ? "repair_wire" : "cut_wire"));
      setText(c.hold, i18n.t(this.held.has(name) ? "release" : "hold"));
    }
    if (this.key) {
      const raw = inputs.reset_key?.active;
      setText(this.key.raw, raw === undefined ? "–" : i18n.t(raw ? "key_turned" : "key_off"));
      this.key.hold.setAttribute("aria-pressed", String(Boolean(this.keyHeld)));
    }
    const outputs = state.outputs ?? {};
    for (const [name, lamp] of this.lamps) {
      const on = Boolean(outputs[name]?.on);
      toggleClass(lamp, "on", on);
      setData(lamp, "on", on);
    }
    this.renderAlarm(states.alarm);
  }

  renderAlarm(alarm) {
    const el = this.alarmEl;
    if (!alarm) return;
    const i18n = this.ctx.i18n;
    setData(el, "state", alarm.state);
    setData(el, "test", alarm.test);
    const parts = [h("strong", { class: "alarm-state" }, `${i18n.t("alarm")}: ${i18n.t(`alarm_${alarm.state}`)}`)];
    if (alarm.state !== "idle") {
      parts.push(h("span", {}, `${alarm.button} · ${alarm.mode}${alarm.test ? ` · ${i18n.t("test")}` : ""}`));
      parts.push(h("span", { class: alarm.sent ? "ok" : "warn" }, i18n.t(alarm.sent ? "sent" : "not_sent")));
      if (alarm.acknowledged_by) parts.push(h("span", {}, `${i18n.t("by")}: ${alarm.acknowledged_by}`));
      parts.push(h("code", { class: "alarm-id", title: "alarm_id" }, alarm.alarm_id));
    }
    if (alarm.stuck_buttons) parts.push(h("span", { class: "warn" }, `${i18n.t("stuck")}: ${alarm.stuck_buttons.join(", ")}`));
    if (alarm.test_mode_until) parts.push(h("span", {}, `${i18n.t("test_mode_until")} ${clock(alarm.test_mode_until)}`));
    const key = JSON.stringify([alarm, i18n.lang]);
    if (el.dataset.key !== key) {
      el.dataset.key = key;
      el.replaceChildren(...parts);
    }
  }

  relabel() {
    this.update(this.ctx.state);
  }
}
