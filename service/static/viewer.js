// The built-in log viewer: `GET /?rooms=a,b&server=<gateway>&history=<n>#<view>` (urlstate.js).
//
// Plain DOM, no framework, no build step. Log content is only ever put in the page with
// textContent / attributes (never innerHTML), so a log cannot inject markup (render.js).
// Several rooms share one stream (the multi-room route), so adding or removing a room opens a
// new stream that resumes every other room from the cursor: nothing is lost or shown twice.
//
// Rows are `li.row` with `data-id` (the log's stream id in its room), `data-room`,
// `data-level` and `data-agent`; `#state[data-state]`, `#received`, `#dropped`, `#shown` and
// `#logs[data-duplicates]` carry the counts as `data-count`, so the page can be read by tests
// and scripts as well as by people.

import { LEVELS, RoomStream, gatewayBase, roomList } from "./stream.js";
import { roomPosition } from "./cursor.js";
import { assignColours, collapseAt, fillText, formatTime, localOffset } from "./render.js";
import { logLink, pageUrl, readConnection, readView, saveToken } from "./urlstate.js";

export const MAX_LOGS = 1000;
const KNOWN_FIELDS = new Set(["roomId", "timestamp", "agentType", "level", "message", "metadata"]);
const STATE_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  closed: "closed",
};
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class Viewer {
  constructor(connection, view, { maxLogs = MAX_LOGS } = {}) {
    this.maxLogs = maxLogs;
    this.connection = connection;
    this.filter = view;
    this.received = 0;
    this.dropped = 0;
    this.duplicates = 0;
    this.pending = [];
    this.paused = false;
    this.stick = true;
    this.flushScheduled = false;
    this.agents = new Set();
    this.colours = assignColours(connection.rooms);
    this.counts = new Map();
    this.stream = null;
    this.scrolledTo = "";

    this.list = $("logs");
    this.console = $("console");
    this.buildLevelFilters();
    this.bindToolbar();
    this.bindRooms();
    this.bindProblem();
    this.console.addEventListener("scroll", () => {
      const c = this.console;
      this.stick = c.scrollHeight - c.scrollTop - c.clientHeight < 24;
      $("jump").hidden = this.stick || this.paused;
    });
    window.addEventListener("hashchange", () => this.onHashChange());
    this.showView();
    this.renderRooms();
    this.updateCounts();
  }

  // -- controls ---------------------------------------------------------------------------

  buildLevelFilters() {
    const box = $("levels");
    for (const level of LEVELS) {
      const label = el("label", `lvl lvl-${level}`);
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = `level-${level}`;
      input.value = level;
      input.addEventListener("change", () => {
        if (input.checked) this.filter.levels.add(level);
        else this.filter.levels.delete(level);
        this.applyFilters();
      });
      label.append(input, document.createTextNode(level));
      box.append(label);
    }
  }

  bindToolbar() {
    $("agent-filter").addEventListener("change", (e) => {
      this.filter.agent = e.target.value;
      this.applyFilters();
    });
    $("text-filter").addEventListener("input", (e) => {
      this.filter.text = e.target.value;
      this.applyFilters({ repaint: true });
    });
    $("tz").addEventListener("click", () => {
      this.filter.utc = !this.filter.utc;
      this.showView();
      for (const li of this.allRows()) this.paintTime(li);
      this.writeUrl();
    });
    $("download-ndjson").addEventListener("click", () => this.download("ndjson"));
    $("download-text").addEventListener("click", () => this.download("text"));
    $("pause").addEventListener("click", () => this.setPaused(!this.paused));
    $("clear").addEventListener("click", () => this.clear());
    $("jump").addEventListener("click", () => {
      this.stick = true;
      this.scrollToEnd();
    });
    $("change-room").addEventListener("click", () => this.toggleForm());
    $("linked-close").addEventListener("click", () => {
      $("linked").hidden = true;
      this.filter.target = null;
      this.markTarget();
      this.writeUrl();
    });
  }

  bindRooms() {
    $("add-room").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("add-room-input");
      const rooms = roomList(input.value);
      if (!rooms.length || !rooms.every((r) => ROOM_RE.test(r))) return;
      input.value = "";
      this.setRooms([...this.connection.rooms, ...rooms]);
    });
  }

  bindProblem() {
    $("problem-token").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("problem-token-input");
      this.connection.token = input.value.trim();
      input.value = "";
      saveToken(this.connection.token);
      this.restart();
    });
    $("problem-retry").addEventListener("click", () => this.restart());
    $("problem-choose").addEventListener("click", () => this.toggleForm(true));
  }

  toggleForm(open) {
    const form = $("connect");
    form.hidden = open === undefined ? !form.hidden : !open;
    if (!form.hidden) {
      $("f-room").value = this.connection.rooms.join(", ");
      $("f-token").value = this.connection.token;
      $("f-server").value = this.connection.server;
      $("f-history").value = String(this.connection.history);
      $("f-room").focus();
    }
  }

  /** The filter controls as `this.filter` says (after a load or a pasted link). */
  showView() {
    for (const level of LEVELS) $(`level-${level}`).checked = this.filter.levels.has(level);
    const select = $("agent-filter");
    if (this.filter.agent && !this.agents.has(this.filter.agent)) this.addAgent(this.filter.agent);
    select.value = this.filter.agent;
    $("text-filter").value = this.filter.text;
    const tz = $("tz");
    tz.setAttribute("aria-pressed", String(this.filter.utc));
    tz.textContent = this.filter.utc ? "UTC" : `local (${localOffset()})`;
    tz.title = this.filter.utc ? "times in UTC: show local times" : "times in local time: show UTC";
  }

  onHashChange() {
    const view = readView();
    if (view.onlyTarget) this.filter.target = view.target;
    else this.filter = view;
    this.showView();
    this.applyFilters({ repaint: true });
    for (const li of this.allRows()) this.paintTime(li);
    this.renderRooms();
    this.openTarget();
  }

  writeUrl() {
    history.replaceState(null, "", pageUrl(this.connection, this.filter));
  }

  // -- rooms ------------------------------------------------------------------------------

  renderRooms() {
    const list = $("room-list");
    list.replaceChildren();
    for (const room of this.connection.rooms) {
      const li = el("li", `room-chip rc-${this.colours.get(room)}`);
      li.dataset.room = room;
      const shown = !this.filter.hidden.has(room);
      li.classList.toggle("off", !shown);
      const toggle = el("button", "room-toggle");
      toggle.type = "button";
      toggle.setAttribute("aria-pressed", String(shown));
      toggle.title = shown ? `hide ${room}'s logs` : `show ${room}'s logs`;
      const swatch = el("span", "swatch");
      swatch.setAttribute("aria-hidden", "true");
      const name = el("span", "room-name", room);
      const n = el("span", "room-count", String(this.counts.get(room) || 0));
      toggle.append(swatch, name, n);
      toggle.addEventListener("click", () => {
        if (this.filter.hidden.has(room)) this.filter.hidden.delete(room);
        else this.filter.hidden.add(room);
        this.renderRooms();
        this.applyFilters();
      });
      const remove = el("button", "room-remove", "×");
      remove.type = "button";
      remove.title = `stop following ${room}`;
      remove.setAttribute("aria-label", `remove ${room}`);
      remove.addEventListener("click", () => this.removeRoom(room));
      li.append(toggle, remove);
      list.append(li);
    }
    document.title = this.connection.rooms.length
      ? `roomlogs · ${this.connection.rooms.join(", ")}`
      : "roomlogs";
  }

  removeRoom(room) {
    const rooms = this.connection.rooms.filter((r) => r !== room);
    for (const li of [...this.list.children]) if (li.dataset.room === room) li.remove();
    this.pending = this.pending.filter((p) => p.roomId !== room);
    this.filter.hidden.delete(room);
    this.counts.delete(room);
    this.setRooms(rooms);
  }

  /** Follow `rooms`: one new stream, the rooms already followed resuming from the cursor. */
  setRooms(rooms) {
    rooms = roomList(rooms);
    this.connection.rooms = rooms;
    this.colours = assignColours(rooms);
    for (const li of this.allRows()) this.paintRoom(li);
    this.renderRooms();
    this.writeUrl();
    this.updateCounts();
    if (!rooms.length) {
      this.stream?.close("no rooms");
      this.stream = null;
      this.showState({ state: "idle", reason: "" });
      this.toggleForm(true);
      return;
    }
    if (this.stream && this.stream.state !== "closed") this.stream.setRooms(rooms);
    else this.restart();
  }

  // -- the stream -------------------------------------------------------------------------

  connect() {
    const { rooms, token, server, history } = this.connection;
    const last = this.stream ? this.stream.lastEventId : null;
    this.stream?.close("replaced");
    this.stream = new RoomStream({
      rooms,
      token,
      server,
      history,
      lastEventId: last,
      on: {
        state: (d) => this.showState(d),
        log: (d) => this.add(d),
        gap: (d) => this.showGap(d),
        duplicate: () => {
          this.duplicates += 1;
          this.updateCounts();
        },
        refused: (d) => this.showProblem(d),
        connected: () => this.hideProblem(),
      },
    });
    window.roomlogs.stream = this.stream;
    this.stream.start();
    this.openTarget();
  }

  restart() {
    this.hideProblem();
    this.connect();
  }

  showState({ state, reason }) {
    const box = $("state");
    box.dataset.state = state;
    box.dataset.reason = reason || "";
    const text = STATE_TEXT[state] || state;
    $("state-text").textContent = reason ? `${text} (${reason})` : text;
    box.title = reason || text;
  }

  showProblem({ status, reason }) {
    $("problem-title").textContent = status
      ? `The gateway refused this stream (HTTP ${status})`
      : "The gateway refused this stream";
    $("problem-text").textContent = reason;
    const list = $("problem-room-list");
    list.replaceChildren();
    for (const room of this.connection.rooms) {
      const li = el("li");
      li.append(el("code", "", room));
      const b = el("button", "link", "remove");
      b.type = "button";
      b.setAttribute("aria-label", `remove ${room}`);
      b.addEventListener("click", () => this.removeRoom(room));
      li.append(b);
      list.append(li);
    }
    $("problem").hidden = false;
    this.updateCounts();
  }

  hideProblem() {
    $("problem").hidden = true;
    this.updateCounts();
  }

  showGap({ roomId, after, resumedFrom }) {
    const where = resumedFrom ? `resumed from ${resumedFrom}` : "nothing older is left";
    this.notice(
      "gap",
      `Some logs of ${roomId} were missed: the history no longer holds the logs after ${after}; ${where}.`,
    );
  }

  notice(kind, text) {
    const box = el("div", `notice notice-${kind}`);
    box.dataset.kind = kind;
    box.setAttribute("role", "alert");
    const close = el("button", "link", "dismiss");
    close.type = "button";
    close.addEventListener("click", () => box.remove());
    box.append(el("span", "", text), close);
    $("notices").append(box);
  }

  // -- rows -------------------------------------------------------------------------------

  add({ id, roomId, log }) {
    // The log's room's position in the cursor is the log's own stream id.
    const streamId = id ? roomPosition(id, roomId) : null;
    this.received += 1;
    this.pending.push({ id: streamId, cursor: id, roomId, log });
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
      for (const entry of this.pending) {
        if (!this.connection.rooms.includes(entry.roomId)) continue; // removed meanwhile
        fragment.append(this.row(entry));
        this.counts.set(entry.roomId, (this.counts.get(entry.roomId) || 0) + 1);
      }
      this.pending = [];
      this.list.append(fragment);
      let excess = this.list.childElementCount - this.maxLogs;
      while (excess-- > 0) {
        const first = this.list.firstElementChild;
        this.counts.set(first.dataset.room, (this.counts.get(first.dataset.room) || 1) - 1);
        first.remove();
        this.dropped += 1;
      }
      this.renderRoomCounts();
      if (!this.markTarget() && this.stick) this.scrollToEnd();
    }
    this.updateCounts();
  }

  renderRoomCounts() {
    for (const chip of $("room-list").children) {
      const n = chip.querySelector(".room-count");
      if (n) n.textContent = String(this.counts.get(chip.dataset.room) || 0);
    }
  }

  allRows() {
    return [...this.list.children, ...$("linked-log").children];
  }

  row({ id, cursor, roomId, log }) {
    const li = el("li", "row");
    const level = typeof log.level === "string" ? log.level : "";
    const agent = typeof log.agentType === "string" ? log.agentType : "";
    const message =
      typeof log.message === "string" ? log.message : JSON.stringify(log.message ?? "");
    if (id) li.dataset.id = id;
    if (cursor) li.dataset.cursor = cursor;
    li.dataset.room = roomId;
    li.dataset.level = level;
    li.dataset.agent = agent;

    const time = el("a", "time");
    const clock = el("time");
    if (typeof log.timestamp === "string") clock.dateTime = log.timestamp;
    time.append(clock);
    if (id) {
      time.href = logLink(this.connection, roomId, id);
      time.addEventListener("click", (e) => {
        e.preventDefault();
        this.filter.target = { roomId, id };
        this.writeUrl();
        this.markTarget();
      });
    }
    const badge = el("span", "badge", roomId);
    badge.title = roomId;
    const lvl = el("span", `level lvl-${LEVELS.includes(level) ? level : "other"}`, level || "—");
    const ag = el("span", "agent", agent || "—");
    ag.title = agent;
    const body = el("div", "body");
    const msg = el("span", "msg");
    body.append(msg);
    li.append(time, badge, lvl, ag, body);

    const extra = {};
    for (const [k, v] of Object.entries(log)) if (!KNOWN_FIELDS.has(k)) extra[k] = v;
    const meta = log.metadata;
    const hasMeta =
      meta !== undefined && meta !== null && !(isObject(meta) && !Object.keys(meta).length);
    let metaText = "";
    if (hasMeta || Object.keys(extra).length) {
      const details = el("details", "meta");
      const keys = isObject(meta) ? Object.keys(meta) : [];
      const summary = el(
        "summary",
        "",
        keys.length ? `metadata: ${keys.slice(0, 4).join(", ")}${keys.length > 4 ? ", …" : ""}` : "details",
      );
      const shown = Object.keys(extra).length ? { metadata: meta ?? {}, ...extra } : meta;
      metaText = JSON.stringify(shown, null, 2);
      details.append(summary, el("pre"));
      body.append(details);
    }
    li.roomlogs = { id, roomId, log, message, metaText, expanded: false };
    li.roomlogsText = `${message}\n${metaText}`.toLowerCase();
    this.paintTime(li);
    this.paintRoom(li);
    this.paintText(li);
    li.hidden = !this.matches(li);
    if (agent && !this.agents.has(agent)) this.addAgent(agent);
    return li;
  }

  paintTime(li) {
    const time = li.querySelector(".time");
    const ts = li.roomlogs.log.timestamp;
    time.firstElementChild.textContent = formatTime(ts, this.filter.utc);
    if (typeof ts === "string") {
      const other = formatTime(ts, !this.filter.utc);
      const zone = this.filter.utc ? "local" : "UTC";
      time.title = `${ts}  ·  ${zone} ${other}${li.roomlogs.id ? `  ·  id ${li.roomlogs.id} (link)` : ""}`;
    }
  }

  paintRoom(li) {
    const badge = li.querySelector(".badge");
    badge.className = `badge rc-${this.colours.get(li.dataset.room) ?? "x"}`;
  }

  /** The message (collapsed when long, unless asked or a match lies past the cut) and the
   *  metadata, with links and search matches. */
  paintText(li) {
    const data = li.roomlogs;
    const query = this.filter.text.trim().toLowerCase();
    const body = li.querySelector(".body");
    const msg = body.querySelector(".msg");
    const cut = collapseAt(data.message);
    const matchPast = query && data.message.toLowerCase().indexOf(query) >= cut && cut >= 0;
    const collapsed = cut >= 0 && !data.expanded && !matchPast;
    fillText(msg, collapsed ? data.message.slice(0, cut) : data.message, query);
    li.classList.toggle("collapsed", collapsed);
    let more = body.querySelector(".more");
    if (cut >= 0 && !matchPast) {
      if (!more) {
        more = el("button", "more link");
        more.type = "button";
        more.addEventListener("click", () => {
          data.expanded = !data.expanded;
          this.paintText(li);
        });
        msg.after(more);
      }
      more.textContent = data.expanded
        ? "show less"
        : `… show all (${(data.message.length - cut).toLocaleString("en-US")} more characters)`;
      more.setAttribute("aria-expanded", String(data.expanded));
    } else if (more) {
      more.remove();
    }
    const pre = body.querySelector(".meta pre");
    if (pre) {
      fillText(pre, data.metaText, query);
      const hit = Boolean(query) && data.metaText.toLowerCase().includes(query);
      body.querySelector(".meta").classList.toggle("hit", hit);
    }
  }

  addAgent(agent) {
    this.agents.add(agent);
    const select = $("agent-filter");
    const option = el("option", "", agent);
    option.value = agent;
    const after = [...select.options].slice(1).find((o) => o.value.localeCompare(agent) > 0);
    select.insertBefore(option, after || null);
  }

  matches(li) {
    const { levels, agent, text, hidden } = this.filter;
    const level = li.dataset.level;
    if (LEVELS.includes(level) && !levels.has(level)) return false;
    if (agent && li.dataset.agent !== agent) return false;
    if (hidden.has(li.dataset.room)) return false;
    const q = text.trim().toLowerCase();
    if (q && !li.roomlogsText.includes(q)) return false;
    return true;
  }

  applyFilters({ repaint = false } = {}) {
    for (const li of this.list.children) {
      li.hidden = !this.matches(li);
      if (repaint) this.paintText(li);
    }
    this.updateCounts();
    this.writeUrl();
    if (this.stick) this.scrollToEnd();
  }

  // -- the linked log ---------------------------------------------------------------------

  /** Mark and show the linked row when it is in the list; true when it is. */
  markTarget() {
    const t = this.filter.target;
    let found = null;
    for (const li of this.list.querySelectorAll(".row.target")) li.classList.remove("target");
    if (!t) return false;
    for (const li of this.list.children) {
      if (li.dataset.room === t.roomId && li.dataset.id === t.id) found = li;
    }
    if (!found) return false;
    found.classList.add("target");
    $("linked").hidden = true;
    const key = `${t.roomId}/${t.id}`;
    if (!found.hidden && this.scrolledTo !== key) {
      // Once: later rows must not pull the page back to it.
      this.scrolledTo = key;
      this.stick = false;
      found.scrollIntoView({ block: "center" });
    }
    return true;
  }

  /** The linked log from the room's history, shown above the stream (it may be older than
   *  the logs the stream loads). */
  async openTarget() {
    const t = this.filter.target;
    const box = $("linked");
    if (!t) {
      box.hidden = true;
      return;
    }
    if (this.markTarget()) {
      box.hidden = true;
      return;
    }
    const base = gatewayBase(this.connection.server);
    const url = new URL(`api/v1/rooms/${encodeURIComponent(t.roomId)}/logs/history`, base);
    const after = previousId(t.id);
    if (after === undefined) return;
    if (after) url.searchParams.set("after", after);
    url.searchParams.set("limit", "1");
    if (this.connection.token) url.searchParams.set("access_token", this.connection.token);
    let text;
    let found = null;
    try {
      const r = await fetch(url, {
        credentials: this.connection.token ? "same-origin" : "include",
        cache: "no-store",
      });
      const body = await r.json();
      if (r.ok) found = (body.logs || []).find((l) => l.id === t.id) || null;
      else text = `The linked log cannot be read: HTTP ${r.status} ${body.detail || body.error || ""}`;
    } catch (exc) {
      text = `The linked log cannot be read: ${exc.message || exc}`;
    }
    if (this.filter.target !== t || this.markTarget()) return; // moved on, or in the stream
    const list = $("linked-log");
    list.replaceChildren();
    if (found) {
      const { id, ...log } = found;
      const li = this.row({ id, cursor: null, roomId: t.roomId, log });
      li.hidden = false;
      li.classList.add("target");
      list.append(li);
    } else {
      list.append(el("li", "linked-missing", text || `${t.roomId}/${t.id} is no longer in the room's history.`));
    }
    box.hidden = false;
  }

  // -- downloads --------------------------------------------------------------------------

  shownRows() {
    return [...this.list.children].filter((li) => !li.hidden);
  }

  download(kind) {
    const lines = this.shownRows().map((li) => {
      const { id, roomId, log } = li.roomlogs;
      if (kind === "ndjson") {
        const { roomId: _r, ...rest } = log;
        return JSON.stringify({ roomId, ...(id ? { id } : {}), ...rest });
      }
      const meta = li.roomlogs.metaText ? ` ${JSON.stringify(log.metadata ?? {})}` : "";
      const ts = formatTime(log.timestamp, this.filter.utc);
      return `${ts} ${roomId} ${String(log.level ?? "").toUpperCase()} ${log.agentType ?? ""}: ${li.roomlogs.message}${meta}`;
    });
    const text = lines.length ? `${lines.join("\n")}\n` : "";
    const type = kind === "ndjson" ? "application/x-ndjson" : "text/plain";
    const blob = new Blob([text], { type: `${type};charset=utf-8` });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    const name = this.connection.rooms.length === 1 ? this.connection.rooms[0] : "rooms";
    a.download = `roomlogs-${name}-${stamp}.${kind === "ndjson" ? "ndjson" : "txt"}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // -- pause, clear, counts ---------------------------------------------------------------

  setPaused(paused) {
    this.paused = paused;
    $("pause").setAttribute("aria-pressed", String(paused));
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
    this.counts.clear();
    this.renderRoomCounts();
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
    const empty = $("empty");
    empty.hidden = rows > 0 || waiting > 0 || !$("problem").hidden;
    empty.textContent = this.connection.rooms.length ? "No logs yet." : "Follow a room: add one above.";
  }
}

/** The stream id just before `id` (for `after=`, which is exclusive): "" for the first
 *  possible id, undefined when `id` is not a stream id. */
export function previousId(id) {
  const m = /^(\d+)-(\d+)$/.exec(id);
  if (!m) return undefined;
  const ms = BigInt(m[1]);
  const seq = BigInt(m[2]);
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  if (ms > 0n) return `${ms - 1n}-18446744073709551615`;
  return "";
}

function setCount(node, count, text, visible = true) {
  node.dataset.count = String(count);
  node.textContent = text;
  node.hidden = !visible || !text;
}

function fmt(n) {
  return n.toLocaleString("en-US");
}

function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function main() {
  const connection = readConnection();
  const viewer = new Viewer(connection, readView());
  window.roomlogs = { viewer, stream: null };
  $("connect").addEventListener("submit", () => {
    // The token goes to this tab's storage, never into the address bar (empty: the cookie).
    saveToken($("f-token").value.trim());
    $("f-token").disabled = true;
  });
  viewer.writeUrl(); // drops access_token from the address bar
  if (!connection.rooms.length) {
    viewer.toggleForm(true);
    return;
  }
  viewer.connect();
}

if (document.getElementById("logs")) main();
