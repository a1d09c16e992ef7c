// RoomStream: one room's log stream, or several rooms' on one stream, over EventSource, with the
// reconnect rules of the gateway.
//
// One file for the built-in viewer and the npm package: service/static/stream.js is a symlink to
// clients/js/stream.js, served as it is (no build step). It runs in browsers and in Node 18+
// (give `server` and an `EventSource`, e.g. npm's `eventsource`, since Node has none).
//
//   const stream = new RoomStream({ room: "demo", token, history: 100 });
//   stream.addEventListener("log", (e) => console.log(e.detail.id, e.detail.log));
//   stream.addEventListener("state", (e) => console.log(e.detail.state, e.detail.reason));
//   stream.start();
//
//   // Several rooms on one stream (GET /api/v1/logs?rooms=a,b): `id` is then an opaque cursor.
//   const many = new RoomStream({ rooms: ["a", "b"], token, level: "warn" }).start();
//   many.setRooms(["a", "b", "c"]); // a new stream, each room resuming where it was
//
// Events (CustomEvent, payload in `detail`): `state` {state, reason}, `connected` {rooms,
// roomId, timestamp, recovered, heartbeatMs}, `log` {id, roomId, log}, `gap` {roomId, after,
// resumedFrom}, `heartbeat` {timestamp}, `unavailable` {reason, retryMs}, `duplicate` {id},
// `refused` {status, error, detail, reason} (a final refusal, just before `state` "closed").
// The same names work as callbacks: `new RoomStream({ ..., on: { log(detail) {} } })`.
//
// States: "connecting" (first attempt), "live" (the `connected` event arrived), "reconnecting"
// (the browser or this class is trying again), "closed" (for good; `reason` says why).
//
// The browser's EventSource reconnects by itself and sends `Last-Event-ID`. It gives up for good
// on any non-200 answer or a CORS refusal; then this class asks the gateway why (a 401/403/404
// with its JSON detail is final) and otherwise opens a new EventSource itself, with
// `lastEventId=<id>` in the query, after a jittered backoff. On the multi-room route the id is
// the stream's cursor (the position of every room): the same rules resume each room after its
// own position, and a new stream for another set of rooms (`setRooms`) starts from it too.

export const LEVELS = ["debug", "info", "success", "warn", "error"];

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const UNSURE_RETRIES = 3; // an unreadable refusal (no CORS headers) is final after this many
const CONNECTING = 0; // EventSource.CONNECTING, the same in every implementation

/** Compare two stream ids ("<ms>-<seq>"); null when either is not one. */
export function compareIds(a, b) {
  const pa = parseId(a);
  const pb = parseId(b);
  if (!pa || !pb) return null;
  return pa[0] - pb[0] || pa[1] - pb[1];
}

function parseId(id) {
  const m = typeof id === "string" ? /^(\d+)-(\d+)$/.exec(id) : null;
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** The gateway base URL: `server` when given, else the directory of the page. */
export function gatewayBase(server) {
  const page = typeof location === "undefined" ? undefined : location.href;
  if (!server && !page) throw new Error("server is required outside a browser page");
  if (server) return new URL(server.endsWith("/") ? server : server + "/", page);
  return new URL(".", page);
}

// Node 18 has EventTarget but no global CustomEvent (Node 19+ and browsers have one).
const DetailEvent =
  globalThis.CustomEvent ??
  class CustomEvent extends Event {
    constructor(type, { detail = null } = {}) {
      super(type);
      this.detail = detail;
    }
  };

/** Room ids from an array or a comma-separated string: trimmed, without empties or repeats. */
export function roomList(rooms) {
  const list = Array.isArray(rooms) ? rooms : String(rooms ?? "").split(",");
  return [...new Set(list.map((r) => String(r).trim()).filter(Boolean))];
}

export class RoomStream extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.room]  one room id: the one-room route, plain stream ids
   * @param {string[]|string} [options.rooms]  several (or one): the multi-room route, cursors
   * @param {string} [options.level]  the lowest level to receive (`?level=`)
   * @param {string} [options.agentType]  only this agent's logs (`?agentType=`)
   * @param {string} [options.lastEventId]  resume after this id or cursor (e.g. a saved one)
   * @param {string} [options.token]  sent as ?access_token=; without it the cookie is used
   * @param {string} [options.server]  gateway base URL (another origin needs CORS_ORIGINS)
   * @param {number} [options.history]  how many recent logs to load on open (?history=N)
   * @param {boolean} [options.withCredentials]  default: true when no token is given (cookie)
   * @param {Function} [options.EventSource]  the EventSource class (default: the global one)
   * @param {Function} [options.fetch]  for asking why a stream was refused (default: global)
   * @param {object} [options.eventSourceInit]  more options for the EventSource constructor
   * @param {object} [options.on]  callbacks by event name, called with the event's detail
   */
  constructor({
    room,
    rooms,
    level = "",
    agentType = "",
    lastEventId = null,
    on = {},
    token = "",
    server = "",
    history = 100,
    withCredentials,
    EventSource: EventSourceClass = globalThis.EventSource,
    fetch: fetchFn,
    eventSourceInit = {},
  } = {}) {
    super();
    this.multi = rooms !== undefined && rooms !== null;
    this.rooms = this.multi ? roomList(rooms) : room ? [String(room)] : [];
    if (!this.rooms.length) throw new Error("room (or rooms) is required");
    if (typeof EventSourceClass !== "function") {
      throw new Error("no EventSource here: pass one, e.g. { EventSource } from 'eventsource'");
    }
    this.EventSource = EventSourceClass;
    // Called unbound: the browser's fetch throws when called as a method of another object.
    this.fetch = (...args) => (fetchFn ?? globalThis.fetch)(...args);
    this.eventSourceInit = eventSourceInit;
    this.room = this.rooms[0];
    this.level = level || "";
    this.agentType = agentType || "";
    this.on = on || {};
    this.token = token || "";
    this.base = gatewayBase(server);
    this.history = Math.max(0, Number(history) || 0);
    this.withCredentials = withCredentials ?? !this.token;
    this.state = "idle";
    this.reason = "";
    this.lastEventId = lastEventId || null;
    this.lastData = null;
    this.source = null;
    this.stopped = false;
    this.everConnected = false;
    this.attempt = 0;
    this.refusals = 0;
    this.timer = null;
    this.unavailableReason = "";
  }

  /** The stream URL. A new EventSource sends no Last-Event-ID header, so a resume passes the
   *  id as `lastEventId=`; without one, `history=N` loads the recent logs (on a reconnect
   *  before any log arrived, these are the ones published meanwhile). On the multi-room route
   *  `history=N` is sent with the cursor too: it applies to the rooms the cursor lacks. */
  url(resumeAfter = null, { replay = true } = {}) {
    const url = this.multi
      ? new URL("api/v1/logs", this.base)
      : new URL(`api/v1/rooms/${encodeURIComponent(this.room)}/logs`, this.base);
    if (this.multi) url.searchParams.set("rooms", this.rooms.join(","));
    if (this.token) url.searchParams.set("access_token", this.token);
    if (this.level) url.searchParams.set("level", this.level);
    if (this.agentType) url.searchParams.set("agentType", this.agentType);
    if (!replay) return url.href;
    if (resumeAfter) url.searchParams.set("lastEventId", resumeAfter);
    if (this.history && (this.multi || !resumeAfter)) url.searchParams.set("history", this.history);
    return url.href;
  }

  /** Follow another set of rooms on a new stream (the multi-room route), each room that was
   *  already followed resuming after its position in the cursor, the new ones with
   *  `history=N`. On a one-room stream the plain stream id cannot carry over: the new stream
   *  starts with `history=N` for every room. */
  setRooms(rooms) {
    const list = roomList(rooms);
    if (!list.length) throw new Error("rooms must not be empty");
    if (!this.multi) {
      this.lastEventId = null;
      this.lastData = null;
    }
    this.multi = true;
    this.rooms = list;
    this.room = list[0];
    if (!this.stopped && this.state !== "idle" && this.state !== "closed") {
      clearTimeout(this.timer);
      this.attempt = 0;
      this.open();
    }
    return this;
  }

  start() {
    this.stopped = false;
    this.open();
    return this;
  }

  /** Close for good. */
  close(reason = "closed by you") {
    this.stopped = true;
    clearTimeout(this.timer);
    this.dropSource();
    this.setState("closed", reason);
  }

  open() {
    this.dropSource();
    this.setState(this.everConnected ? "reconnecting" : "connecting", this.reason);
    const es = new this.EventSource(this.url(this.lastEventId), {
      ...this.eventSourceInit,
      withCredentials: this.withCredentials,
    });
    this.source = es;
    es.addEventListener("connected", (e) => this.onConnected(es, e));
    es.addEventListener("log", (e) => this.onLog(es, e));
    es.addEventListener("gap", (e) => this.onGap(es, e));
    es.addEventListener("heartbeat", (e) => this.emit("heartbeat", parse(e.data)));
    es.addEventListener("unavailable", (e) => this.onUnavailable(es, e));
    es.addEventListener("error", () => this.onError(es));
  }

  dropSource() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  onConnected(es, e) {
    if (es !== this.source) return;
    const data = parse(e.data) || {};
    if (!Array.isArray(data.rooms)) data.rooms = data.roomId ? [data.roomId] : [...this.rooms];
    this.everConnected = true;
    this.attempt = 0;
    this.refusals = 0;
    this.unavailableReason = "";
    this.setState("live", "");
    this.emit("connected", data);
  }

  onLog(es, e) {
    if (es !== this.source) return;
    const log = parse(e.data);
    if (log === null || typeof log !== "object") return;
    // A MessageEvent carries the source's last event id whether or not this event had an `id:`
    // line of its own; a log from a plain Redis PUBLISH has none (it is live only).
    let id = e.lastEventId || null;
    if (id !== null && id === this.lastEventId) {
      if (e.data === this.lastData) {
        this.emit("duplicate", { id });
        return;
      }
      id = null;
    } else if (id !== null && this.lastEventId && compareIds(id, this.lastEventId) < 0) {
      this.emit("duplicate", { id });
      return;
    }
    if (id !== null) {
      this.lastEventId = id;
      this.lastData = e.data;
    }
    const roomId = this.multi && typeof log.roomId === "string" ? log.roomId : this.room;
    this.emit("log", { id, roomId, log });
  }

  onGap(es, e) {
    if (es !== this.source) return;
    const data = parse(e.data) || {};
    this.emit("gap", { roomId: this.room, ...data });
  }

  onUnavailable(es, e) {
    if (es !== this.source) return;
    const data = parse(e.data) || {};
    this.unavailableReason = data.reason || "unavailable";
    this.emit("unavailable", data);
    // The gateway closes the stream next; the browser retries after the `retry:` it sent.
    this.setState("reconnecting", `${this.unavailableReason}, retrying`);
  }

  onError(es) {
    if (es !== this.source || this.stopped) return;
    if (es.readyState === CONNECTING) {
      // The browser retries by itself, with Last-Event-ID.
      const why = this.unavailableReason || "connection lost";
      this.setState("reconnecting", why);
      return;
    }
    // CLOSED: the browser gave up (a non-200 answer, a CORS refusal). Ask why.
    this.dropSource();
    this.setState(this.everConnected ? "reconnecting" : "connecting", "checking the gateway");
    this.diagnose().then(({ final, unsure, reason, status = 0, error = "", detail = "" }) => {
      if (this.stopped) return;
      if (unsure && this.refusals < UNSURE_RETRIES) {
        this.refusals += 1;
        this.retryLater(`${reason} (try ${this.refusals} of ${UNSURE_RETRIES})`);
        return;
      }
      if (final || unsure) {
        this.emit("refused", { status, error, detail, reason });
        this.close(reason);
        return;
      }
      this.retryLater(reason);
    });
  }

  retryLater(reason) {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.attempt += 1;
    this.setState("reconnecting", `${reason}; retrying in ${Math.round(delay / 1000)} s`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  /** Why did the stream fail? `final` for answers that will not change on retry, `unsure` for
   *  a refusal this page cannot read. */
  async diagnose() {
    const credentials = this.withCredentials ? "include" : "same-origin";
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), 10000);
    try {
      const r = await this.fetch(this.url(null, { replay: false }), {
        credentials,
        signal: abort.signal,
        cache: "no-store",
      });
      if (r.ok) return { final: false, reason: "the stream was interrupted" };
      let detail = "";
      let error = "";
      try {
        const body = await r.json();
        error = typeof body.error === "string" ? body.error : "";
        detail = typeof body.detail === "string" ? body.detail : "";
      } catch {
        // not JSON (a proxy's page)
      }
      const why = detail || error;
      const reason = `HTTP ${r.status}${why ? ": " + why : ""}`;
      const final = r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429;
      return { final, reason, status: r.status, error, detail };
    } catch {
      // A network error, or an answer without CORS headers for this origin: tell them apart
      // with an opaque request, which succeeds whenever the gateway answers at all.
      try {
        await this.fetch(new URL("healthz", this.base), {
          mode: "no-cors",
          cache: "no-store",
          signal: abort.signal,
        });
        // Final when the origin is not allowed, but the gateway also leaves CORS headers off
        // its errors and transient refusals, so this is only believed after a few tries.
        return {
          unsure: true,
          reason:
            "the gateway refused this page: its origin is not in CORS_ORIGINS, " +
            "or the token or room was rejected",
        };
      } catch {
        return { final: false, reason: "the gateway is unreachable" };
      }
    } finally {
      clearTimeout(timeout);
      abort.abort();
    }
  }

  setState(state, reason = "") {
    if (state === this.state && reason === this.reason) return;
    this.state = state;
    this.reason = reason;
    this.emit("state", { state, reason });
  }

  emit(type, detail) {
    this.dispatchEvent(new DetailEvent(type, { detail }));
    const callback = this.on[type];
    if (typeof callback === "function") callback.call(this, detail);
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
