// The pickup-code reader as a keypad (digits), with a text field for scanned codes.

import { h, L, setText } from "./dom.js";

export class ReaderPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    if (!ctx.site.code_reader) return;
    const i18n = ctx.i18n;
    this.field = h("input", { id: "code", class: "code", autocomplete: "off", spellcheck: false, maxlength: 64,
      onkeydown: (e) => { if (e.key === "Enter") this.enter(); } });
    this.answer = h("span", { class: "reader-answer", id: "code-answer" });
    const key = (label, fn, cls = "") => h("button", { class: `key ${cls}`, dataset: { key: label }, onclick: fn }, label);
    const digits = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map((d) => key(d, () => this.type(d)));
    const pad = h("div", { class: "keypad" }, digits,
      h("button", { class: "key", dataset: { key: "clear" }, onclick: () => { this.field.value = ""; } }, L(i18n, "clear")),
      key("0", () => this.type("0")),
      h("button", { class: "key enter", dataset: { key: "enter" }, onclick: () => this.enter() }, L(i18n, "enter")));
    root.append(h("section", { class: "panel reader" }, h("h2", {}, L(i18n, "code_reader")),
      h("div", { class: "reader-body" }, pad, h("div", {}, this.field, this.answer))));
  }

  type(d) {
    this.field.value += d;
  }

  async enter() {
    const code = this.field.value;
    if (!code) return;
    this.field.value = "";
    setText(this.answer, "…");
    const answer = await this.ctx.act("/code-reader", { code });
    // The site's answer (an event) may have come first: keep it.
    if (this.answer.textContent === "…") {
      setText(this.answer, answer.status === 200 ? `${"*".repeat(answer.body.typed)} →` : "");
    }
  }

  update() {}

  onEvent(kind, data) {
    if (!this.answer || kind !== "mqtt" || data.kind !== "event") return;
    const type = data.name;
    if (type === "pickup.rejected" || type === "pickup.locked_out") {
      setText(this.answer, `${type}: ${data.payload?.data?.reason ?? ""}`);
    } else if (type === "door.opened" && data.payload?.data?.via === "code") {
      setText(this.answer, `door.opened: ${data.payload.data.locker}`);
    }
  }
}
