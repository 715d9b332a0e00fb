// The locker bank: one grid per board (CU16 or Modbus) and one for the GPIO lockers; each
// door shows its state, door, parcel, coil, jam, service, overdue and fault. A click on a
// door opens its controls.

import { h, L, setData, setText, toggleClass } from "./dom.js";

const CHIPS = [
  // [data key, label key]
  ["door", "door_open"],
  ["item", "parcel"],
  ["coil", "coil"],
  ["jammed", "jammed"],
  ["forced", "forced"],
  ["oos", "oos"],
  ["overdue", "overdue"],
  ["fault", "fault"],
];

export class LockerPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.root = root;
    this.cells = new Map();
    this.forcedSeen = new Set(); // door.forced seen, until the door is closed again
    this.selected = null;
    const site = ctx.site;
    if (site.lockers.length === 0) return;
    const i18n = ctx.i18n;
    const groups = [];
    this.boardRows = [];
    for (const b of site.boards) {
      const numbers = site.lockers.filter((l) => l.bus === b.bus && l.board === b.board).map((l) => l.locker);
      const select = h("select", {
        dataset: { action: "board-mode", bus: b.bus, board: b.board },
        onchange: (e) => ctx.act(`/boards/${encodeURIComponent(b.bus)}/${b.board}`, { mode: e.target.value }),
      }, ["ok", "silent", "corrupt"].map((m) => h("option", { value: m, dataset: { i18n: `mode_${m}` } }, i18n.t(`mode_${m}`))));
      const status = h("span", { class: "board-status" });
      this.boardRows.push({ b, select, status, numbers });
      groups.push(h("div", { class: "board", dataset: { bus: b.bus, board: b.board } },
        h("div", { class: "board-head" },
          h("strong", {}, `${b.bus} / `, L(i18n, "board"), ` ${b.board}`),
          h("small", {}, ` ${b.protocol === "modbus" ? "Modbus RTU" : "CU16"} · ${b.first_locker}–${b.last_locker}`),
          h("label", {}, L(i18n, "mode"), " ", select), status),
        h("div", { class: "grid" }, numbers.map((n) => this.cell(n)))));
    }
    const gpio = site.lockers.filter((l) => l.kind === "gpio").map((l) => l.locker);
    if (gpio.length > 0) {
      groups.push(h("div", { class: "board gpio" },
        h("div", { class: "board-head" }, h("strong", {}, L(i18n, "gpio_lockers"))),
        h("div", { class: "grid" }, gpio.map((n) => this.cell(n)))));
    }
    this.detail = h("div", { class: "locker-detail", id: "locker-detail" }, L(i18n, "pick_locker"));
    root.append(h("section", { class: "panel" }, h("h2", {}, L(i18n, "lockers")), groups, this.detail));
  }

  cell(n) {
    const num = h("span", { class: "num" }, String(n));
    const label = h("span", { class: "st" });
    const chips = h("span", { class: "chips" });
    const el = h("button", { class: "locker", dataset: { locker: n }, onclick: () => this.select(n) }, num, label, chips);
    this.cells.set(n, { el, label, chips, chipKey: "" });
    return el;
  }

  info(n, state) {
    const st = state.site?.states?.[`locker-${n}`] ?? null;
    const hw = state.lockers_hw?.[String(n)] ?? {};
    const forced = Boolean(hw.forced) || this.forcedSeen.has(n);
    const jammed = Boolean(hw.jammed) || Boolean(st?.fault?.startsWith("lock jammed"));
    return {
      st,
      hw,
      flags: {
        door: st ? st.door === "open" : Boolean(hw.door_open),
        item: st?.item === true || (st?.item == null && Boolean(hw.item)),
        coil: Boolean(hw.coil),
        jammed,
        forced,
        oos: st ? !st.in_service : false,
        overdue: Boolean(st?.overdue),
        fault: Boolean(st?.fault) && !st.fault.startsWith("lock jammed"),
      },
    };
  }

  update(state) {
    if (this.cells.size === 0) return;
    const i18n = this.ctx.i18n;
    for (const [n, c] of this.cells) {
      const { st, flags } = this.info(n, state);
      setData(c.el, "state", st?.state ?? "unknown");
      setData(c.el, "doorState", st?.door ?? "unknown");
      for (const [key] of CHIPS) setData(c.el, key, flags[key]);
      setText(c.label, st ? i18n.t(`st_${st.state}`) : "…");
      c.el.title = st?.fault ?? st?.parcel_id ?? "";
      const chipKey = JSON.stringify([flags, i18n.lang]);
      if (c.chipKey !== chipKey) {
        c.chipKey = chipKey;
        c.chips.replaceChildren(...CHIPS.filter(([key]) => flags[key]).map(([key, label]) =>
          h("span", { class: `chip chip-${key}` }, i18n.t(label))));
      }
      toggleClass(c.el, "selected", this.selected === n);
    }
    for (const row of this.boardRows) {
      const b = state.boards?.[row.b.bus]?.boards?.[String(row.b.board)];
      const mode = b ? (b.silent ? "silent" : b.corrupt ? "corrupt" : "ok") : "ok";
      if (document.activeElement !== row.select && row.select.value !== mode) row.select.value = mode;
      const first = state.site?.states?.[`locker-${row.numbers[0]}`];
      const fault = first?.fault?.startsWith("board ") ? first.fault : "";
      setText(row.status, fault);
      toggleClass(row.status, "warn", fault !== "");
    }
    this.renderDetail(state);
  }

  select(n) {
    this.selected = n;
    this.detailKey = null;
    this.ctx.centre?.useLocker?.(n);
    this.update(this.ctx.state);
  }

  renderDetail(state) {
    const n = this.selected;
    if (n === null) return;
    const i18n = this.ctx.i18n;
    const { st, hw, flags } = this.info(n, state);
    const key = JSON.stringify([n, st, hw, flags, i18n.lang]);
    if (this.detailKey === key) return;
    this.detailKey = key;
    const kind = this.ctx.site.lockers.find((l) => l.locker === n)?.kind;
    const act = (path, body) => this.ctx.act(`/lockers/${n}/${path}`, body);
    const row = (label, value) => h("tr", {}, h("th", {}, label), h("td", {}, value ?? "–"));
    const doorOpen = st ? st.door === "open" : Boolean(hw.door_open);
    this.detail.replaceChildren(
      h("h3", {}, `${i18n.t("locker")} ${n}`, h("small", {}, ` ${kind ?? ""}`)),
      h("table", { class: "facts-table" },
        row(i18n.t("state"), st ? i18n.t(`st_${st.state}`) : null),
        row(i18n.t("door"), st ? i18n.t(`door_${st.door}`) : null),
        row(i18n.t("parcel"), st?.parcel_id ?? (st?.item ? i18n.t("yes") : null)),
        row("deposited_at", st?.deposited_at),
        row(i18n.t("overdue"), st ? i18n.t(st.overdue ? "yes" : "no") : null),
        row(i18n.t("fault"), st?.fault),
        row(i18n.t("coil"), i18n.t(flags.coil ? "on" : "off")),
        row(i18n.t("jammed"), i18n.t(flags.jammed ? "yes" : "no")),
      ),
      h("div", { class: "actions" },
        h("button", { dataset: { action: "force-open", locker: n }, disabled: doorOpen, onclick: () => act("door", { open: true }) }, i18n.t("force_open")),
        h("button", { dataset: { action: "shut-door", locker: n }, disabled: !doorOpen, onclick: () => act("door", { open: false }) }, i18n.t("shut_door")),
        kind === "cu16" ? h("button", { dataset: { action: "parcel-in", locker: n }, onclick: () => act("item", { present: true }) }, i18n.t("parcel_in")) : null,
        kind === "cu16" ? h("button", { dataset: { action: "parcel-out", locker: n }, onclick: () => act("item", { present: false }) }, i18n.t("parcel_out")) : null,
        h("button", { dataset: { action: hw.jammed ? "unjam" : "jam", locker: n }, onclick: () => act("jam", { jammed: !hw.jammed }) }, i18n.t(hw.jammed ? "unjam" : "jam")),
      ),
    );
  }

  onEvent(kind, data) {
    if (kind !== "mqtt" || data.kind !== "event" || !data.payload?.data) return;
    const n = data.payload.data.locker;
    if (typeof n !== "number") return;
    if (data.name === "door.forced") this.forcedSeen.add(n);
    if (data.name === "door.closed") this.forcedSeen.delete(n);
    this.ctx.render();
  }

  relabel() {
    this.detailKey = null;
    this.update(this.ctx.state);
  }
}
