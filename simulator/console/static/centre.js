// The little control centre: one form per command, signed by the simulator with its
// development key or a private key file chosen here, sent over MQTT; the result is shown
// next to the form (POST /centre/commands).

import { compact, h, L, setData, setText } from "./dom.js";

const LOCKER = { name: "locker", type: "int", min: 1, locker: true };
const COMMANDS = [
  ["alarm.ack", [{ name: "alarm_id", type: "alarm" }, { name: "by", type: "text", value: "관제센터 콘솔" }]],
  ["alarm.clear", [{ name: "alarm_id", type: "alarm", optional: true }]],
  ["site.test_mode", [{ name: "on", type: "bool", value: true }, { name: "minutes", type: "int", value: 30, min: 1, optional: true }]],
  ["locker.assign", [LOCKER, { name: "parcel_id", type: "text", value: "CJ-1001" },
    { name: "pickup_code", type: "text", value: "482913", optional: true },
    { name: "deposited_at", type: "text", optional: true, placeholder: "2026-11-25T16:53:23Z" }]],
  ["locker.open", [LOCKER, { name: "reason", type: "choice", choices: ["deposit", "pickup", "service"] }]],
  ["locker.release", [LOCKER]],
  ["locker.set_service", [LOCKER, { name: "in_service", type: "bool", value: false }]],
  ["locker.status", []],
];

export class CentrePanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.waiting = new Map(); // command_id -> result element
    this.alarmFields = [];
    this.lockerFields = [];
    const site = ctx.site;
    const i18n = ctx.i18n;
    const dev = site.dev_key;
    this.useDev = h("input", { type: "radio", name: "key", value: "dev", id: "key-dev", checked: Boolean(dev), disabled: !dev });
    this.useFile = h("input", { type: "radio", name: "key", value: "file", id: "key-use-file", checked: !dev });
    this.file = h("input", { type: "file", id: "key-file", accept: ".key,.pem,text/plain",
      onchange: () => this.fileChosen() });
    this.keyId = h("input", { type: "text", id: "key-id", size: 12, placeholder: "key_id" });
    const keys = h("div", { class: "keys" },
      h("strong", {}, L(i18n, "signing_key")),
      h("label", {}, this.useDev, " ", L(i18n, "dev_key"), dev ? h("code", {}, ` ${dev.key_id}`) : h("small", {}, " (", L(i18n, "no_dev_key"), ")")),
      h("label", {}, this.useFile, " ", L(i18n, "key_file"), " ", this.file),
      h("label", {}, L(i18n, "key_id"), " ", this.keyId));
    const known = new Set(site.commands);
    const forms = COMMANDS.filter(([name]) => known.has(name)).map(([name, fields]) => this.form(name, fields));
    forms.push(this.rawForm());
    root.append(h("section", { class: "panel centre" }, h("h2", {}, L(i18n, "centre")), keys,
      h("div", { class: "forms" }, forms)));
  }

  fileChosen() {
    const file = this.file.files[0];
    if (!file) return;
    this.useFile.checked = true;
    if (!this.keyId.value) this.keyId.value = file.name.replace(/\.(key|pem)$/i, "");
  }

  field(spec) {
    let input;
    if (spec.type === "bool") {
      input = h("select", { name: spec.name }, h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
      input.value = String(spec.value);
    } else if (spec.type === "choice") {
      input = h("select", { name: spec.name }, spec.choices.map((c) => h("option", { value: c }, c)));
    } else {
      input = h("input", { name: spec.name, type: spec.type === "int" ? "number" : "text", min: spec.min,
        placeholder: spec.placeholder ?? (spec.optional ? "(optional)" : ""), size: spec.type === "int" ? 5 : 18 });
      if (spec.value !== undefined) input.value = spec.value;
    }
    if (spec.type === "alarm") {
      input.dataset.auto = "true";
      input.size = 38;
      input.addEventListener("input", () => { input.dataset.auto = input.value ? "false" : "true"; });
      this.alarmFields.push(input);
    }
    if (spec.locker) this.lockerFields.push(input);
    return h("label", { class: "field" }, h("span", {}, spec.name), input);
  }

  form(name, fields) {
    const result = h("div", { class: "result", dataset: { state: "idle" } });
    const form = h("form", { class: "command", dataset: { command: name } },
      h("div", { class: "command-head" }, h("code", {}, name)),
      h("div", { class: "fields" }, fields.map((f) => this.field(f))),
      h("button", { type: "submit", class: "primary", dataset: { i18n: "send" } }, this.ctx.i18n.t("send")),
      result);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const args = {};
      for (const spec of fields) {
        const el = form.elements[spec.name];
        const raw = el.value.trim();
        if (raw === "" && spec.optional) continue;
        if (spec.type === "int") args[spec.name] = raw === "" ? null : Number(raw);
        else if (spec.type === "bool") args[spec.name] = raw === "true";
        else args[spec.name] = raw;
      }
      this.send(name, args, result);
    });
    return form;
  }

  rawForm() {
    const i18n = this.ctx.i18n;
    const result = h("div", { class: "result", dataset: { state: "idle" } });
    const name = h("input", { name: "name", value: "locker.status", size: 18 });
    const args = h("textarea", { name: "args", rows: 2, cols: 30 }, "{}");
    const form = h("form", { class: "command raw", dataset: { command: "other" } },
      h("div", { class: "command-head" }, L(i18n, "other_command")),
      h("div", { class: "fields" }, h("label", { class: "field" }, h("span", {}, "name"), name),
        h("label", { class: "field" }, h("span", {}, L(i18n, "args_json")), args)),
      h("button", { type: "submit", class: "primary", dataset: { i18n: "send" } }, i18n.t("send")),
      result);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      let parsed;
      try {
        parsed = JSON.parse(args.value || "{}");
      } catch (err) {
        this.show(result, "error", `args: ${err.message}`);
        return;
      }
      this.send(name.value.trim(), parsed, result);
    });
    return form;
  }

  async key() {
    if (this.useDev.checked) return { key: "dev" };
    const file = this.file.files[0];
    if (!file) throw new Error(this.ctx.i18n.t("key_file") + "?");
    return { key_pem: await file.text(), key_id: this.keyId.value.trim() };
  }

  show(el, state, text, title = "") {
    setData(el, "state", state);
    setText(el, text);
    el.title = title;
  }

  async send(name, args, result) {
    let key;
    try {
      key = await this.key();
    } catch (err) {
      this.show(result, "error", String(err.message ?? err));
      return;
    }
    this.show(result, "sending", this.ctx.i18n.t("sending"));
    const answer = await this.ctx.act("/centre/commands", { name, args, ...key });
    if (answer.status !== 200) {
      this.show(result, "error", answer.body?.error ?? `HTTP ${answer.status}`);
      return;
    }
    const { command, result: res } = answer.body;
    result.dataset.commandId = command.command_id;
    if (res) this.showResult(result, res);
    else {
      this.waiting.set(command.command_id, result);
      this.show(result, "waiting", this.ctx.i18n.t("waiting_result"), command.command_id);
    }
  }

  showResult(el, res) {
    if (res.ok) this.show(el, "ok", `✓ ${this.ctx.i18n.t("result_ok")} ${compact(res.data, 160)}`, res.command_id);
    else this.show(el, "error", `✗ ${res.error.code}: ${res.error.message}`, res.command_id);
    setData(el, "code", res.ok ? "ok" : res.error.code);
  }

  onEvent(kind, data) {
    if (kind !== "mqtt" || data.kind !== "result") return;
    const el = this.waiting.get(data.payload?.command_id);
    if (el) {
      this.waiting.delete(data.payload.command_id);
      this.showResult(el, data.payload);
    }
  }

  useLocker(n) {
    for (const input of this.lockerFields) input.value = n;
  }

  update(state) {
    const alarm = state.site?.states?.alarm;
    const id = alarm && alarm.state !== "idle" ? alarm.alarm_id : "";
    for (const input of this.alarmFields) {
      if (input.dataset.auto === "true" && input.value !== id && document.activeElement !== input) {
        input.value = id;
      }
    }
  }
}
