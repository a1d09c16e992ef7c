// The built-in log viewer: `GET /?room=<id>&access_token=<token>&server=<gateway>&history=<n>`.
//
// Plain DOM, no framework, no build step. Log content is only ever put in the page with
// textContent / attributes (never innerHTML), so a log cannot inject markup.
//
// Rows are `li.row` with `data-id`, `data-level` and `data-agent`; `#state[data-state]`,
// `#received`, `#dropped`, `#shown` and `#logs[data-duplicates]` carry the counts as
// `data-count`, so the page can be read by tests and scripts as well as by people.

import { LEVELS, RoomStream } from "./stream.js";

export const MAX_LOGS = 1000;
const KNOWN_FIELDS = new Set(["timestamp", "agentType", "level", "message", "metadata"]);
const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  closed: "closed",
};

const $ = (id) => document.getElementById(id);

export class Viewer {
  constructor({ maxLogs = MAX_LOGS } = {}) {
    this.maxLogs = maxLogs;
    this.received = 0;
    this.dropped = 0;
    this.duplicates = 0;
    this.pending = [];
    this.paused = false;
    this.stick = true;
    this.flushScheduled = false;
    this.agents = new Set();
    this.filter = { levels: new Set(LEVELS), agent: "", text: "" };
    this.stream = null;

    this.list = $("logs");
    this.console = $("console");
    this.buildLevelFilters();
    $("agent-filter").addEventListener("change", (e) => {
      this.filter.agent = e.target.value;
      this.applyFilters();
    });
    $("text-filter").addEventListener("input", (e) => {
      this.filter.text = e.target.value.trim().toLowerCase();
      this.applyFilters();
    });
    $("pause").addEventListener("click", () => this.setPaused(!this.paused));
    $("clear").addEventListener("click", () => this.clear());
    $("jump").addEventListener("click", () => {
      this.stick = true;
      this.scrollToEnd();
    });
    $("change-room").addEventListener("click", () => {
      const form = $("connect");
      form.hidden = !form.hidden;
      if (!form.hidden) $("f-room").focus();
    });
    this.console.addEventListener("scroll", () => {
      const c = this.console;
      this.stick = c.scrollHeight - c.scrollTop - c.clientHeight < 24;
      $("jump").hidden = this.stick || this.paused;
    });
    this.updateCounts();
  }

  buildLevelFilters() {
    const box = $("levels");
    for (const level of LEVELS) {
      const label = document.createElement("label");
      label.className = `lvl lvl-${level}`;
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = `level-${level}`;
      input.value = level;
      input.checked = true;
      input.addEventListener("change", () => {
        if (input.checked) this.filter.levels.add(level);
        else this.filter.levels.delete(level);
        this.applyFilters();
      });
      label.append(input, document.createTextNode(level));
      box.append(label);
    }
  }

  connect(options) {
    this.stream = new RoomStream(options);
    $("room-name").textContent = options.room;
    document.title = `roomlogs · ${options.room}`;
    this.stream.addEventListener("state", (e) => this.showState(e.detail));
    this.stream.addEventListener("log", (e) => this.add(e.detail));
    this.stream.addEventListener("gap", (e) => this.showGap(e.detail));
    this.stream.addEventListener("duplicate", () => {
      this.duplicates += 1;
      this.updateCounts();
    });
    this.stream.start();
  }

  showState({ state, reason }) {
    const el = $("state");
    el.dataset.state = state;
    el.dataset.reason = reason || "";
    const text = STATE_TEXT[state] || state;
    $("state-text").textContent = reason ? `${text} (${reason})` : text;
    el.title = reason || text;
  }

  showGap({ after, resumedFrom }) {
    const where = resumedFrom ? `resumed from ${resumedFrom}` : "nothing older is left";
    this.notice(
      "gap",
      `Some logs were missed: the history no longer holds the logs after ${after}; ${where}.`,
    );
  }

  notice(kind, text) {
    const box = document.createElement("div");
    box.className = `notice notice-${kind}`;
    box.dataset.kind = kind;
    box.setAttribute("role", "alert");
    const msg = document.createElement("span");
    msg.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.textContent = "dismiss";
    close.addEventListener("click", () => box.remove());
    box.append(msg, close);
    $("notices").append(box);
  }

  add({ id, log }) {
    this.received += 1;
    this.pending.push({ id, log });
    if (this.pending.length > this.maxLogs) {
      const extra = this.pending.length - this.maxLogs;
      this.pending.splice(0, extra);
      this.dropped += extra;
    }
    this.scheduleFlush();
  }

  scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // One DOM update per frame for bursts; the timeout covers tabs that get no frames.
    const run = () => {
      if (!this.flushScheduled) return;
      this.flushScheduled = false;
      this.flush();
    };
    requestAnimationFrame(run);
    setTimeout(run, 200);
  }

  flush() {
    if (!this.paused && this.pending.length) {
      const fragment = document.createDocumentFragment();
      for (const entry of this.pending) fragment.append(this.row(entry));
      this.pending = [];
      this.list.append(fragment);
      let excess = this.list.childElementCount - this.maxLogs;
      while (excess-- > 0) {
        this.list.firstElementChild.remove();
        this.dropped += 1;
      }
      if (this.stick) this.scrollToEnd();
    }
    this.updateCounts();
  }

  row({ id, log }) {
    const li = document.createElement("li");
    li.className = "row";
    const level = typeof log.level === "string" ? log.level : "";
    const agent = typeof log.agentType === "string" ? log.agentType : "";
    const message = typeof log.message === "string" ? log.message : JSON.stringify(log.message ?? "");
    if (id) li.dataset.id = id;
    li.dataset.level = level;
    li.dataset.agent = agent;

    const time = document.createElement("time");
    time.className = "time";
    time.textContent = clock(log.timestamp);
    if (typeof log.timestamp === "string") {
      time.dateTime = log.timestamp;
      time.title = id ? `${log.timestamp}  ·  id ${id}` : log.timestamp;
    }
    const lvl = document.createElement("span");
    lvl.className = `level lvl-${LEVELS.includes(level) ? level : "other"}`;
    lvl.textContent = level || "—";
    const ag = document.createElement("span");
    ag.className = "agent";
    ag.textContent = agent || "—";
    ag.title = agent;
    const msg = document.createElement("span");
    msg.className = "msg";
    msg.textContent = message;
    li.append(time, lvl, ag, msg);

    const extra = {};
    for (const [k, v] of Object.entries(log)) if (!KNOWN_FIELDS.has(k)) extra[k] = v;
    const meta = log.metadata;
    const hasMeta = meta !== undefined && meta !== null && !(isObject(meta) && !Object.keys(meta).length);
    if (hasMeta || Object.keys(extra).length) {
      const details = document.createElement("details");
      details.className = "meta";
      const summary = document.createElement("summary");
      const keys = isObject(meta) ? Object.keys(meta) : [];
      summary.textContent = keys.length ? `metadata: ${keys.slice(0, 4).join(", ")}${keys.length > 4 ? ", …" : ""}` : "details";
      const pre = document.createElement("pre");
      const shown = Object.keys(extra).length ? { metadata: meta ?? {}, ...extra } : meta;
      pre.textContent = JSON.stringify(shown, null, 2);
      details.append(summary, pre);
      li.append(details);
    }
    li.roomlogsText = message.toLowerCase();
    li.hidden = !this.matches(li);
    if (agent && !this.agents.has(agent)) this.addAgent(agent);
    return li;
  }

  addAgent(agent) {
    this.agents.add(agent);
    const select = $("agent-filter");
    const option = document.createElement("option");
    option.value = agent;
    option.textContent = agent;
    const after = [...select.options].slice(1).find((o) => o.value.localeCompare(agent) > 0);
    select.insertBefore(option, after || null);
  }

  matches(li) {
    const { levels, agent, text } = this.filter;
    const level = li.dataset.level;
    if (LEVELS.includes(level) && !levels.has(level)) return false;
    if (agent && li.dataset.agent !== agent) return false;
    if (text && !li.roomlogsText.includes(text)) return false;
    return true;
  }

  applyFilters() {
    for (const li of this.list.children) li.hidden = !this.matches(li);
    this.updateCounts();
    if (this.stick) this.scrollToEnd();
  }

  setPaused(paused) {
    this.paused = paused;
    const button = $("pause");
    button.setAttribute("aria-pressed", String(paused));
    document.body.classList.toggle("paused", paused);
    if (!paused) {
      this.stick = true;
      this.flush();
      this.scrollToEnd();
    }
    this.updateCounts();
  }

  clear() {
    this.list.replaceChildren();
    this.pending = [];
    this.updateCounts();
  }

  scrollToEnd() {
    this.console.scrollTop = this.console.scrollHeight;
    $("jump").hidden = true;
  }

  updateCounts() {
    const rows = this.list.childElementCount;
    let visible = 0;
    for (const li of this.list.children) if (!li.hidden) visible += 1;
    setCount($("received"), this.received, `${fmt(this.received)} received`);
    const filtered = visible !== rows;
    setCount($("shown"), visible, filtered ? `${fmt(visible)} of ${fmt(rows)} shown` : "");
    setCount(
      $("dropped"),
      this.dropped,
      `${fmt(this.dropped)} older dropped (the page keeps the last ${fmt(this.maxLogs)})`,
      this.dropped > 0,
    );
    setCount($("duplicates"), this.duplicates, `${fmt(this.duplicates)} duplicates ignored`, this.duplicates > 0);
    this.list.dataset.duplicates = String(this.duplicates);
    const button = $("pause");
    const waiting = this.pending.length;
    button.textContent = this.paused ? `Resume${waiting ? ` (${fmt(waiting)} new)` : ""}` : "Pause";
    $("empty").hidden = rows > 0 || waiting > 0;
  }
}

function setCount(el, count, text, visible = true) {
  el.dataset.count = String(count);
  el.textContent = text;
  el.hidden = !visible || !text;
}

function fmt(n) {
  return n.toLocaleString("en-US");
}

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

function clock(ts) {
  const d = new Date(ts);
  if (typeof ts !== "string" || Number.isNaN(d.getTime())) return String(ts ?? "");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Room, token, gateway and history from the page URL. */
export function optionsFromUrl(href = location.href) {
  const q = new URL(href).searchParams;
  const history = q.get("history");
  return {
    room: q.get("room") || "",
    token: q.get("access_token") || "",
    server: q.get("server") || "",
    history: history === null || history === "" ? 100 : Math.min(Math.max(Number(history) || 0, 0), 1000),
  };
}

function main() {
  const viewer = new Viewer();
  const options = optionsFromUrl();
  $("f-room").value = options.room;
  $("f-token").value = options.token;
  $("f-server").value = options.server;
  $("f-history").value = String(options.history);
  window.roomlogs = { viewer };
  if (!options.room) {
    $("connect").hidden = false;
    $("f-room").focus();
    return;
  }
  viewer.connect(options);
  window.roomlogs.stream = viewer.stream;
}

if (document.getElementById("logs")) main();
