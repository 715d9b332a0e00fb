// Scenarios (docs/scenarios.md): the ones shipped with the simulator, run against this very
// site with a click (POST /scenarios/run), one line per step as it ends (the stream's
// `scenario` events). The same runs headless: `ansim-edge scenario run FILE`.

import { call, h, L, setData, setText } from "./dom.js";

export class ScenarioPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    const i18n = ctx.i18n;
    this.list = h("ul", { class: "scenario-list", id: "scenario-list" });
    this.title = h("div", { class: "scenario-title", id: "scenario-title" });
    this.steps = h("ol", { class: "scenario-steps", id: "scenario-steps" });
    this.summary = h("div", { class: "scenario-summary", id: "scenario-summary" });
    root.append(h("section", { class: "panel scenarios" }, h("h2", {}, L(i18n, "scenarios")),
      this.list, this.title, this.steps, this.summary));
    this.load();
  }

  async load() {
    const answer = await call("GET", "/scenarios");
    if (answer.status !== 200) return;
    const i18n = this.ctx.i18n;
    this.list.replaceChildren(...answer.body.scenarios.filter((s) => s.fits).map((s) =>
      h("li", {}, h("button", { dataset: { action: "run-scenario", file: s.file }, onclick: () => this.run(s.file) },
        L(i18n, "run")), " ", h("span", { title: s.description ?? "" }, s.name ?? s.file))));
    if (answer.body.run) this.show(answer.body.run);
  }

  async run(file) {
    this.steps.replaceChildren();
    setText(this.summary, "");
    await this.ctx.act("/scenarios/run", { file });
  }

  show(run) {
    setText(this.title, run.name ?? run.file ?? "");
    this.steps.replaceChildren(...(run.steps ?? []).filter((s) => s.status !== "skip").map((s) => this.line(s)));
    this.finish(run);
  }

  line(step) {
    const li = h("li", { value: step.number, dataset: { status: step.status } },
      h("b", {}, step.status), " ", step.text, step.detail ? h("small", {}, ` → ${step.detail}`) : "");
    setData(li, "status", step.status);
    return li;
  }

  finish(run) {
    if (run.running) return setText(this.summary, "…");
    const ok = run.ok;
    setData(this.summary, "ok", ok);
    setText(this.summary, run.summary ?? (ok ? "PASSED" : "FAILED"));
  }

  update() {}

  onEvent(kind, data) {
    if (kind !== "scenario") return;
    if (data.started !== undefined) {
      setText(this.title, data.name ?? data.file);
      this.steps.replaceChildren();
      setText(this.summary, "…");
    } else if (data.step) {
      this.steps.append(this.line(data.step));
    } else if (data.done) {
      this.finish(data.done);
    }
  }
}
