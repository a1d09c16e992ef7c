// The viewer's state in its URL, so that a reload or a shared link shows the same thing.
//
//   ?rooms=a,b&server=…&history=100          what to stream (`room=a` is read too)
//   #levels=warn,error&agent=code&q=timeout&hide=b&tz=utc&log=a/1700000000000-0
//                                            how to show it (filters, zone, the linked log)
//
// `access_token=` is read once, kept in sessionStorage (this tab only) and taken out of the
// address bar, so it does not end up in the history, in bookmarks or in a copied link.

import { LEVELS, roomList } from "./stream.js";

const TOKEN_KEY = "roomlogs.token";
export const DEFAULT_HISTORY = 100;

export function readConnection(href = location.href) {
  const q = new URL(href).searchParams;
  const history = q.get("history");
  let token = q.get("access_token") || "";
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else token = sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    // storage disabled: the token lives in memory only
  }
  return {
    rooms: roomList([...q.getAll("rooms"), ...q.getAll("room")].join(",")),
    token,
    server: q.get("server") || "",
    history:
      history === null || history === ""
        ? DEFAULT_HISTORY
        : Math.min(Math.max(Number(history) || 0, 0), 1000),
  };
}

export function saveToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled
  }
}

export function readView(hash = location.hash) {
  const h = new URLSearchParams(hash.replace(/^#/, ""));
  const levels = h.has("levels")
    ? new Set(h.get("levels").split(",").filter((l) => LEVELS.includes(l)))
    : new Set(LEVELS);
  const log = h.get("log") || "";
  const slash = log.indexOf("/");
  return {
    levels,
    agent: h.get("agent") || "",
    text: h.get("q") || "",
    hidden: new Set(roomList(h.get("hide") || "")),
    utc: h.get("tz") === "utc",
    target: slash > 0 ? { roomId: log.slice(0, slash), id: log.slice(slash + 1) } : null,
    onlyTarget: [...h.keys()].every((k) => k === "log") && h.has("log"),
  };
}

export function viewHash({ levels, agent, text, hidden, utc, target }) {
  const h = new URLSearchParams();
  if (levels.size !== LEVELS.length) h.set("levels", LEVELS.filter((l) => levels.has(l)).join(","));
  if (agent) h.set("agent", agent);
  if (text) h.set("q", text);
  if (hidden.size) h.set("hide", [...hidden].join(","));
  if (utc) h.set("tz", "utc");
  if (target) h.set("log", `${target.roomId}/${target.id}`);
  const s = h.toString().replace(/%2C/g, ",").replace(/%2F/g, "/");
  return s ? `#${s}` : "";
}

/** The page URL for this connection and view (never with the token). */
export function pageUrl({ rooms, server, history }, view, href = location.href) {
  const url = new URL(href);
  const q = new URLSearchParams();
  if (rooms.length) q.set("rooms", rooms.join(","));
  if (server) q.set("server", server);
  if (history !== DEFAULT_HISTORY) q.set("history", String(history));
  url.search = q.toString().replace(/%2C/g, ",");
  url.hash = viewHash(view);
  return url.href;
}

/** A link to one log: the page's rooms and that log, without filters or token. */
export function logLink(connection, roomId, id, href = location.href) {
  const rooms = connection.rooms.includes(roomId) ? connection.rooms : [roomId];
  return pageUrl({ ...connection, rooms }, { levels: new Set(LEVELS), agent: "", text: "", hidden: new Set(), utc: false, target: { roomId, id } }, href);
}
